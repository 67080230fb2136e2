"""Derivation: a spec -> per-layer rules and the output delta, all derived by SymPy.

Nothing here knows a derivative by heart. For each activation f(z) we take `diff(f, z)`,
simplify it, and look for an equivalent form in the layer's output a = f(z) (sigmoid'
= a(1 - a), tanh' = 1 - a²), accepted only when it checks out numerically at many points
and is no dearer to compute. The output delta ∂ℓ/∂z is derived from the loss and the output
activation together and simplified; when it collapses to ŷ − y that is SymPy's result, not
a table lookup. Rules are cached per activation and per (loss, output activation) pair: the
network is never differentiated as one expression; the dense-layer algebra is shared.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import sympy as sp

from . import activations, cache, layer_registry, losses, stability
from .activations import a, y, z
from .errors import DerivationError, ExpressionError, SpecError
from .layer_registry import Rule
from .norm_rules import NormRule
from .norms import NormDef
from .spec import OpSpec, Spec, SpecSource, as_spec
from .sym import parse
from .sym.cost import cost
from .sym.functions import (
    avoid,
    invert,
    log_erf,
    log_erfc,
    numeric,
    sigmoid,
    softplus,
    stabilize,
    symbolize,
    variables,
)
from .sym.lazy import numpy as np  # imported on first use: sym/lazy.py
from .sym.text import text

# where a candidate rewrite is checked (0 and small values hit piecewise boundaries)
CHECK_POINTS = (-7.5, -3.2, -1.3, -0.6, -0.15, -0.01, 0, 0.01, 0.2, 0.7, 1.1, 2.9, 6.3)
CHECK_DIGITS = 50


# ------------------------------------------------------------------ helpers
#
# Every search below is bounded by what it works on, never by the clock: tidy() tries a
# fixed list of rewrites and skips the polynomial ones on expressions too large or of too
# high a degree for them; inverses are taken by peeling one layer at a time or by the
# quadratic formula, never by solve(). The same spec gives the same rules on an idle
# machine, a loaded one, in a thread or a subprocess.

MAX_TIDY_OPS = 150  # count_ops above which tidy() keeps an expression as it is
MAX_TIDY_DEGREE = 24  # polynomial degree above which factor/cancel/expand are skipped


def _leads_with_minus(t: sp.Expr) -> bool:
    """The sum t prints with a leading minus (-a + 1), without printing it."""
    return t.as_ordered_terms()[0].could_extract_minus_sign()


def _unsigned(t: sp.Expr) -> sp.Expr:
    return -t if t.could_extract_minus_sign() else t


@functools.lru_cache(maxsize=4096)
def absorb_sign(e: sp.Expr) -> sp.Expr:
    """-a*(a - 1) -> a*(1 - a): move a leading minus into a sum factor, bottom-up
    (remembered: tidy's forms share their subexpressions)."""
    if e.is_Atom:
        return e
    e = e.func(*[absorb_sign(x) for x in e.args])
    if e.is_Mul:
        coeff, factors = e.as_coeff_mul()
        factors = list(factors)
        sums = [i for i, f in enumerate(factors) if f.is_Add]
        if coeff.is_negative and sums:
            coeff, factors[sums[0]] = -coeff, -factors[sums[0]]
            sums = sums[1:]
        minus = [i for i in sums if _leads_with_minus(factors[i])]
        for i, j in zip(
            minus[::2], minus[1::2], strict=False
        ):  # (y - a)(a - 1) -> (a - y)(1 - a)
            factors[i], factors[j] = -factors[i], -factors[j]
        return sp.Mul(coeff, *factors)
    return e


def heaviside_to_piecewise(e: sp.Expr) -> sp.Expr:
    """Heaviside(u) -> 0 for u <= 0, else 1: the subgradient 0 at the kink, as JAX uses.

    DiracDelta (the derivative of a jump, e.g. of sign) is 0 almost everywhere, which is
    also what autodiff frameworks use.
    """
    e = e.replace(lambda n: isinstance(n, sp.DiracDelta), lambda n: sp.S.Zero)
    return e.replace(
        lambda n: isinstance(n, sp.Heaviside),
        lambda n: sp.Piecewise((0, n.args[0] <= 0), (1, True)),
    )


MAX_TIDY_TERMS = 400  # terms of e multiplied out, above which it is not expanded


def affordable(e: sp.Expr) -> bool:
    """e is small enough, and of low enough degree, for SymPy's polynomial algorithms.

    Size alone is not enough: a product of six 4-term sums is small, but multiplied out
    (which expand, cancel and factor all do) it has 4096 terms.
    """
    return (
        sp.count_ops(e) <= MAX_TIDY_OPS
        and parse.degree(e) <= MAX_TIDY_DEGREE
        and expanded_terms(e) <= MAX_TIDY_TERMS
    )


def expanded_terms(e: sp.Expr) -> int:
    """An upper bound of the terms of e multiplied out (functions and atoms: 1)."""
    cap = MAX_TIDY_TERMS + 1
    if e.is_Add:
        return min(cap, sum(expanded_terms(t) for t in e.args))
    if e.is_Mul:
        out = 1
        for f in e.args:
            out = min(cap, out * expanded_terms(f))
        return out
    if e.is_Pow:
        inner = expanded_terms(e.base)
        if inner == 1:
            return 1
        if e.exp.is_Rational and e.exp.p != 0:
            return min(cap, inner ** min(abs(int(e.exp.p)), 16))  # p/q: q-th root
        return cap  # a symbolic power of a sum: SymPy may expand it in any way
    if isinstance(e, sp.Piecewise):
        return min(cap, sum(expanded_terms(v) for v, _ in e.args))
    return 1


TIDY_ERRORS = (sp.PolynomialError, NotImplementedError, TypeError, ValueError)


def _rewrites(e: sp.Expr) -> list[sp.Expr]:
    """factor(e), cancel(e), expand(e) and factor(cancel(e)), those that SymPy gives: the
    fixed list of tidy's rewrites. cancel(e) is computed once, and where it is e itself
    its factored form is factor(e)'s."""
    out = []
    try:
        factored: sp.Expr | None = sp.factor(e)
        out.append(factored)
    except TIDY_ERRORS:
        factored = None
    try:
        cancelled: sp.Expr | None = sp.cancel(e)
        out.append(cancelled)
    except TIDY_ERRORS:
        cancelled = None
    try:
        out.append(sp.expand(e))
    except TIDY_ERRORS:
        pass
    if cancelled is not None and cancelled == e:
        if factored is not None:
            out.append(factored)
    elif cancelled is not None:
        try:
            out.append(sp.factor(cancelled))
        except TIDY_ERRORS:
            pass
    return out


def tidy(e: sp.Expr) -> sp.Expr:
    """The cheapest of a few rewritten forms of e (ties: fewest operations, then text).

    The rewrites are a fixed list of polynomial normal forms (factor, cancel, expand),
    tried only where `affordable`; SymPy's simplify(), whose work has no bound, is not used.
    """
    return min(tidy_forms(e), key=_rank)


MEMO = 4096  # expressions whose tidied forms and rank a process keeps (LRU)


def tidy_forms(e: sp.Expr) -> set[sp.Expr]:
    """e and its rewritten forms (see tidy): equal, but not equally finite in floats."""
    return set(_tidy_forms(e))


@functools.lru_cache(maxsize=MEMO)
def _tidy_forms(e: sp.Expr) -> frozenset[sp.Expr]:
    """tidy_forms, remembered: a rule tidies the same candidate several times (SymPy's
    expressions compare and hash by structure, so a hit is the same expression)."""
    e = heaviside_to_piecewise(e)
    forms = {e}
    if affordable(e):
        budget = max(MAX_TIDY_OPS, 2 * sp.count_ops(e))
        for rewritten in _rewrites(e):
            form = heaviside_to_piecewise(rewritten)
            if sp.count_ops(form) <= budget:  # a blown-up form is never the cheapest
                forms.add(form)
    forms = {absorb_sign(f) for f in forms} | forms
    return frozenset({f for f in forms if not f.has(sp.nan, sp.zoo)} or {e})


@functools.lru_cache(maxsize=MEMO)
def _rank(e: sp.Expr) -> tuple:
    """Order among equivalent forms: cheapest, then fewest sums that start with a minus."""
    minus = sum(
        1 for t in sp.preorder_traversal(e) if t.is_Add and _leads_with_minus(t)
    )
    return (cost(e) + (20 if unstable(e) else 0), minus, sp.count_ops(e), _Text(e))


@functools.total_ordering
class _Text:
    """srepr(e), the last tie-break of _rank, computed only when a comparison reaches
    it (printing a large form costs more than the rest of its rank)."""

    __slots__ = ("expr", "_text")

    def __init__(self, expr: sp.Expr) -> None:
        self.expr = expr
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = sp.srepr(self.expr)
        return self._text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Text) and self.text == other.text

    def __lt__(self, other: _Text) -> bool:
        return self.text < other.text

    __hash__ = None  # type: ignore[assignment]


def unstable(e: sp.Expr) -> bool:
    """e can overflow for large |z|: an exp of a possibly positive argument, or cosh/sinh."""
    for node in sp.preorder_traversal(e):
        if isinstance(node, sp.cosh | sp.sinh):
            return True
        if isinstance(node, sp.exp) and not node.args[0].is_nonpositive:
            return True
    return False


def same_values(
    lhs: sp.Expr, rhs: sp.Expr, points: list[dict[sp.Symbol, object]]
) -> bool:
    """lhs and rhs agree at every point, to CHECK_DIGITS digits (NaN or complex: no)."""
    for u, v in zip(
        stability.exact(lhs, points, CHECK_DIGITS),
        stability.exact(rhs, points, CHECK_DIGITS),
        strict=True,
    ):
        if u is None or v is None or abs(u - v) > 1e-20 + 1e-20 * abs(v):
            return False
    return True


def _sigmoid_rewrite(e: sp.Expr) -> sp.Expr:
    return e.rewrite(sp.exp) if e.has(sigmoid, softplus) else e


# ------------------------------------------------------------------ inverses


def _inverses(e: sp.Expr) -> list[sp.Expr]:
    """Expressions z(a) that may invert a = e(z); branches may be wrong (checked later)."""
    peeled = invert(e, z, a)
    if peeled is not None:
        return [peeled]
    if not e.is_rational_function(z) or not affordable(e):
        return []
    num, den = sp.fraction(sp.cancel(e))
    try:
        poly = sp.Poly(sp.expand(num - a * den), z)
    except sp.PolynomialError:
        return []
    if not 1 <= poly.degree() <= 2:
        return []
    return list(sp.roots(poly, multiple=True))  # the quadratic formula: bounded


def _affine_cores(f: sp.Expr) -> list[tuple[sp.Expr, sp.Expr, sp.Expr]]:
    """(T, p, q) with f = p + q·T for a function call T in f: T = (a - p)/q.

    A·tanh(Bz) gives T = tanh(Bz) = a/A; (1 + tanh z)/2 gives tanh z = 2a - 1.
    """
    t = sp.Dummy("t")
    cores = []
    for node in sorted(f.atoms(sp.Function), key=sp.default_sort_key):
        if not node.has(z):
            continue
        g = f.xreplace({node: t})
        if g.has(z):
            continue
        q = sp.diff(g, t)
        if q.has(t) or q == 0:
            continue
        cores.append((node, sp.expand(g - q * t), q))
    return cores


# ------------------------------------------------------------------ kinks


def _condition_set(cond: sp.Basic) -> sp.Set | None:
    """The set of z where cond holds: comparisons linear in z, or monotone in one z.

    a·(e^z − 1) <= 0 (from min(0, a·(e^z − 1))) is peeled to its root z = 0 and checked
    on both sides; anything else (z² <= 1, a second z) gives None.
    """
    if cond is sp.true:
        return sp.S.Reals
    if cond is sp.false:
        return sp.S.EmptySet
    swaps = {}
    for rel in cond.atoms(sp.core.relational.Relational):
        diff = rel.lhs - rel.rhs
        if variables(diff) - {z}:
            return None
        try:
            if sp.Poly(diff, z).degree() <= 1:
                continue
        except sp.PolynomialError:
            pass
        half_line = _monotone_set(rel, diff)
        if half_line is None:
            return None
        swaps[rel] = half_line
    try:
        if swaps:  # each nonlinear comparison by the half-line it holds on
            return _combine(cond, swaps)
        return cond.as_set()
    except (NotImplementedError, TypeError, ValueError):
        return None


def _monotone_set(rel: sp.Basic, diff: sp.Expr) -> sp.Set | None:
    """The half-line where rel holds, when diff has one root, found by peeling."""
    if not isinstance(rel, sp.Lt | sp.Le | sp.Gt | sp.Ge):
        return None
    root = invert(diff, z, sp.S.Zero)
    if root is None or not root.is_extended_real or variables(root):
        return None
    c = sp.Rational(repr(float(root)))
    if sp.Abs(root - c) > sp.Rational(1, 10**12):
        return None
    holds = stability.evaluator(rel.lhs - rel.rhs, [z], CHECK_DIGITS)

    def sign(x: float) -> int:
        v = holds([x])
        return 0 if v is None or v.imag else (1 if v.real > 0 else -1)

    offsets = (1e-9, 1e-3, 0.1, 1.0, 10.0, 100.0)
    left = {sign(float(c) - h) for h in offsets}
    right = {sign(float(c) + h) for h in offsets}
    if len(left) != 1 or len(right) != 1 or left == right or 0 in left | right:
        return None
    below = rel.func(left.pop(), 0) is sp.true
    at = rel.func(0, 0) is sp.true
    if below:
        return sp.Interval(-sp.oo, c, right_open=not at)
    return sp.Interval(c, sp.oo, left_open=not at)


def _combine(cond: sp.Basic, sets: dict[sp.Basic, sp.Set]) -> sp.Set:
    """The set of a boolean combination of comparisons, each given by its set."""
    if cond in sets:
        return sets[cond]
    if isinstance(cond, sp.And):
        return sp.Intersection(*(_combine(c, sets) for c in cond.args))
    if isinstance(cond, sp.Or):
        return sp.Union(*(_combine(c, sets) for c in cond.args))
    if isinstance(cond, sp.Not):
        return sp.Complement(sp.S.Reals, _combine(cond.args[0], sets))
    return cond.as_set()


def pieces(f: sp.Expr) -> list[tuple[sp.Expr, sp.Interval]] | None:
    """f as expressions on intervals of z, left to right (isolated points dropped).

    abs, sign, max, min and Piecewise are rewritten into one Piecewise first; None when f
    has none of them, or a condition that is not linear in z.
    """
    if not f.has(sp.Abs, sp.sign, sp.Max, sp.Min, sp.Heaviside, sp.Piecewise):
        return None
    pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    if not isinstance(pw, sp.Piecewise):
        return None
    remaining: sp.Set = sp.S.Reals
    found: list[tuple[sp.Expr, sp.Interval]] = []
    for value, cond in pw.args:
        where = _condition_set(numeric(cond))
        if where is None:
            return None
        part = sp.Intersection(where, remaining)
        remaining = sp.Complement(remaining, where)
        for interval in part.args if isinstance(part, sp.Union) else (part,):
            if isinstance(interval, sp.Interval) and interval.measure > 0:
                found.append((value, interval))
            elif not (isinstance(interval, sp.FiniteSet) or interval is sp.S.EmptySet):
                return None
    found.sort(key=lambda p: p[1].start)
    return found


def _equal(u: sp.Expr, v: sp.Expr) -> bool:
    if u == v:
        return True
    try:
        return affordable(u - v) and sp.cancel(sp.together(u - v)) == 0
    except (sp.PolynomialError, TypeError, ValueError):
        return False


def piecewise_rule(parts: list[tuple[sp.Expr, sp.Expr]]) -> sp.Expr:
    """Values on consecutive intervals -> a Piecewise (v1, z <= c1), ..., (vn, True).

    Each boundary belongs to the interval on its left: at a kink the rule gives the
    one-sided derivative from the left (relu'(0) = 0, leaky_relu'(0) = α). Neighbours
    with equal values are merged, so no branch is unreachable or repeated.
    """
    merged: list[tuple[sp.Expr, sp.Expr]] = []
    for value, end in parts:
        if merged and _equal(merged[-1][0], value):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((value, end))
    if len(merged) == 1:
        return merged[0][0]
    branches = [(v, sp.Le(z, end)) for v, end in merged[:-1]]
    return sp.Piecewise(*branches, (merged[-1][0], True))


SEAMED = (sp.sign, sp.Abs, sp.Heaviside, sp.Max, sp.Min)


def seam_derivative(f: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """∂f/∂var, with the derivative itself (not 0) where f is differentiable at a seam.

    diff() of sign(u)·log(1 + |u|) gives sign(u)²/(1 + |u|), which is 0 at u = 0 where
    the slope is 1: sign, abs, Heaviside, max and min are differentiated as if their
    kink were a jump. For each seam u = 0 with u linear in var (var = s, s free of var:
    a loss's ŷ = y), f is written on each side without the seamed function and the two
    one-sided derivatives are compared at s: where f is continuous there and they agree,
    the derivative at the seam is their common value. A true kink (|ŷ − y|, whose
    one-sided slopes are −1 and 1) keeps SymPy's value there (sign(0) = 0).
    """
    d = heaviside_to_piecewise(sp.diff(f, var))
    seams: dict[sp.Expr, None] = {}
    for node in sp.preorder_traversal(f):
        if isinstance(node, SEAMED):
            seam = _seam_of(node, var)
            if seam is not None:
                seams.setdefault(seam[0])
    for s in seams:
        sides = [_one_side(f, var, s, side) for side in (-1, 1)]
        if any(g is None for g in sides):
            continue
        values = [g.subs(var, s) for g in sides]
        slopes = [heaviside_to_piecewise(sp.diff(g, var)).subs(var, s) for g in sides]
        if any(v.has(sp.nan, sp.zoo, sp.oo, -sp.oo) for v in values + slopes):
            continue
        if not (_equal(*values) and _equal(*slopes)):
            continue  # a jump or a kink: SymPy's value there stands
        at = min((slopes[0], tidy(slopes[0])), key=_rank)
        if _equal(d.subs(var, s), at):
            continue  # already right at the seam
        d = sp.Piecewise((at, sp.Eq(var, s)), (d, True))
    return d


def _seam_of(node: sp.Expr, var: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """(s, p): the seamed function node switches at var = s, its argument u ≈ p·(var − s);
    None when u is not linear in var with a known sign of p."""
    if len(node.args) > 2:
        return None
    u = node.args[0] - node.args[1] if len(node.args) == 2 else node.args[0]
    if not u.has(var):
        return None
    p = sp.diff(u, var)
    if p.has(var) or not (p.is_positive or p.is_negative):
        return None
    return sp.expand(var - u / p), p


def _one_side(f: sp.Expr, var: sp.Symbol, s: sp.Expr, side: int) -> sp.Expr | None:
    """f just left (side −1) or right (+1) of var = s, with each function that switches
    there replaced by its branch on that side; None when one cannot be decided."""
    swaps: dict[sp.Expr, sp.Expr] = {}
    for node in sp.preorder_traversal(f):
        if not isinstance(node, SEAMED):
            continue
        if len(node.args) > 2 and node.has(var):
            return None  # max of three: not split here
        seam = _seam_of(node, var)
        if seam is None or not _equal(seam[0], s):
            continue
        positive = (side > 0) == bool(seam[1].is_positive)  # the sign of u there
        if isinstance(node, sp.sign):
            swaps[node] = sp.S.One if positive else sp.S.NegativeOne
        elif isinstance(node, sp.Abs):
            swaps[node] = node.args[0] if positive else -node.args[0]
        elif isinstance(node, sp.Heaviside):
            swaps[node] = sp.S.One if positive else sp.S.Zero
        elif len(node.args) == 2:  # max/min of two: u = first − second
            first, second = node.args
            big = isinstance(node, sp.Max) == positive
            swaps[node] = first if big else second
        else:
            return None
    return f.xreplace(swaps) if swaps else None


# ------------------------------------------------------------------ activations


@dataclass(frozen=True)
class ActivationRule:
    """An activation and its derived derivative.

    Attributes:
        f: the definition f(z).
        raw: diff(f, z) as SymPy returns it.
        dz: the derivative simplified, in z.
        df: the derivative used by the code: in a (the layer output) when `in_a`, else dz.
        forward: f(z) rewritten into stable functions, for printing.
        notes: where no form checked out finite at extreme inputs, what was seen.
    """

    name: str
    title: str
    f: sp.Expr
    raw: sp.Expr
    dz: sp.Expr
    df: sp.Expr
    in_a: bool
    forward: sp.Expr
    vector: bool = False  # softmax
    notes: tuple[str, ...] = ()
    custom: bool = False  # written as an expression in the spec
    unit_range: bool = False  # every output lies in [0, 1] (a probability)

    @property
    def needs_z(self) -> bool:
        return not self.vector and not self.in_a


def _derivative(work: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Expr, sp.Interval]]]:
    """f' with the left derivative at kinks, and f's pieces (empty: f is one piece)."""
    parts = pieces(work)
    if not parts:
        return heaviside_to_piecewise(sp.diff(work, z)), []
    rule = piecewise_rule([(sp.diff(v, z), iv.end) for v, iv in parts])
    return rule, parts


def _forms_in_a(
    work: sp.Expr, forms: list[sp.Expr], parts: list[tuple[sp.Expr, sp.Interval]]
) -> list[sp.Expr]:
    """Candidate forms of f' in a = f(z): substitution, affine cores, inverses, pieces."""
    if parts:
        return _piecewise_in_a(work, parts)
    cands: list[sp.Expr] = []
    cores = _affine_cores(work)
    inverses = _inverses(work)
    for d in forms:
        cands.append(d.subs(work, a))  # tanh' = 1 - tanh²: f itself inside
        for node, p, q in cores:
            cands.append(d.xreplace({node: (a - p) / q}))
        for inv in inverses:
            cands.append(_sigmoid_rewrite(d).subs(z, inv))
    return [c for c in cands if not c.has(z)]


def _piecewise_in_a(
    work: sp.Expr, parts: list[tuple[sp.Expr, sp.Interval]]
) -> list[sp.Expr]:
    """Branch by branch: each piece's derivative in a; z <= c becomes a <= f(c)."""
    values = []
    for value, interval in parts:
        d = sp.diff(value, z)
        if d.has(z):
            found = [
                tidy(c)
                for c in _forms_in_a(value, [d, tidy(d)], [])
                if not c.has(sp.nan, sp.zoo)
            ]
            if not found:
                return []
            d = min(found, key=_rank)
        else:
            d = tidy(d)
        end = interval.end
        mapped = work.subs(z, end) if end.is_finite else end
        if not (mapped.is_extended_real and not variables(mapped)):
            return []  # f undefined at the boundary (0/0): no rule in a
        values.append((d, mapped))
    rule = piecewise_rule(values)
    return [rule.xreplace({z: a})] if isinstance(rule, sp.Piecewise) else [rule]


def _defined_at(e: sp.Expr, points: list[dict]) -> list[dict]:
    """The points where e has a finite real value."""
    values = stability.exact(e, points, CHECK_DIGITS)
    return [p for p, v in zip(points, values, strict=True) if v is not None]


def _check_points(e: sp.Expr, breaks: set[sp.Expr]) -> list[dict]:
    """The check points where e has a finite real value, away from f's kinks."""
    pts = [{z: p} for p in CHECK_POINTS if sp.Rational(repr(p)) not in breaks]
    return _defined_at(e, pts)


def _pick_stable(
    forms: list[sp.Expr],
    reference: sp.Expr,
    inputs: dict[sp.Symbol, sp.Expr],
    points: list[dict[sp.Symbol, float]] | None = None,
    valid: Callable[[sp.Expr], bool] | None = None,
) -> tuple[sp.Expr | None, list[str]]:
    """The cheapest form that is finite and right at extreme z, else the cheapest form.

    Returns the form and, when none passed, where the cheapest failed. With `valid`,
    only the forms it accepts count: it is asked cheapest first, and only until a form
    passes, so a dear form is not checked at all when a cheaper one will do (None: it
    accepts none of them).
    """
    if points is None:
        free = variables(reference) | {
            s for e in forms for s in variables(e) if s not in inputs
        }
        targets = TARGETS if y in free else (None,)
        points = [
            {z: v, **({y: t} if t is not None else {})}
            for v in stability.EXTREMES
            for t in targets
        ]
    cheapest = None
    first: list[str] = []
    for form in sorted(set(forms), key=_rank):
        if valid is not None and not valid(form):
            continue
        missed = stability.failures(form, reference, points, inputs)
        if not missed:
            return form, []
        if cheapest is None:
            cheapest, first = form, missed
    return cheapest, first


def _activation_rule(name: str, title: str, f: sp.Expr) -> ActivationRule:
    raw = heaviside_to_piecewise(sp.diff(f, z))
    if raw.has(sp.Derivative, sp.Subs):
        raise DerivationError(f"activation {name!r} has no closed-form derivative")
    # σ and softplus as functions: their derivatives stay overflow-free
    work = stabilize(f)
    d, parts = _derivative(work)
    breaks = {iv.end for _, iv in parts} | {iv.start for _, iv in parts}
    points = _check_points(raw, breaks)
    if not same_values(d, raw, points):
        raise DerivationError(
            f"activation {name!r}: the piecewise derivative does not match SymPy's"
            " (please report this spec)"
        )
    # in z: of the forms that check out, the cheapest finite one at extreme inputs
    forms = [d, tidy(d)]
    forms += logistic_forms(d)

    def in_z(form: sp.Expr) -> bool:
        return same_values(form, d, points)

    dz, z_missed = _pick_stable(forms, d, {}, valid=in_z)
    unchecked = dz is None  # none checks out: d itself, as SymPy differentiated it
    if unchecked:
        forms = [d]
        dz, z_missed = _pick_stable(forms, d, {})
    # the forward pass likewise: e^z/(e^z - 1) is finite through σ(z) where e^z is not
    f_forms = [work]
    if parts:  # branch by branch: np.where evaluates each inside its own interval
        branched = piecewise_rule([(v, iv.end) for v, iv in parts])
        at_breaks = [{z: float(c)} for c in sorted(breaks) if c.is_finite]
        if same_values(branched, work, _defined_at(work, at_breaks)):
            f_forms.append(branched)
    f_points = _check_points(work, breaks)
    given = set(f_forms)

    def in_f(form: sp.Expr) -> bool:
        return form in given or same_values(form, work, f_points)

    forward, f_missed = _pick_stable(
        f_forms + logistic_forms(work), work, {}, valid=in_f
    )
    # in a: valid at every check point (wrong inverse branches fail here), finite at
    # extreme inputs, and no dearer than the form in z. Sought from the forms in z no
    # dearer than that one: a dearer form (tanh' through σ, as the logistic forms
    # write it) substituted and tidied has not given a cheaper form in a for any
    # activation tried, and building those (rewrite, substitute, tidy) was most of
    # the work of tanh's rule
    budget = cost(dz)
    sources = [
        form
        for form in forms
        if cost(form) <= budget and (unchecked or in_z(form))  # cheapest test first
    ]
    in_a_forms = [
        c
        for c in {tidy(c) for c in _forms_in_a(work, sources, parts)}
        if not c.has(z, sp.nan, sp.zoo)
        and cost(c) <= budget
        and same_values(c.xreplace({a: work}), d, points)
    ]
    best, a_missed = (
        _pick_stable(in_a_forms, d, {a: forward}) if in_a_forms else (None, ["none"])
    )
    in_a = best is not None and not a_missed
    special = sorted(breaks | {sp.S.Zero})  # points that inputs hit exactly
    if in_a and _singular_at(best, {a: forward}, special):
        in_a = False  # 0/0 there: the form in z, guarded below, is used instead
    forward = removable(forward, work, special)
    dz = removable(dz, d, special)
    df = best if in_a else dz
    notes = () if in_a or not z_missed else (_missed_note(f"{name}'", z_missed),)
    if f_missed:
        notes = (_missed_note(name, f_missed), *notes)
    return ActivationRule(name, title, f, raw, dz, df, in_a, forward, notes=notes)


LIMIT_DIGITS = 120  # working precision of the one-sided limits at a 0/0 point
LIMIT_STEPS = (sp.Rational(1, 10**30), sp.Rational(1, 10**40))


def _singular_at(
    form: sp.Expr, inputs: dict[sp.Symbol, sp.Expr], where: list[sp.Expr]
) -> list[sp.Expr]:
    """The points of `where` at which the printed form is not finite (float64)."""
    points = [{z: float(p)} for p in where if p.is_finite]
    if not points:
        return []
    got = stability.evaluate(form, inputs, points, np.float64)
    return [
        sp.Rational(repr(p[z]))
        for p, v in zip(points, got, strict=True)
        if not np.isfinite(v)
    ]


def removable(form: sp.Expr, exact: sp.Expr, where: list[sp.Expr]) -> sp.Expr:
    """form with its limit at each point of `where` where it is 0/0 but continuous.

    Inputs hit z = 0 exactly (a zero input and a zero bias): sin(z)/z, or a derivative
    (z·cos z − sin z)/z², must give their limits there, not NaN. The limit is taken
    numerically from both sides at fixed precision; where the two sides disagree (a
    real singularity or a jump) the form is kept as it is. The form is then evaluated
    at a safe point instead of p, so NumPy never divides by zero there.
    """
    for p in _singular_at(form, {}, where):
        value = stability.evaluator(exact, [z], LIMIT_DIGITS)
        sides = [value([float(p + s * h)]) for h in LIMIT_STEPS for s in (-1, 1)]
        if any(v is None or v.imag != 0 for v in sides):
            continue
        reals = [v.real for v in sides]
        scale = max(1.0, max(abs(v) for v in reals))
        if max(reals) - min(reals) > 1e-12 * scale:
            continue
        limit = reals[-1] if abs(reals[-1]) > 1e-20 * scale else 0.0  # 0, not h/3
        safe = next(
            (
                c
                for c in sorted(CHECK_POINTS, key=lambda c: (abs(c - float(p)), c))
                if c != p and not _singular_at(form, {}, [sp.Rational(repr(c))])
            ),
            None,
        )
        if safe is None:
            continue
        guarded = form.xreplace({z: avoid(z, p, sp.Rational(repr(safe)))})
        at_p = sp.Rational(repr(limit)) if limit else sp.S.Zero  # prints as repr(limit)
        form = sp.Piecewise((at_p, sp.Eq(z, p)), (guarded, True))
    return form


def _missed_note(what: str, missed: list[str]) -> str:
    shown = ", ".join(missed[:3]) + (", ..." if len(missed) > 3 else "")
    return f"{what}: no overflow-free form found (not finite or inexact at {shown})"


def logistic_forms(e: sp.Expr) -> list[sp.Expr]:
    """e with e^{z} and e^{-z} written through s = σ(z) (e^{-z} = (1 - s)/s), in its
    rewritten forms: σ never overflows, and one of the forms may cancel what would."""
    e = e.rewrite(sp.exp)
    if not e.has(sp.exp):
        return []
    s = sp.Dummy("s")
    out = e.subs(sp.exp(-z), (1 - s) / s).subs(sp.exp(z), s / (1 - s))
    if out.has(sp.exp):
        return []
    # in _rank's order (a total one, remembered for the choice that follows)
    return sorted((f.xreplace({s: sigmoid(z)}) for f in tidy_forms(out)), key=_rank)


def _derived_from(
    op: OpSpec, table: dict[str, activations.OpDef], definition: sp.Expr
) -> tuple[object, ...]:
    """What an activation's or a loss's rule is derived from, as plain data: the
    derivation cache's key (symgrad/cache.py)."""
    entry = None if op.custom else table[op.name]
    traits = None
    if entry is not None:
        traits = (
            entry.title,
            entry.output_range,
            entry.targets,
            entry.output,
            entry.task,
        )
    return (op.name, op.params, op.expr, sp.srepr(definition), traits)


def _activation_key(op: OpSpec) -> tuple[object, ...]:
    if op.name == activations.SOFTMAX and not op.custom:
        return (op.name,)
    return _derived_from(op, activations.ACTIVATIONS, activation_expr(op))


@cache.persistent(_activation_key)
def activation_rule(op: OpSpec) -> ActivationRule:
    """The derived rule for a (built-in or custom) activation; cached in memory and on
    disk (symgrad/cache.py)."""
    if op.name == activations.SOFTMAX and not op.custom:
        return ActivationRule(
            activations.SOFTMAX,
            "softmax",
            z,
            sp.S.Zero,
            sp.S.Zero,
            sp.S.Zero,
            True,
            z,
            True,
            unit_range=True,
        )
    rule = _activation_rule(
        op.name, _title(op, activations.ACTIVATIONS), activation_expr(op)
    )
    return dataclasses.replace(
        rule, custom=op.custom, unit_range=_in_unit_range(op, rule)
    )


@functools.lru_cache(maxsize=cache.IN_MEMORY)  # bounded as the rules it reads are
def mask_factor(act: ActivationRule) -> sp.Expr | None:
    """g(z) when f(z) = z·g(z) with g piecewise constant and f' = g (ReLU, leaky ReLU).

    Then the forward pass computes the mask g(Z) once, takes A = Z·g(Z), and the
    backward pass reuses it: δ ⊙ f'(Z) is δ ⊙ g(Z). (Z·g(Z) differs from max(Z, 0) only
    in the sign of zeros, and at Z = −inf.)
    """
    forward, df = numeric(act.forward), numeric(act.df)
    f = forward.rewrite(sp.Piecewise) if forward.has(sp.Max, sp.Min) else forward
    f = sp.piecewise_fold(f)
    if not isinstance(f, sp.Piecewise):
        return None
    pieces = []
    for value, cond in f.args:
        c = sp.cancel(value / z) if value != 0 else sp.S.Zero
        if c.free_symbols:
            return None
        pieces.append((c, cond))
    g = sp.Piecewise(*pieces)
    if not all(
        (g.subs(z, p) - df.subs({a: f.subs(z, p), z: p})).equals(0)
        for p in (-2.5, -1, sp.Rational(-1, 3), 0, sp.Rational(1, 7), 1, 3)
    ):
        return None
    return g


def factored(e: sp.Expr) -> sp.Expr:
    """e with each piecewise {c₀·u if ...; else c₁·u} whose values share one factor u
    (not a number; the c numbers or Coefficients) written u·{c₀ if ...; else c₁}: u
    times a piecewise constant, which the in-place step computes as a mask, scaled,
    and one product (leaky ReLU as the output activation; 2|z|, the derivative of
    z·|z|). The same numbers: c·u is one product either way."""
    if not e.has(sp.Piecewise):
        return e
    return e.replace(
        lambda n: isinstance(n, sp.Piecewise) and _common_factor(n) is not None,
        _common_factor,
    )


def _common_factor(e: sp.Piecewise) -> sp.Expr | None:
    """u·{c₀ if ...; else c₁} for {c₀·u if ...; else c₁·u}, else None."""
    coeffs, rests = [], []
    for value, _ in e.args:
        factors = sp.Mul.make_args(value)
        coeffs.append(sp.Mul(*(f for f in factors if not variables(f))))
        rests.append(sp.Mul(*(f for f in factors if variables(f))))
    if len(set(rests)) != 1 or not variables(rests[0]):
        return None
    pieces = [(c, cond) for c, (_, cond) in zip(coeffs, e.args, strict=True)]
    return sp.Mul(rests[0], sp.Piecewise(*pieces))


def _in_unit_range(op: OpSpec, rule: ActivationRule) -> bool:
    """The activation's outputs lie in [0, 1]: registered so, or, for a custom one,
    sampled so at the range points and at extreme inputs."""
    if not op.custom:
        low, high = activations.ACTIVATIONS[op.name].output_range
        return low is not None and high is not None and 0 <= low and high <= 1
    points = sorted(set(RANGE_POINTS) | set(stability.EXTREMES))
    values = stability.exact(rule.f, [{z: p} for p in points])
    return all(v is not None and 0 <= v <= 1 for v in values)


def _title(op: OpSpec, table: dict[str, activations.OpDef]) -> str:
    if op.custom:
        return f"{op.name} (custom)"
    base = table[op.name].title or op.name
    if op.params:
        base += " (" + ", ".join(f"{k}={v:g}" for k, v in op.params) + ")"
    return base


def activation_expr(op: OpSpec) -> sp.Expr:
    """f(z) of an activation, its numbers that are not simple kept as Coefficients."""
    return symbolize(_parsed(op, {"z": z}, activations.ACTIVATIONS))


def loss_expr(op: OpSpec) -> sp.Expr:
    """ℓ(a, y) of a loss, its numbers that are not simple kept as Coefficients."""
    return symbolize(_parsed(op, {"yhat": a, "y": y}, losses.LOSSES))


def _parsed(
    op: OpSpec, variables: dict[str, sp.Symbol], table: dict[str, activations.OpDef]
) -> sp.Expr:
    try:
        params = {k: parse.number(v) for k, v in op.params}
        if op.custom:
            return parse.parse(op.expr or "", variables, params)
    except ExpressionError as exc:
        raise SpecError([op.loc.problem(f"expression rejected: {exc}")]) from None
    return table[op.name].build(**params)


# ------------------------------------------------------------------ output delta


@dataclass(frozen=True)
class OutputRule:
    """The loss on the output activation and the derived output delta δ = ∂ℓ/∂z.

    Attributes:
        loss: ℓ(a, y) per output unit.
        dl_da: ∂ℓ/∂a.
        da_dz: the output activation's derivative (in a where possible).
        product: ∂ℓ/∂a · ∂a/∂z before simplification.
        delta: δ simplified, in a and y (and z where the activation needs it).
        collapsed: δ is a constant multiple of (a - y).
        jvp: softmax with a loss that does not collapse: δ = h - a ⊙ Σ_k h_k with h = `delta`.
        forward: ℓ rewritten for a stable forward pass, in z, a, y (and `ls`, the
            log-softmax, and `l1m`, log(1 − softmax)).
        log_terms: a softmax output with a loss g(log ŷ, log(1 − ŷ), y) that does not
            collapse: (∂g/∂ls, ∂g/∂l1m), from which the plan computes δ without forming
            ŷ/(1 − ŷ), which overflows where ŷ rounds to 1.
    """

    loss_name: str
    loss_title: str
    loss: sp.Expr
    dl_da: sp.Expr
    da_dz: sp.Expr
    product: sp.Expr
    delta: sp.Expr
    collapsed: bool
    jvp: bool
    forward: sp.Expr
    notes: tuple[str, ...] = ()
    log_terms: tuple[sp.Expr, sp.Expr] | None = None


LS = sp.Symbol("ls", real=True)  # log-softmax of the output, elementwise
L1M = sp.Symbol("l1m", real=True)  # log(1 − softmax) of the output, elementwise


def _collapse_factor(delta: sp.Expr) -> sp.Expr | None:
    """The constant q with delta = q·(a - y), or None when delta is not of that form."""
    if delta.has(sp.Piecewise) or not affordable(delta):
        return None
    try:
        q = sp.cancel(sp.together(delta / (a - y)))
    except (sp.PolynomialError, TypeError, ValueError):
        return None
    return q if q != 0 and not (variables(q) & {a, y, z}) else None


def _stable_loss(loss: sp.Expr, act: ActivationRule) -> sp.Expr:
    """Rewrite each log(u(a)) through a = f(z) when that gives an overflow-free form."""

    def rewrite(node: sp.Expr) -> sp.Expr:
        inner = node.args[0]
        if act.vector:
            return LS if inner == a else node
        cand = stabilize(sp.log(inner.subs(a, act.f)))
        risky = cand.has(sp.exp) or any(variables(n) for n in cand.atoms(sp.log))
        return node if risky else cand

    if not act.vector:
        loss = stabilize(loss)  # e.g. log cosh r, overflow-free in r = ŷ - y
    return loss.replace(lambda n: isinstance(n, sp.log) and n.args[0].has(a), rewrite)


def _loss_forms(loss: sp.Expr, act: ActivationRule) -> list[sp.Expr]:
    """The loss as written, stabilized, then with its logs split (log(y/ŷ) = log y −
    log ŷ, so that log ŷ of a sigmoid becomes −softplus(−z)) and each target-only
    y·log y taken as 0 at y = 0 (its limit; NumPy's 0·log 0 is NaN)."""
    forms = [_stable_loss(loss, act)]
    split = sp.expand_log(loss, force=True)
    if split != loss:
        split = _xlogy(split)
        if affordable(split):
            split = sp.expand(split)
        forms.append(_stable_loss(split, act))
    return forms


def _xlogy(e: sp.Expr) -> sp.Expr:
    """u·log(u) -> u·log(avoid(u, 0, 1)) for u free of the prediction: 0 at u = 0."""

    def swap(term: sp.Expr) -> sp.Expr:
        # log(u) as a factor of the product or a term of one of its sums: u·(log u − …)
        logs = {
            g
            for f in term.args
            for g in (f.args if f.is_Add else (f,))
            for g in [_unsigned(g)]
            if isinstance(g, sp.log)
        }
        for lg in logs:
            u = lg.args[0]
            if u.has(a, z) or not any(_equal(f, u) for f in term.args):
                continue
            term = term.xreplace({lg: sp.log(avoid(u, 0, 1))})
        return term

    return e.replace(lambda n: n.is_Mul and n.has(sp.log), swap)


TARGETS = (0.0, 0.25, 1.0)  # targets y at which output deltas and losses are checked


def _output_key(loss_op: OpSpec, act_op: OpSpec) -> tuple[object, ...]:
    loss = _derived_from(loss_op, losses.LOSSES, loss_expr(loss_op))
    return (loss, _activation_key(act_op))


@cache.persistent(_output_key)
def output_rule(loss_op: OpSpec, act_op: OpSpec) -> OutputRule:
    """Derive δ = ∂ℓ/∂z for a loss on an output activation; cached per pair, in memory
    and on disk (symgrad/cache.py)."""
    loss = loss_expr(loss_op)
    title = _title(loss_op, losses.LOSSES)
    act = activation_rule(act_op)
    dl_da = seam_derivative(loss, a)
    simplex = not loss_op.custom and losses.LOSSES[loss_op.name].targets == "simplex"
    notes: list[str] = []
    points = [{z: v, y: t} for v in stability.EXTREMES for t in TARGETS]
    log_terms = None
    if act.vector:
        delta, product, jvp = _softmax_delta(loss, simplex)
        da_dz = sp.S.Zero
        through_logs = _softmax_logs(loss) if jvp else None
        if through_logs is not None:
            log_terms = (
                tidy(sp.diff(through_logs, LS)),
                tidy(sp.diff(through_logs, L1M)),
            )
        if not loss_op.custom and losses.LOSSES[loss_op.name].output == "unit_interval":
            notes.append(
                f"{loss_op.name} on a softmax output scores each class as its own"
                " yes/no, though the outputs sum to 1: for one class per example use"
                " categorical_crossentropy, for independent labels a sigmoid output"
            )
    else:
        da_dz = act.df
        product = sp.Mul(dl_da, da_dz, evaluate=False)
        jvp = False
        # the same δ from the loss as written and from its stable form (softplus ...)
        stable_dl = seam_derivative(stabilize(loss), a)
        deltas = {tidy(sp.together(d * da_dz)) for d in (dl_da, stable_dl)}
        delta = min(deltas, key=_rank)
    q = None if jvp else _collapse_factor(delta)
    collapsed = q is not None
    delta_ref = None if act.vector else exact_delta(dl_da, act)
    forms = _loss_forms(loss, act)
    if collapsed:
        delta = a - y if q == 1 else sp.Mul(q, a - y, evaluate=False)
    elif not act.vector:
        # written through z = f⁻¹(a) where that is finite and (1 - a) or log(a) is not
        in_z = {stabilize(d.xreplace({a: act.forward})) for d in deltas}
        # and the derivative of each stable form of the loss (log Φ(z) as log erfc
        # gives e^{-x²}/erfc(x), finite where φ/Φ's quotient is 0/0)
        through = {
            tidy(sp.diff(form.xreplace({a: act.forward}), z))
            for form in forms
            if form.has(log_erfc)
        }
        delta_ref = _equal_reference(delta_ref, through)
        delta, missed = _pick_stable(
            [*deltas, *in_z, *through], delta_ref, {a: act.forward}
        )
        if missed:
            notes.append(_missed_note(f"output delta of {loss_op.name}", missed))
    forward = forms[0]
    if log_terms is not None:
        forward = _softmax_logs(loss)
    if not act.vector:
        reference = _equal_reference(
            loss.xreplace({a: act.forward}),
            {f.xreplace({a: act.forward}) for f in forms if f.has(log_erfc, log_erf)},
        )
        first: list[str] = []
        for form in forms:
            missed = stability.failures(form, reference, points, {a: act.forward})
            if not missed:
                forward = form
                break
            first = first or missed
        else:
            notes.append(_missed_note(f"loss {loss_op.name}", first))
        if not loss_op.custom and losses.LOSSES[loss_op.name].output == "unit_interval":
            exact_to = _exact_range(
                [
                    (forward, reference),
                    (delta, delta_ref),
                ],
                act,
            )
            if exact_to is not None:
                notes.append(
                    f"{loss_op.name} on {act.name!r}: no stable form found for the"
                    " loss and its gradient where ŷ rounds to 0 or 1; the module is"
                    f" exact for |z| <= {exact_to[0]:g} in float64 (<= {exact_to[1]:g}"
                    " in float32), loses digits and then gives inf or NaN beyond,"
                    " though the loss is finite for every z"
                )
    return OutputRule(
        loss_op.name,
        title,
        loss,
        dl_da,
        da_dz,
        product,
        delta,
        collapsed,
        jvp,
        forward,
        tuple(notes),
        log_terms,
    )


def exact_delta(dl_da: sp.Expr, act: ActivationRule) -> sp.Expr:
    """∂ℓ/∂z as written, in z: the reference of a delta's checks."""
    return (dl_da * act.dz).xreplace({a: act.forward})


def _equal_reference(plain: sp.Expr, stable: set[sp.Expr]) -> sp.Expr:
    """The reference a form is checked against at extreme z: `plain` in 50 digits
    cannot resolve 1 − Φ(30) (it is 0 there, the check vacuous), so the cheapest of
    the `stable` forms (free of `a`; e.g. in log erfc, which mpmath evaluates
    exactly for every z) that equals `plain` wherever `plain` is exact; else `plain`."""
    points = _defined_at(plain, [{z: v, y: t} for v in CHECK_POINTS for t in TARGETS])
    for form in sorted(stable, key=_rank):
        if not form.has(a) and points and same_values(form, plain, points):
            return form
    return plain


RANGE_SCAN = tuple(float(v) for v in range(1, 41)) + (50.0, 100.0, 1000.0)


def _exact_range(
    forms: list[tuple[sp.Expr, sp.Expr]], act: ActivationRule
) -> tuple[float, float] | None:
    """For a loss that is finite for every z (an output strictly inside (0, 1)): the
    largest |z| up to which each printed form (the loss, the delta) is finite and
    matches its exact reference at every smaller |z|, in float64 and in float32; None
    when they are up to |z| = 1000."""
    points = [{z: s * v, y: t} for v in RANGE_SCAN for s in (-1, 1) for t in TARGETS]
    out = []
    for dtype in stability.dtypes():
        ok = np.ones(len(points), dtype=bool)
        for form, reference in forms:
            got = stability.evaluate(form, {a: act.forward}, points, dtype)
            want = np.array(
                [np.nan if w is None else w for w in stability.exact(reference, points)]
            )
            with np.errstate(all="ignore"):
                tol = stability.TOL[np.dtype(dtype).name]
                close = np.abs(got - want) <= tol * np.maximum(1.0, np.abs(want))
            ok &= np.isfinite(got) & (close | np.isnan(want))
        bad = [abs(p[z]) for p, good in zip(points, ok, strict=True) if not good]
        first = min(bad, default=None)
        out.append(
            max((v for v in RANGE_SCAN if first is None or v < first), default=0)
        )
    return None if out[0] == RANGE_SCAN[-1] else (out[0], out[1])


def _softmax_logs(loss: sp.Expr) -> sp.Expr | None:
    """The loss on a softmax output as g(ls, l1m, y), with log ŷ as ls and log(1 − ŷ)
    as l1m (both finite where ŷ rounds to 0 or 1), when ŷ occurs only there; else None.
    """

    def swap(node: sp.Expr) -> sp.Expr:
        arg = node.args[0]
        if arg == a:
            return LS
        if _equal(arg, 1 - a):
            return L1M
        return node

    split = _xlogy(sp.expand_log(loss, force=True))
    for form in (loss, split):
        g = form.replace(lambda n: isinstance(n, sp.log), swap)
        if not g.has(a) and g.has(L1M):
            return sp.expand(g) if affordable(g) else g
    return None


SOFTMAX_K = 3  # classes in the concrete softmax derivation


def _softmax_delta(loss: sp.Expr, simplex: bool) -> tuple[sp.Expr, sp.Expr, bool]:
    """δ_1 = ∂/∂z_1 Σ_k ℓ(softmax(z)_k, y_k) for K = 3, rewritten in a and simplified.

    With targets on the simplex (Σ y = 1, categorical cross-entropy) the constraint is
    substituted; if δ_1 then depends on a_1 and y_1 only, it is elementwise (ŷ − y for
    cross-entropy). Otherwise the Jacobian-vector form δ = h − a ⊙ Σ_k h_k is used, with
    h = a · ∂ℓ/∂a derived elementwise.
    """
    K = SOFTMAX_K
    zs = sp.symbols(f"z1:{K + 1}", real=True)
    as_ = sp.symbols(f"a1:{K + 1}", positive=True)
    ys = sp.symbols(f"y1:{K + 1}", real=True)
    s = sp.Symbol("s", positive=True)
    total = sum(sp.exp(zk) for zk in zs)
    L = sum(
        loss.subs({a: sp.exp(zk) / total, y: yk}) for zk, yk in zip(zs, ys, strict=True)
    )
    d1 = sp.diff(L, zs[0])
    d1 = d1.subs({sp.exp(zk): ak * s for zk, ak in zip(zs, as_, strict=True)})
    d1 = d1.subs(as_[-1], 1 - sum(as_[:-1]))  # Σ a = 1
    if simplex:
        d1 = d1.subs(ys[-1], 1 - sum(ys[:-1]))
    try:
        d1 = sp.factor(sp.cancel(sp.expand_log(d1, force=True)))
    except (sp.PolynomialError, NotImplementedError):
        d1 = sp.simplify(d1)
    if d1.free_symbols <= {as_[0], ys[0]}:
        delta = tidy(d1.subs({as_[0]: a, ys[0]: y}))
        return delta, delta, False
    h = tidy(sp.together(a * sp.diff(loss, a)))
    return h, h, True


# ------------------------------------------------------------------ network


@dataclass(frozen=True)
class LayerRule(Rule):
    """Dense layer l (1-based) of the network: sizes and its activation rule; a
    residual layer adds its input to its output."""

    index: int
    fan_in: int
    units: int
    activation: ActivationRule
    residual: bool = False

    kind = "dense"

    @property
    def trainable(self) -> int:
        """How many numbers training adjusts: W and b."""
        return (self.fan_in + 1) * self.units

    @property
    def plain_dense(self) -> bool:
        return not self.residual

    @property
    def label(self) -> str:
        return self.activation.title + (", residual" if self.residual else "")

    @property
    def activations(self) -> tuple[ActivationRule, ...]:
        return (self.activation,)

    @property
    def title(self) -> str:
        return f"{self.units} ({self.activation.title}{', residual' if self.residual else ''})"


@dataclass(frozen=True)
class NormLayerRule(Rule):
    """A normalization layer: its definition and the backward rule SymPy derived
    (reductions.norm_rule), with the spec's values of its parameters."""

    index: int
    units: int
    definition: NormDef
    rule: NormRule
    values: tuple[tuple[str, float], ...]  # eps, momentum, custom parameters
    image: tuple[int, ...] | None = None  # over an image's (C, H, W): its shape

    kind = "norm"

    @property
    def fan_in(self) -> int:
        return self.units

    @property
    def trainable(self) -> int:
        """The gain and shift, per feature."""
        return (int(self.rule.gain) + int(self.rule.shift)) * self.units

    @property
    def title(self) -> str:
        return self.definition.title or self.definition.name

    @property
    def notes(self) -> tuple[str, ...]:
        return self.rule.notes


@dataclass(frozen=True)
class DropoutRule(Rule):
    """Inverted dropout with the given rate (training only)."""

    index: int
    units: int
    rate: float

    kind = "dropout"
    trainable = 0

    @property
    def fan_in(self) -> int:
        return self.units

    @property
    def title(self) -> str:
        return f"dropout {self.rate:g}"


Layer = Rule  # a layer kind's rule (layer_registry): LayerRule, NormLayerRule, ...


@dataclass(frozen=True)
class Derivation:
    """Everything derived for a spec: what the printers, templates and report need.

    `facts` holds what only the report shows (softmax's Jacobian, saturation limits, ...),
    derived here too, on first use: see "facts for the report" at the end of this module.
    A module that never prints them does not wait for their limits.
    """

    spec: Spec
    layers: tuple[Layer, ...]  # by position; the last is the dense output layer
    output: OutputRule

    @functools.cached_property
    def facts(self) -> ReportFacts:
        """What only the report shows, derived when the report first asks."""
        return report_facts(self.layers, self.output)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def task(self) -> str:
        """What the network predicts (one of losses.TASKS), decided here once for every
        printer, the runtimes, `symgrad check` and the report:

        - the spec's `task:` where it says one (validated against the output);
        - else "classes" for a softmax output, whatever the loss: predict gives class
          indices, fit reports accuracy, targets are one-hot rows (or integer labels);
        - else the task a registered loss declares (binary cross-entropy: "binary",
          0/1 at the threshold 0.5; mse, mae, huber: "values", Ŷ itself);
        - else, for a custom loss, a guess: "binary" on an output in [0, 1] (a custom
          loss on probabilities is taken to be a likelihood), "values" otherwise.
        """
        if self.spec.task is not None:
            return self.spec.task
        out = self.out.activation
        if out.vector:
            return "classes"
        loss = self.spec.loss
        if loss.custom:
            return "binary" if out.unit_range else "values"
        return losses.LOSSES[loss.name].task

    @property
    def targets(self) -> str:
        """What the targets Y must hold (one of losses.TARGETS), for the generated
        modules' checks, `symgrad check`'s random targets and the report: what a
        registered loss declares; any real numbers for a custom loss."""
        loss = self.spec.loss
        return "real" if loss.custom else losses.LOSSES[loss.name].targets

    @property
    def notes(self) -> tuple[str, ...]:
        """Where no overflow-free form was found: what the generate summary warns of."""
        seen: dict[str, None] = {}
        for r in self.layers:
            for act in r.activations:
                seen.update(dict.fromkeys(act.notes))
            seen.update(dict.fromkeys(r.notes))
        return (*seen, *self.output.notes)

    @property
    def dense(self) -> tuple[LayerRule, ...]:
        """The dense layers, in order (the last is the output layer)."""
        return tuple(r for r in self.layers if layer_registry.of(r).output)

    @property
    def out(self) -> LayerRule:
        """The output layer (of a kind that may end the network: the spec checked)."""
        return self.layers[-1]  # type: ignore[return-value]

    def layer(self, l: int) -> Layer:
        """Layer l, counted from 1 as W1 and W^{[1]} are: sizes and the derived rule."""
        if not 1 <= l <= self.depth:
            raise IndexError(f"no layer {l}: the layers are 1 to {self.depth}")
        return self.layers[l - 1]

    def __repr__(self) -> str:
        """One line: the network and the output delta, e.g. `<Derivation xor: 2 → 8
        (tanh) → 1 (sigmoid); binary cross-entropy, δ = ŷ − y (collapsed)>`."""
        out = self.output
        network = " → ".join([str(self.spec.input)] + [r.title for r in self.layers])
        loss = self.spec.loss.name if self.spec.loss.custom else out.loss_title
        delta = text(out.delta, {a: "ŷ"}).replace(" - ", " − ")
        if out.jvp:
            delta = f"h = {delta}, δ = h − ŷ ⊙ Σₖ hₖ"
        else:
            delta = f"δ = {delta}" + (" (collapsed)" if out.collapsed else "")
        return f"<Derivation {self.spec.name}: {network}; {loss}, {delta}>"


def derive(spec: SpecSource) -> Derivation:
    """Derive the gradient rules of a spec: a Spec, a path, YAML text or a dict.

    Each layer is derived by its kind (layer_registry), then the output rule of the
    loss on the output activation (the facts only the report shows are derived when
    it asks: `Derivation.facts`).
    """
    spec = as_spec(spec)
    shapes = spec.shapes
    layers = tuple(
        layer_registry.of(layer).derive(layer, i + 1, shapes[i])
        for i, layer in enumerate(spec.layers)
    )
    out_act = spec.output.activation
    _check_output_range(spec, layers[-1].activation)  # type: ignore[attr-defined]
    output = guarded(output_rule, spec.loss, out_act)
    return Derivation(spec, layers, output)  # type: ignore[arg-type]


def guarded(rule: object, op: OpSpec, *more: OpSpec) -> object:
    """rule(op, ...), with SymPy's own limits (recursion, memory) as a spec error on op."""
    try:
        return rule(op, *more)  # type: ignore[operator]
    except (RecursionError, MemoryError):
        raise SpecError(
            [
                op.loc.problem(
                    f"{op.name!r} is too large to derive (SymPy ran out of room)",
                    "write a smaller expression: fewer nested functions and powers",
                )
            ]
        ) from None


RANGE_POINTS = tuple(range(-10, 11)) + (-0.5, 0.5)


def _check_output_range(spec: Spec, rule: ActivationRule) -> None:
    """A custom output activation where the loss or the spec's task needs outputs in
    (0, 1): sample it (spec.py checks the built-in activations by their range)."""
    loss, out = spec.loss, spec.output.activation
    if not out.custom:
        return
    if not loss.custom and losses.LOSSES[loss.name].output == "unit_interval":
        # in exact arithmetic: a probit's Φ(9) = 1 − 1.1e-19 lies in (0, 1), though
        # it rounds to 1 as a float
        for p, inside in zip(RANGE_POINTS, _in_open_unit(rule.f), strict=True):
            if not inside:
                v = stability.exact(rule.f, [{z: p}])[0]
                shown = "no real value" if v is None else f"{v:.6g}"
                raise SpecError(
                    [
                        loss.loc.problem(
                            f"{loss.name} needs predictions in (0, 1), but the output"
                            f" activation {out.name!r} gives {shown} at z = {p}",
                            "use a sigmoid output layer or a loss for real-valued"
                            " outputs",
                        )
                    ]
                )
    if spec.task == "binary" and not rule.unit_range:
        raise SpecError(
            [
                spec.task_loc.problem(
                    "task 'binary' needs outputs in [0, 1], but the output activation"
                    f" {out.name!r} gives values outside it",
                    "use a sigmoid output layer, or task: values",
                )
            ]
        )


def _in_open_unit(f: sp.Expr) -> list[bool]:
    """f lies strictly inside (0, 1) at each range point, in 50-digit arithmetic (not
    rounded to a float first)."""
    fn = sp.lambdify([z], numeric(f), modules=[stability.MP_FUNCTIONS, "mpmath"])
    out = []
    with mpmath.workdps(stability.DIGITS):
        for p in RANGE_POINTS:
            try:
                v = fn(mpmath.mpf(p))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                out.append(False)
                continue
            out.append(mpmath.im(v) == 0 and 0 < mpmath.re(v) < 1)
    return out


# ---- facts for the report
#
# What `symgrad latex` shows beyond the rules above, derived here so that the report only
# lays out: it prints these expressions and calls nothing in SymPy that derives. Bounded as
# everything above is: tidy's fixed rewrites, and limits taken of the built-in sigmoid'
# and tanh' only (fixed expressions, never a spec's).

# built-in activations whose derivative vanishes far out
SATURATING = ("sigmoid", "tanh")


@dataclass(frozen=True)
class SoftmaxJacobian:
    """∂ŷ_j/∂z_j and ∂ŷ_k/∂z_j (k ≠ j) of ŷ = softmax(z): from diff, and in the outputs.

    In the symbols below: the pre-activations z_j, z_k, the normalizer S = Σ_i e^{z_i}
    and the outputs ŷ_j, ŷ_k; the report names them for the layer it shows.
    """

    z_j: sp.Symbol
    z_k: sp.Symbol
    total: sp.Symbol
    yhat_j: sp.Symbol
    yhat_k: sp.Symbol
    diagonal_raw: sp.Expr  # ∂ŷ_j/∂z_j as diff gives it, with S for the sum
    diagonal: sp.Expr  # the same, in ŷ_j
    off_diagonal_raw: sp.Expr  # ∂ŷ_k/∂z_j
    off_diagonal: sp.Expr  # the same, in ŷ_j and ŷ_k


@functools.cache
def softmax_jacobian() -> SoftmaxJacobian:
    """Differentiate e^{z_j}/S and e^{z_k}/S by z_j, then write the results in ŷ."""
    zj, zk = sp.symbols("z_j z_k", real=True)
    rest = sp.Symbol("R", positive=True)  # the sum of the other exponentials
    total = sp.exp(zj) + sp.exp(zk) + rest
    s = sp.Symbol("S", positive=True)
    yj, yk = sp.symbols("yhat_j yhat_k", positive=True)
    forms = []
    for num in (sp.exp(zj), sp.exp(zk)):
        raw = sp.diff(num / total, zj).xreplace({total: s})
        in_y = tidy(raw.subs({sp.exp(zj): yj * s, sp.exp(zk): yk * s}))
        if in_y.free_symbols - {yj, yk}:
            raise DerivationError(f"symgrad bug: softmax's Jacobian kept {in_y}")
        forms += [raw, in_y]
    return SoftmaxJacobian(zj, zk, s, yj, yk, *forms)


@dataclass(frozen=True)
class SoftmaxOutput:
    """A softmax output's delta as a sum over the outputs, δ_j = h_j − ŷ_j Σ_k h_k.

    Attributes:
        jacobian: softmax's Jacobian.
        h: ŷ · ∂ℓ/∂ŷ elementwise, in a and y (for a loss that does not collapse, the
            `delta` of the OutputRule is this h too).
        summand: what the report sums over k: h, or −h when h leads with a minus (then
            δ_j = h_j + ŷ_j Σ_k (−h_k)).
        negated: summand is −h.
    """

    jacobian: SoftmaxJacobian
    h: sp.Expr
    summand: sp.Expr
    negated: bool


@dataclass(frozen=True)
class Saturation:
    """A saturating activation's derivative at z = 0 and in the limits z → ±∞."""

    rule: ActivationRule
    at_zero: sp.Expr
    at_plus_infinity: sp.Expr
    at_minus_infinity: sp.Expr


@functools.cache
def saturation(rule: ActivationRule) -> Saturation:
    """f'(0) and lim f'(z) for z → ±∞ of a built-in saturating activation."""
    if rule.custom or rule.name not in SATURATING:
        raise ValueError(f"saturation is derived for {', '.join(SATURATING)} only")
    return Saturation(
        rule,
        tidy(rule.raw.subs(z, 0)),
        sp.limit(rule.raw, z, sp.oo),
        sp.limit(rule.raw, z, -sp.oo),
    )


@dataclass(frozen=True)
class ReportFacts:
    """What only the report shows, derived for one network.

    Attributes:
        softmax: the output's Jacobian and h, when the output activation is softmax.
        saturation: each saturating activation of the network (sigmoid, tanh), in the
            order of first use.
        relu: ReLU's rule, the report's comparison, when `saturation` is not empty.
    """

    softmax: SoftmaxOutput | None
    saturation: tuple[Saturation, ...]
    relu: ActivationRule | None


def report_facts(layers: tuple[Layer, ...], output: OutputRule) -> ReportFacts:
    """The report's facts for a network's layers and output rule."""
    acts = [act for r in layers for act in r.activations]
    softmax = None
    if layers[-1].activation.vector:  # type: ignore[attr-defined]
        h = tidy(sp.together(a * output.dl_da))
        negated = h.could_extract_minus_sign()
        softmax = SoftmaxOutput(softmax_jacobian(), h, -h if negated else h, negated)
    used: dict[str, ActivationRule] = {}  # by name, in the order of first use
    for act in acts:
        if act.name in SATURATING and not act.custom:
            used.setdefault(act.name, act)
    found = tuple(saturation(rule) for rule in used.values())
    relu = activation_rule(OpSpec("relu")) if found else None
    return ReportFacts(softmax, found, relu)
