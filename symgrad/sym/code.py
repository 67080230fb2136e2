"""SymPy rules -> NumPy code: the expression printer of the generated modules (and of
derive's stability checks, which evaluate candidate forms as the module will print them).

`NumPyCode` only adds `_print_<Class>` methods to SymPy's NumPyPrinter: `np.` prefixes,
exact decimal literals, folded numeric constants, `np.where` for piecewise rules (with
typed constants so float32 stays float32), and the stable helpers of the generated module
(`_sigmoid`, `_erf`, `_log_erfc`, `_inv_erfcx`, `np.logaddexp`); sym/text.py writes the
same rules as unicode.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from ..errors import DerivationError
from .arrays import (
    Cropped,
    Einsum,
    Expanded,
    FirstMax,
    KeepMask,
    MatProduct,
    Padded,
    ReductionBase,
    Reshaped,
    ScatterWindows,
    Transposed,
    WindowMax,
    Windows,
)
from .functions import (
    avoid,
    decimal_text,
    inv_erfcx,
    log_erf,
    log_erfc,
    log_softmax,
    numeric,
    sigmoid,
    softplus,
    variables,
)

DTYPE = "dt"  # name of the scalar type in generated functions (e.g. np.float32)

# The one table of elementwise functions: SymPy's class -> NumPy's ufunc. The expression
# printer below and the in-place printer (inplace.py) both print from it.
FUNCTIONS: dict[type, str] = {
    sp.exp: "exp",
    sp.log: "log",
    sp.tanh: "tanh",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.atan: "arctan",
    sp.Abs: "abs",
    sp.sign: "sign",
}


def number_text(value: sp.Expr) -> str:
    """A short exact-enough literal: 1/10 -> 0.1; 1/3 -> 0.3333333333333333.

    Coefficients are replaced by their values first.

    Raises:
        DerivationError: the constant overflows a float64, or underflows to 0 (a large
            coefficient to a large power: the spec's numbers are to blame, not the code).
    """
    exact = numeric(value)
    f = float(exact)
    if not math.isfinite(f) or (f == 0 and exact.is_zero is False):
        raise DerivationError(
            f"the derived code needs the constant {sp.N(exact, 6)}, which a float64"
            " cannot hold: use smaller coefficients or exponents"
        )
    return decimal_text(f)


class NumPyCode(NumPyPrinter):
    """Prints expressions over array symbols (A1, Z1, Y) as vectorized NumPy."""

    def __init__(self) -> None:
        super().__init__(
            {"fully_qualified_modules": True, "allow_unknown_functions": False}
        )
        self.helpers: set[str] = set()  # module helpers the printed code calls

    def _module_format(self, fqn: str, register: bool = True) -> str:
        fqn = super()._module_format(fqn, register=False)
        return "np." + fqn[len("numpy.") :] if fqn.startswith("numpy.") else fqn

    # numbers: exact decimals, constants folded
    def _print_Rational(self, expr: sp.Rational) -> str:
        return number_text(expr)

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        if not variables(expr):  # coefficients only: one folded number
            return number_text(expr)
        return super()._print_Add(expr, order)

    def _print_Integer(self, expr: sp.Integer) -> str:
        return str(int(expr))

    def _print_Float(self, expr: sp.Float) -> str:
        return number_text(expr)

    def _print_NumberSymbol(self, expr: sp.Expr) -> str:
        return number_text(expr)

    def _print_Mul(self, expr: sp.Mul) -> str:
        if not variables(expr):
            return number_text(expr)
        consts = [f for f in expr.args if not variables(f)]
        if len(consts) > 1 or (consts and not consts[0].is_Integer):
            c = numeric(sp.Mul(*consts))
            rest = sp.Mul(*[f for f in expr.args if variables(f)])
            if c == -1:
                return "-" + self.parenthesize(rest, PRECEDENCE["Mul"])
            return f"{number_text(c)} * {self.parenthesize(rest, PRECEDENCE['Mul'])}"
        return super()._print_Mul(expr)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if not variables(expr):
            return number_text(expr)
        base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
        if expr.exp == -1:
            return f"1 / {base}"
        if expr.exp == sp.S.Half:
            return f"np.sqrt({self._print(expr.base)})"
        if expr.exp == -sp.S.Half:
            return f"1 / np.sqrt({self._print(expr.base)})"
        if expr.exp.is_Integer and expr.exp < 0:
            return f"1 / {base}**{-int(expr.exp)}"
        return f"{base}**{self.parenthesize(expr.exp, PRECEDENCE['Pow'])}"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._fold("np.minimum", expr.args)

    def _fold(self, fn: str, args: tuple) -> str:
        # array arguments first, so the result takes the array's dtype
        args = sorted(args, key=lambda x: not x.free_symbols)
        out = self._print(args[0])
        for arg in args[1:]:
            out = f"{fn}({out}, {self._print(arg)})"
        return out

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        return f"{self._print(expr.lhs)} {ops[expr.rel_op]} {self._print(expr.rhs)}"

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " & ".join(f"({self._print(x)})" for x in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " | ".join(f"({self._print(x)})" for x in expr.args) + ")"

    def _print_Not(self, expr: sp.Not) -> str:
        return f"(~{self._print(expr.args[0])})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        pieces = list(expr.args)
        if pieces[-1][1] is not sp.true:
            pieces.append((sp.nan, sp.true))
        # 0 where a condition holds, else 1: a boolean mask (float * bool keeps the dtype)
        # (parenthesized: inside a product, 2*A > 0 would compare 2*A with 0)
        if len(pieces) == 2 and pieces[0][0] == 0 and pieces[1][0] == 1:
            return f"({self._print(pieces[0][1].negated)})"
        if len(pieces) == 2 and pieces[0][0] == 1 and pieces[1][0] == 0:
            return f"({self._print(pieces[0][1])})"
        pieces = _clamped_pieces(pieces)
        all_const = all(not variables(v) for v, _ in pieces)
        out = self._branch(pieces[-1][0], all_const)
        for value, cond in reversed(pieces[:-1]):
            out = f"np.where({self._print(cond)}, {self._branch(value, all_const)}, {out})"
        return out

    def _branch(self, value: sp.Expr, typed: bool) -> str:
        text = self._print(value)
        if typed:
            self.helpers.add(DTYPE)
            return f"{DTYPE}({text})"
        return text

    # stable functions of the generated module
    def _print_sigmoid(self, expr: sigmoid) -> str:
        self.helpers.add("_sigmoid")
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_softplus(self, expr: softplus) -> str:
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_avoid(self, expr: avoid) -> str:
        x, p, safe = (self._print(arg) for arg in expr.args)
        return f"np.where({x} == {p}, {safe}, {x})"

    def _print_log_softmax(self, expr: log_softmax) -> str:
        self.helpers.add("_log_softmax")
        return f"_log_softmax({self._print(expr.args[0])})"

    def _print_erf(self, expr: sp.erf) -> str:
        self.helpers.add("_erf")
        return f"_erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr: sp.erfc) -> str:
        self.helpers.update({"_erf", "_erfc"})  # built on _erfcx (sym/special.py)
        return f"_erfc({self._print(expr.args[0])})"

    def _print_log_erf(self, expr: log_erf) -> str:
        self.helpers.update({"_erf", "_erfc", "_log_erf"})
        return f"_log_erf({self._print(expr.args[0])})"

    def _print_log_erfc(self, expr: log_erfc) -> str:
        self.helpers.update({"_erf", "_log_erfc"})  # built on _erf (sym/special.py)
        return f"_log_erfc({self._print(expr.args[0])})"

    def _print_inv_erfcx(self, expr: inv_erfcx) -> str:
        self.helpers.update({"_erf", "_inv_erfcx"})
        return f"_inv_erfcx({self._print(expr.args[0])})"

    # array nodes of a plan (arrays.py)
    def _print_MatProduct(self, expr: MatProduct) -> str:
        left, right = (self.parenthesize(x, PRECEDENCE["Mul"]) for x in expr.args)
        return f"{left} @ {right}"

    def _print_Transposed(self, expr: Transposed) -> str:
        return self.parenthesize(expr.args[0], PRECEDENCE["Atom"] - 1) + ".T"

    def _print_ReductionBase(self, expr: ReductionBase) -> str:
        arg = expr.args[0]
        if expr.axis is None:
            return f"float(np.sum({self._print(arg)}))"
        keep = ", keepdims=True" if expr.keepdims else ""
        if arg.is_Symbol:  # the method: A.sum(axis=0)
            return f"{self._print(arg)}.{expr.op}(axis={expr.axis}{keep})"
        fn = {"sum": "np.sum", "mean": "np.mean", "max": "np.max"}[expr.op]
        return f"{fn}({self._print(arg)}, axis={expr.axis}{keep})"

    def _print_KeepMask(self, expr: KeepMask) -> str:
        self.helpers.add("_keep_mask")
        like, rate = expr.args
        return f"_keep_mask(rng, {self._print(like)}, {number_text(rate)})"

    # images: views, contractions and the window operations (arrays.py)
    def _array_operand(self, e: sp.Expr) -> str:
        return self.parenthesize(e, PRECEDENCE["Atom"] - 1)

    def _print_Reshaped(self, expr: Reshaped) -> str:
        dims = ", ".join(str(int(d)) for d in expr.args[1])
        return f"{self._array_operand(expr.args[0])}.reshape(-1, {dims})"

    def _print_Expanded(self, expr: Expanded) -> str:
        return f"{self._array_operand(expr.args[0])}{expr.args[1].name}"

    def _print_Cropped(self, expr: Cropped) -> str:
        ph, pw, h, w = (int(v) for v in expr.args[1:])
        return (
            f"{self._array_operand(expr.args[0])}[:, :, {ph}:{ph + h}, {pw}:{pw + w}]"
        )

    def _call(self, helper: str, expr: sp.Expr) -> str:
        self.helpers.add(helper)
        first = self._print(expr.args[0])
        rest = ", ".join(str(int(v)) for v in expr.args[1:])
        return f"{helper}({first}, {rest})"

    def _print_Windows(self, expr: Windows) -> str:
        return self._call("_windows", expr)

    def _print_Padded(self, expr: Padded) -> str:
        return self._call("_pad", expr)

    def _print_ScatterWindows(self, expr: ScatterWindows) -> str:
        return self._call("_scatter_windows", expr)

    def _print_Einsum(self, expr: Einsum) -> str:
        operands = ", ".join(self._print(o) for o in expr.args[1:])
        if expr.matrix_product is not None:  # one matrix product (BLAS)
            self.helpers.add("_contract")
            return f'_contract("{expr.args[0].name}", {operands})'
        return f'np.einsum("{expr.args[0].name}", {operands})'

    def _print_WindowMax(self, expr: WindowMax) -> str:
        self.helpers.add("_window_max")
        return f"_window_max({self._print(expr.args[0])})"

    def _print_FirstMax(self, expr: FirstMax) -> str:
        self.helpers.add("_first_max")
        win, top = (self._print(a) for a in expr.args)
        return f"_first_max({win}, {top})"

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list:
        # X @ W + b: a matrix product first, as the math writes it
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda t: not t.has(MatProduct))


def _ufunc(name: str) -> Callable[[NumPyCode, sp.Function], str]:
    def print_call(self: NumPyCode, expr: sp.Function) -> str:
        # through _module_format: np.tanh here, xp.tanh in the array-API printer
        call = self._module_format(f"numpy.{name}")
        return f"{call}({self._print(expr.args[0])})"

    return print_call


# the table prints them: _print_exp, _print_Abs, ...
for _cls, _name in FUNCTIONS.items():
    setattr(NumPyCode, f"_print_{_cls.__name__}", _ufunc(_name))


def _clamped_pieces(pieces: list[tuple[sp.Expr, sp.Basic]]) -> list:
    """Evaluate each branch only inside its own domain: np.where computes every branch
    everywhere, and exp(z) of the z <= 0 branch would overflow where z is large.

    For a chain z <= c1, z <= c2, ..., else (as derive writes piecewise rules) branch k
    lives on (c_{k-1}, c_k] and the last on (c_n, ∞): each exp, cosh or sinh branch gets
    z clamped into that interval. A branch with z >= c is clamped from below.
    """
    out = []
    symbol, lower = None, None  # the chain's variable; z > lower for the later branches
    for value, cond in pieces:
        lo, hi = lower, None
        chained = (
            getattr(cond, "is_Relational", False)
            and cond.lhs.is_Symbol
            and not cond.rhs.free_symbols
            and symbol in (None, cond.lhs)
        )
        if chained and cond.rel_op in ("<", "<="):
            symbol, hi = cond.lhs, cond.rhs
            lower = cond.rhs if lower is None else sp.Max(lower, cond.rhs)
        elif chained and cond.rel_op in (">", ">="):
            symbol, lo = cond.lhs, cond.rhs
            lower = None  # what is left lies below: not tracked
        elif cond is not sp.true:
            symbol, lower, lo = sp.Dummy(), None, None  # unknown: clamp no further
        if symbol is not None and value.has(sp.exp, sp.cosh, sp.sinh):
            bound = symbol
            if lo is not None:
                bound = sp.Max(bound, lo)
            if hi is not None:
                bound = sp.Min(bound, hi)
            value = value.xreplace({symbol: bound})
        out.append((value, cond))
    return out


def code(expr: sp.Expr, names: dict[sp.Symbol, str], printer: NumPyCode) -> str:
    """NumPy code for expr, with each symbol renamed to its array (z -> Z2)."""
    renamed = expr.xreplace({s: sp.Symbol(n, real=True) for s, n in names.items()})
    return printer.doprint(renamed)
