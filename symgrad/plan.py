"""The Plan: a Derivation laid out as the statements of one training step.

Every printer reads the plan and nothing else decides anything: the NumPy printer turns
its statements into `loss_and_grad` (each statement an allocating expression), the
in-place printer into `step` (each statement ufunc calls with `out=` into the work arrays
`storage` assigns), the report into equations. A statement has a target, a SymPy
expression over array symbols (with the array nodes of arrays.py for products and
reductions), the equation it implements and the derivation section it comes from.

The network is a chain of ops, each with a forward and a backward method:

    affine      Z = X W + b                      dW = Xᵀ δ, db = Σₙ δ, ∂L/∂X = δ Wᵀ
    activation  A = f(Z)                         δ = G ⊙ f'(·), f' in A or in Z
    output      Ŷ = f(Z), L = Σ ℓ(Ŷ, Y) / m      δ = the derived output delta

Fusions are decided here, once per layer: an activation f(z) = z·g(z) with g piecewise
constant and g = f' (ReLU, leaky ReLU) keeps its mask M = g(Z) from the forward pass
(A = Z ⊙ M, δ = G ⊙ M); binary cross-entropy on a sigmoid computes softplus(−Z) once, for
the loss and for Ŷ = e^{−softplus(−Z)}; softmax is written with row reductions so that
its log-softmax, when the loss reads it, shares the row max and the row sums.

Some numbers differ between the two uses of the backward pass and are symbols bound by
each printer (`bindings`): the delta's scale (1/m; η/m in a step that folds sgd's
learning rate into the gradients) and the l2 coefficient the gradients carry (0 where the
update applies l2 as a decay instead).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import sympy as sp

from . import naming as nm
from . import optimizers
from .arrays import (
    ArrayNode,
    ColSum,
    MatProduct,
    ReductionBase,
    RowMax,
    RowSum,
    Total,
    Transposed,
)
from .derive import LS, ActivationRule, Derivation
from .functions import numeric, sigmoid, softplus
from .ops import a, y, z
from .printers import text

Shape = tuple[int | str, ...]  # "m": the batch size

BATCH = sp.Symbol(nm.BATCH, positive=True, integer=True)
SCALE = sp.Symbol(nm.SCALE, positive=True)
L2 = sp.Symbol(nm.L2, nonnegative=True)
L2_GRAD = sp.Symbol(nm.L2_GRAD, nonnegative=True)
LOSS = sp.Symbol(nm.LOSS, real=True)


def arr(name: str) -> sp.Symbol:
    """The symbol standing for the array `name` in a statement."""
    return sp.Symbol(name, real=True)


X, Y = arr(nm.INPUT), arr(nm.TARGET)
YHAT = sp.Symbol("ŷ", real=True)  # the prediction, in equations


@dataclass(frozen=True)
class Stmt:
    """target = expr (or target += expr when `add`): one step of the computation.

    Attributes:
        phase: "forward", "loss" or "backward".
        section: the derivation section it implements (the report's anchor).
        equation: the math, in the names of naming.py (unicode).
        note: why this form, when there is something to say (shown once).
    """

    target: sp.Symbol
    expr: sp.Expr
    phase: str
    section: str
    equation: str = ""
    note: str = ""
    add: bool = False

    @property
    def reads(self) -> set[sp.Symbol]:
        return {s for s in self.expr.free_symbols if isinstance(s, sp.Symbol)}


@dataclass(frozen=True)
class Param:
    """A parameter (trainable) or buffer of the network, with how it is initialized."""

    name: str
    shape: tuple[int, ...]
    init: tuple[str | int, ...]  # ("he_normal", fan_in, fan_out), ("zeros",), ...
    layer: int
    trainable: bool = True
    weight: bool = False  # l2 applies to it


@dataclass(frozen=True)
class Update:
    """The optimizer's statements, for one parameter p with gradient g.

    `rule` is the registry's, with the learning rate folded into the gradients when
    the optimizer allows it (then `folded`); `decay_rule` is the rule for weights when
    the l2 term is applied in the update rather than in the gradients.
    """

    name: str
    settings: tuple[tuple[str, float | bool], ...]
    scalars: tuple[optimizers.Assign, ...]
    rule: tuple[optimizers.Assign, ...]
    decay_rule: tuple[optimizers.Assign, ...] | None
    state: tuple[optimizers.StateArray, ...]
    folded: bool


@dataclass(frozen=True)
class Plan:
    """A derivation as statements: what every printer prints.

    Attributes:
        shapes: the shape of every array symbol (inputs, parameters, values).
        roles: each value's (role, layer), for names of work arrays and comments.
        output: the symbol of Ŷ.
        grads: each trainable parameter's gradient symbol.
    """

    derivation: Derivation
    params: tuple[Param, ...]
    forward: tuple[Stmt, ...]
    loss: tuple[Stmt, ...]
    backward: tuple[Stmt, ...]
    output: sp.Symbol
    grads: dict[str, sp.Symbol]
    update: Update
    shapes: dict[sp.Symbol, Shape]
    roles: dict[sp.Symbol, tuple[str, int]]
    l2: bool

    @property
    def statements(self) -> tuple[Stmt, ...]:
        return self.forward + self.loss + self.backward

    @property
    def trainable(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.trainable)

    def bindings(self, use: str) -> dict[sp.Symbol, sp.Expr]:
        """The values of the plan's symbolic numbers in `loss_and_grad` ("grad") or in
        the in-place step ("step", where the scale stays a symbol: `step_scale`)."""
        l2 = L2 if self.l2 else sp.S.Zero
        if use == "step":
            return {L2_GRAD: sp.S.Zero if self.update.folded else l2}
        return {SCALE: 1 / BATCH, L2_GRAD: l2}

    @property
    def step_scale(self) -> sp.Expr:
        """What the step scales the output delta by: 1/m, or η/m when the learning rate
        is folded into the gradients."""
        if self.update.folded:
            return sp.Float(dict(self.update.settings)["learning_rate"]) / BATCH
        return 1 / BATCH

    def forward_values(self) -> tuple[sp.Symbol, ...]:
        """The values of the forward pass that the loss or the backward pass read."""
        later = set().union(*(s.reads for s in self.loss + self.backward))
        return tuple(
            s.target
            for s in self.forward
            if s.target in later and s.target != self.output
        )

    @functools.cached_property
    def storage(self) -> Storage:
        return _allocate(self)


@dataclass(frozen=True)
class Storage:
    """Where the in-place step keeps each value: work arrays named by role.

    Attributes:
        home: each value -> the work array that holds it (a gradient's: its own name,
            an array of the optimizer state).
        arrays: each work array -> its shape, in the order they are made.
    """

    home: dict[sp.Symbol, str]
    arrays: dict[str, Shape]
    layer_of: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- the builder


class _Builder:
    """Collects statements, shapes and roles as the ops of the chain add them."""

    def __init__(self, d: Derivation) -> None:
        self.d = d
        self.params: list[Param] = []
        self.stmts: dict[str, list[Stmt]] = {"forward": [], "loss": [], "backward": []}
        self.shapes: dict[sp.Symbol, Shape] = {}
        self.roles: dict[sp.Symbol, tuple[str, int]] = {}
        self.grads: dict[str, sp.Symbol] = {}

    def param(self, p: Param) -> sp.Symbol:
        self.params.append(p)
        sym = arr(p.name)
        self.shapes[sym] = p.shape
        return sym

    def emit(
        self,
        phase: str,
        role: str,
        l: int,  # noqa: E741
        expr: sp.Expr,
        shape: Shape,
        section: str,
        equation: str = "",
        note: str = "",
    ) -> sp.Symbol:
        target = arr(nm.value(role, l))
        self.shapes[target] = shape
        self.roles[target] = (role, l)
        eq = equation or f"{nm.value_text(role, l)} = {_text(expr)}"
        self.stmts[phase].append(Stmt(target, expr, phase, section, eq, note))
        return target

    def gradient(
        self, param: str, expr: sp.Expr, section: str, equation: str
    ) -> sp.Symbol:
        target = arr(nm.grad(param))
        self.shapes[target] = self.shapes[arr(param)]
        self.grads[param] = target
        self.stmts["backward"].append(Stmt(target, expr, "backward", section, equation))
        return target


def _text(e: sp.Expr) -> str:
    return text(e).replace(" - ", " − ")


# ---------------------------------------------------------------- ops


@dataclass(frozen=True)
class Back:
    """A gradient flowing into the op below, with its equation text."""

    expr: sp.Expr
    text: str


@dataclass
class Affine:
    """Z = X W + b for layer l (the dense layer's linear part)."""

    l: int  # noqa: E741
    fan_in: int
    units: int
    init: str
    x: sp.Symbol = X
    W: sp.Symbol = X  # noqa: N815 - set by forward
    b: sp.Symbol = X

    @property
    def section(self) -> str:
        return f"dense-{self.l}"

    def forward(self, bd: _Builder, x: sp.Symbol) -> sp.Symbol:
        l = self.l  # noqa: E741
        self.x = x
        self.W = bd.param(
            Param(
                nm.W(l),
                (self.fan_in, self.units),
                (self.init, self.fan_in, self.units),
                l,
                weight=True,
            )
        )
        self.b = bd.param(Param(nm.b(l), (self.units,), ("zeros",), l))
        return bd.emit(
            "forward",
            "z",
            l,
            MatProduct(x, self.W) + self.b,
            (nm.BATCH, self.units),
            self.section,
            f"Z{l} = {_name(x)} W{l} + b{l}",
        )

    def backward(
        self, bd: _Builder, delta: sp.Symbol, need_input: bool
    ) -> sp.Symbol | None:
        l = self.l  # noqa: E741
        x_name = _name(self.x)
        dW = MatProduct(Transposed(self.x), delta)  # noqa: N806
        eq = f"∂L/∂W{l} = {x_name}ᵀ δ{l}"
        if bd.d.spec.l2 > 0:
            dW += L2_GRAD * self.W  # noqa: N806
            eq += f" + l2·W{l}"
        bd.gradient(nm.W(l), dW, self.section, eq)
        bd.gradient(nm.b(l), ColSum(delta), self.section, f"∂L/∂b{l} = Σₙ δ{l}")
        if not need_input:
            return None
        # ∂L/∂X, consumed by the op below
        return Back(MatProduct(delta, Transposed(self.W)), f"δ{l} W{l}ᵀ")


@dataclass
class Activation:
    """A = f(Z) for a hidden layer, with its derived f' for the backward pass."""

    l: int  # noqa: E741
    rule: ActivationRule
    z: sp.Symbol = X
    out: sp.Symbol = X
    mask: sp.Symbol | None = None

    @property
    def section(self) -> str:
        return f"hidden-{self.l}"

    def forward(self, bd: _Builder, zs: sp.Symbol) -> sp.Symbol:
        l, act = self.l, self.rule  # noqa: E741
        self.z = zs
        shape = bd.shapes[zs]
        f = act.forward.xreplace({z: zs})
        if f == zs:  # identity: the output is the pre-activation
            self.out = zs
            return zs
        g = mask_factor(act)
        if g is not None:
            self.mask = bd.emit(
                "forward",
                "mask",
                l,
                g.xreplace({z: zs}),
                shape,
                self.section,
                f"M{l} = {act.name}'(Z{l})",
            )
            self.out = bd.emit(
                "forward",
                "a",
                l,
                zs * self.mask,
                shape,
                self.section,
                f"A{l} = {act.name}(Z{l}) = Z{l} ⊙ M{l}",
            )
            return self.out
        self.out = bd.emit(
            "forward", "a", l, f, shape, self.section, f"A{l} = {act.name}(Z{l})"
        )
        return self.out

    def backward(self, bd: _Builder, back: Back) -> sp.Symbol:
        """δ = G ⊙ f'(·), given G = ∂L/∂A (δ_{l+1} W_{l+1}ᵀ)."""
        l, act = self.l, self.rule  # noqa: E741
        shape = bd.shapes[self.z]
        rule = f"{act.name}'(z) = {_text(act.df)}"
        if self.mask is not None:
            factor: sp.Expr = self.mask
        else:
            factor = act.df.xreplace({a: self.out, z: self.z})
        if factor == 1:
            return bd.emit(
                "backward",
                "delta",
                l,
                back.expr,
                shape,
                self.section,
                f"δ{l} = {back.text}",
                rule,
            )
        g_sym = bd.emit(
            "backward",
            "back",
            l,
            back.expr,
            shape,
            self.section,
            f"G{l} = {back.text}",
        )
        return bd.emit(
            "backward",
            "delta",
            l,
            g_sym * factor,
            shape,
            self.section,
            f"δ{l} = G{l} ⊙ {act.name}'(Z{l})",
            rule,
        )


def _name(s: sp.Symbol) -> str:
    return s.name


@dataclass
class Output:
    """The output activation, the loss on it, and the derived output delta."""

    l: int  # noqa: E741
    z: sp.Symbol = X
    out: sp.Symbol = X
    names: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    loss_expr: sp.Expr = sp.S.Zero

    section = "output"

    def forward(self, bd: _Builder, zs: sp.Symbol) -> sp.Symbol:
        d, l = bd.d, self.l  # noqa: E741
        act = d.layers[-1].activation
        shape = bd.shapes[zs]
        self.z = zs
        loss = d.output.forward
        names: dict[sp.Symbol, sp.Expr] = {z: zs, y: Y}
        if act.vector:
            # softmax, with its row max and row sums shared by the log-softmax
            zmax = bd.emit(
                "forward", "rowmax", l, RowMax(zs), (nm.BATCH, 1), self.section
            )
            s = bd.emit(
                "forward",
                "shifted",
                l,
                zs - zmax,
                shape,
                self.section,
                note="subtracting the row max keeps exp() from overflowing",
            )
            e = bd.emit("forward", "exp", l, sp.exp(s), shape, self.section)
            esum = bd.emit(
                "forward", "expsum", l, RowSum(e), (nm.BATCH, 1), self.section
            )
            self.out = bd.emit(
                "forward",
                "a",
                l,
                e / esum,
                shape,
                self.section,
                f"Ŷ = A{l} = softmax(Z{l})",
            )
            if loss.has(LS):
                log_sum = bd.emit(
                    "forward", "logsum", l, sp.log(esum), (nm.BATCH, 1), self.section
                )
                names[LS] = bd.emit(
                    "forward",
                    "logsoftmax",
                    l,
                    s - log_sum,
                    shape,
                    self.section,
                    f"LS{l} = log softmax(Z{l}) = S{l} − log Σⱼ E{l}",
                )
        elif act.forward == sigmoid(z) and loss.has(softplus(-z)):
            sp_ = bd.emit(
                "forward",
                "softplus",
                l,
                softplus(-zs),
                shape,
                self.section,
                note="softplus(−Z) serves the loss and σ(Z) = e^{−softplus(−Z)}",
            )
            self.out = bd.emit(
                "forward",
                "a",
                l,
                sp.exp(-sp_),
                shape,
                self.section,
                f"Ŷ = A{l} = σ(Z{l}) = exp(−SP{l})",
            )
            loss = loss.xreplace({softplus(-z): sp_})
        else:
            f = act.forward.xreplace({z: zs})
            if f == zs:
                self.out = zs
            else:
                self.out = bd.emit(
                    "forward",
                    "a",
                    l,
                    f,
                    shape,
                    self.section,
                    f"Ŷ = A{l} = {act.name}(Z{l})",
                )
        names[a] = self.out
        self.names = names
        self.loss_expr = loss.xreplace(names)
        return self.out

    def loss(self, bd: _Builder, weights: list[sp.Symbol]) -> None:
        d = bd.d
        term = Total(self.loss_expr) / BATCH
        bd.stmts["loss"].append(
            Stmt(
                LOSS,
                term,
                "loss",
                "loss",
                f"L = Σ ℓ / m,  ℓ = {_text(d.output.loss.xreplace({a: YHAT}))}",
            )
        )
        if d.spec.l2 > 0:
            squares = sp.Add(*(Total(w**2) for w in weights))
            bd.stmts["loss"].append(
                Stmt(
                    LOSS,
                    L2 / 2 * squares,
                    "loss",
                    "loss",
                    "L += l2/2 · Σ ‖W‖²",
                    add=True,
                )
            )

    def backward(self, bd: _Builder) -> sp.Symbol:
        d, l = bd.d, self.l  # noqa: E741
        out = d.output
        shape = bd.shapes[self.z]
        if out.jvp:
            h = bd.emit(
                "backward",
                "h",
                l,
                out.delta.xreplace(self.names),
                shape,
                self.section,
                f"H{l} = Ŷ ⊙ ∂ℓ/∂Ŷ = {_text(out.delta)}",
            )
            hsum = bd.emit(
                "backward", "hsum", l, RowSum(h), (nm.BATCH, 1), self.section
            )
            return bd.emit(
                "backward",
                "delta",
                l,
                (h - self.out * hsum) * SCALE,
                shape,
                self.section,
                f"δ{l} = (H{l} − Ŷ ⊙ Σₖ H{l}ₖ) / m",
                "softmax's Jacobian: δ = h − ŷ ⊙ Σₖ hₖ",
            )
        shown = _text(out.delta.xreplace({a: sp.Symbol("ŷ")}))
        why = f"{out.loss_title.split(' (')[0]} on {d.layers[-1].activation.title}: "
        why += (
            f"SymPy simplified ∂ℓ/∂ŷ · ∂ŷ/∂z to {shown}"
            if out.collapsed
            else f"∂ℓ/∂ŷ · ∂ŷ/∂z = {shown}"
        )
        return bd.emit(
            "backward",
            "delta",
            l,
            out.delta.xreplace(self.names) * SCALE,
            shape,
            self.section,
            f"δ{l} = ∂L/∂Z{l} = ({shown}) / m",
            why,
        )


# ---------------------------------------------------------------- the plan


def build(d: Derivation) -> Plan:
    """The plan of a derivation: forward, loss, backward and update as statements."""
    bd = _Builder(d)
    bd.shapes[X] = (nm.BATCH, d.spec.input)
    bd.shapes[Y] = (nm.BATCH, d.layers[-1].units)
    chain: list[tuple[Affine, Activation | Output]] = []
    x = X
    for rule in d.layers:
        affine = Affine(rule.index, rule.fan_in, rule.units, _init(d, rule.activation))
        zs = affine.forward(bd, x)
        last = rule.index == d.depth
        act: Activation | Output = (
            Output(rule.index) if last else Activation(rule.index, rule.activation)
        )
        x = act.forward(bd, zs)
        chain.append((affine, act))
    output = chain[-1][1]
    assert isinstance(output, Output)
    output.loss(bd, [arr(p.name) for p in bd.params if p.weight])
    delta = output.backward(bd)
    for i in range(len(chain) - 1, -1, -1):
        affine, _ = chain[i]
        back = affine.backward(bd, delta, need_input=i > 0)
        if back is not None:
            below = chain[i - 1][1]
            assert isinstance(below, Activation)
            delta = below.backward(bd, back)
    return Plan(
        d,
        tuple(bd.params),
        tuple(bd.stmts["forward"]),
        tuple(bd.stmts["loss"]),
        tuple(bd.stmts["backward"]),
        output.out,
        bd.grads,
        _update(d),
        bd.shapes,
        bd.roles,
        d.spec.l2 > 0,
    )


RELU_FAMILY = ("relu", "leaky_relu", "elu")  # "auto" init uses He for these


def _init(d: Derivation, act: ActivationRule) -> str:
    if d.spec.init != "auto":
        return d.spec.init
    return (
        "he_normal" if act.name in RELU_FAMILY and not act.custom else "glorot_uniform"
    )


def _update(d: Derivation) -> Update:
    spec = d.spec.optimizer
    settings = dict(spec.params)
    scalars, rule = optimizers.statements(spec.name, settings)
    definition = optimizers.OPTIMIZERS[spec.name]
    g, p = optimizers.g, optimizers.p
    decay = None
    if definition.folds_learning_rate:
        lr = definition.setting("learning_rate").symbol
        # the step's gradients carry η already: g here stands for η ∂L/∂p
        folded = [
            optimizers.Assign(s.target, sp.expand(s.expr.xreplace({g: g / lr})), s.note)
            for s in rule
        ]
        if d.spec.l2 > 0:  # l2 as a decay: p ← p − η (∂L/∂p + l2 p)
            decay = tuple(
                optimizers.Assign(
                    s.target,
                    sp.collect(sp.expand(s.expr.xreplace({g: g / lr + L2 * p})), p),
                    "l2 as a decay of W",
                )
                for s in rule
            )
        rule = folded
    return Update(
        spec.name,
        tuple(spec.params),
        tuple(scalars),
        tuple(rule),
        decay,
        definition.state,
        definition.folds_learning_rate,
    )


@functools.cache
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


# ---------------------------------------------------------------- storage


def _elementwise_reads(e: sp.Expr) -> set[sp.Symbol]:
    """The symbols e reads outside any matrix product or reduction: those an in-place
    write may overlap, since every entry is read before its own entry is written."""
    if isinstance(e, ArrayNode):
        return set()
    if e.is_Symbol:
        return {e}
    out: set[sp.Symbol] = set()
    for arg in e.args:
        out |= _elementwise_reads(arg)
    return out


def _allocate(plan: Plan) -> Storage:
    """Work arrays for the values of the step, by role, reused where a value dies.

    A value goes into the array of an operand that is read for the last time by its
    statement, elementwise, with the same shape and the same family (a layer's forward
    values, its gradients, its row statistics); else into a free array of its family
    and shape (one whose value is dead); else into a new one. Gradients of parameters
    live in the optimizer state's arrays, under their own names.
    """
    stmts = list(plan.statements)
    last_read: dict[sp.Symbol, int] = {}
    for i, s in enumerate(stmts):
        for sym in s.reads:
            last_read[sym] = i
    grads = set(plan.grads.values())
    home: dict[sp.Symbol, str] = {}
    arrays: dict[str, Shape] = {}
    layer_of: dict[str, int] = {}
    holder: dict[str, sp.Symbol] = {}  # array -> the value it holds now
    counts: dict[tuple[str, int], int] = {}
    family_of: dict[str, str] = {}
    for i, s in enumerate(stmts):
        if s.target == LOSS:
            continue
        if s.target in grads:
            home[s.target] = s.target.name
            continue
        if s.target in home:  # accumulated (+=): stays where it is
            continue
        role, l = plan.roles[s.target]  # noqa: E741
        family = nm.ROLES[role].family
        shape = plan.shapes[s.target]
        chosen = None
        for sym in sorted(_elementwise_reads(s.expr), key=str):
            name = home.get(sym)
            if (
                name is not None
                and holder.get(name) == sym
                and last_read.get(sym) == i
                and arrays[name] == shape
                and family_of[name] == family
                and layer_of[name] == l
            ):
                chosen = name
                break
        if chosen is None:
            for name, held in holder.items():
                if (
                    arrays[name] == shape
                    and family_of[name] == family
                    and layer_of[name] == l
                    and last_read.get(held, -1) < i
                    and name not in {home.get(r) for r in s.reads}
                ):
                    chosen = name
                    break
        if chosen is None:
            k = counts.get((family, l), 0) + 1
            counts[(family, l)] = k
            chosen = nm.buffer(family, l, k)
            arrays[chosen] = shape
            layer_of[chosen] = l
            family_of[chosen] = family
        home[s.target] = chosen
        holder[chosen] = s.target
    return Storage(home, arrays, layer_of)


def reads_in_order(stmts: Iterable[Stmt]) -> list[sp.Symbol]:
    """Every symbol the statements read, in order of first appearance."""
    seen: dict[sp.Symbol, None] = {}
    for s in stmts:
        for sym in sorted(s.reads, key=str):
            seen.setdefault(sym)
    return list(seen)


__all__ = ["Plan", "Stmt", "Storage", "build", "ReductionBase"]
