"""The registry of learning-rate schedules: each entry is the whole kind.

A schedule is `schedule:` inside the spec's optimizer mapping, `{name: cosine, t_max: 100}`.
Its entry declares its settings (defaults, bounds, names in the math; a default of None
makes a setting required), the learning rate of optimizer step k (k = 0, 1, ...: the
state's step count before the step) as an expression of η, k and its settings, and a
check across settings (cosine's eta_min below η). Every schedule also takes `warmup: K`:
η(k+1)/K for k < K, then the schedule at k − K (`rate`).

The plan (plan.py) puts the schedule's rate into the optimizer's update as the scalar
ηₜ, which the update rule reads in place of η; every printer prints it from there. The
formulas are the contract's (DESIGN.md, "Training as users expect it"), the numbers of
PyTorch's StepLR, ExponentialLR and CosineAnnealingLR stepped after every optimizer
step (cosine: until t_max; PyTorch's recursive form then rises again, the contract's
stays at eta_min).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .optimizers import Setting, written

Rate = Callable[[sp.Expr, sp.Expr, dict[str, sp.Expr]], sp.Expr]
T0 = sp.Symbol("t0", integer=True, nonnegative=True)  # the steps taken before this one


@dataclass(frozen=True)
class ScheduleDef:
    """A registered schedule.

    Attributes:
        settings: its numbers, in the order a spec lists them (warmup is added to all).
        rate: (η, k, settings as symbols) -> the learning rate of step k.
        torch: its PyTorch scheduler, for the report and the docs.
        check: (the settings' values, η) -> why they do not go together, or None.
        shown: as rate, the formula as it is written (unevaluated: optimizers.written),
            for the report.
    """

    name: str
    title: str
    settings: tuple[Setting, ...]
    rate: Rate
    torch: str
    check: Callable[[dict[str, float], float], str | None] = lambda v, lr: None
    shown: Rate | None = None

    def all_settings(self) -> tuple[Setting, ...]:
        return (*self.settings, WARMUP)

    def defaults(self) -> dict[str, float]:
        return {
            s.name: int(s.default) if s.integer else float(s.default)
            for s in self.all_settings()
            if s.default is not None
        }

    def setting(self, name: str) -> Setting:
        return next(s for s in self.all_settings() if s.name == name)


SCHEDULES: dict[str, ScheduleDef] = {}


def register(entry: ScheduleDef) -> ScheduleDef:
    """Add a schedule to the registry (a spec can then name it); returns it."""
    SCHEDULES[entry.name] = entry
    return entry


WARMUP = Setting(
    "warmup", 0, "K", "K", low=0.0, integer=True, var="lr_warmup"
)  # linear warmup steps, for every schedule


def rate(
    entry: ScheduleDef, lr: sp.Expr, k: sp.Expr, values: dict[str, float]
) -> sp.Expr:
    """The learning rate of step k under the schedule with these settings (numbers as
    their symbols), warmup included: η(k+1)/K for k < K, then the schedule at k − K."""
    args = {s.name: s.symbol for s in entry.settings}
    after = entry.rate(lr, k, args)
    if not values.get("warmup"):
        return after
    K = WARMUP.symbol
    return sp.Piecewise((lr * (k + 1) / K, k < K), (entry.rate(lr, k - K, args), True))


def shown(
    entry: ScheduleDef, lr: sp.Expr, t: sp.Expr, values: dict[str, float]
) -> sp.Expr:
    """The learning rate of step t, counted from 1, as written for the report (warmup:
    η·t/K for t ≤ K)."""
    W = written
    args = {s.name: s.symbol for s in entry.settings}
    rate = entry.shown or entry.rate
    if not values.get("warmup"):
        return rate(lr, W("+", t, sp.S.NegativeOne), args)
    K = WARMUP.symbol
    after = rate(lr, W("+", t, W("-", K), sp.S.NegativeOne), args)
    return sp.Piecewise(
        (W("/", W("*", lr, t), K), sp.Le(t, K, evaluate=False)),
        (after, True),
        evaluate=False,
    )


def math_names(entry: ScheduleDef) -> dict[sp.Symbol, tuple[str, str]]:
    """Each setting's symbol as (LaTeX, unicode text)."""
    return {s.symbol: (s.tex, s.text) for s in entry.all_settings()}


register(
    ScheduleDef(
        "step",
        "step decay",
        (
            Setting("step_size", None, "N", "N", low=1.0, integer=True, var="lr_step"),
            Setting(
                "gamma",
                0.1,
                r"\gamma",
                "γ",
                low=0.0,
                high=1.0,
                low_open=True,
                var="lr_gamma",
            ),
        ),
        lambda lr, k, s: lr * s["gamma"] ** sp.floor(k / s["step_size"]),
        "StepLR",
        shown=lambda lr, k, s: written(
            "*",
            lr,
            written("**", s["gamma"], sp.floor(written("/", k, s["step_size"]))),
        ),
    )
)

register(
    ScheduleDef(
        "exponential",
        "exponential decay",
        (
            Setting(
                "gamma",
                0.99,
                r"\gamma",
                "γ",
                low=0.0,
                high=1.0,
                low_open=True,
                var="lr_gamma",
            ),
        ),
        lambda lr, k, s: lr * s["gamma"] ** k,
        "ExponentialLR",
        shown=lambda lr, k, s: written("*", lr, written("**", s["gamma"], k)),
    )
)


def _cosine_shown(lr: sp.Expr, k: sp.Expr, s: dict[str, sp.Expr]) -> sp.Expr:
    """η_min + ½(η − η_min)(1 + cos(π·min(k, T)/T)), as written."""
    W, low, T = written, s["eta_min"], s["t_max"]
    angle = W("/", W("*", sp.pi, sp.Min(k, T, evaluate=False)), T)
    half = W("*", sp.S.Half, W("+", lr, W("-", low)), W("+", sp.S.One, sp.cos(angle)))
    return W("+", low, half)


def _eta_min_below(values: dict[str, float], lr: float) -> str | None:
    if values.get("eta_min", 0.0) >= lr:
        return f"eta_min must be below the learning rate {lr:g}"
    return None


register(
    ScheduleDef(
        "cosine",
        "cosine annealing",
        (
            Setting("t_max", None, "T", "T", low=1.0, integer=True, var="lr_t_max"),
            Setting("eta_min", 0.0, r"\eta_{\min}", "η_min", low=0.0, var="lr_eta_min"),
        ),
        lambda lr, k, s: s["eta_min"]
        + (lr - s["eta_min"])
        * (1 + sp.cos(sp.pi * sp.Min(k, s["t_max"]) / s["t_max"]))
        / 2,
        "CosineAnnealingLR",
        _eta_min_below,
        _cosine_shown,
    )
)
