"""Numeric checks of derived forms as the generated code will compute them.

Equal forms of a derivative are not equal in floating point: exp(z)/(1 + exp(z)) is NaN
from z = 710 where σ(z) is 1, and (1 - a) is 0 where σ(-z) is not. derive.py offers several
equal forms of each expression the code uses; this module prints each with the module's
own printer, evaluates the printed NumPy code in float64 and float32 at extreme inputs
(|z| up to 1000), and compares it with the value of the plain mathematical expression in
50-digit arithmetic. A form passes where it is finite and close wherever the true value is
finite in that dtype.

Fixed precision bounds the digits of a number, not its exponent: e^(e^(e^z)) at z = 1000 or
9^(9^(9^z)) at z = 6 would ask mpmath for an exponent of 2^1443 or 2^3000000 bits (minutes,
GiBs). Every function that can grow or that reduces its argument modulo π (exp, sinh, cosh,
tanh, sin, cos, σ, softplus, and a power with a variable exponent) is evaluated only when its
argument has at most MAX_ARGUMENT_BITS bits before the point (|u| < 2^4096); beyond, the value
counts as too large to evaluate — undefined, like an overflow — so the work is bounded by the
expression, whatever the inputs.

The printed code evaluated here is the code derive.py's SymPy trees print to — numbers,
names of our own and NumPy calls; no spec text reaches it.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import mpmath
import sympy as sp

from .sym import special
from .sym.code import DTYPE, NumPyCode
from .sym.functions import Coefficient
from .sym.lazy import numpy as np  # imported on first use: sym/lazy.py

EXTREMES = (-1000.0, -100.0, -30.0, -3.0, -0.5, 0.5, 3.0, 30.0, 100.0, 1000.0)
DIGITS = 50
# a form is accepted where |printed - exact| <= TOL * max(1, |exact|), by dtype name
TOL = {"float64": 1e-7, "float32": 2e-2}


def dtypes() -> tuple[type, ...]:
    """The scalar types a form is checked in (NumPy's, so NumPy is imported here)."""
    return tuple(getattr(np, name) for name in TOL)


def numpy_sigmoid(x: np.ndarray) -> np.ndarray:
    """The generated module's _sigmoid, 1 / (1 + e^-x), where the derivation checks
    printed forms in NumPy (here and norm_rules.py); e^-x overflowing gives exactly 0.
    """
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _namespace(dtype: type) -> dict[str, object]:
    """What printed code calls: NumPy, the scalar type, _sigmoid, and the special
    functions (_erf, _erfc, _log_erfc, ...) of the module itself, run from its source
    (sym/special.py), so a form is checked with the code that will compute it."""
    helpers = special.numpy_helpers()
    return {"np": np, "_sigmoid": numpy_sigmoid, **helpers, DTYPE: dtype}


def printed(expr: sp.Expr, env: Mapping[sp.Symbol, np.ndarray], dtype: type) -> object:
    """expr printed as the module prints it and evaluated with NumPy on env's arrays."""
    names = {s: f"V{i}" for i, s in enumerate(sorted(env, key=str))}
    renamed = expr.xreplace({s: sp.Symbol(n, real=True) for s, n in names.items()})
    source = NumPyCode().doprint(renamed)
    scope = _namespace(dtype)
    scope.update({names[s]: np.asarray(v, dtype=dtype) for s, v in env.items()})
    # a form that overflows, divides by zero or makes NaN on the way warns in the
    # module (and fails tests run with warnings as errors), even where its value ends
    # up right: such a form fails here (underflow to 0 is fine)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        try:
            return eval(source, scope)  # noqa: S307 - printed from our own SymPy tree
        except (ArithmeticError, ValueError, TypeError, RuntimeWarning):
            return None


# |u| < 2^MAX_ARGUMENT_BITS for exp(u), sin(u), ... and for u = y·log|b| in b^y: within,
# mpmath takes at most milliseconds (e^(2^4000): 0.7 ms; e^(2^(2^24)) does not finish)
MAX_ARGUMENT_BITS = 4096


class TooLarge(OverflowError):
    """A value whose exponent alone would be too large to compute (see the module doc)."""


def _bounded(u: object) -> object:
    if mpmath.mag(u) > MAX_ARGUMENT_BITS:
        raise TooLarge(f"argument of about 2^{mpmath.mag(u)}")
    return u


def _guarded(fn: Callable[[object], object]) -> Callable[[object], object]:
    def guarded(u: object) -> object:
        return fn(_bounded(u))

    guarded.__name__ = fn.__name__
    return guarded


def _mp_power(base: object, exponent: object) -> object:
    """base**exponent for a variable exponent, when exponent·log|base| is bounded.

    A large positive power is taken as e^(exponent·log base) with the bits of the
    exponent added to the precision: mpmath's own power raises 9 to a 3000-bit integer
    in 0.2 s, this in 2 ms.
    """
    if base == 0:
        return base**exponent
    t = _bounded(exponent * mpmath.log(abs(base)))
    bits = mpmath.mag(t)
    if bits <= 64 or not (isinstance(base, mpmath.mpf) and base > 0):
        return base**exponent
    with mpmath.extraprec(bits + 10):
        t = exponent * mpmath.log(base)
    return mpmath.exp(t)


_mp_exp = _guarded(mpmath.exp)


def _mp_sigmoid(x: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + _mp_exp(-x))


def _mp_softplus(x: mpmath.mpf) -> mpmath.mpf:
    return mpmath.log1p(_mp_exp(x)) if x < 0 else x + mpmath.log1p(_mp_exp(-x))


def _mp_log_erfc(x: mpmath.mpf) -> mpmath.mpf:
    _bounded(x * x)  # erfc(x) ~ e^{-x²}: its exponent is bounded as exp's is
    return mpmath.log(mpmath.erfc(x))


def _mp_erfc(x: mpmath.mpf) -> mpmath.mpf:
    _bounded(x * x)
    return mpmath.erfc(x)


def _mp_log_erf(x: mpmath.mpf) -> mpmath.mpf:
    # erf x to 50 digits is 1 from x ≈ 11: log1p(−erfc x) keeps its digits
    return mpmath.log1p(-_mp_erfc(x)) if x > 0.5 else mpmath.log(mpmath.erf(x))


def _mp_inv_erfcx(x: mpmath.mpf) -> mpmath.mpf:
    return 1 / (_mp_exp(x * x) * mpmath.erfc(x))


def _mp_avoid(x: mpmath.mpf, p: mpmath.mpf, safe: mpmath.mpf) -> mpmath.mpf:
    return safe if x == p else x


MP_POWER = sp.Function("_mp_power")  # a power with a variable exponent, for lambdify


def _mp_heaviside(u: object, h0: object = 0.5) -> object:
    return 1 if u > 0 else (0 if u < 0 else h0)


MP_FUNCTIONS = {  # the one table of functions mpmath evaluates for symgrad's checks
    "Heaviside": _mp_heaviside,
    "sigmoid": _mp_sigmoid,
    "softplus": _mp_softplus,
    "avoid": _mp_avoid,
    "log_erfc": _mp_log_erfc,
    "log_erf": _mp_log_erf,
    "erfc": _mp_erfc,
    "inv_erfcx": _mp_inv_erfcx,
    "exp": _mp_exp,
    **{
        name: _guarded(getattr(mpmath, name))
        for name in ("sinh", "cosh", "tanh", "sin", "cos", "tan")
    },
    "_mp_power": _mp_power,
}


def mp_lambdify(
    args: Sequence[sp.Symbol],
    expr: sp.Basic,
    extra: Mapping[str, Callable[..., object]] | None = None,
) -> Callable[..., object]:
    """lambdify for mpmath with every growing function bounded (MP_FUNCTIONS); a value
    too large to evaluate raises TooLarge, an OverflowError.

    `extra`: more functions by name (e.g. a Heaviside), looked up first.
    """
    powers = expr.replace(
        lambda n: n.is_Pow and bool(n.exp.free_symbols),
        lambda n: MP_POWER(n.base, n.exp),
    )
    return sp.lambdify(
        args,
        powers,
        modules=[dict(extra or {}), MP_FUNCTIONS, "mpmath"],
        docstring_limit=0,  # no docstring: printing the expression for it costs time
    )


def evaluator(
    expr: sp.Expr, symbols: Sequence[sp.Symbol], digits: int = DIGITS
) -> Callable[[Sequence[float]], complex | None]:
    """A function of the symbols' values giving expr in `digits`-digit arithmetic.

    The precision is fixed, not adaptive (SymPy's evalf raises it without bound to
    resolve 1 + erf(-707), and substituting numbers into a large tree asks SymPy's
    assumptions at every node): the work depends only on the expression. Coefficients
    are passed in as arguments; None means undefined, infinite or complex.
    """
    coeffs = sorted(
        (c for c in expr.free_symbols if isinstance(c, Coefficient)), key=str
    )
    fn = _lambdified(expr, (*symbols, *coeffs))
    fixed = [mpmath.mpf(c.value.p) / c.value.q for c in coeffs]

    def value(point: Sequence[float]) -> complex | None:
        with mpmath.workdps(digits):
            try:
                c = complex(fn(*(mpmath.mpf(v) for v in point), *fixed))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                return None
        if c != c or abs(c) == math.inf:
            return None
        return c

    return value


MEMO = 4096  # expressions whose mpmath functions and exact values a process keeps


@functools.lru_cache(maxsize=MEMO)
def _lambdified(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable[..., object]:
    """mp_lambdify, remembered: derive.py checks many forms against the same reference
    (SymPy's expressions compare and hash by structure, so a hit is the same one)."""
    return mp_lambdify(args, expr)


def exact(
    expr: sp.Expr, points: Sequence[Mapping[sp.Symbol, float]], digits: int = DIGITS
) -> list[float | None]:
    """expr at each point in `digits`-digit arithmetic (None: undefined or complex)."""
    symbols = tuple(sorted({k for p in points for k in p}, key=str))
    values = tuple(tuple(point[k] for k in symbols) for point in points)
    return list(_exact(expr, symbols, values, digits))


@functools.lru_cache(maxsize=MEMO)
def _exact(
    expr: sp.Expr,
    symbols: tuple[sp.Symbol, ...],
    values: tuple[tuple[float, ...], ...],
    digits: int,
) -> tuple[float | None, ...]:
    """exact, remembered (a point's values are numbers: equal ones give equal mpf)."""
    value = evaluator(expr, symbols, digits)
    out: list[float | None] = []
    for point in values:
        c = value(point)
        out.append(c.real if c is not None and c.imag == 0 else None)
    return tuple(out)


def failures(
    candidate: sp.Expr,
    reference: sp.Expr,
    points: Sequence[Mapping[sp.Symbol, float]],
    inputs: Mapping[sp.Symbol, sp.Expr] | None = None,
) -> list[str]:
    """Where the printed candidate misses the exact reference, as 'z = 1000 (float32)'.

    Args:
        candidate: the form the code would use; may contain symbols of `inputs`.
        reference: the same function, any form, in the points' symbols only.
        points: values of the free symbols of `reference`.
        inputs: symbols the code computes before it (a = f(z)): each is evaluated by
            printing its expression, in the same dtype, as the module would.
    """
    inputs = dict(inputs or {})
    wanted = np.array(
        [np.nan if w is None else w for w in exact(reference, points)], dtype=np.float64
    )
    symbols = sorted({k for p in points for k in p}, key=str)
    missed: list[str] = []
    for dtype in dtypes():
        big = float(np.finfo(dtype).max) / 16
        got = evaluate(candidate, inputs, points, dtype)
        with np.errstate(all="ignore"):
            due = np.isfinite(wanted) & (np.abs(wanted) <= big)
            close = np.abs(got - wanted) <= TOL[np.dtype(dtype).name] * np.maximum(
                1.0, np.abs(wanted)
            )
        bad = due & ~(np.isfinite(got) & close)
        for i in np.flatnonzero(bad):
            at = ", ".join(f"{k} = {points[i][k]:g}" for k in symbols)
            missed.append(f"{at} ({np.dtype(dtype).name})")
    return missed


def evaluate(
    candidate: sp.Expr,
    inputs: Mapping[sp.Symbol, sp.Expr],
    points: Sequence[Mapping[sp.Symbol, float]],
    dtype: type,
) -> np.ndarray:
    """The printed candidate at the points, its inputs computed first (NaN: failed).

    All points are evaluated as one array; when that fails (one point that overflows
    or divides by zero spoils the batch), each point is evaluated on its own.
    """
    got = _evaluate(candidate, inputs, points, dtype)
    if np.isnan(got).all() and len(points) > 1:
        got = np.concatenate([_evaluate(candidate, inputs, [p], dtype) for p in points])
    return got


def _evaluate(
    candidate: sp.Expr,
    inputs: Mapping[sp.Symbol, sp.Expr],
    points: Sequence[Mapping[sp.Symbol, float]],
    dtype: type,
) -> np.ndarray:
    symbols = sorted({k for p in points for k in p}, key=str)
    env = {k: np.array([p[k] for p in points], dtype=dtype) for k in symbols}
    for sym, e in inputs.items():
        env[sym] = as_array(printed(e, env, dtype), len(points), dtype)
    return as_array(printed(candidate, env, dtype), len(points), np.float64)


def as_array(value: object, n: int, dtype: type) -> np.ndarray:
    """A printed expression's value as n numbers (NaN where it could not be computed)."""
    if value is None:
        return np.full(n, np.nan, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = np.broadcast_to(np.asarray(value), (n,)).astype(dtype)
        except (TypeError, ValueError):
            return np.full(n, np.nan, dtype=dtype)
    return out
