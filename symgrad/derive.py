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

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import mpmath
import sympy as sp

from . import expr as expr_mod
from . import ops
from .errors import DerivationError, ExpressionError, SpecError
from .functions import sigmoid, stabilize
from .ops import a, y, z
from .spec import OpSpec, Spec, SpecSource, as_spec

# where a candidate rewrite is checked (0 and small values hit piecewise boundaries)
CHECK_POINTS = (-7.5, -3.2, -1.3, -0.6, -0.15, -0.01, 0, 0.01, 0.2, 0.7, 1.1, 2.9, 6.3)
CHECK_DIGITS = 30
CHECK_TOL = sp.Float("1e-20", CHECK_DIGITS)


# ------------------------------------------------------------------ helpers

SEARCH_SECONDS = 2.0  # budget for looking for a form in a (solve/simplify can run away)


class _OutOfTime(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread on Unix; elsewhere no limit)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cost(e: sp.Expr) -> int:
    """NumPy operations needed to evaluate e: the measure for picking among equal forms.

    A subtraction is one operation (not a negation plus an addition) and powers weigh more
    than products, so a*(1 - a) (2) beats a - a**2 (3).
    """
    if e.is_Atom:
        return 0
    if e.is_Add:
        terms = [_unsigned(t) for t in e.args]
        negs = all(t.could_extract_minus_sign() for t in e.args)
        return len(terms) - 1 + int(negs) + sum(cost(t) for t in terms)
    if e.is_Mul:
        coeff, factors = e.as_coeff_mul()
        n = len(factors) - 1 + (0 if abs(coeff) == 1 else 1) + (1 if coeff == -1 else 0)
        return n + sum(cost(f) for f in factors)
    if e.is_Pow:
        if e.exp == 2:
            return 2 + cost(e.base)
        if e.exp == -1:
            return 1 + cost(e.base)
        return 4 + cost(e.base) + cost(e.exp)
    if isinstance(e, sp.Piecewise):
        return 1 + sum(cost(x) + cost(c) for x, c in e.args)
    if isinstance(e, sp.Abs | sp.sign | sp.Max | sp.Min) or e.is_Relational:
        return 1 + sum(cost(x) for x in e.args)
    if isinstance(e, sp.Function):
        return 8 + sum(cost(x) for x in e.args)
    return 1 + sum(cost(x) for x in e.args)


def _unsigned(t: sp.Expr) -> sp.Expr:
    return -t if t.could_extract_minus_sign() else t


def absorb_sign(e: sp.Expr) -> sp.Expr:
    """-a*(a - 1) -> a*(1 - a): move a leading minus into a sum factor, bottom-up."""
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
        minus = [i for i in sums if str(factors[i]).startswith("-")]
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


def tidy(e: sp.Expr) -> sp.Expr:
    """The cheapest of a few simplified forms of e (ties: fewest operations, then text)."""
    e = heaviside_to_piecewise(e)
    forms = {e}
    rational = not e.atoms(sp.Function, sp.Piecewise) and all(
        p.exp.is_Integer for p in e.atoms(sp.Pow)
    )
    steps = (sp.factor, sp.cancel, sp.expand, lambda x: sp.factor(sp.cancel(x)))
    for fn in steps if rational else (sp.simplify, *steps):  # simplify is the slow one
        try:
            forms.add(heaviside_to_piecewise(fn(e)))
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError):
            pass
    forms = {absorb_sign(f) for f in forms} | forms
    forms = {f for f in forms if not f.has(sp.nan, sp.zoo)}
    return min(forms, key=_rank)


def _rank(e: sp.Expr) -> tuple:
    """Order among equivalent forms: cheapest, then fewest sums that start with a minus."""
    minus = sum(
        1 for t in sp.preorder_traversal(e) if t.is_Add and str(t).startswith("-")
    )
    return (cost(e) + (20 if unstable(e) else 0), minus, sp.count_ops(e), sp.srepr(e))


def unstable(e: sp.Expr) -> bool:
    """e can overflow for large |z|: an exp of a possibly positive argument, or cosh/sinh."""
    for node in sp.preorder_traversal(e):
        if isinstance(node, sp.cosh | sp.sinh):
            return True
        if isinstance(node, sp.exp) and not node.args[0].is_nonpositive:
            return True
    return False


def _value(e: sp.Expr, subs: dict[sp.Symbol, object]) -> complex | None:
    try:
        v = e.xreplace({k: sp.Float(x, CHECK_DIGITS) for k, x in subs.items()}).evalf(
            CHECK_DIGITS
        )
        c = complex(v)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if c != c or c.imag != 0 or abs(c.real) == float("inf"):
        return None
    return c


def same_values(
    lhs: sp.Expr, rhs: sp.Expr, points: list[dict[sp.Symbol, object]]
) -> bool:
    """lhs and rhs agree at every point, to CHECK_DIGITS digits (NaN or complex: no)."""
    with mpmath.workdps(CHECK_DIGITS):
        for subs in points:
            u, v = _value(lhs, subs), _value(rhs, subs)
            if u is None or v is None:
                return False
            if abs(u - v) > 1e-20 + 1e-20 * abs(v):
                return False
    return True


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

    @property
    def needs_z(self) -> bool:
        return not self.vector and not self.in_a


def _inverse_candidates(f: sp.Expr) -> list[sp.Expr]:
    """Expressions z(a) that may invert a = f(z) (checked later, so wrong branches are fine)."""
    if f.has(sp.erf, sp.Abs, sp.sign, sp.Max, sp.Min, sp.Piecewise):
        return []  # solve either fails or returns conditions; not worth the time
    try:
        sols = sp.solve(sp.Eq(a, f), z)
    except (NotImplementedError, ValueError, TypeError):
        return []
    return sols[:4]


def _direct_in_a(f: sp.Expr, dz: sp.Expr, raw: sp.Expr) -> list[sp.Expr]:
    """The cheap candidates, tried before solve(): substitution and piecewise branches."""
    cands: list[sp.Expr] = []
    # derivative written with f itself inside (tanh' = 1 - tanh(z)**2): put a in its place
    for d in (raw, dz):
        c = d.subs(f, a)
        if not c.has(z):
            cands.append(c)
    if f.has(sp.Piecewise, sp.Abs, sp.Max, sp.Min):
        pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
        if isinstance(pw, sp.Piecewise):
            cands += _piecewise_in_a(pw)
    return cands


def _solved_in_a(f: sp.Expr, dz: sp.Expr, raw: sp.Expr) -> list[sp.Expr]:
    """Candidates through z = f⁻¹(a) from solve(); its branches may be wrong (checked)."""
    cands: list[sp.Expr] = []
    for inv in _inverse_candidates(f):
        cands += [raw.subs(z, inv), dz.subs(z, inv)]
    return cands


def logistic_form(e: sp.Expr) -> sp.Expr | None:
    """e with e^{z} and e^{-z} written through s = σ(z) (e^{-z} = (1 - s)/s): no overflow."""
    e = e.rewrite(sp.exp)
    if not e.has(sp.exp):
        return None
    s = sp.Dummy("s")
    out = e.subs(sp.exp(-z), (1 - s) / s).subs(sp.exp(z), s / (1 - s))
    if out.has(sp.exp):
        return None
    return tidy(out).xreplace({s: sigmoid(z)})


def _piecewise_in_a(f: sp.Piecewise) -> list[sp.Expr]:
    """Branch by branch: invert each branch, and map each condition z <op> c to a <op> f(c)."""
    pieces = []
    for e, cond in f.args:
        d = sp.diff(e, z)
        if d.has(z):
            try:
                sols = sp.solve(sp.Eq(a, e), z)
            except (NotImplementedError, ValueError, TypeError):
                return []
            if len(sols) != 1:
                return []
            d = d.subs(z, sols[0])
        d = tidy(d)
        if cond is sp.true:
            pieces.append((d, True))
            continue
        if not (cond.is_Relational and cond.lhs == z and not cond.rhs.free_symbols):
            return []
        pieces.append((d, cond.func(a, f.subs(z, cond.rhs))))
    return [sp.Piecewise(*pieces)]


def _activation_rule(name: str, title: str, f: sp.Expr) -> ActivationRule:
    raw = heaviside_to_piecewise(sp.diff(f, z))
    if raw.has(sp.Derivative, sp.Subs):
        raise DerivationError(f"activation {name!r} has no closed-form derivative")
    points = _defined(raw, [{z: p} for p in CHECK_POINTS])
    # in z: the simplest form that checks out, preferring overflow-free ones
    z_forms = [raw, tidy(raw)]
    logistic = logistic_form(raw)
    if logistic is not None:
        z_forms.append(logistic)
    dz = min(
        (d for d in z_forms if same_values(_plain(d), raw, points)),
        key=_rank,
        default=raw,
    )
    # in a: valid at every check point (wrong solve branches fail here), and no dearer;
    # solve() is slow, so it is only asked when substitution found nothing
    best = None
    for candidates in (_direct_in_a, _solved_in_a):
        try:
            with time_limit(SEARCH_SECONDS):
                valid = [
                    c
                    for c in {tidy(c) for c in candidates(f, dz, raw) if not c.has(z)}
                    if not c.has(sp.nan, sp.zoo)
                    and same_values(c.xreplace({a: f}), raw, points)
                ]
        except _OutOfTime:  # e.g. solve() on a cubic: keep the form in z
            valid = []
        best = min(valid, key=_rank, default=None)
        if best is not None:
            break
    in_a = best is not None and cost(best) <= cost(dz)
    df = best if in_a else dz
    return ActivationRule(name, title, f, raw, dz, df, in_a, stabilize(f))


def _plain(e: sp.Expr) -> sp.Expr:
    """e with the stable functions written back in exp/log, for numeric checks."""
    return e.rewrite(sp.exp) if e.has(sigmoid) else e


def _defined(e: sp.Expr, points: list[dict]) -> list[dict]:
    """The points where e has a finite real value (a kink may be undefined in raw form)."""
    return [p for p in points if _value(e, p) is not None]


@functools.cache
def activation_rule(op: OpSpec) -> ActivationRule:
    """The derived rule for a (built-in or custom) activation; cached."""
    if op.name == ops.SOFTMAX and not op.custom:
        return ActivationRule(
            ops.SOFTMAX, "softmax", z, sp.S.Zero, sp.S.Zero, sp.S.Zero, True, z, True
        )
    return _activation_rule(op.name, _title(op, ops.ACTIVATIONS), activation_expr(op))


def _title(op: OpSpec, table: dict[str, ops.OpDef]) -> str:
    if op.custom:
        return f"{op.name} (custom)"
    base = table[op.name].title or op.name
    if op.params:
        base += " (" + ", ".join(f"{k}={v:g}" for k, v in op.params) + ")"
    return base


def activation_expr(op: OpSpec) -> sp.Expr:
    params = {k: expr_mod.number(v) for k, v in op.params}
    if op.custom:
        try:
            return expr_mod.parse(op.expr or "", {"z": z}, params)
        except ExpressionError as exc:
            raise SpecError([op.loc.problem(f"expression rejected: {exc}")]) from None
    return ops.ACTIVATIONS[op.name].build(**params)


def loss_expr(op: OpSpec) -> sp.Expr:
    params = {k: expr_mod.number(v) for k, v in op.params}
    if op.custom:
        try:
            return expr_mod.parse(op.expr or "", {"yhat": a, "y": y}, params)
        except ExpressionError as exc:
            raise SpecError([op.loc.problem(f"expression rejected: {exc}")]) from None
    return ops.LOSSES[op.name].build(**params)


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
        forward: ℓ rewritten for a stable forward pass, in z, a, y (and `ls`, the log-softmax).
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


LS = sp.Symbol("ls", real=True)  # log-softmax of the output, elementwise


def _collapse_factor(delta: sp.Expr) -> sp.Expr | None:
    """The constant q with delta = q·(a - y), or None when delta is not of that form."""
    if delta.has(sp.Piecewise):
        return None
    try:
        q = sp.cancel(sp.together(delta / (a - y)))
    except (sp.PolynomialError, TypeError, ValueError):
        return None
    return q if q != 0 and not (q.free_symbols & {a, y, z}) else None


def _stable_loss(loss: sp.Expr, act: ActivationRule) -> sp.Expr:
    """Rewrite each log(u(a)) through a = f(z) when that gives an overflow-free form."""

    def rewrite(node: sp.Expr) -> sp.Expr:
        inner = node.args[0]
        if act.vector:
            return LS if inner == a else node
        cand = stabilize(sp.log(inner.subs(a, act.f)))
        risky = cand.has(sp.exp) or any(n.free_symbols for n in cand.atoms(sp.log))
        return node if risky else cand

    if not act.vector:
        loss = stabilize(loss)  # e.g. log cosh r, overflow-free in r = ŷ - y
    return loss.replace(lambda n: isinstance(n, sp.log) and n.args[0].has(a), rewrite)


@functools.cache
def output_rule(loss_op: OpSpec, act_op: OpSpec) -> OutputRule:
    """Derive δ = ∂ℓ/∂z for a loss on an output activation; cached per pair."""
    loss = loss_expr(loss_op)
    title = _title(loss_op, ops.LOSSES)
    act = activation_rule(act_op)
    dl_da = heaviside_to_piecewise(sp.diff(loss, a))
    simplex = not loss_op.custom and ops.LOSSES[loss_op.name].simplex_targets
    if act.vector:
        delta, product, jvp = _softmax_delta(loss, simplex)
        da_dz = sp.S.Zero
    else:
        da_dz = act.df
        product = sp.Mul(dl_da, da_dz, evaluate=False)
        delta = tidy(sp.together(dl_da * da_dz))
        jvp = False
    q = None if jvp else _collapse_factor(delta)
    collapsed = q is not None
    if collapsed:
        delta = a - y if q == 1 else sp.Mul(q, a - y, evaluate=False)
    forward = _stable_loss(loss, act)
    return OutputRule(
        loss_op.name, title, loss, dl_da, da_dz, product, delta, collapsed, jvp, forward
    )


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
class LayerRule:
    """Layer l (1-based) of the network: sizes and its activation rule."""

    index: int
    fan_in: int
    units: int
    activation: ActivationRule


@dataclass(frozen=True)
class Derivation:
    """Everything derived for a spec: what the printers and templates need."""

    spec: Spec
    layers: tuple[LayerRule, ...]
    output: OutputRule

    @property
    def depth(self) -> int:
        return len(self.layers)

    def layer(self, l: int) -> LayerRule:
        """Layer l, counted from 1 as W1 and W^{[1]} are: sizes and the derived rule."""
        if not 1 <= l <= self.depth:
            raise IndexError(f"no layer {l}: the layers are 1 to {self.depth}")
        return self.layers[l - 1]

    def __repr__(self) -> str:
        """One line: the network and the output delta, e.g. `<Derivation xor: 2 → 8
        (tanh) → 1 (sigmoid); binary cross-entropy, δ = ŷ − y (collapsed)>`."""
        from .printers import text

        out = self.output
        network = " → ".join(
            [str(self.spec.input)]
            + [f"{r.units} ({r.activation.title})" for r in self.layers]
        )
        loss = self.spec.loss.name if self.spec.loss.custom else out.loss_title
        delta = text(out.delta, {a: "ŷ"}).replace(" - ", " − ")
        if out.jvp:
            delta = f"h = {delta}, δ = h − ŷ ⊙ Σₖ hₖ"
        else:
            delta = f"δ = {delta}" + (" (collapsed)" if out.collapsed else "")
        return f"<Derivation {self.spec.name}: {network}; {loss}, {delta}>"

    def _repr_latex_(self) -> str:
        """Jupyter: the batch backward pass as one LaTeX block."""
        from .report import latex_summary

        return latex_summary(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the whole derivation, as `symgrad latex --format markdown` prints it."""
        from .report import render_report

        return render_report(self, "markdown")


def derive(spec: SpecSource) -> Derivation:
    """Derive the gradient rules of a spec: a Spec, a path, YAML text or a dict."""
    spec = as_spec(spec)
    sizes = spec.sizes
    layers = tuple(
        LayerRule(i + 1, sizes[i], sizes[i + 1], activation_rule(layer.activation))
        for i, layer in enumerate(spec.layers)
    )
    out_act = spec.layers[-1].activation
    _check_output_range(spec.loss, out_act, layers[-1].activation)
    output = output_rule(spec.loss, out_act)
    return Derivation(spec, layers, output)


RANGE_POINTS = tuple(range(-10, 11)) + (-0.5, 0.5)


def _check_output_range(loss: OpSpec, out: OpSpec, rule: ActivationRule) -> None:
    """A loss that needs predictions in (0, 1) on a custom output: sample the activation."""
    if loss.custom or not out.custom or not ops.LOSSES[loss.name].needs_unit_interval:
        return
    for p in RANGE_POINTS:
        v = rule.f.xreplace({z: sp.Float(p, 50)}).evalf(50)
        if not (v.is_real and 0 < v < 1):
            raise SpecError(
                [
                    loss.loc.problem(
                        f"{loss.name} needs predictions in (0, 1), but the output activation"
                        f" {out.name!r} gives {sp.N(v, 6)} at z = {p}",
                        "use a sigmoid output layer or a loss for real-valued outputs",
                    )
                ]
            )
