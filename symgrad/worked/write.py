"""The step written out: the plan's statements with the numbers of one step in them.

For a small network (at most SMALL_UNITS units in every layer and the input, at most
SMALL_LAYERS layers, at most SMALL_BATCH examples) each statement is written entry by
entry, as a hand-worked example does: the entry's expression with names, the same with
numbers, and the value (z¹₁ = w₁·x₁ + w₂·x₂ + b¹₁ = 0.15·0.05 + 0.2·0.1 + 0.35 = 0.3775).
A sum over the batch and outputs (the loss) is preceded by its terms. Otherwise, and
for what has no entry form (dropout's drawn mask), a statement is written as the
report writes it, in matrices, followed by its value. The update follows, parameter by
parameter in the order the backward pass produced their gradients, each entry before and
after. The document is the report's (report/document.py), printed by its printers as
text, Markdown or LaTeX.
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from .. import naming as nm
from ..plan import BATCH, L2, LOSS, SCALE, Draw, Plan, Renew, Stmt, Update, arr, section
from ..report.document import D as display
from ..report.document import Display, Eq, Math, Name, Para, Report, Section, cat
from ..report.document import P as para
from ..report.notation import RIGHT
from ..report.plan_view import PlanView
from ..report.printing import Latex, Text
from ..sym.arrays import ReductionBase
from .evaluate import Step
from .scalar import SUBSCRIPT, SUPERSCRIPT, Entry, Names, Shapes, entry, indices

AFTER = "after:"  # in Writer.shown: a parameter after the update
PARTIAL = ":partial"  # in Writer.shown: a value before a later statement adds to it
SMALL_UNITS = 4
SMALL_LAYERS = 3
SMALL_BATCH = 4


def small(plan: Plan, m: int) -> bool:
    """The step is written entry by entry (else in matrices)."""
    d = plan.derivation
    sizes = d.spec.sizes  # a kind without a width per unit (a conv layer, later) is big
    return (
        all(isinstance(n, int) for n in sizes)
        and max(sizes) <= SMALL_UNITS
        and d.depth <= SMALL_LAYERS
        and m <= SMALL_BATCH
    )


class Numbers:
    """Numbers as the worked example prints them: `digits` significant digits."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def text(self, v: float) -> str:
        s = f"{float(v):.{self.digits}g}"
        return "0" if s == "-0" else s

    def text_all(self, a: np.ndarray) -> tuple[str, ...]:
        return tuple(self.text(v) for v in np.asarray(a, dtype=np.float64).ravel())

    def math(self, v: float, wrap: bool = False) -> Math:
        s = self.text(v)
        tex = s
        if "e" in s:
            mant, exp = s.split("e")
            tex = rf"{mant} \cdot 10^{{{int(exp)}}}"
        if wrap and (s.startswith("-") or "e" in s):
            return Math(rf"\left({tex}\right)", f"({s})")
        return Math(tex, s)

    def matrix(self, a: np.ndarray) -> Math:
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 0:
            return self.math(float(a))
        # a vector as one row; an array of more axes (images, later) a row per example
        rows = a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)
        tex_rows = [" & ".join(self.math(v).tex for v in row) for row in rows]
        # array, not bmatrix: amsmath's matrices stop at 10 columns
        cols = "c" * rows.shape[1]
        tex = (
            rf"\left[\begin{{array}}{{{cols}}}"
            + r" \\ ".join(tex_rows)
            + r"\end{array}\right]"
        )
        text_rows = ["[" + ", ".join(self.text(v) for v in row) + "]" for row in rows]
        text = text_rows[0] if a.ndim == 1 else "[" + ", ".join(text_rows) + "]"
        return Math(tex, text)


class Writer:
    """Lays out one Step of a plan as a Report."""

    def __init__(self, plan: Plan, step: Step, digits: int) -> None:
        self.plan, self.step = plan, step
        self.m = step.values[nm.INPUT].shape[0]
        self.small = small(plan, self.m)
        self.num = Numbers(digits)
        self.shapes = Shapes(plan, self.m)
        # each value written, in order: (array, entry or None for all, its text)
        self.shown: list[tuple[str, tuple[int, ...] | None, object]] = []
        self.names = Names(plan, self.m)
        self.view = PlanView(plan)
        self.bind = {SCALE: 1 / sp.Integer(self.m), BATCH: sp.Integer(self.m)}
        self.bind.update(plan.bindings("grad"))
        # the plan's scalar symbols that a statement reads: named and valued
        self.scalars = {L2: (Math(*nm.L2_COEFFICIENT), float(plan.derivation.spec.l2))}

    # ------------------------------------------------------------ one statement

    def statement(self, i: int) -> list[Eq]:
        """The equations of the statement at position i of the step."""
        s = self.step.stmts[i]
        if self.small and not isinstance(s, Draw | Renew):
            shown = len(self.shown)
            try:
                return self.entries(i)
            except ValueError:  # no entry form: in matrices
                del self.shown[shown:]
        return [self.matrix_eq(i)]

    def matrix_eq(self, i: int) -> Eq:
        """The statement as the report writes it, then its value."""
        s = self.step.stmts[i]
        eq = self.view.eq(s)
        value = self.step.assigned[i]
        name = AFTER + s.target.name if isinstance(s, Renew) else self.shown_name(i)
        return Eq(eq.lhs, (*eq.steps, self.matrix(name, value)), rel=eq.rel)

    def shown_name(self, i: int) -> str:
        """The name `shown` records statement i's value under: its target's, or, where
        a later statement adds to the target (L += the l2 term), a name of its own."""
        target = self.step.stmts[i].target
        later = any(s.target == target for s in self.step.stmts[i + 1 :])
        return f"{target.name}{PARTIAL}" if later else target.name

    def matrix(self, name: str, value: np.ndarray) -> Math:
        self.shown.append((name, None, self.num.text_all(value)))
        return self.num.matrix(value)

    def entries(self, i: int) -> list[Eq]:
        s = self.step.stmts[i]
        expr = s.expr.xreplace(self.bind).xreplace(self.bind)
        extra = dict(self.scalars)
        if s.add:  # L + the l2 term, L as it was before
            before = sp.Symbol(f"1{s.target.name}[before]", real=True)
            expr = before + expr
            extra[before] = (self.view.name(s.target), float(self.step.added_to[i]))
        shape = self.shapes.of(s.target)
        weight = s.target.name in self.names.param_of and len(shape) == 2
        eqs: list[Eq] = []
        if not s.add:  # the loss: its terms ℓ first, then their sum
            for total in sorted(expr.atoms(ReductionBase), key=sp.default_sort_key):
                if total.axis is None:
                    written, terms = self.terms(total)
                    eqs += written
                    extra.update(terms)
                    # unevaluated: SymPy would spread the 1/m over the terms
                    expr = expr.xreplace({total: sp.UnevaluatedExpr(sp.Add(*terms))})
        for idx in indices(shape, weight=weight):
            symbols: dict[sp.Symbol, Entry] = {}
            e = entry(expr, idx, self.shapes, symbols)
            target = Entry(s.target.name, idx)
            value = float(np.asarray(self.step.assigned[i])[idx])
            self.shown.append((self.shown_name(i), idx, self.num.text(value)))
            eqs.append(self.written(self.names(target), e, symbols, value, extra))
        return eqs

    def terms(
        self, total: ReductionBase
    ) -> tuple[list[Eq], dict[sp.Symbol, tuple[Math, float]]]:
        """Each term of a sum over the batch and the outputs (the loss's ℓ), named ℓ,
        and the symbols that stand for them in the sum."""
        inner = total.args[0]
        values = np.broadcast_to(
            np.asarray(self.step.value_of(inner), dtype=np.float64),
            self.shapes.of(inner),
        )
        eqs = []
        terms: dict[sp.Symbol, tuple[Math, float]] = {}
        for idx in indices(values.shape):
            symbols: dict[sp.Symbol, Entry] = {}
            e = entry(inner, idx, self.shapes, symbols)
            name = self.term_name(idx)
            eqs.append(self.written(name, e, symbols, float(values[idx])))
            term = sp.Symbol(f"1ell[{','.join(map(str, idx))}]", real=True)
            terms[term] = (name, float(values[idx]))
        return eqs, terms

    def term_name(self, idx: tuple[int, ...]) -> Math:
        n, k = (idx + (0, 0))[:2] if len(idx) == 2 else (0, idx[0] if idx else 0)
        example = f"({n + 1})" if self.m > 1 else ""
        tex = r"\ell" + (f"^{{{example}}}" if example else "") + f"_{{{k + 1}}}"
        return Math(
            tex, "ℓ" + str(k + 1).translate(SUBSCRIPT) + example.translate(SUPERSCRIPT)
        )

    def written(
        self,
        lhs: Math,
        e: sp.Expr,
        symbols: dict[sp.Symbol, Entry],
        value: float,
        extra: dict[sp.Symbol, tuple[Math, float]] | None = None,
    ) -> Eq:
        """lhs = e with names = e with numbers = value (steps that repeat are left out);
        `extra`: symbols of e that are no entry (the loss's terms), named and valued."""
        known = {
            sym: (self.names(ent), self._entry_value(ent))
            for sym, ent in symbols.items()
        }
        known.update(extra or {})
        tex_names = {sym: name.tex for sym, (name, _) in known.items()}
        text_names = {sym: name.text for sym, (name, _) in known.items()}
        tex_nums, text_nums = {}, {}
        for sym, (_, v) in known.items():
            number = self.num.math(v, wrap=True)
            tex_nums[sym], text_nums[sym] = number.tex, number.text
        named = _math(e, tex_names, text_names)
        numbers = _math(e, tex_nums, text_nums)
        result = self.num.math(value)
        steps = [named]
        if numbers.text != named.text and not e.is_Symbol:
            steps.append(numbers)
        if result.text not in (steps[-1].text, f"({result.text})"):
            steps.append(result)
        return Eq(lhs, tuple(steps))

    def _entry_value(self, ent: Entry) -> float:
        return float(np.asarray(self.step.values[ent.array])[ent.index])

    # ------------------------------------------------------------ the document

    def report(self) -> Report:
        d = self.plan.derivation
        spec = d.spec
        intro = [self.network_para(), self.example_display()]
        if self.small and self.names.weights:
            intro.append(
                para(
                    "Weights are numbered layer by layer, neuron by neuron: ",
                    *self.weight_list(),
                    ". Superscripts name the layer",
                    ", and (n) the example." if self.m > 1 else ".",
                )
            )
        sections = [
            Section("Forward pass", tuple(self.phase("forward"))),
            Section("Loss", tuple(self.phase("loss"))),
            Section("Backward pass", tuple(self.phase("backward"))),
            Section(f"Update ({_ascii(self.plan.update.title)})", tuple(self.update())),
        ]
        return Report(
            f"One training step of {spec.name}, with its numbers",
            tuple(intro),
            tuple(sections),
        )

    def backward_stmts(self) -> list[Stmt]:
        return [s for s in self.step.stmts if s.phase == "backward"]

    def phase(self, *phases: str) -> list:
        """The statements, each layer's under a line that names the layer; per
        neuron, each statement's entries under its equation in matrices."""
        titles = {
            section(r): f"Layer {r.index}: {_ascii(r.title)}."
            for r in self.plan.derivation.layers
        }
        titles["output"] = (
            "The output layer's activation, the prediction:"
            if "forward" in phases
            else "The output delta, derived for the loss:"
        )
        blocks: list = []
        shown = None
        for i, s in enumerate(self.step.stmts):
            if s.phase not in phases:
                continue
            if s.section in titles and s.section != shown:
                blocks.append(para(titles[s.section]))
                shown = s.section
            eqs = self.statement(i)
            if self.small and len(eqs) > 1 and not s.target == LOSS:
                rule = self.view.eq(s)
                eqs = [
                    Eq(rule.lhs, rule.steps, rel=rule.rel, note="for each entry:"),
                    *eqs,
                ]
            blocks.append(display(*eqs))
        return blocks if self.small else _merge(blocks)  # per neuron: a block each

    def network_para(self) -> Para:
        d = self.plan.derivation
        parts: list[Math | str] = ["Network: ", str(d.spec.input)]
        for r in d.layers:
            parts += [" ", RIGHT, " ", Name(r.title)]  # titles come from the spec
        examples = f"{self.m} example" + ("s" if self.m > 1 else "")
        title = _ascii(self.plan.update.title)
        return para(*parts, f". One step of {title} on {examples}.")

    def example_display(self) -> Display:
        X = self.step.values[nm.INPUT]
        Y = self.step.values[nm.TARGET]
        return display(
            Eq(Math("X", "X"), (self.num.matrix(X if self.m > 1 else X[0]),)),
            Eq(Math("Y", "Y"), (self.num.matrix(Y if self.m > 1 else Y[0]),)),
        )

    def weight_list(self) -> list[Math | str]:
        """w₁ = W1[1,1], w₂ = W1[2,1], ...: each a formula, so that lines break
        between them."""
        parts: list[Math | str] = []
        for name, idx in self.names.weights:
            if parts:
                parts.append(", ")
            w = self.names(Entry(name, idx))
            parts.append(cat(w, f" = {name}[{idx[0] + 1},{idx[1] + 1}]"))
        return parts

    # ------------------------------------------------------------ the update

    def update(self) -> list:
        """The optimizer's settings and per-step numbers, its rule, then each parameter
        before and after, in the order the backward pass gave their gradients."""
        up = self.plan.update
        rule = _Rule(up)
        blocks: list = []
        eqs = [
            Eq(rule.name(sym), (self.num.math(v),))
            for sym, v in up.numbers
            if sym in up.names
        ]
        if up.scalars:
            eqs.append(Eq(rule.name(up.step), (self.num.math(1),)))
            nums = {
                sym: self.num.math(v, wrap=True) for sym, v in self.step.scalars.items()
            }
            for a in up.scalars:
                first = a.expr.xreplace({up.step: sp.Integer(1)})
                eqs.append(
                    Eq(
                        rule.name(a.target),
                        (
                            rule.math(a.expr),
                            rule.math(first, nums),
                            self.num.math(self.step.scalars[a.target]),
                        ),
                    )
                )
        if eqs:
            blocks.append(display(*eqs))
        arrow = Math(r"\leftarrow", "←")
        blocks.append(
            display(
                *(
                    Eq(rule.name(a.target), (rule.math(a.expr),), rel=arrow)
                    for a in up.rule
                )
            )
        )
        if up.state:
            blocks.append(
                para("The optimizer's state starts at zero: this is its first step.")
            )
        for s in self.backward_stmts():
            if s.target.name in self.names.param_of:
                pname = self.names.param_of[s.target.name]
                eqs = (
                    self.update_param(pname, rule)
                    if self.small
                    else self.update_matrix(pname)
                )
                blocks.append(display(*eqs))
        return blocks

    def update_matrix(self, pname: str) -> list[Eq]:
        up = self.plan.update
        name = self.view.name(arr(pname))
        eqs = [Eq(name, (self.num.matrix(self.step.values[pname]),), note="before")]
        for s in up.state:
            eqs.append(
                Eq(
                    Math(rf"{s.tex}({name.tex})", f"{s.text}({name.text})"),
                    (
                        self.matrix(
                            f"{s.key}:{pname}", self.step.state_after[s.key][pname]
                        ),
                    ),
                )
            )
        after = Math("{" + name.tex + "}^{+}", name.text + "⁺")
        value = self.matrix(AFTER + pname, self.step.after[pname])
        eqs.append(Eq(after, (value,), note="after"))
        return eqs

    def update_param(self, pname: str, rule: _Rule) -> list[Eq]:
        """Each entry of a parameter through the rule: state first, then the entry."""
        up = self.plan.update
        param = next(p for p in self.plan.trainable if p.name == pname)
        grad = self.plan.grads[pname].name
        shape = self.step.values[pname].shape
        eqs = []
        for idx in indices(shape, weight=param.weight and len(shape) == 2):
            p_name = self.names(Entry(pname, idx))
            g_name = self.names(Entry(grad, idx))
            names = {up.param: p_name, up.grad: g_name}
            values = dict(self.step.scalars)
            values[up.param] = float(self.step.values[pname][idx])
            values[up.grad] = float(self.step.values[grad][idx])
            for s in up.state:
                names[s.symbol] = Math(
                    rf"{s.tex}({p_name.tex})", f"{s.text}({p_name.text})"
                )
                values[s.symbol] = 0.0
            for a in up.rule:
                nums = {sym: self.num.math(v, wrap=True) for sym, v in values.items()}
                if a.target == up.param:
                    after = float(self.step.after[pname][idx])
                    self.shown.append((AFTER + pname, idx, self.num.text(after)))
                else:
                    key = next(s.key for s in up.state if s.symbol == a.target)
                    after = float(self.step.state_after[key][pname][idx])
                    self.shown.append((f"{key}:{pname}", idx, self.num.text(after)))
                old = names[a.target]
                new = Math("{" + old.tex + "}^{+}", old.text + "⁺")
                eqs.append(
                    Eq(
                        new,
                        (
                            rule.math(a.expr, names),
                            rule.math(a.expr, nums),
                            self.num.math(after),
                        ),
                    )
                )
                names[a.target], values[a.target] = new, after
        return eqs


class _Rule:
    """The optimizer's statements for printing: its settings and per-step numbers are
    renamed to sort first in a product (η·g, not g·η), names as its entry gives them."""

    def __init__(self, up: Update) -> None:
        first = [sym for sym, _ in up.numbers] + [a.target for a in up.scalars]
        self.renamed = {
            sym: sp.Symbol(f"_{sym.name}", **sym.assumptions0) for sym in first
        }
        self.names = {
            self.renamed.get(sym, sym): Math(tex, text)
            for sym, (tex, text) in up.names.items()
        }

    def name(self, sym: sp.Symbol) -> Math:
        return self.names.get(self.renamed.get(sym, sym), Math(sym.name, sym.name))

    def math(self, e: sp.Expr, names: dict[sp.Symbol, Math] | None = None) -> Math:
        """e with the entry's names or numbers given for its symbols (the rule's own
        names for the rest)."""
        given = {self.renamed.get(s, s): m for s, m in (names or {}).items()}
        merged = {**self.names, **given}
        e = e.xreplace(self.renamed)
        return _math(
            e,
            {s: m.tex for s, m in merged.items()},
            {s: m.text for s, m in merged.items()},
        )


def _products_first(terms: list) -> list:
    """w₁·x₁ + w₂·x₂ + b¹₁, as a textbook writes a neuron's sum: terms that multiply
    two or more values before single values; SymPy's order otherwise (ŷ₁ − y₁)."""
    return sorted(
        terms, key=lambda t: (t.could_extract_minus_sign(), len(t.free_symbols) < 2)
    )


class _Latex(Latex):
    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list:
        return _products_first(super()._as_ordered_terms(expr, order))


class _Text(Text):
    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list:
        return _products_first(super()._as_ordered_terms(expr, order))


# a negative number in parentheses, inside a function's own: exp((-0.5)) -> exp(-0.5)
_TWICE_TEXT = re.compile(r"\(\((-[^()]*)\)\)")
_TWICE_TEX = re.compile(r"\\left\(\\left\((-[^()]*)\\right\)\\right\)")


def _math(e: sp.Expr, tex: dict, text: dict) -> Math:
    latex = _TWICE_TEX.sub(r"\\left(\1\\right)", _Latex(tex).doprint(e))
    plain = _TWICE_TEXT.sub(r"(\1)", _Text(text).doprint(e))
    return Math(latex, plain.replace(" - ", " − "))


def _merge(blocks: list) -> list:
    """Consecutive displays as one."""
    out: list = []
    for b in blocks:
        if out and isinstance(b, Display) and isinstance(out[-1], Display):
            out[-1] = Display(out[-1].eqs + b.eqs)
        else:
            out.append(b)
    return out


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode("ascii")
