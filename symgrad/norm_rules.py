"""Derivation of norms: backward rules of functions with group reductions, by SymPy.

A norm is y = F(x) on a group of n values (norms.py), written with reductions
r_k = reduce_k(G_k(x, r_<k)), reduce ∈ {mean, sum, max}. Its vector-Jacobian product
dx = J(x)ᵀ h (h the upstream gradient of x̂ = F(x); h = γ ⊙ g with a gain) is found as:

1. Each reduction is replaced by a symbol (μ, v, ...), innermost first, so F and every
   G_k are elementwise expressions in x and those symbols: SymPy differentiates them
   (`sp.diff`), nothing else is differentiated.
2. Reverse accumulation over the reductions (chain rule): the adjoint of r_k is
   r̄_k = sum(h ⊙ ∂F/∂r_k) + Σ_{j>k} r̄_j · W_j(∂G_j/∂r_k), and
   dx = h ⊙ ∂F/∂x + Σ_k r̄_k · w_k ⊙ ∂G_k/∂x, with for mean w = 1/n, W(e) = mean(e);
   for sum w = 1, W(e) = sum(e); for max w = I_k / sum(I_k), W(e) = sum(I_k ⊙ e) / sum(I_k),
   I_k = [G_k = r_k]: the gradient is split evenly among tied maxima, as PyTorch's
   `amax` does (not `max(dim)`, which sends it to one index). The indicator compares
   the forward's own G_k with r_k, so ties found by the forward are found again.
3. Simplification, bounded by the expression (no `simplify`, no clock): when F can be
   inverted for x by peeling one layer at a time (x = μ + σ x̂ for layernorm), x is
   replaced by that; every reduction is made linear — constant factors out, sums split,
   reductions of constants computed — and the definitions give identities among the
   remaining reductions (μ = mean(μ + σ x̂) gives mean(x̂) = 0); the group-constant
   parts of F are named (σ = √(v + ε)) and contracted back; the result is rewritten by
   a fixed list of polynomial normal forms with the reductions as symbols, in sums and
   in means. Layernorm comes out as (h − mean(h) − x̂ ⊙ mean(h ⊙ x̂)) / σ.
4. Every candidate form is evaluated against the plain chain rule of the same norm for
   a concrete group of 4 values (SymPy differentiates that, reductions written out),
   at random points; the cheapest form that agrees there and stays finite and accurate
   at extreme inputs (constant groups, |x| ~ 1e3, float32) is kept.

The result (NormRule) is data a Plan prints: forward and backward statements over the
symbols x, x̂, g, h, the reductions and the named scales, with GroupMean/GroupSum/GroupMax
for the group and ColSum for the batch sums of the parameter gradients, and the steps a
textbook shows. Rules are cached per definition and parameter values, in memory and on
disk (symgrad/cache.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import sympy as sp

from . import cache
from .errors import DerivationError
from .norms import NormDef
from .stability import mp_lambdify, numpy_sigmoid
from .sym import parse, special
from .sym.arrays import ColSum, GroupMax, GroupMean, GroupReduction, GroupSum
from .sym.cost import cost as shared_cost
from .sym.functions import Coefficient, decimal_text, invert, numeric, symbolize
from .sym.lazy import numpy as np  # imported on first use: sym/lazy.py
from .sym.text import Text
from .sym.text import written as unevaluated

X = parse.NORM_X  # one value of the group
XHAT = sp.Symbol("xhat", real=True)  # the normalized value F(x)
G = sp.Symbol("g", real=True)  # upstream gradient of the layer output y
H = sp.Symbol("h", real=True)  # upstream gradient of x̂: γ ⊙ g with a gain, else g
N = sp.Symbol("n", integer=True, positive=True)  # values in the group
GAMMA = sp.Symbol("gamma", real=True)
BETA = sp.Symbol("beta", real=True)
Y = sp.Symbol("y", real=True)
DX = sp.Symbol("dx", real=True)
DGAMMA = sp.Symbol("dgamma", real=True)
DBETA = sp.Symbol("dbeta", real=True)
MOMENTUM = "momentum"

ELEMENTWISE = frozenset({X, XHAT, G, H})
# names of the rule's own values; a norm parameter may not take one (expr.parse_norm)
RESERVED = set(parse.RESERVED_NORM_NAMES)
NODES = {"mean": GroupMean, "sum": GroupSum, "max": GroupMax}

# bounds of the algebra: past these an expression is kept as it is
MAX_OPS = 200  # count_ops for factor / cancel / expand
MAX_TERMS = 200  # terms of an argument multiplied out before linearizing
MAX_DEGREE = 24
MAX_GENERATORS = 12  # symbols and function calls, above which factor is not tried
ROUNDS = 4  # linearize + identities, repeated while something changes

# the numeric checks: a concrete group, random points, extreme inputs
CHECK_SIZE = parse.WRITTEN_GROUP  # values in the concrete group of the checks
CHECK_ROWS = 6
CHECK_RTOL = 1e-9
EXTREME_TOL = {"float64": 1e-7, "float32": 2e-2}  # by NumPy dtype name
DIGITS = 50


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Reduction:
    """r = reduce(arg) over the group; arg is in x and earlier reductions' symbols."""

    symbol: sp.Symbol
    op: str  # "mean" | "sum" | "max"
    arg: sp.Expr

    @property
    def node(self) -> sp.Expr:
        return NODES[self.op](self.arg)


@dataclass(frozen=True)
class Statement:
    """target = expr: one line of the forward or backward pass.

    Attributes:
        role: "reduction", "scale", "normalized", "output" (forward); "upstream",
            "input", "gain", "shift" (backward: h, dx, dγ, dβ).
        equation: the statement as readable text (unicode), e.g. "σ = √(var + ε)".
    """

    target: sp.Symbol
    expr: sp.Expr
    role: str
    equation: str


@dataclass(frozen=True)
class Step:
    """One step of the derivation as a textbook shows it: lhs = rhs, with a label."""

    label: str
    lhs: sp.Expr
    rhs: sp.Expr

    def __str__(self) -> str:
        return f"{self.label}: {text(self.lhs)} = {text(self.rhs)}"


@dataclass(frozen=True)
class RunningUpdate:
    """A running statistic: buffer ← update in training; buffer replaces statistic in
    inference (see layers.RunningStat)."""

    buffer: sp.Symbol
    statistic: sp.Symbol
    update: sp.Expr  # in buffer, statistic, momentum, n
    init: str
    shown: sp.Expr | None = None  # update as written, (1 − momentum)·buffer + ...


@dataclass(frozen=True)
class NormRule:
    """A norm and its derived backward rule.

    Attributes:
        definition: F(x) as registered, with group reductions.
        params: values of the parameter symbols (eps, and momentum with running stats).
        reductions: the reductions, innermost first.
        scales: named group constants of F (σ = √(var + ε)): symbol -> definition.
        forward: the training forward pass, in order, ending in y (or x̂ without affine).
        backward: h (with a gain), dx, dγ, dβ; dγ and dβ sum over the batch (ColSum)
            whatever the group is.
        output: the symbol holding the layer's output (y, or x̂ without affine).
        saved: forward values the backward reads (x̂, σ, ...): the Plan keeps them.
        basis: "xhat" when dx is written in x̂ (x = X(x̂) substituted), else "x".
        steps: the derivation as a textbook shows it.
        running: running statistics (batchnorm), with their update.
        inference: the forward pass with running statistics instead of batch ones.
        notes: where a chosen form was not finite or accurate at extreme inputs.
    """

    name: str
    title: str
    group: str
    definition: sp.Expr
    params: tuple[tuple[sp.Symbol, sp.Rational], ...]
    reductions: tuple[Reduction, ...]
    scales: tuple[tuple[sp.Symbol, sp.Expr], ...]
    forward: tuple[Statement, ...]
    backward: tuple[Statement, ...]
    output: sp.Symbol
    saved: tuple[sp.Symbol, ...]
    basis: str
    steps: tuple[Step, ...]
    running: tuple[RunningUpdate, ...] = ()
    inference: tuple[Statement, ...] = ()
    notes: tuple[str, ...] = ()
    gain: bool = True
    shift: bool = True

    @property
    def dx(self) -> sp.Expr:
        """dx in g, or in h when the norm has a gain (h = γ ⊙ g)."""
        return next(s.expr for s in self.backward if s.role == "input")

    @property
    def values(self) -> dict[sp.Symbol, sp.Rational]:
        return dict(self.params)

    def __str__(self) -> str:
        lines = [f"{self.title} over the {self.group}", "forward:"]
        lines += [f"  {s.equation}" for s in self.forward]
        lines.append("backward:")
        lines += [f"  {s.equation}" for s in self.backward]
        return "\n".join(lines)


# ------------------------------------------------------------------ entry point


def norm_rule(norm: NormDef, params: Mapping[str, float] | None = None) -> NormRule:
    """Derive the backward rule of a norm (built-in or custom); cached.

    Args:
        norm: the definition (layers.NORMS[...] or layers.custom(...)).
        params: parameter values overriding the definition's defaults (eps, momentum).

    Raises:
        DerivationError: the chain rule of the definition could not be formed, or
            no simplified form agrees with it (please report the norm).
    """
    values = norm.values(params)
    stats = {k: (params or {}).get(k, v) for k, v in norm.stat_params.items()}
    definition = symbolize(norm.expression(values))
    core = _derive(
        definition,
        tuple(sorted(values.items())),
        norm.names,
    )
    return _assemble(norm, core, values, stats)


# ------------------------------------------------------------------ the algebra


def split(
    definition: sp.Expr, names: Sequence[str] = ()
) -> tuple[sp.Expr, tuple[Reduction, ...]]:
    """F with each reduction replaced by a symbol, and the reductions, innermost first.

    Equal reductions share a symbol. A reduction's symbol is positive or nonnegative
    when its argument is (mean((x − μ)²) ≥ 0), so that √(v + ε) is known positive.
    """
    found: dict[tuple[str, sp.Expr], sp.Symbol] = {}
    order: list[Reduction] = []
    taken = {u.name for u in definition.free_symbols} | RESERVED

    def visit(e: sp.Expr) -> sp.Expr:
        if isinstance(e, GroupReduction):
            arg = visit(e.args[0])
            key = (e.op, arg)
            if key not in found:
                k = len(order)
                name = names[k] if k < len(names) else f"r{k + 1}"
                name = fresh(name, taken)
                found[key] = sp.Symbol(name, **_sign(arg))
                order.append(Reduction(found[key], e.op, arg))
            return found[key]
        if e.is_Atom:
            return e
        return e.func(*[visit(a) for a in e.args])

    return visit(definition), tuple(order)


def fresh(name: str, taken: set[str]) -> str:
    """name, or name_2, name_3, ... when a parameter or another value has it; taken."""
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out


def _sign(e: sp.Expr) -> dict[str, bool]:
    if e.is_positive:
        return {"positive": True}
    if e.is_nonnegative:
        return {"nonnegative": True}
    return {"real": True}


def constant(e: sp.Expr) -> bool:
    """e is the same for every value of the group: no x, x̂, g or h outside reductions."""
    return not (parse.elementwise_part(e).free_symbols & ELEMENTWISE)


def name_scales(
    f: sp.Expr, reductions: Sequence[Reduction]
) -> tuple[sp.Expr, tuple[tuple[sp.Symbol, sp.Expr], ...]]:
    """F with its group-constant parts named: (x − μ)/√(v + ε) -> (x − μ)/σ.

    In each sum and product that varies over the group, the factors (terms) that are
    constant and use a reduction are one part; a divisor is named by its reciprocal
    ("sigma"), anything else as it is ("c"). A single symbol is not renamed.
    """
    symbols = {r.symbol for r in reductions}
    parts: list[tuple[str, sp.Expr]] = []

    def visit(e: sp.Expr) -> sp.Expr:
        if e.is_Atom or constant(e):
            return e
        if e.is_Add or e.is_Mul:
            fixed = [a for a in e.args if constant(a) and a.free_symbols & symbols]
            rest = [visit(a) for a in e.args if a not in fixed]
            if fixed:
                part = e.func(*fixed)
                named = _named(part, e.is_Mul, parts)
                return e.func(named, *rest)
            return e.func(*rest)
        return e.func(*[visit(a) for a in e.args])

    g = visit(f)
    counts = {role: sum(1 for r, _ in parts if r == role) for role, _ in parts}
    seen: dict[str, int] = {}
    taken = {u.name for u in f.free_symbols} | RESERVED
    out = []
    for role, value in parts:
        seen[role] = seen.get(role, 0) + 1
        name = role if counts[role] == 1 else f"{role}{seen[role]}"
        out.append((sp.Symbol(fresh(name, taken), **_sign(value)), value))
    marks = {sp.Symbol(f"_part{i}"): s for i, (s, _) in enumerate(out)}
    return g.xreplace(marks), tuple(out)


def _named(part: sp.Expr, product: bool, parts: list[tuple[str, sp.Expr]]) -> sp.Expr:
    """A placeholder for a group-constant part of F (see name_scales)."""
    if part.is_Atom:
        return part
    if product:
        inverse = 1 / part
        if inverse.is_Atom:
            return part
        if sp.count_ops(inverse) < sp.count_ops(part):
            mark = sp.Symbol(f"_part{len(parts)}")
            parts.append(("sigma", inverse))
            return 1 / mark
    elif part.could_extract_minus_sign():
        if (-part).is_Atom:
            return part
        mark = sp.Symbol(f"_part{len(parts)}")
        parts.append(("c", -part))
        return -mark
    mark = sp.Symbol(f"_part{len(parts)}")
    parts.append(("c", part))
    return mark


def _to_piecewise(e: sp.Expr) -> sp.Expr:
    """Heaviside(u) -> 0 for u <= 0, else 1 (JAX's and PyTorch's choice at a kink);
    DiracDelta -> 0 (the derivative of a jump, e.g. of sign, almost everywhere)."""
    e = e.replace(lambda n: isinstance(n, sp.DiracDelta), lambda n: sp.S.Zero)
    return e.replace(
        lambda n: isinstance(n, sp.Heaviside),
        lambda n: sp.Piecewise((0, n.args[0] <= 0), (1, True)),
    )


def partial(e: sp.Expr, s: sp.Symbol) -> sp.Expr:
    d = _to_piecewise(sp.diff(e, s))
    if d.has(sp.Derivative, sp.Subs):
        raise DerivationError(
            f"no closed-form derivative of {text(e)} with respect to {s}"
        )
    return d


def indicator(r: Reduction) -> sp.Expr:
    """I = [G = r]: where the group's maximum is attained (1) or not (0)."""
    return sp.Piecewise((1, sp.Eq(r.arg, r.symbol)), (0, True))


def _weight(r: Reduction) -> sp.Expr:
    """∂r/∂G at one value: 1/n for mean, 1 for sum, I/sum(I) for max."""
    if r.op == "mean":
        return 1 / N
    if r.op == "sum":
        return sp.S.One
    ind = indicator(r)
    return ind / GroupSum(ind)


def _through(r: Reduction, d: sp.Expr) -> sp.Expr:
    """How r moves with a group constant c, given d = ∂G/∂c per value: W(d)."""
    if r.op == "mean":
        return GroupMean(d)
    if r.op == "sum":
        return GroupSum(d)
    ind = indicator(r)
    return GroupSum(ind * d) / GroupSum(ind)


def adjoint_symbol(r: Reduction) -> sp.Symbol:
    return sp.Symbol(f"{r.symbol.name}bar", real=True)


def chain_rule(
    f: sp.Expr, reductions: Sequence[Reduction]
) -> tuple[sp.Expr, dict[sp.Symbol, sp.Expr], list[Step]]:
    """dx = h ⊙ ∂F/∂x + Σ_k r̄_k w_k ⊙ ∂G_k/∂x, with the adjoints r̄_k, and the steps.

    F and the G_k are in x and the reduction symbols (scales written out); the adjoints
    are in h, x, the reduction symbols, group reductions and later adjoints' symbols.
    """
    steps = [Step("elementwise part", sp.Derivative(XHAT, X), partial(f, X))]
    adjoints: dict[sp.Symbol, sp.Expr] = {}
    terms = []
    for k in reversed(range(len(reductions))):
        r = reductions[k]
        d_f = partial(f, r.symbol)
        adj = GroupSum(H * d_f) if d_f != 0 else sp.S.Zero
        for later in reductions[k + 1 :]:
            d_g = partial(later.arg, r.symbol)
            if d_g != 0:
                adj += adjoint_symbol(later) * _through(later, d_g)
        bar = adjoint_symbol(r)
        adjoints[bar] = adj
        term = bar * _weight(r) * partial(r.arg, X)
        terms.append(term)
        name = r.symbol.name
        steps.append(Step(f"through {name}", sp.Derivative(XHAT, r.symbol), d_f))
        steps.append(Step(f"adjoint of {name}", bar, adj))
        steps.append(Step(f"term of {name}", bar * sp.Derivative(r.symbol, X), term))
    dx = H * partial(f, X) + sp.Add(*terms)
    steps.append(Step("assembled", DX, dx))
    return dx, adjoints, steps


def substitute_adjoints(dx: sp.Expr, adjoints: Mapping[sp.Symbol, sp.Expr]) -> sp.Expr:
    """dx with every adjoint symbol replaced by its expression (later ones first)."""
    for bar in adjoints:  # reverse order of the reductions: later adjoints first
        dx = dx.xreplace({bar: adjoints[bar]})
        adjoints = {b: a.xreplace({bar: adjoints[bar]}) for b, a in adjoints.items()}
    return dx


def _terms(e: sp.Expr) -> int:
    """An upper bound of the terms of e multiplied out."""
    cap = MAX_TERMS + 1
    if e.is_Add:
        return min(cap, sum(_terms(t) for t in e.args))
    if e.is_Mul:
        out = 1
        for f in e.args:
            out = min(cap, out * _terms(f))
        return out
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return min(cap, _terms(e.base) ** min(int(e.exp), 16))
    return 1


def affordable(e: sp.Expr) -> bool:
    """Small enough, and of low enough degree, for SymPy's polynomial algorithms."""
    return (
        sp.count_ops(e) <= MAX_OPS
        and parse.degree(e) <= MAX_DEGREE
        and _terms(e) <= MAX_TERMS
    )


def linearize(e: sp.Expr) -> sp.Expr:
    """Every group reduction in e made linear, as sums of elementwise monomials.

    sum(c·u + v) = c·sum(u) + sum(v) for a group constant c, sum(c) = n·c,
    mean(u) = sum(u)/n; max(u + c) = max(u) + c. What remains are GroupSum and
    GroupMax nodes of expressions that vary over the group, constant factors pulled out.
    """

    def rewrite(node: sp.Expr) -> sp.Expr:
        arg = node.args[0]
        if isinstance(node, GroupMax):
            fixed = [t for t in sp.Add.make_args(arg) if constant(t)]
            if not fixed:
                return node
            return GroupMax(arg - sp.Add(*fixed)) + sp.Add(*fixed)
        if _terms(arg) <= MAX_TERMS:
            arg = sp.expand(arg, power_exp=False)
        total = sp.S.Zero
        for term in sp.Add.make_args(arg):
            fixed = [f for f in sp.Mul.make_args(term) if constant(f)]
            varying = [f for f in sp.Mul.make_args(term) if not constant(f)]
            base = sp.Mul(*varying)
            total += sp.Mul(*fixed) * (N if base == 1 else GroupSum(base))
        return total / N if isinstance(node, GroupMean) else total

    return e.replace(
        lambda n: isinstance(n, GroupReduction)
        and not (isinstance(n, GroupSum) and _basic(n)),
        rewrite,
    )


def _basic(node: sp.Expr) -> bool:
    """A GroupSum of one multiplied-out product without constant factors: linearize
    leaves it as it is."""
    arg = node.args[0]
    if arg.is_Add or any(constant(f) for f in sp.Mul.make_args(arg)):
        return False
    return _terms(arg) > MAX_TERMS or sp.expand(arg, power_exp=False) == arg


def identities(
    reductions: Sequence[Reduction], basis: Mapping[sp.Symbol, sp.Expr]
) -> list[tuple[Reduction, sp.Expr, sp.Expr]]:
    """What the definitions say about reductions of x (or x̂): rules sum(u) -> value,
    each with the reduction whose definition gives it.

    Each mean or sum reduction r = reduce(G) is a linear equation among the reductions
    once G is written in the basis and linearized (μ = mean(μ + σx̂): sum(x̂) = 0); it
    is solved for its simplest reduction whose coefficient is free of the others.
    """
    rules: list[tuple[Reduction, sp.Expr, sp.Expr]] = []
    for r in reductions:
        if r.op == "max":
            continue
        eq = linearize(r.node.xreplace(basis)) - r.symbol
        eq = _apply(eq, rules)
        nodes = sorted(
            eq.atoms(GroupSum), key=lambda u: (sp.count_ops(u), sp.default_sort_key(u))
        )
        mark = sp.Symbol("_unknown")
        for node in nodes:
            lin = eq.xreplace({node: mark})
            coeff = sp.diff(lin, mark)
            if coeff == 0 or coeff.has(mark) or coeff.atoms(GroupReduction):
                continue
            value = -lin.xreplace({mark: 0}) / coeff
            if affordable(value):
                value = _factor(sp.cancel(value))
            rules.append((r, node, value))
            break
    return rules


def _apply(e: sp.Expr, rules: Sequence[tuple[Reduction, sp.Expr, sp.Expr]]) -> sp.Expr:
    """e with the identities applied and its reductions linearized, until it settles."""
    table = {node: value for _, node, value in rules}
    for _ in range(ROUNDS):
        new = linearize(e.xreplace(table))
        if new == e:
            break
        e = new
    return e


def contract(e: sp.Expr, scales: Sequence[tuple[sp.Symbol, sp.Expr]]) -> sp.Expr:
    """Each named scale's definition in e replaced by its symbol: (v + ε)^(−3/2) -> σ⁻³."""
    for s, value in scales:
        e = e.subs(value, s)
        if value.is_Pow and value.exp.is_Rational:
            e = e.subs(value.base, s ** (1 / value.exp))
    return e


def eliminate(
    e: sp.Expr,
    scales: Sequence[tuple[sp.Symbol, sp.Expr]],
    reductions: Sequence[Reduction],
) -> sp.Expr:
    """e with the reduction a scale is made of written through the scale, where the
    scale uses one reduction once: var = σ² − ε for σ = √(var + ε), so that
    σ·x̂/(ε + var) becomes x̂/σ."""
    symbols = {r.symbol for r in reductions}
    for s, value in scales:
        inside = sorted(value.free_symbols & symbols, key=str)
        if len(inside) == 1 and value.count(inside[0]) == 1:
            inverse = invert(value, inside[0], s)
            if inverse is not None:
                e = e.xreplace({inside[0]: inverse})
    return e


def _factor(e: sp.Expr) -> sp.Expr:
    """factor(e) where affordable and of few generators, else factor_terms(e)."""
    if affordable(e) and len(e.free_symbols | e.atoms(sp.Function)) <= MAX_GENERATORS:
        try:
            return sp.factor(e)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError):
            pass
    return sp.factor_terms(e)


# ------------------------------------------------------------------ forms


def _placeholders(e: sp.Expr) -> tuple[sp.Expr, dict[sp.Symbol, sp.Expr]]:
    """e with each reduction and indicator a symbol, for the polynomial rewrites."""
    nodes = sorted(
        e.atoms(GroupReduction) | e.atoms(sp.Piecewise), key=sp.default_sort_key
    )
    marks = {}
    for i, node in enumerate(nodes):
        varying = isinstance(node, sp.Piecewise)
        marks[node] = sp.Symbol(f"_I{i}" if varying else f"_R{i}", real=True)
    return e.xreplace(marks), {m: n for n, m in marks.items()}


def _as_means(e: sp.Expr) -> sp.Expr:
    """Every GroupSum(u) written n·GroupMean(u)."""
    return e.replace(
        lambda n: isinstance(n, GroupSum), lambda n: N * GroupMean(n.args[0])
    )


REWRITES = (
    sp.factor,
    sp.cancel,
    sp.expand,
    sp.together,
    lambda u: sp.factor_terms(sp.expand(u)),
)


def forms(e: sp.Expr) -> list[sp.Expr]:
    """e and its rewritten forms, reductions and indicators held as symbols, in sums
    and in means; only where affordable. Sorted by cost (then text)."""
    found = set()
    for variant in (e, _as_means(e)):
        held, back = _placeholders(variant)
        found.add(variant)
        if not affordable(held):
            continue
        many = len(held.free_symbols | held.atoms(sp.Function)) > MAX_GENERATORS
        for fn in REWRITES:
            if many and fn is sp.factor:  # multivariate factoring: seconds per symbol
                continue
            try:
                form = fn(held)
            except (sp.PolynomialError, NotImplementedError, TypeError, ValueError):
                continue
            found.add(form.xreplace(back))
    found |= {fold(f) for f in found}
    found = {f for f in found if not f.has(sp.nan, sp.zoo)}
    return sorted(found, key=_order)


def _order(e: sp.Expr) -> tuple:
    return (cost(e), sp.count_ops(e), sp.srepr(e))


def fold(e: sp.Expr) -> sp.Expr:
    """Reductions of the same kind in a sum merged into one pass, the reverse of
    linearize: mean(h·x) − μ·mean(h) -> mean(h·(x − μ)) (factored where affordable)."""

    def merge(node: sp.Expr) -> sp.Expr:
        groups: dict[type, list[tuple[sp.Expr, sp.Expr]]] = {}
        rest = []
        for term in node.args:
            found = term.atoms(GroupReduction)
            if len(found) == 1:
                (red,) = found
                c = term / red
                if isinstance(red, GroupSum | GroupMean) and constant(c):
                    if not c.atoms(GroupReduction) and not c.has(red):
                        kind, c = _sized(type(red), c)
                        groups.setdefault(kind, []).append((c, red.args[0]))
                        continue
            rest.append(term)
        for kind, parts in groups.items():
            if len(parts) == 1:
                c, u = parts[0]
                rest.append(c * kind(u))
                continue
            rest.append(kind(_factor(sp.Add(*(c * u for c, u in parts)))))
        return sp.Add(*rest)

    return e.replace(lambda n: n.is_Add and n.atoms(GroupReduction), merge)


def _sized(kind: type, c: sp.Expr) -> tuple[type, sp.Expr]:
    """c·kind(u) as a mean or a sum, whichever leaves fewer n in c (n·mean = sum)."""
    if kind is GroupMean and (c / N).count(N) < c.count(N):
        return GroupSum, c / N
    if kind is GroupSum and (c * N).count(N) < c.count(N):
        return GroupMean, c * N
    return kind, c


def cost(e: sp.Expr) -> int:
    """The shared operation count (sym/cost.py), with the group size n a constant."""
    return shared_cost(e, {N})


# ------------------------------------------------------------------ numeric checks


class Evaluator:
    """Evaluates a norm's statements with NumPy on groups as rows: arrays (rows, n),
    reductions over the last axis with keepdims, parameters at their values — as the
    generated code will for a row group. A failure (overflow, 0/0) gives None."""

    def __init__(self, values: Mapping[sp.Symbol, sp.Expr], dtype: type) -> None:
        self.values = dict(values)
        self.dtype = dtype
        self.shape: tuple[int, ...] = ()
        reduce = self._reduce
        self.modules = [
            {
                "GroupSum": reduce(np.sum),
                "GroupMean": reduce(np.mean),
                "GroupMax": reduce(np.max),
            },
            NP_FUNCTIONS,
            "numpy",
        ]

    def _reduce(self, fn: object) -> object:
        def group(a: np.ndarray) -> np.ndarray:
            a = np.broadcast_to(a, self.shape)
            return fn(a, axis=-1, keepdims=True)  # type: ignore[operator]

        return group

    def compile(self, e: sp.Expr) -> object:
        """A function of an env (symbol -> array) giving e, or None where it fails."""
        e = numeric(e.xreplace(self.values))
        symbols = sorted(e.free_symbols, key=str)
        fn = sp.lambdify(symbols, e, modules=self.modules)

        def value(env: Mapping[sp.Symbol, np.ndarray]) -> np.ndarray | None:
            self.shape = env[X].shape
            args = [self.shape[-1] if s == N else env[s] for s in symbols]
            with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
                warnings.simplefilter("error")
                try:
                    out = np.asarray(fn(*args), dtype=self.dtype)
                    return np.broadcast_to(out, self.shape)
                except (ArithmeticError, ValueError, TypeError, RuntimeWarning):
                    return None

        return value

    def run(
        self,
        statements: Sequence[tuple[sp.Symbol, sp.Expr]],
        env: Mapping[sp.Symbol, np.ndarray],
    ) -> dict[sp.Symbol, np.ndarray] | None:
        """Run statements in order; env gains each target. None if one fails."""
        env = {k: np.asarray(v, dtype=self.dtype) for k, v in env.items()}
        for target, e in statements:
            value = self.compile(e)(env)
            if value is None:
                return None
            env[target] = value
        return env

    def rows(
        self,
        statements: Sequence[tuple[sp.Symbol, sp.Expr]],
        env: Mapping[sp.Symbol, np.ndarray],
    ) -> list[dict[sp.Symbol, np.ndarray] | None]:
        """run() on each row (group) on its own: one failing group spoils no other."""
        fns = [(t, self.compile(e)) for t, e in statements]
        out = []
        for i in range(len(env[X])):
            row: dict[sp.Symbol, np.ndarray] | None = {
                k: np.asarray(v[i : i + 1], dtype=self.dtype) for k, v in env.items()
            }
            for target, fn in fns:
                value = fn(row)  # type: ignore[operator]
                if value is None:
                    row = None
                    break
                row[target] = value
            out.append(row)
        return out

    def at_rows(self, e: sp.Expr, rows: Sequence[dict | None]) -> np.ndarray:
        """e at each row's env, as (rows, n) float64, NaN where it fails."""
        fn = self.compile(e)
        out = []
        for row in rows:
            value = None if row is None else fn(row)  # type: ignore[operator]
            out.append(
                np.full(CHECK_SIZE, np.nan) if value is None else value[0].astype(float)
            )
        return np.array(out)


def written(
    e: sp.Expr, xs: Sequence[sp.Symbol], memo: dict | None = None
) -> list[sp.Expr]:
    """e at each value of a concrete group x_0, ..., x_{n-1}, reductions written out
    (mean as Σ/n, max as Max): plain SymPy, for the chain rule to be done by SymPy."""
    size = len(xs)
    memo = {} if memo is None else memo

    def at(u: sp.Expr, i: int) -> sp.Expr:
        if isinstance(u, GroupReduction):
            i = -1  # the same at every value
        key = (u, i)
        if key not in memo:
            if u == X:
                out = xs[i]
            elif isinstance(u, GroupReduction):
                vals = [at(u.args[0], j) for j in range(size)]
                if u.op == "max":
                    out = sp.Max(*vals)
                else:
                    out = sp.Add(*vals) / (size if u.op == "mean" else 1)
            elif u.is_Atom:
                out = u
            else:
                out = u.func(*[at(a, i) for a in u.args])
            memo[key] = out
        return memo[key]

    return [at(e, i) for i in range(size)]


class Reference:
    """A norm for a group of CHECK_SIZE values with its reductions written out, and
    dx_i = ∂/∂x_i Σ_j h_j F_j by sp.diff: in float64 (random points) and in 50-digit
    arithmetic (extreme points)."""

    def __init__(self, definition: sp.Expr, values: Mapping[sp.Symbol, sp.Expr]):
        xs = sp.symbols(f"x0:{CHECK_SIZE}", real=True)
        hs = sp.symbols(f"h0:{CHECK_SIZE}", real=True)
        ys = written(definition, xs)
        loss = sum(h * y for h, y in zip(hs, ys, strict=True))
        grads = [_to_piecewise(sp.diff(loss, xi)) for xi in xs]
        fixed = dict(values)
        dx = numeric(sp.Matrix(grads).xreplace(fixed))
        y = numeric(sp.Matrix(ys).xreplace(fixed))
        self.has_max = bool(definition.atoms(GroupMax))
        self._f64 = sp.lambdify([*xs, *hs], dx, modules=[NP_FUNCTIONS, "numpy"])
        self._mp = mp_lambdify([*xs, *hs], dx)
        self._mp_y = mp_lambdify(xs, y)

    def gradient(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            rows = [
                np.asarray(self._f64(*xr, *hr), dtype=float).ravel()
                for xr, hr in zip(x, h, strict=True)
            ]
        return np.array(rows)

    def exact(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x̂, dx) in 50-digit arithmetic, NaN where undefined."""
        ys, ds = [], []
        with mpmath.workdps(DIGITS):
            for xr, hr in zip(x, h, strict=True):
                xm = [mpmath.mpf(float(v)) for v in xr]
                hm = [mpmath.mpf(float(v)) for v in hr]
                ys.append(_floats(lambda xm=xm: self._mp_y(*xm)))
                ds.append(_floats(lambda xm=xm, hm=hm: self._mp(*xm, *hm)))
        return np.array(ys), np.array(ds)


def _np_helper(name: str) -> object:
    """The module's own special function `name` (sym/special.py), as it will run."""

    def helper(u: np.ndarray) -> np.ndarray:
        return special.numpy_helpers()[name](np.asarray(u))  # type: ignore[operator]

    return helper


NP_FUNCTIONS = {
    "sigmoid": numpy_sigmoid,
    "erf": _np_helper("_erf"),
    "erfc": _np_helper("_erfc"),
}


def _floats(fn: object) -> list[float]:
    try:
        values = fn()  # type: ignore[operator]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return [np.nan] * CHECK_SIZE
    out = []
    for v in values:
        c = complex(v)
        out.append(c.real if c.imag == 0 and np.isfinite(c.real) else np.nan)
    return out


def random_points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, h): CHECK_ROWS groups of CHECK_SIZE distinct values, and upstream gradients."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(CHECK_ROWS, CHECK_SIZE)) * np.array([[1.0], [2.0], [0.5]] * 2)
    x[3] += 3.0  # an offset group
    return x, rng.normal(size=x.shape)


def extreme_points(has_max: bool) -> tuple[np.ndarray, np.ndarray]:
    """Groups a norm must survive: constant (σ → √ε), huge, tiny and offset values.

    Constant groups are left out for norms with a max (ties: the written-out chain rule
    has no derivative there).
    """
    rng = np.random.default_rng(1)
    r = rng.normal(size=CHECK_SIZE)
    rows = [1e3 * r, -1e3 * r, 1e-3 * r, 1e3 + r, -1e3 + r, 30 * r, 100 + 0.1 * r]
    if not has_max:
        rows += [np.full(CHECK_SIZE, c) for c in (0.0, 3.0, -1e3, 1e3)]
    x = np.array(rows)
    return x, rng.normal(size=x.shape)


# ------------------------------------------------------------------ derivation


@dataclass(frozen=True)
class _Core:
    """What is derived once per definition and parameter values."""

    f: sp.Expr  # F in x and reduction symbols, scales written out
    fhat: sp.Expr  # F with the scales named
    reductions: tuple[Reduction, ...]
    scales: tuple[tuple[sp.Symbol, sp.Expr], ...]
    dx: sp.Expr  # in h
    basis: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...]
    values: tuple[tuple[sp.Symbol, sp.Expr], ...]


def _core_key(
    definition: sp.Expr, params: tuple[tuple[str, float], ...], names: tuple[str, ...]
) -> tuple[object, ...]:
    """What a norm's core is derived from: the definition (srepr: every symbol with its
    assumptions), the parameter values, the reductions' names."""
    return (sp.srepr(definition), params, names)


@cache.persistent(_core_key)
def _derive(
    definition: sp.Expr,
    params: tuple[tuple[str, float], ...],
    names: tuple[str, ...],
) -> _Core:
    values = {
        s: sp.Rational(repr(float(v)))
        for k, v in params
        for s in definition.free_symbols
        if s.name == k and not isinstance(s, Coefficient)
    }
    f, reductions = split(definition, names)
    fhat, scales = name_scales(f, reductions)
    raw, adjoints, steps = chain_rule(f, reductions)
    steps = [Step(u.label, u.lhs, contract(u.rhs, scales)) for u in steps]
    dx = substitute_adjoints(raw, adjoints)

    forward = _forward_pairs(reductions, scales, fhat)
    check = _Checker(forward, values, Reference(definition, values))
    failed = check.undefined()
    if failed is not None:
        raise DerivationError(
            f"{text(definition)} has no finite value in float64 at the ordinary group"
            f" x = {failed} (it overflows or is undefined there), so its derivative"
            " cannot be checked: write a norm that is finite for moderate inputs"
        )
    if not check.agrees(dx):
        raise DerivationError(
            f"the chain rule of {text(definition)} does not match the written-out"
            " derivative (please report this norm)"
        )

    candidates: list[tuple[sp.Expr, str]] = []
    shown: dict[str, list[Step]] = {}
    xs = invert(f, X, XHAT)
    bases = [("x", {})] + ([("xhat", {X: xs})] if xs is not None else [])
    for basis, sub in bases:
        rules = identities(reductions, sub)
        e = _apply(in_basis(dx, sub), rules)
        label = f"with x = {text(contract(xs, scales))}" if sub else "linear reductions"
        shown[basis] = [
            Step(
                f"by the definition of {r.symbol.name}",
                GroupMean(node.args[0]),
                contract(sp.cancel(value / N), scales),
            )
            for r, node, value in rules
        ]
        variants = {
            contract(e, scales),
            contract(eliminate(e, scales, reductions), scales),
        }
        shown[basis].append(Step(label, DX, min(variants, key=_order)))
        for variant in variants:
            candidates += [(contract(u, scales), basis) for u in forms(variant)]
    candidates.sort(key=lambda c: (cost(c[0]), c[1] != "xhat", sp.srepr(c[0])))

    chosen, first_missed = None, None
    for form, basis in candidates:
        if not check.agrees(form):
            continue
        missed = check.extremes(form)
        if not missed:
            chosen = (form, basis)
            break
        if first_missed is None:
            first_missed = (form, basis, missed)
    notes: list[str] = []
    if chosen is None:
        if first_missed is None:
            raise DerivationError(
                f"no simplified backward rule of {text(definition)} agrees with the"
                " chain rule (please report this norm)"
            )
        form, basis, missed = first_missed
        chosen = (form, basis)
        where = ", ".join(missed[:2]) + (", ..." if len(missed) > 2 else "")
        notes.append(f"dx: not finite or inexact at {where}")
    notes += check.forward_notes()
    steps += [*shown[chosen[1]], Step("simplified", DX, chosen[0])]
    return _Core(
        f,
        fhat,
        reductions,
        scales,
        chosen[0],
        chosen[1],
        tuple(steps),
        tuple(notes),
        tuple(values.items()),
    )


def in_basis(e: sp.Expr, sub: Mapping[sp.Symbol, sp.Expr]) -> sp.Expr:
    """e with x = X(x̂) substituted, except inside indicators: [x = m] keeps comparing
    the forward's own values, so a tie the forward found is found again."""
    if not sub:
        return e
    nodes = sorted(e.atoms(sp.Piecewise), key=sp.default_sort_key)
    marks = {n: sp.Symbol(f"_P{i}", real=True) for i, n in enumerate(nodes)}
    back = {m: n for n, m in marks.items()}
    return e.xreplace(marks).xreplace(dict(sub)).xreplace(back)


def _forward_pairs(
    reductions: Sequence[Reduction],
    scales: Sequence[tuple[sp.Symbol, sp.Expr]],
    fhat: sp.Expr,
) -> list[tuple[sp.Symbol, sp.Expr]]:
    return [
        *((r.symbol, r.node) for r in reductions),
        *scales,
        (XHAT, fhat),
    ]


class _Checker:
    """Candidate forms of dx against the written-out chain rule."""

    def __init__(
        self,
        forward: Sequence[tuple[sp.Symbol, sp.Expr]],
        values: Mapping[sp.Symbol, sp.Expr],
        reference: Reference,
    ) -> None:
        self.values = values
        self.forward = forward
        self.x, self.h = random_points()
        self.expected = reference.gradient(self.x, self.h)
        self.env = Evaluator(values, np.float64).run(forward, {X: self.x, H: self.h})
        self.ex, self.eh = extreme_points(reference.has_max)
        self.exact_y, self.exact_dx = reference.exact(self.ex, self.eh)
        self.rows = {
            name: Evaluator(values, getattr(np, name)).rows(
                forward, {X: self.ex, H: self.eh}
            )
            for name in EXTREME_TOL
        }

    def undefined(self) -> str | None:
        """The first random group where the forward or the written-out chain rule is
        not finite in float64, as text; None when both are finite everywhere."""
        if self.env is not None and np.isfinite(self.expected).all():
            return None
        rows = Evaluator(self.values, np.float64).rows(
            self.forward, {X: self.x, H: self.h}
        )
        for i, row in enumerate(rows):
            if row is None or not np.isfinite(self.expected[i]).all():
                return _row(self.x[i])
        return _row(self.x[0])

    def agrees(self, form: sp.Expr) -> bool:
        """form equals the chain rule at the random points (float64, CHECK_RTOL)."""
        if self.env is None:
            return False
        value = Evaluator(self.values, np.float64).compile(form)(self.env)
        if value is None:
            return False
        scale = np.maximum(1.0, np.abs(self.expected))
        return bool(np.all(np.abs(value - self.expected) <= CHECK_RTOL * scale))

    def extremes(self, form: sp.Expr) -> list[str]:
        """Where the form, evaluated as the code would, misses the exact dx."""
        missed = []
        for name, tol in EXTREME_TOL.items():
            dtype = getattr(np, name)
            got = Evaluator(self.values, dtype).at_rows(form, self.rows[name])
            missed += _misses(got, self.exact_dx, tol, self.ex, dtype)
        return missed

    def forward_notes(self) -> list[str]:
        """Where the forward's x̂ misses its exact value at the extreme groups."""
        notes = []
        for name, tol in EXTREME_TOL.items():
            dtype = getattr(np, name)
            got = Evaluator(self.values, dtype).at_rows(XHAT, self.rows[name])
            missed = _misses(got, self.exact_y, tol, self.ex, dtype)
            if missed:
                shown = ", ".join(missed[:2]) + (", ..." if len(missed) > 2 else "")
                notes.append(f"forward: not finite or inexact at {shown}")
        return notes


def _misses(
    got: np.ndarray, want: np.ndarray, tol: float, x: np.ndarray, dtype: type
) -> list[str]:
    big = float(np.finfo(dtype).max) / 16
    with np.errstate(all="ignore"):
        got = got.astype(np.float64)
        due = np.isfinite(want) & (np.abs(want) <= big)
        close = np.abs(got - want) <= tol * np.maximum(1.0, np.abs(want))
        bad = (due & ~(np.isfinite(got) & close)).any(axis=1)
    return [f"x = {_row(x[i])} ({np.dtype(dtype).name})" for i in np.flatnonzero(bad)]


def _row(r: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in r) + "]"


# ------------------------------------------------------------------ assembly


def _assemble(
    norm: NormDef,
    core: _Core,
    values: Mapping[str, float],
    stats: Mapping[str, float],
) -> NormRule:
    forward = [
        Statement(r.symbol, r.node, "reduction", _eq(r.symbol, r.node))
        for r in core.reductions
    ]
    forward += [Statement(s, v, "scale", _eq(s, v)) for s, v in core.scales]
    forward.append(Statement(XHAT, core.fhat, "normalized", _eq(XHAT, core.fhat)))
    output = XHAT
    if norm.affine:
        y = (GAMMA if norm.gain else 1) * XHAT + (BETA if norm.shift else 0)
        forward.append(Statement(Y, y, "output", _eq(Y, y)))
        output = Y
    backward = []
    dx = core.dx
    if norm.gain:
        backward.append(Statement(H, GAMMA * G, "upstream", _eq(H, GAMMA * G)))
    else:
        dx = dx.xreplace({H: G})
    backward.append(Statement(DX, dx, "input", _eq(DX, dx)))
    if norm.gain:
        e = ColSum(G * XHAT)
        backward.append(Statement(DGAMMA, e, "gain", _eq(DGAMMA, e)))
    if norm.shift:
        e = ColSum(G)
        backward.append(Statement(DBETA, e, "shift", _eq(DBETA, e)))
    made = {s.target for s in forward}
    saved = tuple(
        sorted(
            (dx.free_symbols & made) | ({X} & dx.free_symbols),
            key=lambda s: [t.target for t in forward].index(s) if s in made else -1,
        )
    )
    params = list(core.values)
    running, inference = (), ()
    if norm.running:
        running, inference, extra = _running(norm, core, forward, stats)
        params += extra
    return NormRule(
        name=norm.name,
        title=norm.title or norm.name,
        group=norm.group,
        definition=norm.expression(values),
        params=tuple(params),
        reductions=core.reductions,
        scales=core.scales,
        forward=tuple(forward),
        backward=tuple(backward),
        output=output,
        saved=saved,
        basis=core.basis,
        steps=core.steps,
        running=running,
        inference=inference,
        notes=core.notes,
        gain=norm.gain,
        shift=norm.shift,
    )


def _running(
    norm: NormDef,
    core: _Core,
    forward: Sequence[Statement],
    stats: Mapping[str, float],
) -> tuple[tuple[RunningUpdate, ...], tuple[Statement, ...], list]:
    momentum = sp.Symbol(MOMENTUM, positive=True)
    by_name = {r.symbol.name: r.symbol for r in core.reductions}
    updates = []
    swap = {}
    for stat in norm.running:
        r = by_name[stat.statistic]
        buf = sp.Symbol(f"running_{stat.buffer}", **_sign(r))
        tracked = r * N / (N - 1) if stat.unbiased else r
        update = (1 - momentum) * buf + momentum * tracked
        W = unevaluated
        shown = W(
            "+",
            W("*", W("+", sp.S.One, W("-", momentum)), buf),
            (
                W("*", momentum, W("/", N, W("+", N, sp.S.NegativeOne)), r)
                if stat.unbiased
                else W("*", momentum, r)
            ),
        )
        updates.append(RunningUpdate(buf, r, update, stat.init, shown))
        swap[r] = buf
    inference = tuple(
        Statement(
            s.target,
            s.expr.xreplace(swap),
            s.role,
            _eq(s.target, s.expr.xreplace(swap)),
        )
        for s in forward
        if s.target not in swap
    )
    extra = [(momentum, sp.Rational(repr(float(stats[MOMENTUM]))))]
    return tuple(updates), inference, extra


# ------------------------------------------------------------------ text


GREEK = {
    "xhat": "x̂",
    "mu": "μ",
    "sigma": "σ",
    "gamma": "γ",
    "beta": "β",
    "eps": "ε",
    "dgamma": "dγ",
    "dbeta": "dβ",
    "mubar": "μ̄",
    "sigmabar": "σ̄",
    "momentum": "momentum",
}


class RuleText(Text):
    """The unicode printer of sym/text.py in a norm rule's words: mean(h·x̂), √(var + ε),
    [x = m], Greek names, and a rule's terms ordered positive first, cheaper first."""

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        name = expr.name
        if name.endswith("bar") and name[:-3] and name not in GREEK:
            return GREEK.get(name[:-3], name[:-3]) + "̄"
        return GREEK.get(name, name)

    def _print_Coefficient(self, expr: Coefficient) -> str:
        return decimal_text(expr.value)

    def _print_GroupMean(self, expr: sp.Expr) -> str:
        return f"mean({self._print(expr.args[0])})"

    def _print_GroupSum(self, expr: sp.Expr) -> str:
        return f"sum({self._print(expr.args[0])})"

    def _print_GroupMax(self, expr: sp.Expr) -> str:
        return f"max({self._print(expr.args[0])})"

    def _print_ColSum(self, expr: sp.Expr) -> str:
        return f"Σ_batch({self._print(expr.args[0])})"

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        var = expr.variables[0]
        return f"∂{self._print(expr.expr)}/∂{self._print(var)}"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (v0, c0), *rest = expr.args
        if rest == [(0, sp.true)] and v0 == 1 and isinstance(c0, sp.Eq):
            return f"[{self._print(c0.lhs)} = {self._print(c0.rhs)}]"
        parts = [
            self._print(v) + ("" if c is sp.true else f" if {self._print(c)}")
            for v, c in expr.args
        ]
        return "{" + "; else ".join(parts) + "}"

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        op = {"<=": "≤", ">=": "≥", "==": "="}.get(expr.rel_op, expr.rel_op)
        return f"{self._print(expr.lhs)} {op} {self._print(expr.rhs)}"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base = self.parenthesize(expr.base, 60)
        if expr.exp == sp.S.Half:
            return f"√({self._print(expr.base)})"
        if expr.exp == -sp.S.Half:
            return f"1/√({self._print(expr.base)})"
        if expr.exp == -1:
            return f"1/{base}"
        if expr.exp.is_Integer and expr.exp > 0:
            sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
            return base + str(int(expr.exp)).translate(sup)
        return f"{base}^({self._print(expr.exp)})"

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"|{self._print(expr.args[0])}|"

    def _print_Mul(self, expr: sp.Mul) -> str:
        return super()._print_Mul(expr).replace("*", "·")

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list:
        # h − mean(h) − x̂·mean(h·x̂): positive terms first, then the cheaper first
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda t: (t.could_extract_minus_sign(), cost(t)))


def text(e: sp.Expr) -> str:
    """Readable unicode for an expression of a norm rule."""
    return RuleText().doprint(e).replace(" - ", " − ")


def _eq(target: sp.Symbol, e: sp.Expr) -> str:
    return f"{text(target)} = {text(e)}"
