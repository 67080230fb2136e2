"""The registry of optimizers: each entry is the whole kind — settings, state, update.

An optimizer is registered once, as activations.py registers activations. Its entry declares
everything the pipeline needs about it, so that nothing downstream tests its name:

- its settings (defaults, bounds, names in the math), which the spec validator reads;
- its state arrays, kept per parameter between steps (zeros at first);
- its per-step scalars, numbers computed once per step from the step count t (after
  the increment) and the settings, with their names in the math (adam's αₜ and cₜ);
- its update rule: statements over one parameter p, its gradient g (of the batch loss,
  l2 included), its state arrays and its scalars;
- its temporaries: how many scratch arrays of a parameter's shape the in-place step
  needs to evaluate the rule (beyond g, which serves as scratch once the rule has read
  it for the last time). RMSprop's v ← α v + (1 − α) g² needs one for g² (g is read
  again by p's statement).

The plan (plan.py) turns an entry and a spec's settings into its `Update`, which every
printer reads: the in-place step, the array-API update, the report.

Defaults and update rules follow torch.optim (SGD with momentum and dampening 0, Adam
with its bias corrections), so a generated module can be checked against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from . import naming as nm
from .sym.text import written

p = sp.Symbol("p", real=True)  # a parameter
g = sp.Symbol("g", real=True)  # its gradient
t = sp.Symbol("t", positive=True, integer=True)  # the step count, after the increment


@dataclass(frozen=True)
class Setting:
    """A number or switch of an optimizer, with its bounds and its names in the math.

    low/high bound a number (None: unbounded); `*_open` excludes the bound; `integer`
    asks for a whole number. A default of None makes the setting required (a schedule's
    step_size). `var` names its symbol (and its variable in the code) where the spec's
    key would clash with another name of the update (schedules.py: lr_step_size).
    `exact_zero`: a value of 0 is given to the rule as the number 0, not as the
    setting's symbol, so that the rule can leave out what it would multiply (RMSprop
    without momentum keeps no momentum buffer, as torch.optim.RMSprop).
    """

    name: str
    default: float | bool | None
    tex: str
    text: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    var: str = ""
    exact_zero: bool = False  # 0 reaches the rule as 0, which may then leave out a term

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.var or self.name, real=True)

    def problem(self, value: float) -> str | None:
        """Why value is not allowed, or None."""
        if isinstance(self.default, bool):
            return None
        if self.integer and not float(value).is_integer():
            return f"{self.name} must be a whole number"
        below = self.low is not None and (
            value < self.low or (self.low_open and value == self.low)
        )
        above = self.high is not None and (
            value > self.high or (self.high_open and value == self.high)
        )
        if not (below or above):
            return None
        if self.high is None and self.low == 0:
            return f"{self.name} must be {'positive' if self.low_open else '≥ 0'}"
        if self.high is None:
            return f"{self.name} must be {'>' if self.low_open else '≥'} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{self.name} must be in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class StateArray:
    """A per-parameter array of the optimizer's state, kept between steps (zeros at 0)."""

    key: str  # its key in the state dict: state[key][param name]
    symbol: sp.Symbol
    tex: str
    text: str


@dataclass(frozen=True)
class StepScalar:
    """A number the update computes once per step from t and the settings.

    `value(settings)` is its expression (settings as `OptimizerDef.rule` gets them);
    tex and text name it in the report and in the code's comments.
    """

    symbol: sp.Symbol
    tex: str
    text: str
    value: Callable[[dict[str, sp.Expr]], sp.Expr]
    note: str = ""  # what it is, in words


@dataclass(frozen=True)
class Assign:
    """target ← expr: one statement of an update rule (scalar or elementwise)."""

    target: sp.Symbol
    expr: sp.Expr
    note: str = ""  # what it is, in words (for the report and the code comment)


@dataclass(frozen=True)
class Shown:
    """A line of an update rule as a textbook writes it, for the report only: its
    expression is built unevaluated (`written`), so that it prints in the order it is
    read, p ← p − η·m̂/(√v̂ + ε), not in SymPy's. `define` makes it a name for a value
    (m̂ = m/(1 − β₁ᵗ)) rather than an assignment. tests/test_training.py checks that
    an entry's lines compute what its rule computes."""

    target: sp.Symbol
    expr: sp.Expr
    define: bool = False
    note: str = ""


@dataclass(frozen=True)
class OptimizerDef:
    """A registered optimizer.

    Attributes:
        settings: its numbers and switches, in the order a spec lists them.
        state: its per-parameter arrays.
        scalars: the per-step scalars (functions of t and the settings) the rule reads.
        rule: given the settings, the statements that update p (and the state) from g.
        temporaries: how many scratch arrays of a parameter's shape the in-place update
            needs besides g (the in-place printer fails, naming this, when too few).
        folds_learning_rate: the rule is p ← p − η g and nothing else reads g: the step
            may scale the gradients by η as it computes them, and subtract them as they
            are (one pass less over every parameter); l2 is then applied as a decay of p.
        textbook: given the settings (η possibly a schedule's ηₜ), the rule as a
            textbook writes it (`Shown` lines), for the report; None: the rule itself.
        shown_names: the names (symbol, LaTeX, text) of the values its lines define
            (m̂, v̂).
    """

    name: str
    title: str
    settings: tuple[Setting, ...]
    state: tuple[StateArray, ...] = ()
    scalars: tuple[StepScalar, ...] = ()
    rule: Callable[[dict[str, sp.Expr]], list[Assign]] = lambda s: []
    temporaries: int = 0
    folds_learning_rate: bool = False
    notes: tuple[str, ...] = field(default=())
    textbook: Callable[[dict[str, sp.Expr]], list[Shown]] | None = None
    shown_names: tuple[tuple[sp.Symbol, str, str], ...] = ()

    def defaults(self) -> dict[str, float | bool]:
        return {s.name: s.default for s in self.settings if s.default is not None}

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)


OPTIMIZERS: dict[str, OptimizerDef] = {}


def register(opt: OptimizerDef) -> OptimizerDef:
    """Add an optimizer to the registry (a spec can then name it); returns it."""
    OPTIMIZERS[opt.name] = opt
    return opt


def math_names(opt: OptimizerDef) -> dict[sp.Symbol, tuple[str, str]]:
    """Each symbol of an optimizer's statements as (LaTeX, unicode text): p, g, t, its
    settings, its state arrays and its per-step scalars, as its entry names them."""
    names = {p: ("p", "p"), g: ("g", "g"), t: ("t", "t")}
    names.update({s.symbol: (s.tex, s.text) for s in opt.settings if s.tex})
    names.update({s.symbol: (s.tex, s.text) for s in opt.state})
    names.update({s.symbol: (s.tex, s.text) for s in opt.scalars})
    names.update({sym: (tex, txt) for sym, tex, txt in opt.shown_names})
    return names


def textbook(opt: OptimizerDef, args: dict[str, sp.Expr]) -> list[Shown]:
    """The entry's rule as a textbook writes it, with these settings (as `statements`
    makes them: numbers as symbols, η perhaps ηₜ), or its rule as it is."""
    if opt.textbook is not None:
        return opt.textbook(args)
    return [Shown(a.target, a.expr, note=a.note) for a in opt.rule(args)]


def arguments(opt: OptimizerDef, values: dict[str, float | bool]) -> dict[str, sp.Expr]:
    """The settings as the rule reads them: numbers as their symbols, switches as
    their values."""
    out: dict[str, sp.Expr] = {}
    for s in opt.settings:
        if isinstance(s.default, bool):
            out[s.name] = values[s.name]  # type: ignore[assignment]
        elif s.exact_zero and values[s.name] == 0:
            out[s.name] = sp.S.Zero
        else:
            out[s.name] = s.symbol
    return out


def statements(
    opt: OptimizerDef, values: dict[str, float | bool]
) -> tuple[list[Assign], list[Assign]]:
    """The per-step scalars and the update rule of an optimizer with these settings.

    Numbers stay symbols (the rule reads η, β₁, ... by name), but for a 0 of an
    `exact_zero` setting; switches (nesterov) choose the rule.
    """
    args = arguments(opt, values)
    scalars = [Assign(s.symbol, s.value(args), s.note) for s in opt.scalars]
    return scalars, opt.rule(args)


def folded(
    opt: OptimizerDef, rule: list[Assign], l2: sp.Symbol | None
) -> tuple[list[Assign], list[Assign] | None]:
    """The in-place step's rule for an optimizer that folds its learning rate into the
    gradients (g there stands for η ∂L/∂p), and, given the l2 coefficient's symbol, the
    rule for weights with l2 applied as a decay, p ← p − η (∂L/∂p + l2 p) (else None).
    The derivation of the step's rule, done once here: printers print it as it is."""
    lr = opt.setting("learning_rate").symbol
    step_rule = [
        Assign(s.target, sp.expand(s.expr.xreplace({g: g / lr})), s.note) for s in rule
    ]
    if l2 is None:
        return step_rule, None
    decay = [
        Assign(
            s.target,
            sp.collect(sp.expand(s.expr.xreplace({g: g / lr + l2 * p})), p),
            "l2 as a decay of W",
        )
        for s in rule
    ]
    return step_rule, decay


def averages_in_place(
    opt: OptimizerDef, rule: list[Assign]
) -> tuple[list[Assign], list[Assign]]:
    """The step's rule with each weighted sum c₁x + c₂u of two arrays (c₂ ≠ 1; x the
    statement's target or g, the array the in-place update writes the sum into) written
    c₂(r x + u), r = c₁/c₂, for an optimizer without temporaries, in a statement where
    g is read (so its array is no scratch): three passes over x and no scratch array for
    c₂u (adam's m ← β₁m + (1 − β₁)g, nesterov's g + μv; c₂ a setting, not a number).
    Returns the rule and the scalars r it reads, computed once a step before the loop.
    """
    if opt.temporaries:
        return rule, []
    arrays = {p, g} | {s.symbol for s in opt.state}
    ratios: list[Assign] = []

    def visit(e: sp.Expr, target: sp.Symbol) -> sp.Expr:
        if e.is_Atom:
            return e
        args = [visit(arg, target) for arg in e.args]
        e = e.func(*args) if args != list(e.args) else e
        terms = sp.Add.make_args(e)
        if len(terms) != 2:
            return e
        into = target if e.has(target) else g  # the array the sum is written into
        for first, second in (terms, terms[::-1]):
            c1, x = first.as_independent(*arrays, as_Add=False)
            c2, u = second.as_independent(*arrays, as_Add=False)
            if x == into and u in arrays and u != x and not c2.is_Number:
                r = sp.Symbol(nm.update_ratio(x.name), real=True)
                if all(a.target != r for a in ratios):
                    note = f"c₁/c₂ for {x.name} in c₁·{x.name} + c₂·u"
                    ratios.append(Assign(r, c1 / c2, note))
                return sp.Mul(c2, sp.Add(r * x, u), evaluate=False)
        return e

    out = []
    for i, a in enumerate(rule):
        # where g is read neither here nor later, its array is scratch enough
        if any(g in b.expr.free_symbols for b in rule[i:]):
            a = Assign(a.target, visit(a.expr, a.target), a.note)
        out.append(a)
    return out, ratios


LEARNING_RATE = Setting(
    "learning_rate", 0.01, r"\eta", "η", low=0.0, high=None, low_open=True
)

W = written
ONE = sp.S.One


def _average(c: sp.Expr, x: sp.Expr, u: sp.Expr) -> sp.Expr:
    """c·x + (1 − c)·u, as written."""
    return W("+", W("*", c, x), W("*", W("+", ONE, W("-", c)), u))


def _descent(lr: sp.Expr, step: sp.Expr) -> sp.Expr:
    """p − η·step, as written."""
    return W("+", p, W("-", W("*", lr, step)))


# ---------------------------------------------------------------------- sgd

register(
    OptimizerDef(
        "sgd",
        "stochastic gradient descent",
        (LEARNING_RATE,),
        rule=lambda s: [Assign(p, p - s["learning_rate"] * g)],
        folds_learning_rate=True,
        textbook=lambda s: [Shown(p, _descent(s["learning_rate"], g))],
    )
)

# ----------------------------------------------------------------- momentum

_velocity = StateArray("velocity", sp.Symbol("v", real=True), "v", "v")


def _momentum_rule(s: dict[str, sp.Expr]) -> list[Assign]:
    v, lr, mu = _velocity.symbol, s["learning_rate"], s["momentum"]
    step = lr * (g + mu * v) if s["nesterov"] is True else lr * v
    return [
        Assign(v, mu * v + g, "torch.optim.SGD's momentum buffer"),
        Assign(p, p - step, "Nesterov" if s["nesterov"] is True else ""),
    ]


def _momentum_textbook(s: dict[str, sp.Expr]) -> list[Shown]:
    v, lr, mu = _velocity.symbol, s["learning_rate"], s["momentum"]
    nesterov = s["nesterov"] is True
    step = W("+", g, W("*", mu, v)) if nesterov else v
    return [
        Shown(v, W("+", W("*", mu, v), g), note="the momentum buffer"),
        Shown(p, _descent(lr, step), note="Nesterov" if nesterov else ""),
    ]


register(
    OptimizerDef(
        "momentum",
        "gradient descent with momentum",
        (
            LEARNING_RATE,
            Setting("momentum", 0.9, r"\mu", "μ", low=0.0, high=1.0, high_open=True),
            Setting("nesterov", False, "", ""),
        ),
        state=(_velocity,),
        rule=_momentum_rule,
        textbook=_momentum_textbook,
    )
)

# --------------------------------------------------------------------- adam

_m = StateArray("m", sp.Symbol("m1", real=True), r"\mathbf{m}", "m")
_v = StateArray("v", sp.Symbol("m2", real=True), r"\mathbf{v}", "v")
_step_size = StepScalar(
    sp.Symbol("step_size", positive=True),
    r"\alpha_{t}",
    "αₜ",
    lambda s: s["learning_rate"] / (1 - s["beta1"] ** t),
    "η / (1 − β₁ᵗ)",
)
_root_correction = StepScalar(
    sp.Symbol("root_correction", positive=True),
    r"c_{t}",
    "cₜ",
    lambda s: sp.sqrt(1 - s["beta2"] ** t),
    "√(1 − β₂ᵗ)",
)


_m_hat = sp.Symbol("m_hat", real=True)
_v_hat = sp.Symbol("v_hat", real=True)
_HATS = (
    (_m_hat, r"\hat{\mathbf{m}}", "m̂"),
    (_v_hat, r"\hat{\mathbf{v}}", "v̂"),
)


def _adam_textbook(s: dict[str, sp.Expr], decay: sp.Expr | None = None) -> list[Shown]:
    """Adam's lines as the paper writes them (AdamW's with its decay term λ·p)."""
    m, v, b1, b2 = _m.symbol, _v.symbol, s["beta1"], s["beta2"]
    step = W("/", _m_hat, W("+", W("**", _v_hat, sp.S.Half), s["eps"]))
    if decay is not None:
        step = W("+", step, W("*", decay, p))
    return [
        Shown(m, _average(b1, m, g), note="first moment"),
        Shown(v, _average(b2, v, W("**", g, 2)), note="second moment"),
        Shown(_m_hat, W("/", m, W("+", ONE, W("-", W("**", b1, t)))), define=True),
        Shown(_v_hat, W("/", v, W("+", ONE, W("-", W("**", b2, t)))), define=True),
        Shown(p, _descent(s["learning_rate"], step)),
    ]


def _adam_rule(s: dict[str, sp.Expr]) -> list[Assign]:
    m, v, b1, b2 = _m.symbol, _v.symbol, s["beta1"], s["beta2"]
    return [
        Assign(m, b1 * m + (1 - b1) * g, "first moment"),
        Assign(v, b2 * v + (1 - b2) * g**2, "second moment"),
        Assign(
            p,
            p
            - _step_size.symbol * m / (sp.sqrt(v) / _root_correction.symbol + s["eps"]),
            "η m̂ / (√v̂ + ε), m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)",
        ),
    ]


register(
    OptimizerDef(
        "adam",
        "Adam",
        (
            Setting(
                "learning_rate", 0.001, r"\eta", "η", low=0.0, high=None, low_open=True
            ),
            Setting(
                "beta1", 0.9, r"\beta_{1}", "β₁", low=0.0, high=1.0, high_open=True
            ),
            Setting(
                "beta2", 0.999, r"\beta_{2}", "β₂", low=0.0, high=1.0, high_open=True
            ),
            Setting("eps", 1e-8, r"\epsilon", "ε", low=0.0, high=None, low_open=True),
        ),
        state=(_m, _v),
        scalars=(_step_size, _root_correction),
        rule=_adam_rule,
        textbook=_adam_textbook,
        shown_names=_HATS,
        notes=(
            "the bias corrections as torch.optim.Adam computes them: "
            "p ← p − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)",
        ),
    )
)

# -------------------------------------------------------------------- adamw

_decay = StepScalar(
    sp.Symbol("decay", positive=True),
    r"d_{t}",
    "dₜ",
    lambda s: 1 - s["learning_rate"] * s["weight_decay"],
    "1 − η λ: the decoupled weight decay",
)


def _adamw_rule(s: dict[str, sp.Expr]) -> list[Assign]:
    m, v, b1, b2 = _m.symbol, _v.symbol, s["beta1"], s["beta2"]
    return [
        Assign(m, b1 * m + (1 - b1) * g, "first moment"),
        Assign(v, b2 * v + (1 - b2) * g**2, "second moment"),
        Assign(
            p,
            _decay.symbol * p
            - _step_size.symbol * m / (sp.sqrt(v) / _root_correction.symbol + s["eps"]),
            "p decayed by η λ p, then the Adam step",
        ),
    ]


register(
    OptimizerDef(
        "adamw",
        "AdamW",
        (
            Setting(
                "learning_rate", 0.001, r"\eta", "η", low=0.0, high=None, low_open=True
            ),
            Setting(
                "beta1", 0.9, r"\beta_{1}", "β₁", low=0.0, high=1.0, high_open=True
            ),
            Setting(
                "beta2", 0.999, r"\beta_{2}", "β₂", low=0.0, high=1.0, high_open=True
            ),
            Setting("eps", 1e-8, r"\epsilon", "ε", low=0.0, high=None, low_open=True),
            Setting("weight_decay", 0.01, r"\lambda_{w}", "λ_w", low=0.0, high=None),
        ),
        state=(_m, _v),
        scalars=(_step_size, _root_correction, _decay),
        rule=_adamw_rule,
        textbook=lambda s: _adam_textbook(s, s["weight_decay"]),
        shown_names=_HATS,
        notes=(
            "as torch.optim.AdamW: the decay p ← p − η λ p is decoupled from the "
            "gradient (the spec's l2, if any, is part of g), then the Adam step",
        ),
    )
)

# ------------------------------------------------------------------ rmsprop

_square_avg = StateArray("square_avg", sp.Symbol("square_avg", real=True), "v", "v")
_buffer = StateArray(
    "momentum_buffer", sp.Symbol("buf", real=True), r"\mathbf{b}", "buf"
)


def _rmsprop_rule(s: dict[str, sp.Expr]) -> list[Assign]:
    v, buf, rho = _square_avg.symbol, _buffer.symbol, s["rho"]
    average = Assign(v, rho * v + (1 - rho) * g**2, "running mean of g²")
    scaled = g / (sp.sqrt(v) + s["eps"])
    if s["momentum"] == 0:  # no buffer, as torch.optim.RMSprop without momentum
        return [average, Assign(p, p - s["learning_rate"] * scaled)]
    return [
        average,
        Assign(buf, s["momentum"] * buf + scaled, "momentum"),
        Assign(p, p - s["learning_rate"] * buf),
    ]


def _rmsprop_textbook(s: dict[str, sp.Expr]) -> list[Shown]:
    v, buf = _square_avg.symbol, _buffer.symbol
    scaled = W("/", g, W("+", W("**", v, sp.S.Half), s["eps"]))
    average = Shown(v, _average(s["rho"], v, W("**", g, 2)), note="mean square")
    if s["momentum"] == 0:
        return [average, Shown(p, _descent(s["learning_rate"], scaled))]
    return [
        average,
        Shown(buf, W("+", W("*", s["momentum"], buf), scaled), note="momentum"),
        Shown(p, _descent(s["learning_rate"], buf)),
    ]


register(
    OptimizerDef(
        "rmsprop",
        "RMSprop",
        (
            LEARNING_RATE,
            Setting("rho", 0.99, r"\rho", "ρ", low=0.0, high=1.0, high_open=True),
            Setting("eps", 1e-8, r"\epsilon", "ε", low=0.0, high=None, low_open=True),
            Setting(
                "momentum",
                0.0,
                r"\mu",
                "μ",
                low=0.0,
                high=1.0,
                high_open=True,
                exact_zero=True,
            ),
        ),
        state=(_square_avg, _buffer),
        rule=_rmsprop_rule,
        textbook=_rmsprop_textbook,
        temporaries=1,  # (1 − ρ) g² for v, while g is still to be read
        notes=(
            "as torch.optim.RMSprop (alpha = ρ, not centered); with μ = 0 there is "
            "no momentum buffer, as in torch",
        ),
    )
)
