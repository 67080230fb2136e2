"""Numbers from the Plan: one training step evaluated statement by statement.

The worked example shows every value of a step, so it needs them all, not only what
`loss_and_grad` returns. They come from the plan's own statements: each one printed by
the module's expression printer (sym/code.py's NumPyCode, as `loss_and_grad` prints it)
and evaluated with NumPy in float64, in a namespace holding the arrays computed so far
and the generated module's own helpers (`_sigmoid`, `_erf`, `_keep_mask`). The update is
the optimizer's rule (plan.update) evaluated the same way, one parameter at a time.
Nothing here is a second formula of the network: the text is our printer's, the
namespace ours.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .. import naming as nm
from ..plan import Condition, Draw, Plan, Renew, Stmt, flatten, resolve
from ..sym.code import DTYPE, NumPyCode


@dataclass
class Step:
    """Every number of one training step.

    Attributes:
        values: each array of the step by its code name: X, Y, the parameters and
            buffers before the step, every forward value, L, every delta and gradient
            (a value accumulated into, L with the l2 term, as it is at the end).
        stmts: the statements evaluated, in order (blocks resolved for training).
        assigned: the value each statement gave its target, by position in stmts.
        added_to: for an accumulation (L += l2 term), its target's value before it.
        after: each parameter and buffer after the step.
        state_before, state_after: the optimizer's arrays, key -> param -> array.
        scalars: the update's per-step numbers (t, the settings, αₜ, ...), by symbol.
    """

    values: dict[str, np.ndarray]
    stmts: tuple[Stmt, ...]
    assigned: list[np.ndarray]  # what each statement gave its target
    added_to: dict[int, np.ndarray]  # an accumulation's target before it (L += ...)
    after: dict[str, np.ndarray] = field(default_factory=dict)
    state_before: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    state_after: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    scalars: dict[sp.Symbol, float] = field(default_factory=dict)
    scope: dict[str, object] = field(default_factory=dict, repr=False)

    def value_of(self, expr: sp.Expr) -> object:
        """A subexpression of a statement (the terms of the loss's sum), evaluated
        as the statements are, on the values of the step."""
        return _eval(expr, self.scope, NumPyCode())


def training_statements(plan: Plan, masks: bool) -> tuple[Stmt, ...]:
    """The statements of a training step (the running statistics renewed; dropout's
    masks drawn when `masks`, else each mask is 1), in order."""
    known = {
        Condition.TRAINING: True,
        Condition.RUNNING: True,
        Condition.GENERATOR: masks,
    }
    return flatten(resolve(plan.forward, known)) + plan.loss + plan.backward


def evaluate(
    plan: Plan,
    module: types.ModuleType,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    rng: np.random.Generator | None = None,
) -> Step:
    """One step of `plan` on checked float64 inputs (Y as the module's targets: one-hot
    rows for labels), dropout's masks drawn from rng (None: no masks), then one update
    by the spec's optimizer from a fresh state (t = 1)."""
    printer = NumPyCode()
    m = X.shape[0]
    scope: dict[str, object] = {
        "np": np,
        DTYPE: np.float64,
        "rng": rng,
        nm.BATCH: m,
        nm.L2: float(plan.derivation.spec.l2),
    }
    # the helpers the module's statements call (_sigmoid, _erf, _keep_mask, the image
    # layers' _pad, _windows, _contract, ...): the module's own, by name
    for helper, value in vars(module).items():
        if helper.startswith("_") and not helper.startswith("__") and callable(value):
            scope[helper] = value
    values: dict[str, np.ndarray] = {nm.INPUT: X, nm.TARGET: Y}
    values.update({k: np.array(v, dtype=np.float64) for k, v in params.items()})
    scope.update(values)
    bind = plan.bindings("grad")
    stmts = training_statements(plan, rng is not None)
    renewed: dict[str, np.ndarray] = {}
    assigned: list[np.ndarray] = []
    added_to: dict[int, np.ndarray] = {}
    for i, s in enumerate(stmts):
        value = _eval(s.expr.xreplace(bind), scope, printer)
        if s.add:
            added_to[i] = np.asarray(scope[s.target.name], dtype=np.float64)
            value = scope[s.target.name] + value
        value = np.asarray(value, dtype=np.float64)
        assigned.append(value)
        if isinstance(s, Renew):  # a buffer's new value: the old one stays in values
            renewed[s.target.name] = value
            continue
        scope[s.target.name] = value
        values[s.target.name] = value
    step = Step(values, stmts, assigned, added_to, scope=scope)
    step.after = {k: values[k] for k in params}
    step.after.update(renewed)
    _update(plan, step, scope, printer)
    return step


def _eval(expr: sp.Expr, scope: dict[str, object], printer: NumPyCode) -> object:
    source = printer.doprint(expr)
    with np.errstate(over="ignore", under="ignore"):
        return eval(source, scope)  # noqa: S307 - our printer's text, our namespace


def _update(
    plan: Plan, step: Step, scope: dict[str, object], printer: NumPyCode
) -> None:
    """The optimizer's first step: its rule per parameter, from zero state, t = 1."""
    up = plan.update
    scalars: dict[sp.Symbol, float] = {sym: float(v) for sym, v in up.numbers}
    scalars[up.step] = 1.0
    local: dict[str, object] = {"np": np, DTYPE: np.float64}
    local.update({s.name: v for s, v in scalars.items()})
    for a in up.scalars:
        value = float(_eval(a.expr, local, printer))
        scalars[a.target] = value
        local[a.target.name] = value
    step.scalars = scalars
    for s in up.state:
        step.state_before[s.key] = {}
        step.state_after[s.key] = {}
    for param in plan.trainable:
        p = step.values[param.name]
        g = step.values[plan.grads[param.name].name]
        env = dict(local)
        env[up.param.name], env[up.grad.name] = p, g
        for s in up.state:
            zero = np.zeros_like(p)
            env[s.symbol.name] = zero
            step.state_before[s.key][param.name] = zero
        for a in up.rule:
            env[a.target.name] = np.asarray(_eval(a.expr, env, printer), np.float64)
        step.after[param.name] = env[up.param.name]  # type: ignore[assignment]
        for s in up.state:
            step.state_after[s.key][param.name] = env[s.symbol.name]  # type: ignore[assignment]


def is_drawn(s: Stmt) -> bool:
    """s draws random numbers (dropout's mask)."""
    return isinstance(s, Draw)


__all__ = ["Step", "evaluate", "is_drawn", "training_statements"]
