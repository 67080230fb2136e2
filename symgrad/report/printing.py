"""The report's printers for expressions with array nodes: norm rules and Plan statements.

Dense-layer rules print with `sympy.latex` and `printers.text` (notation.ex). A norm's
rule (norm_rules.NormRule) and the Plan's statements hold the nodes of sym/arrays.py, which
these printers write as the math does:

    MatProduct(A, B)     A B (juxtaposition)              A B
    Transposed(A)        A^{\\mathsf{T}}, W^{[2]\\mathsf{T}}   Aᵀ
    RowSum / RowMean     \\sum_{j} e, \\operatorname{mean}_{j} e (over a row)
    ColSum / ColMean     \\sum_{n} e, \\operatorname{mean}_{n} e (over the batch)
    Total(e)             \\sum_{n,j} e                        Σ e
    GroupMean(e)         \\operatorname{mean}(e) over the norm's group, likewise sum, max
    KeepMask(X, p)       \\operatorname{keep}_{p}(X)
    Derivative(u, v)     \\partial u / \\partial v
    [u = v]              the indicator Piecewise((1, Eq(u, v)), (0, True))

With `arrays` (the Plan's array symbols), a product of two or more arrays is elementwise
and printed with ⊙, a scalar times an array by juxtaposition; the Plan's SCALE (1/m in
`loss_and_grad`) is printed as 1/m. Nothing here computes with an expression: the
printers build only the printing node `Hadamard`, to hand SymPy's fraction layout the
elementwise product as one factor.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sympy
from sympy import Mul
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from ..norm_rules import cost
from ..plan import SCALE
from ..sym.arrays import (
    Expanded,
    GroupReductionBase,
    ImageBase,
    KeepMask,
    MatProduct,
    ReductionBase,
    Total,
    Transposed,
    window_label,
    window_operands,
)
from ..sym.code import number_text
from ..sym.text import Text as PlanText
from .document import Math

REDUCTION_TEX = {  # (op, axis) -> the operator, as printers.text.REDUCTION_TEXT reads
    ("sum", 1): r"\sum_{j}",
    ("mean", 1): r"\operatorname{mean}_{j}",
    ("max", 1): r"\max_{j}",
    ("sum", 0): r"\sum_{n}",
    ("mean", 0): r"\operatorname{mean}_{n}",
    ("max", 0): r"\max_{n}",
    ("sum", None): r"\sum_{n,j}",
    ("sum", (1, 2, 3)): r"\sum_{c,h,w}",
    ("mean", (1, 2, 3)): r"\operatorname{mean}_{c,h,w}",
    ("max", (1, 2, 3)): r"\max_{c,h,w}",
    ("sum", (0, 2, 3)): r"\sum_{n,h,w}",
    ("mean", (0, 2, 3)): r"\operatorname{mean}_{n,h,w}",
    ("max", (0, 2, 3)): r"\max_{n,h,w}",
}
GROUP_TEX = {"sum": r"\sum", "mean": r"\operatorname{mean}", "max": r"\max"}
TRANSPOSE_TEX = r"\mathsf{T}"


class Hadamard(sympy.Function):
    """A ⊙ B ⊙ ...: an elementwise product, built by the printers only to print it."""

    precedence = PRECEDENCE["Mul"]
    is_commutative = True


def is_array(e: sympy.Basic, arrays: Collection[sympy.Symbol]) -> bool:
    """e is an array (not a scalar) when it holds an array symbol outside a Total (or,
    in a norm's rule, outside a reduction over the group)."""
    if isinstance(e, Total | GroupReductionBase):  # one number (per group)
        return False
    if isinstance(e, ReductionBase | MatProduct | Transposed | KeepMask | Hadamard):
        return True
    if isinstance(e, sympy.Symbol):
        return e in arrays
    return any(is_array(a, arrays) for a in e.args)


def _indicator(e: sympy.Piecewise) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(u, v) when e is the indicator [u = v] of a max's ties, else None."""
    if len(e.args) != 2:
        return None
    (v0, c0), (v1, c1) = e.args
    if v0 == 1 and v1 == 0 and c1 == sympy.true and isinstance(c0, sympy.Eq):
        return c0.lhs, c0.rhs
    return None


def _elementwise_factors(
    expr: sympy.Mul, arrays: Collection[sympy.Symbol]
) -> tuple[list[sympy.Expr], list[sympy.Expr]]:
    """The array factors of a numerator, and the other factors (scalars, divisors)."""
    products, rest = [], []
    for f in expr.args:
        divisor = f.is_Pow and f.exp.is_negative
        (products if is_array(f, arrays) and not divisor else rest).append(f)
    return products, rest


def _scaled(products: list[sympy.Expr], rest: list[sympy.Expr]) -> bool:
    """One array times named scalars (λ W): written scalar first, by juxtaposition."""
    return len(products) == 1 and bool(rest) and all(f.is_Symbol for f in rest)


class Latex(LatexPrinter):
    """LaTeX of rule and plan expressions (see the module docstring).

    Args:
        names: LaTeX for symbols.
        arrays: the symbols that are arrays (a Plan's), for ⊙; empty for a rule's
            expressions, whose symbols are one value of a group.
        plan: the expression is a Plan statement's (SCALE as 1/m, decimals, terms in
            the order of the generated code's comments), else a rule's.
    """

    def __init__(
        self,
        names: Mapping[sympy.Symbol, str] | None = None,
        arrays: Collection[sympy.Symbol] = (),
        plan: bool = False,
    ) -> None:
        super().__init__({"symbol_names": dict(names or {})})
        self.arrays = frozenset(arrays)
        self.plan = plan

    def _as_ordered_terms(self, expr: sympy.Expr, order: str | None = None) -> list:
        return _ordered(super()._as_ordered_terms(expr, order=order), self.plan)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if SCALE in expr.args and self.plan:
            rest = Mul(*[f for f in expr.args if f != SCALE])
            body = self._print(rest)
            if rest.is_Add:
                body = rf"\left({body}\right)"
            return rf"\frac{{1}}{{m}} {body}"
        products, rest = _elementwise_factors(expr, self.arrays)
        if len(products) >= 2:
            return self._print(Mul(Hadamard(*products), *rest))
        if _scaled(products, rest):  # λ W: the scalar first
            scalar = " ".join(self._print(f) for f in rest)
            return f"{scalar} {self.parenthesize(products[0], PRECEDENCE['Mul'])}"
        return super()._print_Mul(expr)

    def _print_Hadamard(self, expr: Hadamard) -> str:
        return r" \odot ".join(
            self.parenthesize(f, PRECEDENCE["Mul"], strict=True) for f in expr.args
        )

    def _print_MatProduct(self, expr: MatProduct) -> str:
        left, right = (self.parenthesize(x, PRECEDENCE["Mul"]) for x in expr.args)
        return f"{left} {right}"

    def _print_Transposed(self, expr: Transposed) -> str:
        inner = self._print(expr.args[0])
        if not expr.args[0].is_Symbol:
            return rf"\left({inner}\right)^{{{TRANSPOSE_TEX}}}"
        if (
            inner.endswith("]}") and "^{[" in inner
        ):  # W^{[2]} -> W^{[2]T}: one superscript
            return f"{inner[:-1]}{TRANSPOSE_TEX}}}"
        return f"{inner}^{{{TRANSPOSE_TEX}}}"

    def _print_ReductionBase(self, expr: ReductionBase) -> str:
        op = REDUCTION_TEX[(expr.op, expr.axis)]
        # a sum or product is parenthesized, a power or a function is not
        inner = self.parenthesize(expr.args[0], PRECEDENCE["Mul"])
        return f"{op} {inner}"

    def _print_GroupReductionBase(self, expr: GroupReductionBase) -> str:
        return rf"{GROUP_TEX[expr.op]}\left({self._print(expr.args[0])}\right)"

    def _print_Expanded(self, expr: Expanded) -> str:  # a broadcast: its array
        return self._print(expr.args[0])

    def _print_ImageBase(self, expr: ImageBase) -> str:  # the image nodes
        label = window_label(expr)
        if label is None:
            return super()._print_Function(expr)
        args = ", ".join(self._print(a) for a in window_operands(expr))
        return rf"{label[0]}\left({args}\right)"

    def _print_KeepMask(self, expr: KeepMask) -> str:
        x, rate = expr.args
        return (
            rf"\operatorname{{keep}}_{{{number_text(rate)}}}"
            rf"\left({self._print(x)}\right)"
        )

    def _print_Derivative(self, expr: sympy.Derivative) -> str:
        (var, count), *more = expr.variable_count
        if count != 1 or more:
            return super()._print_Derivative(expr)
        return (
            rf"\frac{{\partial {self._print(expr.expr)}}}"
            rf"{{\partial {self._print(var)}}}"
        )

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        pair = _indicator(expr)
        if pair is None:
            return super()._print_Piecewise(expr)
        return rf"\left[{self._print(pair[0])} = {self._print(pair[1])}\right]"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        # a parameter's value in a Plan statement (eps = 1e-5): as the spec writes it
        if self.plan and _decimal(expr):
            return _number_tex(number_text(sympy.Float(expr)))
        return super()._print_Rational(expr)


def _ordered(terms: list, plan: bool) -> list:
    """Positive terms first; in a rule's expressions, then the cheaper first (h − mean(h)
    − x̂ mean(h x̂), as reductions.text writes it); in a Plan's, then a matrix product
    first (Xᵀ δ1 + λ W1, δ4 W4ᵀ + G4), else SymPy's order, as printers.text has it."""
    if plan:
        return sorted(
            terms, key=lambda t: (t.could_extract_minus_sign(), not t.has(MatProduct))
        )
    return sorted(terms, key=lambda t: (t.could_extract_minus_sign(), cost(t)))


def _decimal(r: sympy.Rational) -> bool:
    """r is a spec's decimal number best read as one: 1/100000, not 1/2."""
    q = int(r.q)
    return q >= 1000 and 10 ** (len(str(q)) - 1) == q


def _number_tex(s: str) -> str:
    if "e" not in s:
        return s
    mant, exp = s.split("e")
    power = f"10^{{{int(exp)}}}"
    return power if mant == "1" else rf"{mant} \cdot {power}"


class Text(PlanText):
    """Unicode of plan statements, as the comments of the generated code read, with
    ⊙ for elementwise products of arrays and the Plan's SCALE as / m."""

    def __init__(
        self,
        names: Mapping[sympy.Symbol, str] | None = None,
        arrays: Collection[sympy.Symbol] = (),
        plan: bool = False,
    ) -> None:
        super().__init__()
        self.names = dict(names or {})
        self.arrays = frozenset(arrays)
        self.plan = plan

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names.get(expr, expr.name)

    def _as_ordered_terms(self, expr: sympy.Expr, order: str | None = None) -> list:
        return _ordered(super()._as_ordered_terms(expr, order=order), self.plan)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if SCALE in expr.args and self.plan:
            rest = Mul(*[f for f in expr.args if f != SCALE])
            body = self._print(rest)
            return f"({body}) / m" if rest.is_Add else f"{body} / m"
        products, rest = _elementwise_factors(expr, self.arrays)
        if len(products) >= 2:
            return self._print(Mul(Hadamard(*products), *rest))
        if _scaled(products, rest):  # λ W1
            scalar = " ".join(self._print(f) for f in rest)
            return f"{scalar} {self.parenthesize(products[0], PRECEDENCE['Mul'])}"
        return super()._print_Mul(expr)

    def _print_Hadamard(self, expr: Hadamard) -> str:
        return " ⊙ ".join(
            self.parenthesize(f, PRECEDENCE["Mul"], strict=True) for f in expr.args
        )

    def _print_GroupReductionBase(self, expr: GroupReductionBase) -> str:
        return f"{expr.op}({self._print(expr.args[0])})"

    def _print_Pi(self, expr: sympy.Expr) -> str:
        return "π"

    def _print_KeepMask(self, expr: KeepMask) -> str:
        x, rate = expr.args
        return f"keep_{number_text(rate)}({self._print(x)})"

    def _print_Derivative(self, expr: sympy.Derivative) -> str:
        var = expr.variables[0]
        return f"∂{self._print(expr.expr)}/∂{self._print(var)}"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        pair = _indicator(expr)
        if pair is None:
            return super()._print_Piecewise(expr)
        return f"[{self._print(pair[0])} = {self._print(pair[1])}]"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        if self.plan and _decimal(expr):
            return number_text(sympy.Float(expr))
        return super()._print_Rational(expr)


def math(
    e: sympy.Expr,
    tex: Mapping[sympy.Symbol, str] | None = None,
    text: Mapping[sympy.Symbol, str] | None = None,
    arrays: Collection[sympy.Symbol] = (),
    plan: bool = False,
) -> Math:
    """An expression with array nodes in both notations, its symbols named (a Plan
    statement's when `plan`, else a rule's: see Latex)."""
    return Math(
        Latex(tex, arrays, plan).doprint(e), Text(text, arrays, plan).doprint(e)
    )
