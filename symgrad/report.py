"""The derivation as a document: what `symgrad latex` prints, as LaTeX, Markdown or text.

`build` lays out the backpropagation of a Derivation the way a textbook derives it, in the
order of the handwritten notes symgrad grew from: the output layer's chain rule with each
factor derived, the output delta (and its collapse to ŷ − y where SymPy finds it), the bias,
each hidden layer with its activation's derivative taken from the definition and rewritten
in the layer's output, the matrix form, the optimizer's update rule, the loss, K output
units, a batch of m examples and, where sigmoid or tanh is used, saturation versus ReLU.

Every formula that depends on the spec is a SymPy result from derive.py, printed with
`sympy.latex` (the stable functions bring their own `_latex`) or `printers.text`; only the
dense-layer algebra, the same for every layer, is written out here. Names follow naming.py:
W^{[l]} in the LaTeX is W{l} in the generated code, δ^{[l]} is D{l}.

`render_report` turns the document into LaTeX (a fragment to \\input, or with `standalone`
a complete document for pdflatex), Markdown with `$$` blocks (GitHub, Jupyter) or unicode
text for a terminal.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from . import naming as nm
from . import ops
from .derive import LS, ActivationRule, Derivation, activation_rule, tidy
from .functions import log_softmax, softplus
from .ops import a, y, z
from .printers import number_text, text
from .spec import OpSpec

FORMATS = ("latex", "markdown", "text")
TEXT_WIDTH = 88
ONE_LINE = 72  # an equation whose text form is longer breaks after each step

# ------------------------------------------------------------------ document model


@dataclass(frozen=True)
class Math:
    """One formula in both notations: LaTeX, and unicode text for the terminal."""

    tex: str
    text: str
    inline: str = ""  # LaTeX for use inside a sentence, when it differs (no \\frac)

    @property
    def tex_inline(self) -> str:
        return self.inline or self.tex


@dataclass(frozen=True)
class Code:
    """A name or expression as written in the spec or the code (monospace)."""

    text: str


Inline = str | Math | Code


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Eq:
    """lhs rel steps[0] rel steps[1] ...; a note (ASCII prose or a formula) may follow."""

    lhs: Math
    steps: tuple[Math, ...] = ()
    note: str | Math = ""
    rel: Math = Math("=", "=")


@dataclass(frozen=True)
class Display:
    eqs: tuple[Eq, ...]


Block = Para | Display


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Report:
    title: str
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]


def P(*parts: Inline) -> Para:  # noqa: N802 - reads like a paragraph tag
    """A paragraph; adjacent formulas merge (in Markdown, $x$$y$ would open a block)."""
    merged: list[Inline] = []
    for part in parts:
        if isinstance(part, Math) and merged and isinstance(merged[-1], Math):
            merged[-1] = cat(merged[-1], part)
        elif part != "":
            merged.append(part)
    return Para(tuple(merged))


def D(*eqs: Eq) -> Display:  # noqa: N802
    return Display(tuple(eqs))


def M(tex: str, txt: str | None = None) -> Math:  # noqa: N802
    return Math(tex, tex if txt is None else txt)


def cat(*parts: Math | str) -> Math:
    """Concatenate formulas; a str is the same in both notations (spaces, =, parentheses)."""
    ms = [p if isinstance(p, Math) else Math(p, p) for p in parts]
    inline = "".join(m.tex_inline for m in ms)
    tex = "".join(m.tex for m in ms)
    return Math(tex, "".join(m.text for m in ms), inline if inline != tex else "")


# ------------------------------------------------------------------ notation

_SUB = {"i": "ᵢ", "j": "ⱼ", "k": "ₖ", "n": "ₙ"}
ELL = M(r"\ell", "ℓ")
LOSS = M("L")
DOT = M(r" \cdot ", " · ")
ODOT = M(r" \odot ", " ⊙ ")
ARROW = M(r"\leftarrow", "←")


def _sub(idx: str) -> str:
    return "".join(_SUB.get(c, c) for c in idx)


def unit(name: str, l: int, idx: str) -> Math:
    """Unit idx of a layer quantity: z^{[2]}_{j} in LaTeX, z2ⱼ in text (z2 is Z2's row)."""
    return Math(f"{nm.tex(name, l)}_{{{idx}}}", f"{name}{l}{_sub(idx)}")


def act_unit(l: int, idx: str, depth: int) -> Math:
    """The output of unit idx of layer l: x for the input, ŷ at the output layer."""
    if l == 0:
        return Math(f"x_{{{idx}}}", f"x{_sub(idx)}")
    if l == depth:
        return Math(rf"\hat{{y}}_{{{idx}}}", f"ŷ{_sub(idx)}")
    return unit("a", l, idx)


def weight(l: int, i: str, j: str) -> Math:
    return Math(f"{nm.tex('w', l)}_{{{i}{j}}}", f"w{l}{_sub(i)}{_sub(j)}")


def delta(l: int, idx: str = "") -> Math:
    """δ of layer l (a unit when idx is given); text as in the generated docstring: δ2."""
    tex = nm.tex(r"\delta", l) + (f"_{{{idx}}}" if idx else "")
    return Math(tex, f"δ{l}{_sub(idx)}")


def vec(name: str, l: int, depth: int) -> Math:
    """A layer's row vector for one example: a^{[1]}, x for the input, ŷ at the output."""
    if name == "a" and l == 0:
        return M("x")
    if name == "a" and l == depth:
        return M(r"\hat{y}", "ŷ")
    return Math(nm.tex(name, l), f"{name}{l}")


def mat(name: str, l: int, depth: int | None = None) -> Math:
    """A batch matrix with the generated code's name in text: A^{[1]} / A1, X, Ŷ."""
    if name == "A" and l == 0:
        return M("X")
    if name == "A" and l == depth:
        return M(r"\hat{Y}", "Ŷ")
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
    if rule.name == "sigmoid":
        return M(r"\sigma", "σ")
    if rule.name == "tanh":
        return M(r"\tanh", "tanh")
    if rule.name == "identity":
        return M(r"\operatorname{id}", "id")
    return Math(rf"\operatorname{{{_tex_name(rule.name)}}}", rule.name)


def apply(f: Math, arg: Math, prime: bool = False) -> Math:
    p = "'" if prime else ""
    return Math(rf"{f.tex}{p}\left({arg.tex}\right)", f"{f.text}{p}({arg.text})")


def ex(e: sp.Expr, names: Mapping[sp.Symbol, Math] | None = None) -> Math:
    """A SymPy expression in both notations, with its symbols named for the context."""
    names = names or {}
    tex = sp.latex(e, symbol_names={s: m.tex for s, m in names.items()})
    return Math(tex, text(e, {s: m.text for s, m in names.items()}))


def paren(e: sp.Expr, names: Mapping[sp.Symbol, Math]) -> Math:
    """ex(e), parenthesized when it is a sum, a case split or negative (to be a factor)."""
    m = ex(e, names)
    if e.is_Add or isinstance(e, sp.Piecewise) or e.could_extract_minus_sign():
        return Math(rf"\left({m.tex}\right)", f"({m.text})")
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


def _summed(idx: str) -> Math:
    return Math(rf"\sum_{{{idx}}} ", f"Σ{_sub(idx)} ")


# ------------------------------------------------------------------ building blocks


def _activation_blocks(rule: ActivationRule, where: str) -> list[Block]:
    """f defined, then f'(z) from diff, simplified, and rewritten in a = f(z)."""
    f = fn_name(rule)
    fz, fpz = apply(f, M("z")), apply(f, M("z"), prime=True)
    intro: list[Inline] = [f"{where} The {rule.title} activation is"]
    if rule.custom:
        intro = [f"{where} The custom activation ", Code(rule.name), " is"]
    steps = [
        Math(
            rf"\frac{{d}}{{dz}}\left({ex(rule.f).tex}\right)",
            f"d/dz [{ex(rule.f).text}]",
        ),
        ex(rule.raw),
    ]
    if not rule.f.has(z):
        steps = steps[1:]
    for form in (rule.dz, rule.df if rule.in_a else None):
        if form is not None and ex(form).tex not in {s.tex for s in steps}:
            steps.append(ex(form))
    blocks: list[Block] = []
    if isinstance(rule.f, sp.Function) and rule.f.args == (z,):
        # tanh(z) = tanh(z) would say nothing
        blocks.append(P(*intro, " ", ex(rule.f), "."))
    else:
        blocks += [P(*intro), D(Eq(fz, (ex(rule.f),)))]
    blocks += [
        P("SymPy differentiates it and simplifies:"),
        D(Eq(fpz, tuple(steps))),
    ]
    if rule.in_a and rule.df.has(a):
        blocks.append(
            P(
                "The last form is written in the output ",
                cat(M("a"), " = ", fz),
                ", found by substituting and checked numerically: the backward pass "
                "reuses the activation stored by the forward pass.",
            )
        )
    elif not rule.in_a:
        blocks.append(
            P(
                "No form in the output ",
                cat(M("a"), " = ", fz),
                " checked out at no extra cost, so the backward pass keeps z from "
                "the forward pass.",
            )
        )
    return blocks


@functools.cache
def _softmax_jacobian(l: int) -> tuple[tuple[Math, Math], tuple[Math, Math]]:
    """∂ŷ_j/∂z_j and ∂ŷ_k/∂z_j (k ≠ j) of softmax, raw and in ŷ, derived by SymPy."""
    zj, zk = sp.symbols("z_j z_k", real=True)
    rest = sp.Symbol("R", positive=True)  # the sum of the other exponentials
    total = sp.exp(zj) + sp.exp(zk) + rest
    s = sp.Symbol("S", positive=True)
    yj, yk = sp.symbols("yhat_j yhat_k", positive=True)
    names = {
        zj: unit("z", l, "j"),
        zk: unit("z", l, "k"),
        s: M("S"),
        yj: M(r"\hat{y}_{j}", "ŷⱼ"),
        yk: M(r"\hat{y}_{k}", "ŷₖ"),
    }
    out = []
    for num in (sp.exp(zj), sp.exp(zk)):
        raw = sp.diff(num / total, zj).xreplace({total: s})
        in_y = tidy(raw.subs({sp.exp(zj): yj * s, sp.exp(zk): yk * s}))
        if in_y.free_symbols - {yj, yk}:
            raise AssertionError(f"softmax Jacobian did not simplify: {in_y}")
        out.append((ex(raw, names), ex(in_y, names)))
    return out[0], out[1]


def _softmax_output_blocks(d: Derivation) -> list[Block]:
    n, out = d.depth, d.output
    zj, yj_hat, yk_hat = unit("z", n, "j"), act_unit(n, "j", n), act_unit(n, "k", n)
    yk = M("y_{k}", "yₖ")
    (djj_raw, djj), (dkj_raw, dkj) = _softmax_jacobian(n)
    zi, zk = unit("z", n, "i"), unit("z", n, "k")
    blocks: list[Block] = [
        P(
            "(2) The activation. Softmax couples the units: with ",
            Math(rf"S = \sum_{{i}} e^{{{zi.tex}}}", f"S = Σᵢ exp({zi.text})"),
            ", every output ",
            cat(yk_hat, Math(rf" = e^{{{zk.tex}}} / S", f" = exp({zk.text})/S")),
            " depends on every ",
            zj,
            ". SymPy differentiates and rewrites the result in the outputs:",
        ),
        D(
            Eq(partial(yj_hat, zj), (djj_raw, djj)),
            Eq(partial(yk_hat, zj), (dkj_raw, dkj), note=M(r"(k \neq j)", "(k ≠ j)")),
        ),
        P(
            "that is ",
            cat(
                partial(yk_hat, zj),
                " = ",
                yk_hat,
                M(r" \left([k = j] - ", " · ([k = j] - "),
                yj_hat,
                M(r"\right)", ")"),
            ),
            ", where ",
            M("[k = j]"),
            " is 1 for ",
            M("k = j"),
            " and 0 otherwise.",
        ),
    ]
    h = tidy(sp.together(a * out.dl_da))
    hj = ex(h, {a: yj_hat, y: M("y_{j}", "yⱼ")})
    neg = h.could_extract_minus_sign()
    hk = paren(-h if neg else h, {a: yk_hat, y: yk})
    sum_form = cat(
        hj,
        M(" + " if neg else " - "),
        yj_hat,
        " ",
        Math(rf"\sum_{{k}} {hk.tex}", f"Σₖ {hk.text}"),
    )
    steps = [
        Math(
            rf"\sum_{{k}} {partial(ELL, yk_hat).tex}" rf" \, {partial(yk_hat, zj).tex}",
            f"Σₖ {partial(ELL, yk_hat).text} · {partial(yk_hat, zj).text}",
        ),
        cat(
            _summed("k"),
            paren(out.dl_da, {a: yk_hat, y: yk}),
            DOT,
            yk_hat,
            M(r" \left([k = j] - ", " · ([k = j] - "),
            yj_hat,
            M(r"\right)", ")"),
        ),
        sum_form,
    ]
    names_j = {a: yj_hat, y: M("y_{j}", "yⱼ"), z: zj}
    note = ""
    final = ex(out.delta, names_j)
    if out.collapsed:
        note = "(collapsed)"
    elif out.jvp:
        final = Math(r"h_{j} - \hat{y}_{j} \sum_{k} h_{k}", "hⱼ - ŷⱼ·Σₖ hₖ")
    steps.append(final)
    blocks += [
        P(
            "Combining the loss and the Jacobian gives the output delta ",
            cat(delta(n, "j"), " = ", partial(ELL, zj)),
            ", a sum over the outputs:",
        ),
        D(Eq(delta(n, "j"), tuple(steps), note)),
    ]
    if out.collapsed:
        blocks.append(
            P(
                "With one-hot targets, ",
                M(r"\sum_{k} y_{k} = 1", "Σₖ yₖ = 1"),
                ", and SymPy's simplification collapses the delta to ",
                final,
                ": the softmax Jacobian has cancelled against the logarithm.",
            )
        )
    elif out.jvp:
        blocks.append(
            P(
                "with ",
                cat(
                    M("h_{k} = ", "hₖ = "),
                    yk_hat,
                    DOT,
                    partial(ELL, yk_hat),
                    " = ",
                    ex(h, {a: yk_hat, y: yk}),
                ),
                "; it does not collapse, and the code computes it in this form.",
            )
        )
    return blocks


def _output_section(d: Derivation) -> Section:
    n, out = d.depth, d.output
    layer = d.layers[-1]
    act = layer.activation
    zj, yj_hat, yj = unit("z", n, "j"), act_unit(n, "j", n), M("y_{j}", "yⱼ")
    wij, bj, ai = weight(n, "i", "j"), unit("b", n, "j"), act_unit(n - 1, "i", n)
    dj = delta(n, "j")
    names_j = {a: yj_hat, y: yj, z: zj}
    f = fn_name(act)
    units = "unit" if layer.units == 1 else "units"
    fwd = (
        Math(
            rf"\frac{{e^{{{zj.tex}}}}}{{\sum_{{k}} e^{{{unit('z', n, 'k').tex}}}}}",
            f"exp({zj.text}) / Σₖ exp({unit('z', n, 'k').text})",
        )
        if act.vector
        else apply(f, zj)
    )
    loss_def = ex(out.loss, {a: M(r"\hat{y}", "ŷ"), y: M("y")})
    blocks: list[Block] = [
        P(
            f"Layer {n}, the output layer, has {layer.units} {units} with the "
            f"{act.title} activation. Unit j computes",
        ),
        D(
            Eq(zj, (cat(_summed("i"), ai, " ", wij, " + ", bj),)),
            Eq(yj_hat, (fwd,)),
        ),
        P(
            "and one example's loss is ",
            *_loss_phrase(d),
            ", summed over the outputs:",
        ),
        D(
            Eq(ELL, (cat(_summed("j"), ELL, "(", yj_hat, ", ", yj, ")"),)),
            Eq(M(r"\ell(\hat{y}, y)", "ℓ(ŷ, y)"), (loss_def,)),
        ),
    ]
    if act.vector:
        chain = Math(
            rf"\sum_{{k}} {partial(ELL, act_unit(n, 'k', n)).tex}"
            rf" \, {partial(act_unit(n, 'k', n), zj).tex} \, {partial(zj, wij).tex}",
            f"Σₖ {partial(ELL, act_unit(n, 'k', n)).text} · "
            f"{partial(act_unit(n, 'k', n), zj).text} · {partial(zj, wij).text}",
        )
        path = "through its pre-activation and then every output"
    else:
        chain = times(partial(ELL, yj_hat), partial(yj_hat, zj), partial(zj, wij))
        path = f"through {zj.text} and {yj_hat.text} only"
    blocks += [
        P(
            "A weight ",
            wij,
            f" reaches the loss {path} (",
            cat(
                wij,
                M(r" \to ", " → "),
                zj,
                M(r" \to ", " → "),
                act_unit(n, "k", n) if act.vector else yj_hat,
            ),
            M(r" \to \ell", " → ℓ"),
            "), so the chain rule gives",
        ),
        D(Eq(partial(ELL, wij), (chain,))),
    ]
    dl_da = ex(out.dl_da, names_j)
    yk_hat = act_unit(n, "k", n)
    if act.vector:
        blocks += [
            P("(1) The loss, differentiated by SymPy:"),
            D(
                Eq(
                    partial(ELL, yk_hat),
                    (ex(out.dl_da, {a: yk_hat, y: M("y_{k}", "yₖ")}),),
                )
            ),
        ]
        blocks += _softmax_output_blocks(d)
    else:
        blocks += [P("(1) The loss, differentiated by SymPy:")]
        blocks += [D(Eq(partial(ELL, yj_hat), (dl_da,)))]
        blocks += _activation_blocks(act, "(2) The activation.")
        blocks += [
            P("At the output this factor is"),
            D(Eq(partial(yj_hat, zj), (apply(f, zj, prime=True), ex(act.df, names_j)))),
        ]
    blocks += [
        P("(3) The weight: ", zj, " is linear in ", wij, ", so"),
        D(Eq(partial(zj, wij), (ai,))),
    ]
    if not act.vector:
        product = times(paren(out.dl_da, names_j), paren(out.da_dz, names_j))
        steps = [times(partial(ELL, yj_hat), partial(yj_hat, zj)), product]
        result = ex(out.delta, names_j)
        if result.tex != product.tex:
            steps.append(result)
        blocks += [
            P(
                "The first two factors make the output delta ",
                cat(dj, " = ", partial(ELL, zj)),
                ":",
            ),
            D(Eq(dj, tuple(steps), "(collapsed)" if out.collapsed else "")),
        ]
        if out.collapsed and out.da_dz != 1:
            blocks.append(
                P(
                    "SymPy's simplification collapses the product to ",
                    result,
                    ": the activation's derivative cancels against the loss's, "
                    "which is why ",
                    *_loss_phrase(d),
                    f" is paired with a {act.title} output.",
                )
            )
        elif out.collapsed:
            blocks.append(P("The delta is the error ", result, " itself."))
    blocks += [
        P("So each output weight's gradient is its unit's delta times its input:"),
        D(Eq(partial(ELL, wij), (cat(dj, " ", ai),))),
    ]
    return Section(f"Output layer (layer {n})", tuple(blocks))


def _bias_section(d: Derivation) -> Section:
    n = d.depth
    zj, yj_hat, bj, dj = (
        unit("z", n, "j"),
        act_unit(n, "j", n),
        unit("b", n, "j"),
        delta(n, "j"),
    )
    if d.layers[-1].activation.vector:
        chain = times(partial(ELL, zj), partial(zj, bj))
    else:
        chain = times(partial(ELL, yj_hat), partial(yj_hat, zj), partial(zj, bj))
    return Section(
        "Bias",
        (
            P(
                "The bias reaches the loss the same way, and ",
                zj,
                " has slope 1 in it:",
            ),
            D(
                Eq(partial(zj, bj), (M("1"),)),
                Eq(partial(ELL, bj), (chain, cat(dj, DOT, "1"), dj)),
            ),
            P(
                "This holds in every layer: a bias's gradient is its unit's delta.",
            ),
        ),
    )


def _hidden_section(
    d: Derivation, l: int, derived: dict[ActivationRule, int]
) -> Section:
    n = d.depth
    layer = d.layers[l - 1]
    act = layer.activation
    f = fn_name(act)
    zj, aj, ai = unit("z", l, "j"), act_unit(l, "j", n), act_unit(l - 1, "i", n)
    wij, bj = weight(l, "i", "j"), unit("b", l, "j")
    zk1, wjk1 = unit("z", l + 1, "k"), weight(l + 1, "j", "k")
    dj, dk1 = delta(l, "j"), delta(l + 1, "k")
    units = "unit" if layer.units == 1 else "units"
    blocks: list[Block] = [
        P(f"Layer {l} has {layer.units} {units} with the {act.title} activation:"),
        D(
            Eq(zj, (cat(_summed("i"), ai, " ", wij, " + ", bj),)),
            Eq(aj, (apply(f, zj),)),
        ),
        P(
            "A weight ",
            wij,
            f" now reaches the loss through every unit k of layer {l + 1}, so the "
            "chain rule sums over k:",
        ),
        D(
            Eq(
                partial(ELL, wij),
                (
                    cat(
                        _summed("k"),
                        times(
                            partial(ELL, zk1),
                            partial(zk1, aj),
                            partial(aj, zj),
                            partial(zj, wij),
                        ),
                    ),
                ),
            )
        ),
        P(
            f"The first factor is layer {l + 1}'s delta, ",
            cat(dk1, " = ", partial(ELL, zk1)),
            ". The second: since ",
            cat(zk1, " = ", _summed("j"), aj, " ", wjk1, " + ", unit("b", l + 1, "k")),
            ",",
        ),
        D(Eq(partial(zk1, aj), (wjk1,))),
    ]
    if act in derived:
        where = derived[act]
        blocks.append(
            P(
                f"The third is the activation's derivative, derived in layer {where}:",
            )
        )
        blocks.append(D(Eq(apply(f, M("z"), prime=True), (ex(act.df),))))
    else:
        derived[act] = l
        blocks += _activation_blocks(act, "The third is the activation's derivative.")
    names = {a: aj, z: zj}
    fp = ex(act.df, names)
    back = cat(_summed("k"), dk1, " ", wjk1)
    back_p = cat("(", back, ")")
    steps = [partial(ELL, zj), times(back_p, apply(f, zj, prime=True))]
    if act.df != 1:
        steps.append(times(back_p, paren(act.df, names)))
    else:
        steps.append(back)
    blocks += [
        P("In this layer it is"),
        D(Eq(partial(aj, zj), (apply(f, zj, prime=True), fp))),
        P("The last factor is"),
        D(Eq(partial(zj, wij), (ai,))),
        P("Together, the delta of layer ", str(l), " and the gradients are"),
        D(
            Eq(dj, tuple(steps)),
            Eq(partial(ELL, wij), (cat(dj, " ", ai),)),
            Eq(partial(ELL, bj), (dj,)),
        ),
        P(
            "For all units of the layer at once (row vectors; ⊙ multiplies elementwise):"
        ),
        D(
            Eq(
                delta(l),
                (
                    cat(
                        "(",
                        delta(l + 1),
                        " ",
                        _transposed(mat("W", l + 1)),
                        ")",
                        ODOT,
                        apply(f, vec("z", l, n), prime=True),
                    ),
                ),
            )
        ),
    ]
    return Section(f"Hidden layer {l}", tuple(blocks))


def _transposed(m: Math) -> Math:
    """Mᵀ; W^{[2]} becomes W^{[2]\\mathsf{T}} (one superscript, not two)."""
    t = r"\mathsf{T}"
    if m.tex.endswith("]}") and "^{[" in m.tex:
        return Math(f"{m.tex[:-1]}{t}}}", f"{m.text}ᵀ")
    return Math(f"{m.tex}^{{{t}}}", f"{m.text}ᵀ")


def _output_delta_vector(d: Derivation, batch: bool) -> Math:
    """δ of the output layer for one example (row vectors) or a batch (with 1/m)."""
    n, out = d.depth, d.output
    if batch:
        names = {a: mat("A", n, n), y: M("Y"), z: mat("Z", n)}
    else:
        names = {a: vec("a", n, n), y: M("y"), z: vec("z", n, n)}
    if out.jvp:
        h = ex(out.delta, names)
        yhat = names[a]
        body = Math(
            rf"h - {yhat.tex} \odot \left(h \, \mathbf{{1}}\,\mathbf{{1}}^{{\mathsf{{T}}}}"
            rf"\right), \quad h = {h.tex}",
            f"h - {yhat.text} ⊙ Σₖ hₖ,  h = {h.text}",
        )
    else:
        body = ex(out.delta, names)
    if not batch:
        return body
    return Math(rf"\frac{{1}}{{m}} \left({body.tex}\right)", f"({body.text}) / m")


def _matrix_section(d: Derivation) -> Section:
    n = d.depth
    fwd, back, grads = [], [], []
    for rule in d.layers:
        l = rule.index
        f = fn_name(rule.activation)
        fwd.append(
            Eq(
                vec("z", l, n),
                (cat(vec("a", l - 1, n), " ", mat("W", l), " + ", mat("b", l)),),
            )
        )
        if rule.activation.vector:
            fwd.append(
                Eq(
                    vec("a", l, n),
                    (
                        M(
                            r"\operatorname{softmax}\left("
                            + vec("z", l, n).tex
                            + r"\right)",
                            f"softmax({vec('z', l, n).text})",
                        ),
                    ),
                )
            )
        else:
            fwd.append(Eq(vec("a", l, n), (apply(f, vec("z", l, n)),)))
        grads.append(
            Eq(
                partial(ELL, mat("W", l)),
                (cat(_transposed(vec("a", l - 1, n)), " ", delta(l)),),
                note=M(
                    rf"({rule.fan_in} \times 1)(1 \times {rule.units})",
                    f"({rule.fan_in} × 1)(1 × {rule.units})",
                ),
            )
        )
        grads.append(Eq(partial(ELL, mat("b", l)), (delta(l),)))
    back.append(Eq(delta(n), (_output_delta_vector(d, batch=False),)))
    for l in range(n - 1, 0, -1):
        back.append(Eq(delta(l), (_hidden_delta(d, l, batch=False),)))
    return Section(
        "Matrix form",
        (
            P(
                "Write a layer's units as a row vector, ",
                M(r"a^{[l]} = (a^{[l]}_{1}, \dots, a^{[l]}_{n_l})", "a = (a₁, …, aₙ)"),
                "; layer l's weights form the ",
                M(r"n_{l-1} \times n_{l}", "n_{l-1} × n_l"),
                " matrix ",
                M(r"W^{[l]}", "W"),
                " whose row i, column j holds ",
                M(r"w^{[l]}_{ij}", "wᵢⱼ"),
                ". For one example, the forward pass is",
            ),
            D(*fwd),
            P(
                "and the backward pass, with the derivatives above (products of vectors "
                "are elementwise, ⊙):"
            ),
            D(*back),
            P(
                "Each weight gradient is an outer product of the layer's input and its "
                "delta; each bias gradient is the delta:"
            ),
            D(*grads),
        ),
    )


def _hidden_delta(d: Derivation, l: int, batch: bool) -> Math:
    """(δ^{[l+1]} W^{[l+1]T}) ⊙ f'(z^{[l]}), with f' in the layer's output where derived so."""
    n = d.depth
    act = d.layers[l - 1].activation
    if batch:
        names = {a: mat("A", l, n), z: mat("Z", l)}
    else:
        names = {a: vec("a", l, n), z: vec("z", l, n)}
    back = cat(delta(l + 1), " ", _transposed(mat("W", l + 1)))
    if act.df == 1:
        return back
    return cat("(", back, ")", ODOT, paren(act.df, names))


def _update_section(d: Derivation) -> Section:
    opt = d.spec.optimizer
    params = dict(opt.params)
    p, g = M("p"), M("g")
    eta = M(r"\eta", "η")
    blocks: list[Block] = [
        P(
            "Training moves every parameter p (each ",
            M(r"W^{[l]}", "Wˡ"),
            " and ",
            M(r"b^{[l]}", "bˡ"),
            ") against its gradient ",
            cat(g, " = ", partial(LOSS, p)),
            ", the gradient of the batch loss L (see 'Many examples'). "
            f"The {opt.name} update, as torch.optim computes it:",
        )
    ]
    values: list[Inline] = [
        "with ",
        cat(eta, " = ", number(float(params["learning_rate"]))),
    ]
    if opt.name == "sgd":
        blocks.append(D(Eq(p, (cat(p, " - ", eta, " ", g),), rel=ARROW)))
    elif opt.name == "momentum":
        v, mu = M("v"), M(r"\mu", "μ")
        step = (
            cat(p, " - ", eta, " (", g, " + ", mu, " ", v, ")")
            if params.get("nesterov")
            else cat(p, " - ", eta, " ", v)
        )
        blocks.append(
            D(
                Eq(v, (cat(mu, " ", v, " + ", g),), rel=ARROW),
                Eq(
                    p,
                    (step,),
                    "(Nesterov)" if params.get("nesterov") else "",
                    rel=ARROW,
                ),
            )
        )
        values += [
            ", ",
            cat(mu, " = ", number(float(params["momentum"]))),
            ", v = 0 at the start",
        ]
    else:
        m1, m2 = M(r"\mathbf{m}", "m"), M(r"\mathbf{v}", "v")
        b1, b2, eps = M(r"\beta_{1}", "β₁"), M(r"\beta_{2}", "β₂"), M(r"\epsilon", "ε")
        m1h, m2h = M(r"\hat{\mathbf{m}}", "m̂"), M(r"\hat{\mathbf{v}}", "v̂")
        blocks.append(
            D(
                Eq(M("t"), (M("t + 1"),), rel=ARROW),
                Eq(m1, (cat(b1, " ", m1, " + (1 - ", b1, ") ", g),), rel=ARROW),
                Eq(
                    m2, (cat(b2, " ", m2, " + (1 - ", b2, ") ", g, ODOT, g),), rel=ARROW
                ),
                Eq(
                    m1h,
                    (
                        Math(
                            rf"\frac{{{m1.tex}}}{{1 - \beta_{{1}}^{{t}}}}",
                            "m / (1 - β₁ᵗ)",
                        ),
                    ),
                ),
                Eq(
                    m2h,
                    (
                        Math(
                            rf"\frac{{{m2.tex}}}{{1 - \beta_{{2}}^{{t}}}}",
                            "v / (1 - β₂ᵗ)",
                        ),
                    ),
                ),
                Eq(
                    p,
                    (
                        Math(
                            rf"p - \eta \, \frac{{{m1h.tex}}}{{\sqrt{{{m2h.tex}}} + \epsilon}}",
                            "p - η · m̂ / (√v̂ + ε)",
                        ),
                    ),
                    rel=ARROW,
                ),
            )
        )
        values += [
            ", ",
            cat(b1, " = ", number(float(params["beta1"]))),
            ", ",
            cat(b2, " = ", number(float(params["beta2"]))),
            ", ",
            cat(eps, " = ", number(float(params["eps"]))),
            "; the moment estimates ",
            m1,
            " and ",
            m2,
            " (not the batch size m) start at 0, and the square root and division "
            "are elementwise",
        ]
    blocks.append(P(*values, "."))
    return Section("Update rule", tuple(blocks))


def _loss_section(d: Derivation) -> Section:
    n, out = d.depth, d.output
    spec_loss = d.spec.loss
    act = d.layers[-1].activation
    yk_hat, yk, zk = act_unit(n, "k", n), M("y_{k}", "yₖ"), unit("z", n, "k")
    names = {a: yk_hat, y: yk, z: zk}
    intro: list[Inline] = [
        f"The {out.loss_title} of one example, summed over the outputs"
    ]
    if spec_loss.custom:
        intro = [
            "The custom loss ",
            Code(spec_loss.name),
            " is the spec's expression ",
            Code(spec_loss.expr or ""),
            ", summed over the outputs",
        ]
    blocks: list[Block] = [
        P(*intro, ":"),
        D(Eq(ELL, (cat(_summed("k"), paren(out.loss, names)),))),
    ]
    targets = _targets_note(d)
    if targets:
        blocks.append(P(targets))
    if out.forward != out.loss:
        forward_names = {
            **names,
            LS: Math(
                rf"\left(\log\operatorname{{softmax}} {nm.tex('z', n)}\right)_{{k}}",
                f"log_softmax(z{n})ₖ",
            ),
        }
        blocks += [
            P(
                "Written in the prediction, the logarithm loses precision or overflows "
                "when the output saturates; the generated code evaluates the same loss "
                "from the pre-activation instead:"
            ),
            D(Eq(ELL, (cat(_summed("k"), paren(out.forward, forward_names)),))),
        ]
        if out.forward.has(softplus):
            blocks.append(
                P(
                    "where ",
                    M(
                        r"\operatorname{softplus}(u) = \log(1 + e^{u})",
                        "softplus(u) = log(1 + eᵘ)",
                    ),
                    " is computed without overflow as ",
                    Code("np.logaddexp(0, u)"),
                    ".",
                )
            )
        if out.forward.has(LS) or out.forward.has(log_softmax):
            blocks.append(
                P(
                    "where the log-softmax subtracts the row maximum before "
                    "exponentiating, so it never overflows.",
                )
            )
    dk = delta(n, "k")
    blocks += [
        P("Its output delta, derived in the output layer section:"),
        D(
            Eq(
                dk,
                (
                    partial(ELL, zk),
                    (
                        Math(r"h_{k} - \hat{y}_{k} \sum_{i} h_{i}", "hₖ - ŷₖ·Σᵢ hᵢ")
                        if out.jvp
                        else ex(out.delta, names)
                    ),
                ),
                "(collapsed)" if out.collapsed else "",
            )
        ),
    ]
    if out.collapsed and act.name in ("sigmoid", ops.SOFTMAX):
        blocks.append(
            P(
                "The error ",
                cat(yk_hat, " - ", yk),
                " itself: the further the prediction is from the target, the larger "
                "the step, with no factor of the activation's derivative in between.",
            )
        )
    return Section(f"The loss: {out.loss_title}", tuple(blocks))


def _loss_phrase(d: Derivation) -> list[Inline]:
    """'the binary cross-entropy', or 'the custom loss `name`'."""
    if d.spec.loss.custom:
        return ["the custom loss ", Code(d.spec.loss.name)]
    return [f"the {d.output.loss_title}"]


def _predict_kind(d: Derivation) -> str:
    return {"classes": "argmax", "binary": "threshold"}.get(d.task, "none")


def _targets_note(d: Derivation) -> str:
    kind = _predict_kind(d)
    if kind == "argmax":
        return (
            "Targets are one-hot rows (the generated module also accepts integer class "
            "labels and turns them into one-hot rows)."
        )
    if kind == "threshold":
        return "Targets are 0/1 labels (or probabilities in [0, 1])."
    return ""


def _classes_section(d: Derivation) -> Section:
    n = d.depth
    k = d.layers[-1].units
    act = d.layers[-1].activation
    kind = _predict_kind(d)
    K = cat(M("K"), f" = {k}")
    if kind == "argmax":
        body = P(
            "The output has ",
            K,
            " units, one per class. Softmax turns the K pre-activations into a "
            "probability vector (",
            M(r"\hat{y}_{k} > 0, \ \sum_{k} \hat{y}_{k} = 1", "ŷₖ > 0, Σₖ ŷₖ = 1"),
            "), so every output depends on every pre-activation: that is why the output "
            "delta sums over k through the Jacobian. The classes exclude each other, "
            "targets are one-hot, and ",
            Code("predict"),
            " returns ",
            M(r"\arg\max_{k} \hat{y}_{k}", "argmaxₖ ŷₖ"),
            ".",
        )
    elif kind == "threshold" and k == 1:
        body = P(
            "One output unit: binary classification. ",
            cat(M(r"\hat{y}", "ŷ"), " = ", apply(fn_name(act), M("z"))),
            " is the predicted probability of class 1, and ",
            Code("predict"),
            " returns 1 where it is at least 0.5. For K exclusive classes one would use "
            "K softmax units with categorical cross-entropy; K sigmoid units with binary "
            "cross-entropy are K independent yes/no questions.",
        )
    elif kind == "threshold":
        body = P(
            "The output has ",
            K,
            " sigmoid units: K independent yes/no questions (multi-label). Each ",
            M(r"\hat{y}_{k}", "ŷₖ"),
            " depends on its own ",
            unit("z", n, "k"),
            " only and the loss sums over k, so the output delta of unit k involves "
            "unit k alone, as derived above.",
        )
    else:
        body = P(
            "The output has ",
            K,
            " unit" + ("" if k == 1 else "s") + ". Each ",
            M(r"\hat{y}_{k}", "ŷₖ"),
            " depends on its own ",
            unit("z", n, "k"),
            " only and the loss sums over k, so the output delta of unit k involves "
            "unit k alone: the derivation of the output layer holds unit by unit.",
        )
    return Section("K output units", (body,))


def batch_equations(d: Derivation) -> list[Eq]:
    """The batch backward pass in the order the generated code computes it."""
    n = d.depth
    l2 = d.spec.l2 > 0
    lam = M(r"\lambda", "λ")
    one = M(r"\mathbf{1}^{\mathsf{T}}", "1ᵀ")
    eqs = [Eq(delta(n), (_output_delta_vector(d, batch=True),))]
    for l in range(n, 0, -1):
        grad = cat(_transposed(mat("A", l - 1, n)), " ", delta(l))
        if l2:
            grad = cat(grad, " + ", lam, " ", mat("W", l))
        eqs.append(Eq(partial(LOSS, mat("W", l)), (grad,)))
        eqs.append(Eq(partial(LOSS, mat("b", l)), (cat(one, " ", delta(l)),)))
        if l > 1:
            eqs.append(Eq(delta(l - 1), (_hidden_delta(d, l - 1, batch=True),)))
    return eqs


def _batch_section(d: Derivation) -> Section:
    n = d.depth
    l2 = d.spec.l2
    lam = M(r"\lambda", "λ")
    mean = Math(
        r"\frac{1}{m} \sum_{n=1}^{m} \ell\left(\hat{y}^{(n)}, y^{(n)}\right)",
        "(1/m) Σₙ ℓ(ŷ⁽ⁿ⁾, y⁽ⁿ⁾)",
    )
    if l2:
        mean = cat(
            mean,
            " + ",
            Math(
                r"\frac{\lambda}{2} \sum_{l} \lVert W^{[l]} \rVert^{2}",
                "(λ/2) Σₗ ‖Wˡ‖²",
            ),
        )
    fwd = []
    for rule in d.layers:
        l = rule.index
        fwd.append(
            Eq(
                mat("Z", l),
                (cat(mat("A", l - 1, n), " ", mat("W", l), " + ", mat("b", l)),),
            )
        )
        zl = mat("Z", l)
        fwd.append(
            Eq(
                mat("A", l, n),
                (
                    (
                        Math(
                            rf"\operatorname{{softmax}}\left({zl.tex}\right)",
                            f"softmax({zl.text})",
                        )
                        if rule.activation.vector
                        else apply(fn_name(rule.activation), zl)
                    ),
                ),
            )
        )
    blocks: list[Block] = [
        P(
            "A batch stacks m examples as the rows of ",
            M("X"),
            f" (m × {d.spec.input}); every ",
            M(r"Z^{[l]}", "Zˡ"),
            " and ",
            M(r"A^{[l]}", "Aˡ"),
            " then has one row per example, and the bias is added to every row. "
            "The batch loss is the mean of the examples' losses"
            + (", plus the l2 term on the weights" if l2 else "")
            + ":",
        ),
        D(Eq(LOSS, (mean,))),
    ]
    if l2:
        blocks.append(
            P("with ", cat(lam, " = ", number(l2)), " (biases are not decayed).")
        )
    blocks += [
        P("The forward pass, one matrix product per layer:"),
        D(*fwd),
        P(
            "Because L is a mean, each example's delta carries a factor 1/m: ",
            cat(M(r"\delta^{[l]}", "δˡ"), " = ", partial(LOSS, M(r"Z^{[l]}", "Zˡ"))),
            " has one row per example. The sums over examples become matrix products ("
            "a row of ones, ",
            M(r"\mathbf{1}^{\mathsf{T}}", "1ᵀ"),
            ", sums the rows)",
            (", and the l2 term adds " if l2 else ""),
            *((cat(lam, " ", M(r"W^{[l]}", "Wˡ")),) if l2 else ()),
            ". In the order the generated code computes them:",
        ),
        D(*batch_equations(d)),
        P(
            M(r"A^{[l-1]\mathsf{T}} \delta^{[l]}", "Aˡ⁻¹ᵀ δˡ"),
            " is (",
            M(r"n_{l-1} \times m", "n_{l-1} × m"),
            ")(",
            M(r"m \times n_{l}", "m × n_l"),
            "): the sum over the batch of the per-example outer products of the matrix "
            "form. In the generated module ",
            M(r"\delta^{[l]}", "δˡ"),
            " is ",
            Code("D{l}"),
            ", the gradients are ",
            Code("dW{l}"),
            " and ",
            Code("db{l}"),
            "; ",
            M(r"A^{[l]}", "Aˡ"),
            " and ",
            M(r"Z^{[l]}", "Zˡ"),
            " are ",
            Code("A{l}"),
            " and ",
            Code("Z{l}"),
            ".",
        ),
    ]
    return Section("Many examples", tuple(blocks))


SATURATING = ("sigmoid", "tanh")


def _saturation_section(d: Derivation) -> Section | None:
    used = [r.activation for r in d.layers if r.activation.name in SATURATING]
    if not used:
        return None
    blocks: list[Block] = []
    seen: set[str] = set()
    for rule in used:
        if rule.name in seen:
            continue
        seen.add(rule.name)
        f = fn_name(rule)
        peak = sp.simplify(rule.raw.subs(z, 0))
        far = sp.limit(rule.raw, z, sp.oo), sp.limit(rule.raw, z, -sp.oo)
        lim = Math(
            rf"\lim_{{z \to \pm\infty}} {f.tex}'(z)", f"lim_{{z→±∞}} {f.text}'(z)"
        )
        blocks += [
            P(f"SymPy evaluates the {rule.title} derivative at 0 and in the limits:"),
            D(
                Eq(apply(f, M("0"), prime=True), (ex(peak),)),
                Eq(
                    lim, (ex(far[0]),) if far[0] == far[1] else (ex(far[0]), ex(far[1]))
                ),
            ),
        ]
    names = " and ".join(r for r in SATURATING if r in seen)
    verb = "saturate" if len(seen) > 1 else "saturates"
    shrink = []
    if "sigmoid" in seen:
        shrink.append(
            "sigmoid's derivative is at most 1/4 (at z = 0), so every sigmoid layer "
            "shrinks the delta at least fourfold even where it is not saturated, and a "
            "deep sigmoid stack shrinks it geometrically"
        )
    if "tanh" in seen:
        shrink.append(
            "tanh's peak derivative is 1 (at z = 0): tanh by itself does not shrink "
            "the delta; what does is saturation — pre-activations of large |z|, from "
            "large weights or inputs — and products with weight matrices whose norm "
            "is below 1"
        )
    blocks.append(
        P(
            f"So {names} {verb}: where |z| is large the output sits near its bound, "
            "the derivative is close to 0, and a delta that passes back through such a "
            "layer is multiplied by almost nothing. Beyond that, "
            + "; ".join(shrink)
            + ". In a deep stack the gradients of the first layers then vanish."
        )
    )
    relu = activation_rule(OpSpec("relu"))
    blocks += [
        P("ReLU's derivative, derived the same way:"),
        D(Eq(M(r"\operatorname{relu}'(z)", "relu'(z)"), (ex(relu.dz),))),
        P(
            "It is exactly 1 for z > 0 however large z is, so the delta passes through "
            "unchanged and ReLU does not saturate; for z ≤ 0 it passes nothing (a unit "
            "that is negative on every example stops learning, which leaky ReLU avoids "
            "with a small slope)."
        ),
    ]
    out_act = d.layers[-1].activation
    if out_act.name in SATURATING or out_act.vector:
        if d.output.collapsed:
            blocks.append(
                P(
                    "At the output, ",
                    *_loss_phrase(d),
                    f" cancels the {out_act.title} derivative (",
                    M(r"\delta = \hat{y} - y", "δ = ŷ - y"),
                    "), so a confident wrong prediction still gets a large gradient.",
                )
            )
        elif not out_act.vector:
            blocks.append(
                P(
                    f"At the output, the delta keeps the {out_act.title} derivative as a "
                    "factor, so learning slows down where the output saturates."
                )
            )
    return Section("Saturation: sigmoid and tanh versus ReLU", tuple(blocks))


# ------------------------------------------------------------------ the document


def build(d: Derivation) -> Report:
    """The derivation of d as a document, in the order of the seed notes."""
    from . import __version__

    spec = d.spec
    network = " → ".join(
        [str(spec.input)] + [f"{r.units} ({r.activation.title})" for r in d.layers]
    )
    intro: tuple[Block, ...] = (
        P(
            f"Derived by symgrad {__version__} from ",
            Code(_source_name(spec.source)),
            f". Network: {network}. Loss: {d.output.loss_title}. Optimizer: "
            f"{spec.optimizer.name}.",
        ),
        P(
            "Notation: layer l has ",
            M("n_{l}", "n_l"),
            " units; ",
            M(r"z^{[l]}_{j}", "zˡⱼ"),
            " is the pre-activation of unit j, ",
            M(r"a^{[l]}_{j} = f(z^{[l]}_{j})", "aˡⱼ = f(zˡⱼ)"),
            " its output, ",
            M(r"a^{[0]} = x", "a⁰ = x"),
            " the input, ",
            M(r"\hat{y} = a^{[L]}", "ŷ = aᴸ"),
            " the prediction and y the target; ",
            ELL,
            " is the loss of one example and ",
            M(
                r"\delta^{[l]}_{j} = \partial \ell / \partial z^{[l]}_{j}",
                "δˡⱼ = ∂ℓ/∂zˡⱼ",
            ),
            " the delta of unit j. Every expression below that depends on the spec was "
            "derived and simplified by SymPy.",
        ),
    )
    sections = [_output_section(d), _bias_section(d)]
    derived = {d.layers[-1].activation: d.depth}
    for l in range(d.depth - 1, 0, -1):
        sections.append(_hidden_section(d, l, derived))
    sections += [
        _matrix_section(d),
        _update_section(d),
        _loss_section(d),
        _classes_section(d),
        _batch_section(d),
    ]
    saturation = _saturation_section(d)
    if saturation is not None:
        sections.append(saturation)
    return Report(f"The derivation of {spec.name}", intro, tuple(sections))


def _source_name(source: str) -> str:
    """The spec's file name, with anything a terminal could act on escaped."""
    from pathlib import Path

    from .errors import printable

    return printable(Path(source).name)


# ------------------------------------------------------------------ LaTeX

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\^{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\~{}",
}
_TEX_UNICODE = {
    "½": r"$\frac{1}{2}$",
    "Σ": r"$\Sigma$",
    "ŷ": r"$\hat{y}$",
    "−": r"$-$",
    "²": r"$^{2}$",
    "→": r"$\to$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "·": r"$\cdot$",
    "δ": r"$\delta$",
    "σ": r"$\sigma$",
    "ᵀ": r"$^{\mathsf{T}}$",
    "⊙": r"$\odot$",
    "×": r"$\times$",
    "…": r"\dots{}",
    "—": "---",
    "–": "--",
    "‖": r"$\|$",
}


def _tex_escape(s: str) -> str:
    """Prose for pdflatex: specials escaped, known symbols as math, others as '?'."""
    out = []
    for c in s:
        if c in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[c])
        elif c in _TEX_UNICODE:
            out.append(_TEX_UNICODE[c])
        elif " " <= c <= "~" or (c.isalpha() and ord(c) < 256):
            out.append(c)
        else:
            out.append("?")
    return "".join(out)


def _tex_name(name: str) -> str:
    """An identifier inside math mode (\\operatorname): ASCII only, underscores escaped."""
    return "".join(
        c if c.isascii() and c.isalnum() else r"\_" if c == "_" else "?" for c in name
    )


def _tex_inline(part: Inline) -> str:
    if isinstance(part, Math):
        return f"${part.tex_inline}$"
    if isinstance(part, Code):
        return rf"\texttt{{{_tex_escape(part.text)}}}"
    return _tex_escape(part)


def _tex_display(disp: Display) -> list[str]:
    rows = []
    for eq in disp.eqs:
        note = ""
        if isinstance(eq.note, Math):
            note = rf" \qquad {eq.note.tex}"
        elif eq.note:
            note = rf" \qquad \text{{{_tex_escape(eq.note)}}}"
        if not eq.steps:
            rows.append(f"& {eq.lhs.tex}{note}")
            continue
        if _one_line(eq):
            rhs = f" {eq.rel.tex} ".join(s.tex for s in eq.steps)
            rows.append(f"{eq.lhs.tex} &{eq.rel.tex} {rhs}{note}")
            continue
        rows.append(f"{eq.lhs.tex} &{eq.rel.tex} {eq.steps[0].tex}")
        rows += [f"&{eq.rel.tex} {s.tex}" for s in eq.steps[1:]]
        rows[-1] += note
    return [r"\begin{aligned}", " \\\\\n".join(rows), r"\end{aligned}"]


def _one_line(eq: Eq) -> bool:
    length = len(eq.lhs.text) + sum(len(s.text) + 3 for s in eq.steps)
    return len(eq.steps) == 1 or length <= ONE_LINE


def _tex_body(report: Report, markdown: bool = False) -> str:
    out: list[str] = []

    def blocks(items: Iterable[Block]) -> None:
        for block in items:
            if isinstance(block, Para):
                inline = _md_inline if markdown else _tex_inline
                out.append("".join(inline(p) for p in block.parts))
            else:
                body = "\n".join(_tex_display(block))
                out.append(f"$$\n{body}\n$$" if markdown else f"\\[\n{body}\n\\]")

    blocks(report.intro)
    for i, section in enumerate(report.sections, 1):
        if markdown:
            out.append(f"## {i}. {section.title}")
        else:
            out.append(rf"\section{{{_tex_escape(section.title)}}}")
        blocks(section.blocks)
    return "\n\n".join(out) + "\n"


PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[utf8]{inputenc}
\usepackage[T1]{fontenc}
\usepackage{amsmath,amssymb}
\usepackage[margin=2.5cm]{geometry}
\usepackage{parskip}
\allowdisplaybreaks
"""


def latex(report: Report, standalone: bool = False) -> str:
    body = _tex_body(report)
    if not standalone:
        head = (
            f"% {report.title}: generated by symgrad; needs amsmath and amssymb\n"
            rf"\subsection*{{{_tex_escape(report.title)}}}" + "\n\n"
        )
        return head + body.replace(r"\section{", r"\subsection{")
    return (
        PREAMBLE
        + rf"\title{{{_tex_escape(report.title)}}}"
        + "\n\\date{}\n\\begin{document}\n\\maketitle\n\n"
        + body
        + "\n\\end{document}\n"
    )


# ------------------------------------------------------------------ Markdown


def _md_inline(part: Inline) -> str:
    if isinstance(part, Math):
        return f"${part.tex_inline}$"
    if isinstance(part, Code):
        return f"`{part.text}`"
    return part.replace("$", r"\$").replace("*", r"\*")


def markdown(report: Report) -> str:
    return f"# {report.title}\n\n" + _tex_body(report, markdown=True)


# ------------------------------------------------------------------ text


NBSP = "\u00a0"  # textwrap breaks at ASCII whitespace only: formulas stay whole


def _text_inline(part: Inline) -> str:
    if isinstance(part, Math | Code):
        return part.text.replace(" ", NBSP)
    return part


def _text_display(disp: Display) -> list[str]:
    rows = []
    for eq in disp.eqs:
        note = eq.note.text if isinstance(eq.note, Math) else eq.note
        note = f"   {note}" if note else ""
        if not eq.steps:
            rows.append(f"    {eq.lhs.text}{note}")
            continue
        rel = f" {eq.rel.text} "
        if _one_line(eq):
            rows.append(
                "    " + eq.lhs.text + rel + rel.join(s.text for s in eq.steps) + note
            )
            continue
        rows.append(f"    {eq.lhs.text}{rel}{eq.steps[0].text}")
        pad = " " * (4 + len(eq.lhs.text))
        rows += [f"{pad}{rel}{s.text}" for s in eq.steps[1:]]
        rows[-1] += note
    return rows


def plain_text(report: Report) -> str:
    out = [report.title, "=" * len(report.title), ""]

    def blocks(items: Sequence[Block]) -> None:
        for block in items:
            if isinstance(block, Para):
                para = "".join(_text_inline(p) for p in block.parts)
                wrapped = textwrap.wrap(para, TEXT_WIDTH, break_on_hyphens=False)
                out.extend(line.replace(NBSP, " ") for line in wrapped)
            else:
                out.extend(_text_display(block))
            out.append("")

    blocks(report.intro)
    for i, section in enumerate(report.sections, 1):
        title = f"{i}. {section.title}"
        out += [title, "-" * len(title), ""]
        blocks(section.blocks)
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------ entry points


def render_report(
    d: Derivation, fmt: str = "latex", *, standalone: bool = False
) -> str:
    """The derivation of d as LaTeX, Markdown or unicode text.

    Args:
        d: a Derivation (`symgrad.derive(spec)`).
        fmt: "latex", "markdown" or "text".
        standalone: LaTeX only: a complete document for pdflatex, not a fragment.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, found {fmt!r}")
    if standalone and fmt != "latex":
        raise ValueError("standalone applies to the latex format only")
    report = build(d)
    if fmt == "latex":
        return latex(report, standalone)
    if fmt == "markdown":
        return markdown(report)
    return plain_text(report)


def latex_summary(d: Derivation) -> str:
    """The batch backward pass as one MathJax-ready `$$` block (for Jupyter's LaTeX repr)."""
    return "$$\n" + "\n".join(_tex_display(Display(tuple(batch_equations(d))))) + "\n$$"
