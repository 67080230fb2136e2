"""Readable unicode for SymPy rules and plan statements: comments, docstrings, the terminal.

`text(expr)` writes a², σ(z), ŷ, |z|, {0 if a ≤ 0; else 1}; the array nodes of a plan
read as the math does: X W1 for a product, W2ᵀ, Σₙ over the batch, Σⱼ over a row.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .arrays import (
    Expanded,
    ImageBase,
    MatProduct,
    ReductionBase,
    Transposed,
    window_label,
    window_operands,
)
from .functions import inv_erfcx, log_erf, log_erfc, sigmoid, softplus

SUPERSCRIPT_LETTERS = {"t": "ᵗ", "n": "ⁿ", "k": "ᵏ", "m": "ᵐ"}  # β₁ᵗ, not β₁**t
REDUCTION_TEXT = {  # (op, axis) -> how the reduction reads
    ("sum", 1): "Σⱼ",
    ("mean", 1): "meanⱼ",
    ("max", 1): "maxⱼ",
    ("sum", 0): "Σₙ",
    ("mean", 0): "meanₙ",
    ("max", 0): "maxₙ",
    ("sum", None): "Σ",
    ("sum", (1, 2, 3)): "Σ_chw",
    ("mean", (1, 2, 3)): "mean_chw",
    ("max", (1, 2, 3)): "max_chw",
    ("sum", (0, 2, 3)): "Σ_nhw",
    ("mean", (0, 2, 3)): "mean_nhw",
    ("max", (0, 2, 3)): "max_nhw",
}


class Text(StrPrinter):
    """Unicode math for comments and the terminal: a², σ(z), ŷ."""

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        sup = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
        if expr.exp.is_Integer and expr.exp > 0:
            base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
            return base + str(int(expr.exp)).translate(sup)
        if expr.exp == sp.S.Half:
            return f"√({self._print(expr.base)})"
        if expr.exp.is_Symbol and expr.exp.name in SUPERSCRIPT_LETTERS:  # β₁ᵗ
            base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
            return base + SUPERSCRIPT_LETTERS[expr.exp.name]
        return super()._print_Pow(expr, rational)

    def _print_sigmoid(self, expr: sigmoid) -> str:
        return f"σ({self._print(expr.args[0])})"

    def _print_Expanded(self, expr: Expanded) -> str:  # a broadcast: its array
        return self._print(expr.args[0])

    def _print_ImageBase(self, expr: ImageBase) -> str:  # noqa: N802
        label = window_label(expr)
        if label is None:
            return super()._print_Function(expr)
        args = ", ".join(self._print(a) for a in window_operands(expr))
        return f"{label[1]}({args})"

    def _print_softplus(self, expr: softplus) -> str:
        return f"softplus({self._print(expr.args[0])})"

    def _print_log_erf(self, expr: log_erf) -> str:
        return f"log erf({self._print(expr.args[0])})"

    def _print_log_erfc(self, expr: log_erfc) -> str:
        return f"log erfc({self._print(expr.args[0])})"

    def _print_inv_erfcx(self, expr: inv_erfcx) -> str:
        u = self._print(expr.args[0])
        return f"(e^(-({u})²)/erfc({u}))"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        parts = []
        for value, cond in expr.args:
            parts.append(
                self._print(value)
                + ("" if cond is sp.true else f" if {self._print(cond)}")
            )
        return "{" + "; else ".join(parts) + "}"

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        op = {"<=": "≤", ">=": "≥"}.get(expr.rel_op, expr.rel_op)
        return f"{self._print(expr.lhs)} {op} {self._print(expr.rhs)}"

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"|{self._print(expr.args[0])}|"

    def _print_Mul(self, expr: sp.Mul) -> str:
        return super()._print_Mul(expr).replace("*", "·")

    def _print_MatProduct(self, expr: MatProduct) -> str:
        left, right = (self.parenthesize(x, PRECEDENCE["Mul"]) for x in expr.args)
        return f"{left} {right}"

    def _print_Transposed(self, expr: Transposed) -> str:
        return self.parenthesize(expr.args[0], PRECEDENCE["Atom"] - 1) + "ᵀ"

    def _print_ReductionBase(self, expr: ReductionBase) -> str:
        arg = self.parenthesize(expr.args[0], PRECEDENCE["Atom"] - 1)
        return f"{REDUCTION_TEXT[(expr.op, expr.axis)]} {arg}"

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list:
        # ŷ - y rather than -y + ŷ: positive terms first, SymPy's order otherwise
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda t: t.could_extract_minus_sign())


def written(op: str, *args: sp.Expr) -> sp.Expr:
    """An unevaluated sum ("+"), product ("*"), quotient ("/", two args), power ("**")
    or negation ("-", one arg), in the order given."""
    if op == "+":
        return sp.Add(*args, evaluate=False)
    if op == "*":
        return sp.Mul(*args, evaluate=False)
    if op == "/":
        return sp.Mul(args[0], sp.Pow(args[1], -1, evaluate=False), evaluate=False)
    if op == "**":
        return sp.Pow(*args, evaluate=False)
    assert op == "-" and len(args) == 1
    return sp.Mul(-1, args[0], evaluate=False)


class _AsWritten(Text):
    """Terms and factors in the order the expression holds them (an unevaluated
    expression: a textbook's line), symbols by their names."""

    def __init__(self, names: dict[sp.Symbol, str]) -> None:
        super().__init__({"order": "none"})
        self.names = names

    def _print_Symbol(self, expr: sp.Symbol) -> str:  # noqa: N802
        return self.names.get(expr, expr.name)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:  # noqa: N802
        sup = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
        base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
        if expr.exp.is_Integer and expr.exp != -1:  # 10⁻⁶, g²
            return base + str(int(expr.exp)).translate(sup)
        if expr.exp == sp.S.Half:
            return f"√{base}" if expr.base.is_Atom else f"√({self._print(expr.base)})"
        if expr.exp.is_Symbol and self._print(expr.exp) in SUPERSCRIPT_LETTERS:
            return base + SUPERSCRIPT_LETTERS[self._print(expr.exp)]
        if expr.exp == -1:
            return f"1/{base}"
        exp = self._print(expr.exp)
        return (
            f"{base}^{exp}" if expr.exp.is_Atom or "⌊" == exp[0] else f"{base}^({exp})"
        )

    def _print_floor(self, expr: sp.floor) -> str:
        return f"⌊{self._print(expr.args[0])}⌋"

    def _print_Min(self, expr: sp.Min) -> str:  # noqa: N802
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_Pi(self, expr: sp.Expr) -> str:  # noqa: N802
        return "π"

    def _print_Half(self, expr: sp.Expr) -> str:  # noqa: N802
        return "½"


def as_written(expr: sp.Expr, names: dict[sp.Symbol, str] | None = None) -> str:
    """Unicode for an expression built unevaluated, in its own order (no rewriting:
    substituting names would evaluate it)."""
    return _AsWritten(dict(names or {})).doprint(expr)


def text(expr: sp.Expr, names: dict[sp.Symbol, str] | None = None) -> str:
    """Readable unicode for expr (for comments, docstrings and the terminal)."""
    if names:
        expr = expr.xreplace({s: sp.Symbol(n, real=True) for s, n in names.items()})
    return Text().doprint(expr)
