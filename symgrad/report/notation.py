"""The report's notation: how each quantity is written, in LaTeX and in unicode text.

Names come from naming.py (the same table the generated code uses): W^{[2]} in LaTeX is
W2 in the text and the code, δ^{[2]} is δ2 (D2 in the code). Unit j of a layer quantity
is a subscript, z^{[2]}_{j} and z2ⱼ. SymPy expressions are printed with `sympy.latex` and
`printers.text`, their symbols named for the context; nothing here computes with them.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .. import naming as nm
from ..activations import a, y, z
from ..derive import ActivationRule, Derivation
from ..sym.code import number_text
from ..sym.text import as_written, text
from . import tex as tex_mod
from .document import Code, Inline, M, Math, Name, cat

ELL = M(*nm.EXAMPLE_LOSS)
LOSS = M(*nm.BATCH_LOSS)
DOT = M(r" \cdot ", " · ")
ODOT = M(r" \odot ", " ⊙ ")
ELEMENTWISE = M(r"\odot", "⊙")
ARROW = M(r"\leftarrow", "←")
TO = M(r" \to ", " → ")
RIGHT = M(r"\to", "→")  # in a sentence: 4 → 16 (ReLU)
PREDICTION = M(*nm.PREDICTION)
TARGET = M(*nm.TARGET_ONE)


def sub(idx: str) -> str:
    """Indices as unicode subscripts: "ij" -> ᵢⱼ."""
    return "".join(nm.INDEX_TEXT.get(c, c) for c in idx)


def unit(name: str, l: int, idx: str) -> Math:
    """Unit idx of a layer quantity: z^{[2]}_{j} in LaTeX, z2ⱼ in text (z2 is Z2's row)."""
    return Math(f"{nm.tex(name, l)}_{{{idx}}}", f"{name}{l}{sub(idx)}")


def act_unit(l: int, idx: str, depth: int) -> Math:
    """The output of unit idx of layer l: x for the input, ŷ at the output layer."""
    if l == 0:
        return indexed(nm.EXAMPLE_INPUT, idx)
    if l == depth:
        return indexed(nm.PREDICTION, idx)
    return unit(nm.ACTIVATION[0], l, idx)


def indexed(name: tuple[str, str], idx: str) -> Math:
    """A (LaTeX, text) name with an index: y_{k}, yₖ."""
    return Math(f"{name[0]}_{{{idx}}}", f"{name[1]}{sub(idx)}")


def target(idx: str) -> Math:
    return indexed(nm.TARGET_ONE, idx)


def weight(l: int, i: str, j: str) -> Math:
    w = nm.WEIGHT[0]
    return Math(f"{nm.tex(w, l)}_{{{i}{j}}}", f"{w}{l}{sub(i)}{sub(j)}")


def delta(l: int, idx: str = "") -> Math:
    """δ of layer l (a unit when idx is given); text as in the generated docstring: δ2."""
    tex, txt = nm.DELTA
    return Math(nm.tex(tex, l) + (f"_{{{idx}}}" if idx else ""), f"{txt}{l}{sub(idx)}")


def upstream(l: int, idx: str = "") -> Math:
    """g of layer l, ∂ℓ/∂a^{[l]} (of unit idx when given): the gradient reaching a
    layer's output; G{l} in the code for a batch."""
    tex = nm.tex("g", l) + (f"_{{{idx}}}" if idx else "")
    return Math(tex, f"g{l}{sub(idx)}")


def vec(name: str, l: int, depth: int) -> Math:
    """A layer's row vector for one example: a^{[1]}, x for the input, ŷ at the output."""
    if name == "a" and l == 0:
        return M(*nm.EXAMPLE_INPUT)
    if name == "a" and l == depth:
        return PREDICTION
    return Math(nm.tex(name, l), f"{name}{l}")


def mat(name: str, l: int, depth: int | None = None) -> Math:
    """A batch matrix with the generated code's name in text: A^{[1]} / A1, X, Ŷ."""
    if name == "A" and l == 0:
        return M(nm.A(0))
    if name == "A" and l == depth:
        return M(*nm.PREDICTIONS)
    code = {"A": nm.A, "Z": nm.Z, "W": nm.W, "b": nm.b}[name](l)
    return Math(nm.tex(name, l), code)


def partial(num: Math, den: Math) -> Math:
    return Math(
        rf"\frac{{\partial {num.tex}}}{{\partial {den.tex}}}",
        f"∂{num.text}/∂{den.text}",
        rf"\partial {num.tex} / \partial {den.tex}",
    )


def fn_name(rule: ActivationRule) -> Math:
    """The symbol of an activation in formulas: σ, tanh, or the name upright."""
    if rule.name in nm.FUNCTIONS and not rule.custom:
        return M(*nm.FUNCTIONS[rule.name])
    return Math(rf"\operatorname{{{tex_mod.identifier(rule.name)}}}", rule.name)


def function(name: str) -> Math:
    """A function of naming.FUNCTIONS by its name: softmax, log_softmax, softplus."""
    return M(*nm.FUNCTIONS[name])


def apply(f: Math, arg: Math, prime: bool = False) -> Math:
    p = "'" if prime else ""
    return Math(rf"{f.tex}{p}\left({arg.tex}\right)", f"{f.text}{p}({arg.text})")


def ex(e: sp.Expr, names: Mapping[sp.Symbol, Math] | None = None) -> Math:
    """A SymPy expression in both notations, with its symbols named for the context."""
    names = names or {}
    tex = sp.latex(e, symbol_names={s: m.tex for s, m in names.items()})
    return Math(tex, text(e, {s: m.text for s, m in names.items()}))


def grouped(m: Math) -> Math:
    """m in parentheses that grow with it (a sum or a fraction inside stays enclosed)."""
    return Math(rf"\left({m.tex}\right)", f"({m.text})")


def shown(e: sp.Expr, names: Mapping[sp.Symbol, Math] | None = None) -> Math:
    """An expression built unevaluated (a textbook's line of an update rule), printed
    in its own order, in both notations."""
    names = names or {}
    tex = sp.latex(e, symbol_names={s: m.tex for s, m in names.items()}, order="none")
    return Math(tex, as_written(e, {s: m.text for s, m in names.items()}))


def paren(e: sp.Expr, names: Mapping[sp.Symbol, Math]) -> Math:
    """ex(e), parenthesized when it is a sum, a case split or negative (to be a factor)."""
    m = ex(e, names)
    if e.is_Add or isinstance(e, sp.Piecewise) or e.could_extract_minus_sign():
        return grouped(m)
    return m


def times(*factors: Math) -> Math:
    out = factors[0]
    for f in factors[1:]:
        out = cat(out, DOT, f)
    return out


def number(v: float) -> Math:
    """A hyperparameter value: 0.05; 1e-08 is 10^{-8} in LaTeX."""
    s = number_text(sp.Float(v))
    if "e" not in s:
        return M(s)
    mant, exp = s.split("e")
    power = f"10^{{{int(exp)}}}"
    return Math(power if mant == "1" else rf"{mant} \cdot {power}", s)


def summed(idx: str) -> Math:
    return Math(rf"\sum_{{{idx}}} ", f"Σ{sub(idx)} ")


def transposed(m: Math) -> Math:
    """Mᵀ; W^{[2]} becomes W^{[2]\\mathsf{T}} (one superscript, not two)."""
    t, t_text = nm.TRANSPOSE
    if m.tex.endswith("]}") and "^{[" in m.tex:
        return Math(f"{m.tex[:-1]}{t}}}", f"{m.text}{t_text}")
    return Math(f"{m.tex}^{{{t}}}", f"{m.text}{t_text}")


def between(*parts: Math, sep: str = ", ") -> Math:
    """Formulas joined by an ASCII separator, as one formula."""
    out: list[Math | str] = []
    for p in parts:
        out += [sep, p] if out else [p]
    return cat(*out)


# ------------------------------------------------------------------ the loss's names


def loss_title(d: Derivation) -> tuple[str, bool]:
    """The loss's registered title as a name, and whether a formula was cut from it.

    A title may end in its formula in unicode (mse: 'mean squared error (½ Σ (ŷ − y)²)');
    the report writes formulas as Math, from the derived loss (`loss_formula`).
    """
    title = d.output.loss_title
    head, sep, tail = title.partition(" (")
    if sep and not tail.isascii():
        return head, True
    return title, False


def loss_formula(d: Derivation) -> Math:
    """One example's loss summed over the outputs: Σₖ ℓ(ŷₖ, yₖ) as derived."""
    n = d.depth
    names = {a: act_unit(n, "k", n), y: target("k"), z: unit("z", n, "k")}
    return cat(summed("k"), paren(d.output.loss, names))


def loss_phrase(d: Derivation) -> list[Inline]:
    """'the binary cross-entropy', or 'the custom loss `name`'."""
    if d.spec.loss.custom:
        return ["the custom loss ", Code(d.spec.loss.name)]
    return ["the ", Name(loss_title(d)[0])]
