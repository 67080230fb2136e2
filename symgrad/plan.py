"""The Plan: a Derivation laid out as the statements of one training step.

Every printer reads the plan and nothing else decides anything: the NumPy printer turns
its statements into `loss_and_grad` (each statement an allocating expression), the
in-place printer into `step` (each statement ufunc calls with `out=` into the work arrays
`storage` assigns), the report into equations. A statement has a target, a SymPy
expression over array symbols (with the array nodes of arrays.py for products and
reductions), the equation it implements and the derivation section it comes from.

The network is a chain of ops, each with a forward and a backward method; the backward
gets G = ∂L/∂(its output) and gives ∂L/∂(its input) to the op below:

    dense     Z = X W + b, A = f(Z)      δ = G ⊙ f'(·) (f' in A or in Z), dW = Xᵀ δ,
                                          db = Σₙ δ, ∂L/∂X = δ Wᵀ
      residual  A = X + f(X W + b)       ∂L/∂X = δ Wᵀ + G
      output    Ŷ = f(Z), L = Σ ℓ / m    δ = the derived output delta
    norm      the statements of its derived rule (reductions.norm_rule), on rows or, for
              batchnorm, on columns; a reduction inside an expression is computed first,
              as a statement of its own; batchnorm's batch and running statistics
    dropout   A = X ⊙ K, K drawn in training   ∂L/∂X = G ⊙ K

A layer kind is handled by its op alone: a norm added to the registry (layers.py) needs
no code here, its rule says everything.

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
from dataclasses import dataclass, field

import sympy as sp

from . import naming as nm
from . import ops, optimizers
from .arrays import (
    ArrayNode,
    ColSum,
    KeepMask,
    MatProduct,
    ReductionBase,
    RowMax,
    RowSum,
    Total,
    Transposed,
    on_axis,
)
from .derive import (
    LS,
    ActivationRule,
    Derivation,
    DropoutRule,
    LayerRule,
    NormLayerRule,
)
from .expr import NORM_X
from .functions import numeric, sigmoid, softplus
from .ops import a, y, z
from .printers import text
from .reductions import BETA, DBETA, DGAMMA, DX, GAMMA, G, N, Statement
from .reductions import text as rule_text

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
    when: str = ""  # "" always; "train" / "eval" (batchnorm's statistics), "dropout"
    # (training with a generator), "step" (the running statistics, in step only)

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
    """The optimizer's update, for one parameter p with gradient g: all that a printer of
    the update reads (none goes back to the optimizer registry).

    Attributes:
        name, title: the optimizer's name in the spec and its title in words.
        settings: the spec's settings, name -> value (switches included).
        numbers: each number among the settings as (its symbol, its value), in the
            entry's order; the statements read them by symbol.
        param, grad, step: the symbols of p, g and the step count t (after the
            increment) in the statements.
        scalars: the per-step scalars, `scalar ← f(t, settings)`, computed before the
            rule.
        rule: the registry's rule, g = ∂L/∂p with l2 included (the array-API update,
            the report).
        step_rule: the in-place step's rule: `rule`, or with the learning rate folded
            into the gradients (then `folded`, and g stands for η ∂L/∂p).
        decay_rule: the in-place rule for weights when l2 is applied in the update, as a
            decay, rather than in the gradients (folded only).
        state: the per-parameter arrays kept between steps.
        temporaries: the names, in the in-place update of one parameter, of its scratch
            arrays (plan.storage holds one per temporary and trainable parameter).
        names: each symbol of the statements as (LaTeX, unicode text).
        notes: what the report says besides the statements.
    """

    name: str
    title: str
    settings: tuple[tuple[str, float | bool], ...]
    numbers: tuple[tuple[sp.Symbol, float], ...]
    param: sp.Symbol
    grad: sp.Symbol
    step: sp.Symbol
    scalars: tuple[optimizers.Assign, ...]
    rule: tuple[optimizers.Assign, ...]
    step_rule: tuple[optimizers.Assign, ...]
    decay_rule: tuple[optimizers.Assign, ...] | None
    state: tuple[optimizers.StateArray, ...]
    temporaries: tuple[str, ...]
    names: dict[sp.Symbol, tuple[str, str]]
    folded: bool
    notes: tuple[str, ...] = ()


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
        kept = (
            s.target
            for s in self.forward
            if s.target in later and s.target != self.output
        )
        return tuple(dict.fromkeys(kept))

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
        per_param: the optimizer update's scratch: each work entry -> the name of its
            array in the update of one parameter (`Update.temporaries`). An entry is a
            dict with one array per trainable parameter, of its shape: not shared
            between parameters of one shape, so that the update's loop takes
            `scratch[k]` as it takes `state["v"][k]`; it costs what one more state
            array costs.
    """

    home: dict[sp.Symbol, str]
    arrays: dict[str, Shape]
    layer_of: dict[str, int] = field(default_factory=dict)
    per_param: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- the builder


class _Builder:
    """Collects statements, shapes and value roles as the ops of the chain add them."""

    def __init__(self, d: Derivation) -> None:
        self.d = d
        self.params: list[Param] = []
        self.stmts: dict[str, list[Stmt]] = {"forward": [], "loss": [], "backward": []}
        self.shapes: dict[sp.Symbol, Shape] = {}
        self.roles: dict[sp.Symbol, tuple[str, int]] = {}
        self.grads: dict[str, sp.Symbol] = {}
        self.lifted: dict[int, int] = {}  # reductions lifted, per layer

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
        shape: Shape | None,
        section: str,
        equation: str = "",
        note: str = "",
        *,
        name: str = "",
        when: str = "",
    ) -> sp.Symbol:
        """Add `name = expr` (name: the role's name for layer l, unless given)."""
        target = arr(name or nm.value(role, l))
        self.shapes[target] = shape if shape is not None else self.shape_of(expr)
        self.roles[target] = (role, l)
        label = name or nm.value_text(role, l)
        eq = equation or f"{label} = {_text(expr)}"
        self.stmts[phase].append(
            Stmt(target, expr, phase, section, eq, note, when=when)
        )
        return target

    def gradient(
        self, param: str, expr: sp.Expr, section: str, equation: str
    ) -> sp.Symbol:
        target = arr(nm.grad(param))
        self.shapes[target] = self.shapes[arr(param)]
        self.grads[param] = target
        self.stmts["backward"].append(Stmt(target, expr, "backward", section, equation))
        return target

    def shape_of(self, e: sp.Expr) -> Shape:
        """The shape of e's value: its arrays broadcast, reductions reduced."""
        if isinstance(e, sp.Symbol):
            return self.shapes.get(e, ())
        if isinstance(e, ReductionBase):
            inner = self.shape_of(e.args[0])
            if e.axis is None:
                return ()
            if e.axis == 1:
                return (inner[0], 1) if inner else ()
            return (inner[-1],) if inner else ()
        if isinstance(e, MatProduct):
            left, right = (self.shape_of(x) for x in e.args)
            return (left[0], right[-1])
        if isinstance(e, Transposed):
            return tuple(reversed(self.shape_of(e.args[0])))
        shapes = [self.shape_of(x) for x in e.args]
        return _broadcast([s for s in shapes if s])

    def lift(
        self, e: sp.Expr, l: int, phase: str, section: str, when: str = ""  # noqa: E741
    ) -> sp.Expr:
        """e with each reduction inside it computed first, as a statement of its own
        (its value has another shape than e's: the in-place step needs that)."""

        def visit(node: sp.Expr, top: bool) -> sp.Expr:
            if node.is_Atom:
                return node
            args = [visit(a, False) for a in node.args]
            node = node.func(*args) if args != list(node.args) else node
            if isinstance(node, ReductionBase) and node.axis is not None and not top:
                k = self.lifted[l] = self.lifted.get(l, 0) + 1
                name = f"{node.op.capitalize()}{l}_{k}"  # Mean7_1: layer 7's first
                return self.emit(
                    phase, "r", l, node, None, section, name=name, when=when
                )
            return node

        return visit(e, True)


def _broadcast(shapes: list[Shape]) -> Shape:
    if not shapes:
        return ()
    rank = max(len(s) for s in shapes)
    out: list[int | str] = []
    for k in range(rank):
        dims = {s[k - rank + len(s)] for s in shapes if k - rank + len(s) >= 0}
        dims.discard(1)
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _text(e: sp.Expr) -> str:
    return text(e)


# ---------------------------------------------------------------- ops
#
# Each op adds its forward statements given its input, and its backward statements
# given the gradient of the loss with respect to its output (a symbol, G{l}); it returns
# the gradient with respect to its input as an expression (`Back`), which the builder
# stores as G{l-1} for the op below. The output layer starts the backward pass from the
# derived output delta instead.


@dataclass(frozen=True)
class Back:
    """A gradient flowing into the op below, with its equation text (and the rule it
    applies, when the equation alone does not say)."""

    expr: sp.Expr
    text: str
    note: str = ""


def _act_forward(
    bd: _Builder,
    act: ActivationRule,
    zs: sp.Symbol,
    l: int,
    section: str,
    role: str,  # noqa: E741
) -> tuple[sp.Symbol, sp.Symbol | None]:
    """f(Z) of a hidden layer, as the value `role` (a, or f under a residual sum);
    with a mask M = f'(Z) when f(z) = z·f'(z) piecewise (ReLU). Returns (value, mask).
    """
    shape = bd.shapes[zs]
    f = act.forward.xreplace({z: zs})
    if f == zs:  # identity
        return zs, None
    g = mask_factor(act)
    name = nm.value(role, l)
    if g is not None:
        mask = bd.emit(
            "forward",
            "mask",
            l,
            g.xreplace({z: zs}),
            shape,
            section,
            f"M{l} = {act.name}'(Z{l})",
        )
        out = bd.emit(
            "forward",
            role,
            l,
            zs * mask,
            shape,
            section,
            f"{name} = {act.name}(Z{l}) = Z{l} ⊙ M{l}",
        )
        return out, mask
    out = bd.emit("forward", role, l, f, shape, section, f"{name} = {act.name}(Z{l})")
    return out, None


@dataclass
class Dense:
    """A dense layer: Z = X W + b, then its activation (the output layer: the output
    activation and the loss, whose derived delta starts the backward pass); residual:
    A = X + f(Z)."""

    rule: LayerRule
    init: str
    last: bool
    x: sp.Symbol = X
    W: sp.Symbol = X  # noqa: N815 - set by forward
    b: sp.Symbol = X
    z: sp.Symbol = X
    out: sp.Symbol = X  # f(Z) (F{l} under a residual sum)
    mask: sp.Symbol | None = None
    names: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    loss_expr: sp.Expr = sp.S.Zero

    @property
    def l(self) -> int:  # noqa: E743
        return self.rule.index

    @property
    def section(self) -> str:
        return "output" if self.last else f"dense-{self.l}"

    def forward(self, bd: _Builder, x: sp.Symbol) -> sp.Symbol:
        l, r = self.l, self.rule  # noqa: E741
        self.x = x
        self.W = bd.param(
            Param(
                nm.W(l),
                (r.fan_in, r.units),
                (self.init, r.fan_in, r.units),
                l,
                weight=True,
            )
        )
        self.b = bd.param(Param(nm.b(l), (r.units,), ("zeros",), l))
        self.z = bd.emit(
            "forward",
            "z",
            l,
            MatProduct(x, self.W) + self.b,
            (nm.BATCH, r.units),
            f"dense-{l}",
            f"Z{l} = {x.name} W{l} + b{l}",
        )
        if self.last:
            return self._output(bd)
        role = "f" if r.residual else "a"
        self.out, self.mask = _act_forward(
            bd, r.activation, self.z, l, self.section, role
        )
        if not r.residual:
            return self.out
        return bd.emit(
            "forward",
            "a",
            l,
            x + self.out,
            None,
            self.section,
            f"A{l} = {x.name} + F{l}",
            "a residual connection: the input goes around",
        )

    def _output(self, bd: _Builder) -> sp.Symbol:
        d, l, zs = bd.d, self.l, self.z  # noqa: E741
        act = self.rule.activation
        shape = bd.shapes[zs]
        loss = d.output.forward
        names: dict[sp.Symbol, sp.Expr] = {z: zs, y: Y}
        sec = self.section
        if act.vector:
            # softmax, with its row max and row sums shared by the log-softmax
            zmax = bd.emit("forward", "rowmax", l, RowMax(zs), (nm.BATCH, 1), sec)
            s = bd.emit(
                "forward",
                "shifted",
                l,
                zs - zmax,
                shape,
                sec,
                note="subtracting the row max keeps exp() from overflowing",
            )
            e = bd.emit("forward", "exp", l, sp.exp(s), shape, sec)
            esum = bd.emit("forward", "expsum", l, RowSum(e), (nm.BATCH, 1), sec)
            self.out = bd.emit(
                "forward", "a", l, e / esum, shape, sec, f"Ŷ = A{l} = softmax(Z{l})"
            )
            if loss.has(LS):
                log_sum = bd.emit(
                    "forward", "logsum", l, sp.log(esum), (nm.BATCH, 1), sec
                )
                names[LS] = bd.emit(
                    "forward",
                    "logsoftmax",
                    l,
                    s - log_sum,
                    shape,
                    sec,
                    f"LS{l} = log softmax(Z{l}) = S{l} − log Σⱼ E{l}",
                )
        elif act.forward == sigmoid(z) and loss.has(softplus(-z)):
            sp_ = bd.emit(
                "forward",
                "softplus",
                l,
                softplus(-zs),
                shape,
                sec,
                note="softplus(−Z) serves the loss and σ(Z) = e^{−softplus(−Z)}",
            )
            self.out = bd.emit(
                "forward",
                "a",
                l,
                sp.exp(-sp_),
                shape,
                sec,
                f"Ŷ = A{l} = σ(Z{l}) = exp(−SP{l})",
            )
            loss = loss.xreplace({softplus(-z): sp_})
        else:
            f = act.forward.xreplace({z: zs})
            if f == zs:
                self.out = zs
            else:
                self.out = bd.emit(
                    "forward", "a", l, f, shape, sec, f"Ŷ = A{l} = {act.name}(Z{l})"
                )
        names[a] = self.out
        self.names = names
        self.loss_expr = loss.xreplace(names)
        return self.out

    def loss(self, bd: _Builder, weights: list[sp.Symbol]) -> None:
        d = bd.d
        term = Total(self.loss_expr) / BATCH
        shown = _text(d.output.loss.xreplace({a: YHAT}))
        bd.stmts["loss"].append(
            Stmt(LOSS, term, "loss", "loss", f"L = Σ ℓ / m,  ℓ = {shown}")
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

    def output_delta(self, bd: _Builder) -> sp.Symbol:
        d, l = bd.d, self.l  # noqa: E741
        out = d.output
        shape = bd.shapes[self.z]
        sec = self.section
        if out.jvp:
            h = bd.emit(
                "backward",
                "h",
                l,
                out.delta.xreplace(self.names),
                shape,
                sec,
                f"H{l} = Ŷ ⊙ ∂ℓ/∂Ŷ = {_text(out.delta)}",
            )
            hsum = bd.emit("backward", "hsum", l, RowSum(h), (nm.BATCH, 1), sec)
            return bd.emit(
                "backward",
                "delta",
                l,
                (h - self.out * hsum) * SCALE,
                shape,
                sec,
                f"δ{l} = (H{l} − Ŷ ⊙ Σₖ H{l}ₖ) / m",
                "softmax's Jacobian: δ = h − ŷ ⊙ Σₖ hₖ",
            )
        shown = _text(out.delta.xreplace({a: YHAT}))
        batch = text(out.delta, {a: "Ŷ", y: "Y", z: f"Z{l}"})
        why = f"{out.loss_title.split(' (')[0]} on {self.rule.activation.title}: "
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
            sec,
            f"δ{l} = ({batch}) / m" + ("   (collapsed)" if out.collapsed else ""),
            why,
        )

    def backward(
        self, bd: _Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        """From G = ∂L/∂A (None at the output layer: its delta) to ∂L/∂X."""
        l, act = self.l, self.rule.activation  # noqa: E741
        if g is None:
            delta = self.output_delta(bd)
        else:
            factor: sp.Expr
            if self.mask is not None:
                factor = self.mask
            else:
                factor = act.df.xreplace({a: self.out, z: self.z})
            rule = f"{act.name}'(z) = {_text(act.df)}"
            if factor == 1:
                delta = g  # δ = G: nothing to compute
            else:
                delta = bd.emit(
                    "backward",
                    "delta",
                    l,
                    g * factor,
                    bd.shapes[self.z],
                    self.section,
                    f"δ{l} = G{l} ⊙ {act.name}'(Z{l}),   {rule}",
                )
        x_name = self.x.name
        dW = MatProduct(Transposed(self.x), delta)  # noqa: N806
        eq = f"∂L/∂W{l} = {x_name}ᵀ δ{l}"
        if bd.d.spec.l2 > 0:
            dW += L2_GRAD * self.W  # noqa: N806
            eq += f" + l2·W{l}"
        bd.gradient(nm.W(l), dW, f"dense-{l}", eq)
        bd.gradient(nm.b(l), ColSum(delta), f"dense-{l}", f"∂L/∂b{l} = Σₙ δ{l}")
        if not need_input:
            return None
        back = MatProduct(delta, Transposed(self.W))
        if self.rule.residual and g is not None:
            return Back(back + g, f"δ{l} W{l}ᵀ + G{l}")
        return Back(back, f"δ{l} W{l}ᵀ")


@dataclass
class Norm:
    """A normalization layer: the statements of its derived rule (reductions.norm_rule)
    placed on its axis (rows: a norm over features; columns: batchnorm), with the
    reductions inside an expression lifted into statements of their own."""

    rule: NormLayerRule
    names: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    sub: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    shown: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    @property
    def l(self) -> int:  # noqa: E743
        return self.rule.index

    @property
    def section(self) -> str:
        return f"norm-{self.l}"

    @property
    def axis(self) -> int:
        return 0 if self.rule.definition.group == "batch" else 1

    def _value(self, s: sp.Symbol) -> str:
        return nm.norm_value(s.name, self.l)

    def forward(self, bd: _Builder, x: sp.Symbol) -> sp.Symbol:
        l, r = self.l, self.rule.rule  # noqa: E741
        n = self.rule.units
        sub: dict[sp.Symbol, sp.Expr] = {NORM_X: x}
        self.shown = {NORM_X: x}  # as sub, with the parameters (ε) left as names
        sub.update({sym: value for sym, value in r.params})
        sub[N] = BATCH if self.axis == 0 else sp.Integer(n)
        if r.gain:
            sub[GAMMA] = bd.param(Param(nm.gamma(l), (n,), ("ones",), l))
        if r.shift:
            sub[BETA] = bd.param(Param(nm.beta(l), (n,), ("zeros",), l))
        for upd in r.running:
            buf = upd.buffer.name.removeprefix("running_")
            sub[upd.buffer] = bd.param(
                Param(nm.running(buf, l), (n,), (upd.init,), l, trainable=False)
            )
        self.shown.update({k: v for k, v in sub.items() if k not in dict(r.params)})
        when = "train" if r.inference else ""
        for st in r.forward:
            self._statement(bd, st, sub, "forward", when)
        for st in r.inference:
            self._statement(bd, st, sub, "forward", "eval")
        for upd in r.running:
            buf = sub[upd.buffer]
            expr = on_axis(upd.update.xreplace(sub).xreplace(self.names), self.axis)
            bd.stmts["forward"].append(
                Stmt(
                    buf,
                    expr,
                    "forward",
                    self.section,
                    f"{buf.name} ← (1 − momentum)·{buf.name} + momentum·"
                    f"{self._value(upd.statistic)}"
                    + ("·m/(m − 1)" if "var" in buf.name else ""),
                    "running statistics for inference, as PyTorch keeps them",
                    when="step",
                )
            )
        self.sub = sub
        return self.names[r.output]

    def _statement(
        self,
        bd: _Builder,
        st: Statement,
        sub: dict[sp.Symbol, sp.Expr],
        phase: str,
        when: str,
    ) -> sp.Symbol:
        l = self.l  # noqa: E741
        shown = on_axis(st.expr.xreplace(self.shown).xreplace(self.names), self.axis)
        expr = on_axis(st.expr.xreplace(sub).xreplace(self.names), self.axis)
        expr = bd.lift(expr, l, phase, self.section, when)
        if st.target == self.rule.rule.output:
            name, role = nm.A(l), "a"
        else:
            name, role = self._value(st.target), "norm"
        target = bd.emit(
            phase,
            role,
            l,
            expr,
            None,
            self.section,
            f"{name} = {_text(shown)}",
            name=name,
            when=when,
        )
        self.names[st.target] = target
        return target

    def backward(
        self, bd: _Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        l, r = self.l, self.rule.rule  # noqa: E741
        assert g is not None
        self.names[G] = g
        back = None
        # the statements the kept results read: without the input gradient (a norm on
        # the input X), the values only dx reads (h = γ ⊙ g, its means) are dead code
        needed = {DGAMMA, DBETA} | ({DX} if need_input else set())
        for st in reversed(r.backward):
            if st.target in needed:
                needed |= st.expr.free_symbols
        for st in r.backward:
            if st.target not in needed:
                continue
            if st.target == DX:
                if need_input:
                    expr = on_axis(
                        st.expr.xreplace(self.sub).xreplace(self.names), self.axis
                    )
                    rule = f"{self.rule.title}: ∂L/∂x = {rule_text(st.expr)}"
                    back = Back(
                        bd.lift(expr, l, "backward", self.section), _text(expr), rule
                    )
                continue
            if st.target in (DGAMMA, DBETA):
                param = nm.gamma(l) if st.target == DGAMMA else nm.beta(l)
                expr = st.expr.xreplace(self.sub).xreplace(self.names)
                bd.gradient(param, expr, self.section, f"∂L/∂{param} = {_text(expr)}")
                continue
            self._statement(bd, st, self.sub, "backward", "")
        return back


@dataclass
class Dropout:
    """Inverted dropout: A = X ⊙ K, K = 1/(1 − rate) with probability 1 − rate, else 0
    (drawn in training when a generator is given; K = 1 otherwise)."""

    rule: DropoutRule
    keep: sp.Symbol = X

    def forward(self, bd: _Builder, x: sp.Symbol) -> sp.Symbol:
        l, rate = self.rule.index, self.rule.rate  # noqa: E741
        sec = f"dropout-{l}"
        self.keep = bd.emit(
            "forward",
            "keep",
            l,
            KeepMask(x, sp.Float(rate)),
            bd.shapes[x],
            sec,
            f"K{l} = 1/(1 − {rate:g}) with probability 1 − {rate:g}, else 0",
            "inverted dropout, as PyTorch: the kept values are scaled up in training",
            when="dropout",
        )
        return bd.emit(
            "forward",
            "a",
            l,
            x * self.keep,
            bd.shapes[x],
            sec,
            f"A{l} = {x.name} ⊙ K{l}",
        )

    def backward(
        self, bd: _Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        assert g is not None
        if not need_input:
            return None
        return Back(g * self.keep, f"G{self.rule.index} ⊙ K{self.rule.index}")


OPS = {"dense": Dense, "norm": Norm, "dropout": Dropout}


# ---------------------------------------------------------------- the plan


def build(d: Derivation) -> Plan:
    """The plan of a derivation: forward, loss, backward and update as statements."""
    bd = _Builder(d)
    bd.shapes[X] = (nm.BATCH, d.spec.input)
    bd.shapes[Y] = (nm.BATCH, d.out.units)
    chain: list[Dense | Norm | Dropout] = []
    inputs: list[sp.Symbol] = []
    x = X
    for rule in d.layers:
        if isinstance(rule, LayerRule):
            op: Dense | Norm | Dropout = Dense(
                rule, _init(d, rule.activation), rule.index == d.depth
            )
        elif isinstance(rule, NormLayerRule):
            op = Norm(rule)
        else:
            op = Dropout(rule)
        inputs.append(x)
        x = op.forward(bd, x)
        chain.append(op)
    output = chain[-1]
    assert isinstance(output, Dense)
    output.loss(bd, [arr(p.name) for p in bd.params if p.weight])
    g: sp.Symbol | None = None
    for i in range(len(chain) - 1, -1, -1):
        back = chain[i].backward(bd, g, need_input=i > 0)
        if back is None:
            break
        below = chain[i - 1].rule.index
        g = bd.emit(
            "backward",
            "back",
            below,
            back.expr,
            bd.shapes[inputs[i]],
            f"{chain[i - 1].rule.kind}-{below}",
            f"G{below} = {back.text}",
            back.note,
        )
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


def _init(d: Derivation, act: ActivationRule) -> str:
    if d.spec.init != "auto":
        return d.spec.init
    relu = act.name in ops.RELU_FAMILY and not act.custom
    return "he_normal" if relu else "glorot_uniform"


def _update(d: Derivation) -> Update:
    """The spec's optimizer as an Update: its entry's statements with the spec's
    settings, its numbers, names and temporaries."""
    spec = d.spec.optimizer
    settings = dict(spec.params)
    definition = optimizers.OPTIMIZERS[spec.name]
    scalars, rule = optimizers.statements(definition, settings)
    g, p = optimizers.g, optimizers.p
    step_rule, decay = rule, None
    if definition.folds_learning_rate:
        lr = definition.setting("learning_rate").symbol
        # the step's gradients carry η already: g here stands for η ∂L/∂p
        step_rule = [
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
    numbers = tuple(
        (s.symbol, float(settings[s.name]))
        for s in definition.settings
        if not isinstance(s.default, bool)
    )
    return Update(
        spec.name,
        definition.title,
        tuple(spec.params),
        numbers,
        p,
        g,
        optimizers.t,
        tuple(scalars),
        tuple(rule),
        tuple(step_rule),
        decay,
        definition.state,
        tuple(nm.update_scratch(k) for k in range(1, definition.temporaries + 1)),
        optimizers.math_names(definition),
        definition.folds_learning_rate,
        definition.notes,
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
    live in the optimizer state's arrays, under their own names. The optimizer's
    temporaries get one array per trainable parameter each (see Storage.per_param).
    """
    stmts = [s for s in plan.statements if s.when != "eval"]  # the step's
    last_read: dict[sp.Symbol, int] = {}
    for i, s in enumerate(stmts):
        for sym in s.reads:
            last_read[sym] = i
    grads = set(plan.grads.values())
    params = {p.name for p in plan.params}
    home: dict[sp.Symbol, str] = {}
    arrays: dict[str, Shape] = {}
    layer_of: dict[str, int] = {}
    holder: dict[str, sp.Symbol] = {}  # array -> the value it holds now
    counts: dict[tuple[str, int], int] = {}
    family_of: dict[str, str] = {}
    for i, s in enumerate(stmts):
        if s.target == LOSS:
            continue
        if s.target in grads or s.target.name in params:  # its own array
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
    per_param = {nm.update_work(name): name for name in plan.update.temporaries}
    return Storage(home, arrays, layer_of, per_param)


__all__ = ["Plan", "Stmt", "Storage", "build"]
