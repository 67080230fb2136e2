"""Numerically stable SymPy functions, and the rewrite that introduces them.

Derivation works on plain SymPy (exp, log); before an expression is printed as code,
`stabilize` rewrites the forms that overflow or lose precision into these functions:

    1/(1 + e^{-u})    -> sigmoid(u)        (printed as an overflow-free helper)
    log(1 + e^{u})    -> softplus(u)       (printed as np.logaddexp(0, u))
    log(sigmoid(u))   -> -softplus(-u)
    log(1 - sigmoid(u)) -> -softplus(u)
    log(cosh(u))      -> |u| + softplus(-2|u|) - log 2
    log(c·(1 ± erf(u))), log(c·erfc(u))
                      -> log c + log_erfc(∓u), log c + log_erfc(u)
                         (printed as a helper finite for every u: a probit's log Φ)
    log(c·erf(u)), log(c·(1 - erfc(u)))
                      -> log c + log_erf(u)
                         (printed as a helper exact where erf u rounds to 1: log1p(−erfc u))

Each function knows its derivative (`fdiff`), so a stabilized expression is still a
valid SymPy expression.

`Coefficient` is a spec number that is not small and simple (1.7159, 0.6667, 1e-3): it
stays a positive symbol through differentiation and simplification — SymPy would otherwise
treat exp(6667 z/10000) as the 6667th power of exp(z/10000) and factor for minutes — and
prints as its own decimal text in code, comments and LaTeX.
"""

from __future__ import annotations

import functools

import sympy as sp

_COEFFICIENTS: dict[str, sp.Rational] = {}  # symbol name -> exact value


class Coefficient(sp.Symbol):
    """A positive spec number, symbolic in the derivation; prints as its decimal value."""

    def __new__(cls, value: sp.Rational) -> Coefficient:
        value = sp.Rational(value)
        if not value > 0:
            raise ValueError(f"a coefficient is positive, found {value}")
        name = f"c_{value.p}_{value.q}"
        _COEFFICIENTS[name] = value
        return super().__new__(cls, name, positive=True)

    @property
    def value(self) -> sp.Rational:
        return _COEFFICIENTS[self.name]

    def _sympystr(self, printer: object) -> str:
        return decimal_text(self.value)

    def _latex(self, printer: object) -> str:
        return decimal_text(self.value)

    def _numpycode(self, printer: object) -> str:
        return decimal_text(self.value)

    _pythoncode = _numpycode


def decimal_text(value: sp.Rational | float) -> str:
    """The shortest text of a number: the decimal a spec wrote (1.7159), else its float."""
    f = float(value)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return repr(f)


SIMPLE_DENOMINATOR = 16  # rationals p/q with q <= 16 and |p| <= 64 stay exact numbers
SIMPLE_NUMERATOR = 64


def symbolize(e: sp.Expr) -> sp.Expr:
    """e with every number that is not small and simple replaced by a Coefficient."""

    def simple(r: sp.Rational) -> bool:
        return r.q <= SIMPLE_DENOMINATOR and abs(r.p) <= SIMPLE_NUMERATOR

    def swap(r: sp.Rational) -> sp.Expr:
        return Coefficient(r) if r > 0 else -Coefficient(-r)

    numbers = {
        r for r in e.atoms(sp.Rational) if not simple(r) and not isinstance(r, bool)
    }
    # exponents of powers stay numbers (z**(3/2) is not a generator problem)
    exponents = {p.exp for p in e.atoms(sp.Pow) if p.exp.is_Rational}
    return e.xreplace({r: swap(r) for r in numbers - exponents})


def numeric(e: sp.Expr) -> sp.Expr:
    """e with every Coefficient replaced by its exact value."""
    found = {c for c in e.free_symbols if isinstance(c, Coefficient)}
    return e.xreplace({c: c.value for c in found}) if found else e


@functools.lru_cache(maxsize=1 << 16)
def variables(e: sp.Expr) -> frozenset[sp.Symbol]:
    """The free symbols of e that are not Coefficients (z, a, y, arrays); memoized."""
    return frozenset(s for s in e.free_symbols if not isinstance(s, Coefficient))


class sigmoid(sp.Function):  # noqa: N801 - SymPy functions are lower case
    """The logistic function 1/(1 + e^{-x})."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(rf"\sigma\left({arg}\right)", exp)


class softplus(sp.Function):  # noqa: N801
    """log(1 + e^{x}), computed without overflow."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.log(1 + sp.exp(x))

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(rf"\operatorname{{softplus}}\left({arg}\right)", exp)


class avoid(sp.Function):  # noqa: N801
    """avoid(x, p, s): x, except s where x == p; a 0/0 point is never evaluated.

    Printed as np.where(x == p, s, x) in code and as plain x in text and LaTeX: the
    Piecewise around it gives the limit at p, this keeps NumPy from dividing by 0 there.
    """

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.One if argindex == 1 else sp.S.Zero

    def _sympystr(self, printer: sp.printing.str.StrPrinter) -> str:
        return printer._print(self.args[0])

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return arg if exp is None else _power(rf"\left({arg}\right)", exp)


class log_softmax(sp.Function):  # noqa: N801
    """Row-wise log-softmax of the output pre-activations: z_j - log sum_k e^{z_k}."""

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(rf"\log\operatorname{{softmax}}\left({arg}\right)", exp)


class log_erfc(sp.Function):  # noqa: N801
    """log(erfc(x)), finite for every x: log erfcx(x) − x² for x ≥ 0 (erfcx(x) =
    e^{x²} erfc(x), never formed as that product) and log(1 + erf(−x)) below."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return -2 / sp.sqrt(sp.pi) * inv_erfcx(self.args[0])

    def _eval_rewrite_as_erfc(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.log(sp.erfc(x))

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(rf"\log\operatorname{{erfc}}\left({arg}\right)", exp)


class inv_erfcx(sp.Function):  # noqa: N801
    """e^{−x²}/erfc(x) = 1/erfcx(x), finite for every x: the derivative of log erfc is
    −2/√π times it (the Mills ratio φ/Φ of the normal distribution, rescaled)."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        r = inv_erfcx(self.args[0])
        return -2 * self.args[0] * r + 2 / sp.sqrt(sp.pi) * r**2

    def _eval_rewrite_as_erfc(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.exp(-(x**2)) / sp.erfc(x)

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(
            rf"\frac{{e^{{-\left({arg}\right)^{{2}}}}}}{{\operatorname{{erfc}}\left({arg}\right)}}",
            exp,
        )


class log_erf(sp.Function):  # noqa: N801
    """log(erf(x)), exact where erf x rounds to 1 (log1p(−erfc x), with erfc from
    erfcx: −e^{−x²}/(x√π) for large x, not 0) and log erf x near 0 (−∞ at 0, undefined
    below, as log erf is)."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return 2 / sp.sqrt(sp.pi) * sp.exp(-(x**2)) / sp.erf(x)

    def _eval_rewrite_as_erf(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.log(sp.erf(x))

    def _latex(
        self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None
    ) -> str:
        arg = printer._print(self.args[0])
        return _power(rf"\log\operatorname{{erf}}\left({arg}\right)", exp)


def _power(function: str, exp: str | None) -> str:
    """A function's LaTeX raised to a power: SymPy's printer passes the power of a
    Pow whose base is a Function as `exp=` (sigmoid(z)**(3/2) in a focal loss)."""
    return function if exp is None else f"{function}^{{{exp}}}"


def _single_exp(expr: sp.Expr) -> sp.Expr | None:
    """The argument w of the only exp(w) in expr, or None."""
    exps = {e for e in expr.atoms(sp.exp)}
    if len(exps) != 1:
        return None
    return next(iter(exps)).args[0]


def _is_zero(expr: sp.Expr) -> bool:
    try:
        return sp.cancel(sp.together(expr)) == 0
    except (sp.PolynomialError, TypeError, ValueError):
        return False


def _erf_ways(e: sp.Expr) -> dict[tuple[type, type], tuple]:
    """(stable function F, the call found) -> the ways to write the call through e, the
    value of F(v), each with its v: erf u = 1 − erfc u = erfc(−u) − 1, erfc u =
    2 − erfc(−u) = 1 − erf u = 1 + erf(−u), erf u = −erf(−u)."""
    return {
        (log_erfc, sp.erf): ((1 - e, 1), (e - 1, -1)),
        (log_erfc, sp.erfc): ((e, 1), (2 - e, -1)),
        (log_erf, sp.erf): ((e, 1), (-e, -1)),
        (log_erf, sp.erfc): ((1 - e, 1), (1 + e, -1)),
    }


def _log_erf_form(arg: sp.Expr) -> sp.Expr | None:
    """log(arg) as log c + F(v) when arg = c·erfc(v) (F = log_erfc) or else c·erf(v)
    (F = log_erf) for a positive constant c, with its one erf or erfc written any of
    the ways of _erf_ways: log(c·(1 + erf u)) = log c + log_erfc(−u), log(c·erf u) =
    log c + log_erf(u). None when arg is not of either form."""
    calls = arg.atoms(sp.erf, sp.erfc)
    if len(calls) != 1:
        return None
    call = next(iter(calls))
    u, e = call.args[0], sp.Dummy("e")  # e: the value of F(v), v = u or −u
    ways = _erf_ways(e)
    for stable in (log_erfc, log_erf):
        for written, sign in ways[stable, type(call)]:
            try:
                c = sp.cancel(sp.together(sp.expand(arg.xreplace({call: written})) / e))
            except (sp.PolynomialError, TypeError, ValueError):
                continue
            if not variables(c) and not c.has(e) and c.is_positive:
                return sp.log(c) + stable(sign * u)
    return None


def _stable_node(node: sp.Expr) -> sp.Expr:
    """A stable form of one node, or the node itself when no rule applies."""
    if isinstance(node, sp.log):
        arg = node.args[0]
        erf_form = _log_erf_form(arg)
        if erf_form is not None:  # log Φ(u) of a probit, log erf u: finite, exact
            return erf_form
        if arg.has(sp.tanh) and not arg.has(sigmoid):  # tanh u = 2σ(2u) - 1
            logistic = arg.replace(
                lambda n: isinstance(n, sp.tanh),
                lambda n: 2 * sigmoid(2 * n.args[0]) - 1,
            )
            new = _stable_node(sp.log(sp.expand(logistic)))
            if not isinstance(new, sp.log):
                return new
        if isinstance(arg, sigmoid):  # log σ(u) = -softplus(-u)
            return -softplus(-arg.args[0])
        if isinstance(arg, sp.cosh):  # log cosh u = |u| + softplus(-2|u|) - log 2
            u = sp.Abs(arg.args[0])
            return u + softplus(-2 * u) - sp.log(2)
        if arg.has(sigmoid) and not arg.has(sp.exp):
            sig = next(iter(arg.atoms(sigmoid)))
            if _is_zero(arg - (1 - sig)):  # log(1 - σ(u)) = -softplus(u)
                return -softplus(sig.args[0])
        w = _single_exp(arg)
        if w is not None and not arg.has(sigmoid):
            if _is_zero(arg - (1 + sp.exp(w))):
                return softplus(w)
            if _is_zero(arg - 1 / (1 + sp.exp(w))):
                return -softplus(w)
            if _is_zero(arg - sp.exp(w) / (1 + sp.exp(w))):
                return -softplus(-w)
        return node
    if (node.is_Pow or node.is_Mul) and not node.has(sp.log):
        w = _single_exp(node)
        if w is None:
            return node
        for u in (w, -w):
            if _is_zero(node - 1 / (1 + sp.exp(-u))):
                return sigmoid(u)
        if node.is_Mul:  # c / (1 + e^{-u}) = c σ(u): keep the factor, swap the rest
            rest = sp.Mul(*[f for f in node.args if not f.has(sp.exp)])
            core = sp.Mul(*[f for f in node.args if f.has(sp.exp)])
            if rest != 1:
                for u in (w, -w):
                    if _is_zero(core - 1 / (1 + sp.exp(-u))):
                        return rest * sigmoid(u)
    return node


def stabilize(expr: sp.Expr) -> sp.Expr:
    """Rewrite overflow-prone subexpressions, outermost first, into sigmoid / softplus."""
    if expr.is_Atom:
        return expr
    new = _stable_node(expr)
    if new != expr:
        return (
            new.func(*[stabilize(arg) for arg in new.args]) if not new.is_Atom else new
        )
    args = [stabilize(arg) for arg in expr.args]
    if args == list(expr.args):
        return expr
    rebuilt = expr.func(*args)
    again = _stable_node(rebuilt)
    return again


# ------------------------------------------------------------------ inverses

INVERSES = {  # the inverse of each one-argument function the derivations peel
    sp.exp: sp.log,
    sp.log: sp.exp,
    sp.tanh: sp.atanh,
    sp.sinh: sp.asinh,
    sp.atan: sp.tan,
    sigmoid: lambda t: sp.log(t / (1 - t)),
    softplus: lambda t: sp.log(sp.exp(t) - 1),
}


def invert(f: sp.Expr, var: sp.Symbol, target: sp.Expr) -> sp.Expr | None:
    """var with f(var) = target, when var occurs once in f: undo one layer at a time
    (a sum or product with one term in var, a constant power, a power of a positive
    constant, a function of INVERSES); None otherwise.

    Roots and logs may pick a wrong branch: callers check every use numerically.
    """
    e = f
    while e != var:
        if e.is_Add or e.is_Mul:
            inner = [t for t in e.args if t.has(var)]
            if len(inner) != 1:
                return None
            rest = e.func(*[t for t in e.args if not t.has(var)])
            target = target - rest if e.is_Add else target / rest
            e = inner[0]
        elif e.is_Pow and not e.exp.has(var):
            target, e = target ** (1 / e.exp), e.base
        elif e.is_Pow and not e.base.has(var) and e.base.is_positive:
            target, e = sp.log(target) / sp.log(e.base), e.exp
        elif type(e) in INVERSES and len(e.args) == 1:
            target, e = INVERSES[type(e)](target), e.args[0]
        else:
            return None
    return target
