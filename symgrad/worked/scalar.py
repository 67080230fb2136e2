"""A plan statement for one entry of its target: the scalar equation a textbook writes.

`entry(expr, index)` rewrites an expression over arrays (products, transposes,
reductions, broadcasting) as the expression of one entry of its value, over symbols
that stand for single entries of the arrays: the entry (n, j) of Z1 = X W1 + b1 is
x₁·w₁ + x₂·w₂ + b¹₁. Nothing is derived; the array nodes are only spelled out.
`Names` names those entries as a textbook does (w₁…w₈ for the weights, layer by layer
and neuron by neuron; z¹₁, a¹₁, δ²₁, ŷ₁ for the values, ⁽ⁿ⁾ for the example n when the
batch has several).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import sympy as sp

from .. import naming as nm
from ..plan import LOSS, Builder, Plan, X, Y, arr
from ..report.document import Math
from ..report.plan_view import PlanView
from ..sym.arrays import ArrayNode, MatProduct, ReductionBase, Transposed

Index = tuple[int, ...]

SUPERSCRIPT = str.maketrans("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾")
SUBSCRIPT = str.maketrans("0123456789,", "₀₁₂₃₄₅₆₇₈₉,")


@dataclass(frozen=True)
class Entry:
    """One entry of an array: the symbol of an entry expression."""

    array: str
    index: Index
    first: bool = field(default=False, compare=False)  # see Shapes.first

    @property
    def symbol(self) -> sp.Symbol:
        rank = "0" if self.first else "1"
        return sp.Symbol(
            f"{rank}{self.array}[{','.join(map(str, self.index))}]", real=True
        )


class Shapes:
    """The numeric shape of every array and subexpression of a plan, for a batch of m."""

    def __init__(self, plan: Plan, m: int) -> None:
        self.m = m
        self.builder = Builder(plan.derivation)
        self.builder.shapes = dict(plan.shapes)
        # the arrays whose entries lead a product, as textbooks write them: w₁·x₁,
        # δ²₁·a¹₁, ∂L/∂a¹₁·a¹₁·(1 − a¹₁) (SymPy orders a product's factors by name)
        self.first = {p.name for p in plan.params if p.weight} | {
            s.name for s, (role, _) in plan.roles.items() if role in ("delta", "back")
        }

    def of(self, e: sp.Expr) -> tuple[int, ...]:
        return tuple(
            self.m if d == nm.BATCH else int(d) for d in self.builder.shape_of(e)
        )


def indices(shape: tuple[int, ...], weight: bool = False) -> Iterator[Index]:
    """The entries of an array, in the order a textbook lists them: rows of a batch
    array example by example; a weight matrix neuron by neuron (column by column)."""
    if weight and len(shape) == 2:
        for j, i in itertools.product(range(shape[1]), range(shape[0])):
            yield (i, j)
        return
    yield from itertools.product(*(range(n) for n in shape))


def entry(
    e: sp.Expr, index: Index, shapes: Shapes, symbols: dict[sp.Symbol, Entry]
) -> sp.Expr:
    """The expression of the entry `index` of e's value; `symbols` collects each entry
    symbol used (symbol -> Entry)."""
    if isinstance(e, sp.Symbol):
        shape = shapes.of(e)
        if not shape and e.name not in shapes.builder.shapes and e != LOSS:
            return e  # a scalar symbol of the plan (m, scale, l2)
        idx = _broadcast(index, shape)
        ent = Entry(e.name, idx, e.name in shapes.first)
        symbols[ent.symbol] = ent
        return ent.symbol
    if e.is_Number or not e.args:
        return e
    if isinstance(e, Transposed):
        return entry(e.args[0], tuple(reversed(index)), shapes, symbols)
    if isinstance(e, MatProduct):
        left, right = e.args
        inner = shapes.of(left)[-1]
        i, j = index
        return sp.Add(
            *(
                entry(left, (i, k), shapes, symbols)
                * entry(right, (k, j), shapes, symbols)
                for k in range(inner)
            )
        )
    if isinstance(e, ReductionBase):
        return _reduction(e, index, shapes, symbols)
    if isinstance(e, ArrayNode):
        raise ValueError(f"no entry form for {type(e).__name__}")
    return e.func(*(entry(a, index, shapes, symbols) for a in e.args))


def _broadcast(index: Index, shape: tuple[int, ...]) -> Index:
    """The entry of an array of `shape` that broadcasts to `index`."""
    if not shape:
        return ()
    tail = index[len(index) - len(shape) :] if len(index) >= len(shape) else index
    return tuple(0 if n == 1 else i for i, n in zip(tail, shape, strict=False))


def _reduction(
    e: ReductionBase, index: Index, shapes: Shapes, symbols: dict
) -> sp.Expr:
    arg = e.args[0]
    shape = shapes.of(arg)
    if e.axis is None:
        cells = list(itertools.product(*(range(n) for n in shape)))
    elif e.axis == 0:
        j = index[-1] if index else 0
        cells = [(n, j) for n in range(shape[0])]
    else:
        n = index[0] if index else 0
        cells = [(n, j) for j in range(shape[-1])]
    terms = [entry(arg, c, shapes, symbols) for c in cells]
    if e.op == "sum":
        return sp.Add(*terms)
    if e.op == "mean":
        return sp.Add(*terms) / len(terms)
    if e.op == "max":
        return sp.Max(*terms)
    raise ValueError(f"no entry form for the reduction {e.op}")


# ---------------------------------------------------------------- names


class Names:
    """Each entry's name as (LaTeX, text): w₁…w₈, b¹₁, z¹₁, a¹₁, ŷ₁, δ²₁, ∂L/∂w₅."""

    def __init__(self, plan: Plan, m: int) -> None:
        self.plan, self.m = plan, m
        self.view = PlanView(plan)
        self.weights: dict[tuple[str, Index], int] = {}
        count = itertools.count(1)
        for p in plan.trainable:
            if p.weight and len(p.shape) == 2:
                for idx in indices(p.shape, weight=True):
                    self.weights[(p.name, idx)] = next(count)
        self.param_of = {g.name: p for p, g in plan.grads.items()}
        self.batch = {
            s.name for s, shape in plan.shapes.items() if shape[:1] == (nm.BATCH,)
        }

    def __call__(self, ent: Entry) -> Math:
        sym = arr(ent.array)
        if self.plan.roles.get(sym, ("",))[0] == "back":
            l = self.plan.roles[sym][1]  # noqa: E741
            return _partial(self(Entry(nm.A(l), ent.index)))
        if ent.array in self.param_of:
            return _partial(self(Entry(self.param_of[ent.array], ent.index)))
        if (ent.array, ent.index) in self.weights:
            k = str(self.weights[(ent.array, ent.index)])
            return Math(f"w_{{{k}}}", "w" + k.translate(SUBSCRIPT))
        example = ""
        idx = ent.index
        if ent.array in self.batch:
            example = f"({idx[0] + 1})" if self.m > 1 else ""
            idx = idx[1:]
        unit = ",".join(str(i + 1) for i in idx)
        base_tex, base_text, layer = self._base(ent.array)
        sup_tex = "".join(x for x in (f"[{layer}]" if layer else "", example) if x)
        tex = (
            base_tex
            + (f"^{{{sup_tex}}}" if sup_tex else "")
            + (f"_{{{unit}}}" if unit else "")
        )
        text = base_text + (str(layer).translate(SUPERSCRIPT) if layer else "")
        text += unit.translate(SUBSCRIPT) + example.translate(SUPERSCRIPT)
        return Math(tex, text)

    def _base(self, name: str) -> tuple[str, str, int | None]:
        """The name of an array's entries without indices, and its layer."""
        if name == X.name:
            return (*nm.EXAMPLE_INPUT, None)
        if name == Y.name:
            return (*nm.TARGET_ONE, None)
        if name == LOSS.name:
            return ("L", "L", None)
        sym = arr(name)
        d = self.plan.derivation
        if sym in self.plan.roles:
            role, l = self.plan.roles[sym]  # noqa: E741
            if role == "a" and l == d.depth:
                return (*nm.PREDICTION, None)
            letters = {"z": ("z", "z"), "a": ("a", "a"), "delta": (r"\delta", "δ")}
            if role in letters:
                return (*letters[role], l)
        for p in self.plan.params:
            if p.name == name:
                base = name.rstrip("0123456789")
                tex = {"gamma": r"\gamma", "beta": r"\beta"}.get(
                    base, rf"\mathrm{{{base}}}" if len(base) > 1 else base
                )
                text = {"gamma": "γ", "beta": "β"}.get(base, base)
                return (tex, text, p.layer)
        tex = self.view.tex.get(sym, rf"\mathrm{{{name}}}")
        return (tex, self.view.text.get(sym, name), None)


def _partial(of: Math) -> Math:
    return Math(
        rf"\frac{{\partial L}}{{\partial {of.tex}}}",
        f"∂L/∂{of.text}",
        rf"\partial L / \partial {of.tex}",
    )
