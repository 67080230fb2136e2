"""The Plan: a Derivation laid out as the statements of one training step.

Every printer reads the plan and nothing else decides anything: the NumPy printer turns
its statements into `loss_and_grad` (each statement an allocating expression), the
in-place printer into `step` (each statement ufunc calls with `out=` into the work arrays
`storage` assigns), the report into equations. A statement has a target, a SymPy
expression over array symbols (with the array nodes of arrays.py for products and
reductions), the equation it implements and the derivation section it comes from.

The network is a chain of ops, one per layer, each made by its layer kind
(layer_registry; the built-in kinds in symgrad/kinds/). An op adds its forward statements
given its input, and its backward statements given G = ∂L/∂(its output); it returns
∂L/∂(its input) (`Back`), which `build` stores as G{l-1} for the op below. The output
layer's op adds the loss and starts the backward pass from the derived output delta.
Fusions (the ReLU mask, softplus shared by a sigmoid and its loss, softmax's row
reductions shared by its log-softmax) are decided by the ops, once per layer.

Some numbers differ between the two uses of the backward pass and are symbols bound by
each printer (`bindings`): the delta's scale (1/m; η/m in a step that folds sgd's
learning rate into the gradients) and the l2 coefficient the gradients carry (0 where the
update applies l2 as a decay instead).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import sympy as sp

from . import layer_registry, optimizers, schedules
from . import naming as nm
from .derive import Derivation
from .layer_registry import Rule
from .sym.arrays import ArrayNode, Expanded, MatProduct, ReductionBase, Transposed
from .sym.text import text

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
    """target = expr: one step of the computation (a typed statement: see Assign,
    Accumulate, Draw and Renew; printers dispatch on the class).

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

    @property
    def reads(self) -> set[sp.Symbol]:
        return {s for s in self.expr.free_symbols if isinstance(s, sp.Symbol)}

    @property
    def add(self) -> bool:
        """The statement adds expr to its target (target += expr)."""
        return False


@dataclass(frozen=True)
class Assign(Stmt):
    """target = expr."""


@dataclass(frozen=True)
class Masked(Assign):
    """target = expr, a product with a mask that the forward pass keeps for the
    backward pass (A = Z ⊙ M, M = [Z > 0]: ReLU's fusion, decided by the dense op).

    Attributes:
        direct: the same value from Z alone (A = max(Z, 0)), as a statement of the
            same target: one pass that reads no mask, so that a function without a
            backward pass computes no mask, and NaN stays NaN. The form a target
            prints where it does not reuse the mask's array in place (the array-API
            module, through `direct_forms`); None where there is none (leaky ReLU).
    """

    direct: Assign | None = None


@dataclass(frozen=True)
class Accumulate(Stmt):
    """target += expr (the l2 term added to the loss)."""

    @property
    def add(self) -> bool:
        return True


@dataclass(frozen=True)
class Draw(Stmt):
    """target = a random keep-mask (expr: a KeepMask): dropout's mask, drawn from the
    random numbers a printer's function is given."""


@dataclass(frozen=True)
class Renew(Stmt):
    """target ← expr: a buffer renewed from the batch (batchnorm's running statistics),
    written where the pass keeps the buffers."""


class Condition(enum.Enum):
    """When the statements of a block run. A printer that knows the answer for its
    function (the in-place step always trains) resolves the block (`resolve`); one that
    does not prints a switch, naming the condition in its target's words."""

    TRAINING = "training"  # else inference: the running statistics
    GENERATOR = "random numbers given"  # dropout's masks are drawn from them
    RUNNING = "the pass keeps the running statistics"  # the step; xp's loss_and_grad


@dataclass(frozen=True)
class Block:
    """Statements that run only when every condition of `when` holds; `otherwise`, those
    that run instead (the running statistics in inference; a keep-mask of 1).

    Attributes:
        note: what the switch is about, for a comment beside it.
        otherwise_note: likewise for the other branch.
    """

    when: tuple[Condition, ...]
    body: tuple[Stmt, ...]
    otherwise: tuple[Stmt, ...] = ()
    note: str = ""
    otherwise_note: str = ""

    @property
    def statements(self) -> tuple[Stmt, ...]:
        return self.body + self.otherwise


Item = Stmt | Block  # what a pass of the plan holds, in order


def flatten(items: Iterable[Item]) -> tuple[Stmt, ...]:
    """Every statement of items, both branches of a block included, in order."""
    out: list[Stmt] = []
    for it in items:
        out += it.statements if isinstance(it, Block) else [it]
    return tuple(out)


def resolve(items: Iterable[Item], known: dict[Condition, bool]) -> tuple[Item, ...]:
    """items for a function that knows some conditions: a block whose conditions all
    hold becomes its body, one with a condition known false its otherwise; the rest stay
    blocks, less the conditions that are known to hold."""
    out: list[Item] = []
    for it in items:
        if not isinstance(it, Block):
            out.append(it)
            continue
        if any(known.get(c) is False for c in it.when):
            out += it.otherwise
            continue
        when = tuple(c for c in it.when if not known.get(c, False))
        if not when:
            out += it.body
        else:
            out.append(replace(it, when=when))
    return tuple(out)


def direct_forms(items: Iterable[Item]) -> tuple[Item, ...]:
    """items with each Masked statement as its direct form (where it has one): the
    masks are then read only where the backward pass reads them."""
    out: list[Item] = []
    for it in items:
        if isinstance(it, Block):
            body, other = direct_forms(it.body), direct_forms(it.otherwise)
            out.append(replace(it, body=body, otherwise=other))  # type: ignore[arg-type]
        elif isinstance(it, Masked) and it.direct is not None:
            out.append(it.direct)
        else:
            out.append(it)
    return tuple(out)


def branch(
    items: Iterable[Item], condition: Condition, taken: bool
) -> tuple[Stmt, ...]:
    """The statements of the blocks on `condition`, in their body (taken) or otherwise."""
    out: list[Stmt] = []
    for it in items:
        if isinstance(it, Block) and condition in it.when:
            out += it.body if taken else it.otherwise
    return tuple(out)


class _Node(Protocol):
    target: sp.Symbol
    expr: sp.Expr


N = TypeVar("N", bound=_Node)


def live(items: Sequence[N | Block], wanted: Iterable[sp.Symbol]) -> list[N | Block]:
    """The dead-code pass: the statements the values `wanted` depend on, in their order.

    A statement is kept when a later kept statement (or `wanted`) reads its target; an
    accumulation keeps its target needed (L += ...). A block keeps what each branch
    needs (a value both branches define keeps both) and is dropped when both are empty.
    Statements are the plan's or a derived rule's (anything with a target and an expr).
    """

    def back(stmts: Sequence, need: set[sp.Symbol]) -> tuple[list, set[sp.Symbol]]:
        keep: list = []
        for s in reversed(stmts):
            if isinstance(s, Block):
                body, need_body = back(s.body, set(need))
                other, need_other = back(s.otherwise, set(need))
                if body or other:
                    keep.append(replace(s, body=tuple(body), otherwise=tuple(other)))
                need = need_body | need_other
            elif s.target in need:
                keep.append(s)
                need = need | s.expr.free_symbols
        return list(reversed(keep)), need

    return back(items, set(wanted))[0]


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
        step_scalars: the constant scalars the in-place rules read (the ratio of a
            moving average written in place: optimizers.averages_in_place), computed
            once a step.
        state: the per-parameter arrays kept between steps.
        temporaries: the names, in the in-place update of one parameter, of its scratch
            arrays (plan.storage holds one per temporary and trainable parameter).
        names: each symbol of the statements as (LaTeX, unicode text).
        notes: what the report says besides the statements.
        schedule: the learning rate of the step, `ηₜ ← f(t₀)` (the schedule's rate at
            t₀ = schedules.T0, the state's step count before the step), which the rule
            and the scalars read in place of η; None without a schedule.
        schedule_name: the schedule's name in the spec ("" without one).
        clip: the clipping factor `clip ← min(1, c / (‖g‖ + 1e-6))`, ‖g‖ (GRAD_NORM)
            the global 2-norm of the gradients without l2, as
            torch.nn.utils.clip_grad_norm_ sees them; None without clip_norm.
        clip_rule: `g ← clip·g`, for each parameter before the rule.
        clip_decay_rule: for weights when the spec has l2: the clipped gradient plus
            l2·p, `g ← clip·g + l2·p` (torch's weight_decay, added after clipping).
        clip_decay_step: the same for the in-place step, l2·(clip_ratio·g + p) with
            `clip_ratio ← clip / l2` (clip_scalars): three passes, no scratch.
        clip_scalars: the scalars clip_decay_step reads.
        unclipped: `g ← g − l2·p`: the gradient of a weight without its l2 term, for a
            printer whose gradients include it (the array-API update); None without
            l2 or clipping.
        textbook: the rule as a textbook writes it (its entry's `Shown` lines, ηₜ for
            η under a schedule), for the report.
        schedule_shown: the schedule's ηₜ as written, t counted from 1, for the report.
        clip_shown: the clipping factor and the clipped gradients, as written.
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
    step_scalars: tuple[optimizers.Assign, ...]
    state: tuple[optimizers.StateArray, ...]
    temporaries: tuple[str, ...]
    names: dict[sp.Symbol, tuple[str, str]]
    folded: bool
    notes: tuple[str, ...] = ()
    schedule: optimizers.Assign | None = None
    schedule_name: str = ""
    clip: optimizers.Assign | None = None
    clip_rule: optimizers.Assign | None = None
    clip_decay_rule: optimizers.Assign | None = None
    clip_decay_step: optimizers.Assign | None = None
    clip_scalars: tuple[optimizers.Assign, ...] = ()
    unclipped: optimizers.Assign | None = None
    textbook: tuple[optimizers.Shown, ...] = ()
    schedule_shown: optimizers.Shown | None = None
    clip_shown: tuple[optimizers.Shown, ...] = ()


LR_T = sp.Symbol(nm.LR_T, positive=True)
GRAD_NORM = sp.Symbol(nm.GRAD_NORM, nonnegative=True)
CLIP = sp.Symbol(nm.CLIP, positive=True)
CLIP_NORM = sp.Symbol(nm.CLIP_NORM, positive=True)
CLIP_RATIO = sp.Symbol(nm.CLIP_RATIO, positive=True)
CLIP_EPS = sp.Float(1e-6)  # torch.nn.utils.clip_grad_norm_'s


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
    forward: tuple[Item, ...]
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
        """Every statement, both branches of each block included, in order."""
        return flatten(self.forward) + self.loss + self.backward

    @property
    def dropout(self) -> bool:
        """The forward pass draws keep-masks."""
        return any(isinstance(s, Draw) for s in self.statements)

    def step_pass(self) -> tuple[Stmt, ...]:
        """The statements of the in-place step, which trains, keeps the running
        statistics and draws dropout's masks: every block resolved."""
        known = dict.fromkeys(Condition, True)
        return flatten(resolve(self.forward, known)) + self.loss + self.backward

    @property
    def trainable(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.trainable)

    def bindings(self, use: str) -> dict[sp.Symbol, sp.Expr]:
        """The values of the plan's symbolic numbers in `loss_and_grad` ("grad") or in
        the in-place step ("step", where the scale stays a symbol: `step_scale`)."""
        l2 = L2 if self.l2 else sp.S.Zero
        if use == "step":  # folded, or clipped: l2 is added in the update
            raw = self.update.folded or self.update.clip is not None
            return {L2_GRAD: sp.S.Zero if raw else l2}
        return {SCALE: 1 / BATCH, L2_GRAD: l2}

    @property
    def step_scale(self) -> sp.Expr:
        """What the step scales the output delta by: 1/m, or η/m when the learning rate
        is folded into the gradients."""
        if self.update.folded:
            return sp.Float(dict(self.update.settings)["learning_rate"]) / BATCH
        return 1 / BATCH

    @property
    def results(self) -> set[sp.Symbol]:
        """What a training pass computes for its caller: the loss and the gradients."""
        return {LOSS, *self.grads.values()}

    def forward_values(self) -> tuple[sp.Symbol, ...]:
        """The values of the forward pass that the live loss and backward statements
        read (besides Ŷ)."""
        kept = live(self.loss + self.backward, self.results)
        later = set().union(*(s.reads for s in kept))
        values = (
            s.target
            for s in flatten(self.forward)
            if s.target in later and s.target != self.output
        )
        return tuple(dict.fromkeys(values))

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


class Builder:
    """Collects statements, shapes and value roles as the ops of the chain add them."""

    def __init__(self, d: Derivation) -> None:
        self.d = d
        self.params: list[Param] = []
        self.stmts: dict[str, list] = {"forward": [], "loss": [], "backward": []}
        self._open: list | None = None  # the branch of an open block emits go to
        self.shapes: dict[sp.Symbol, Shape] = {}
        self.roles: dict[sp.Symbol, tuple[str, int]] = {}
        self.grads: dict[str, sp.Symbol] = {}
        self.lifted: dict[int, int] = {}  # reductions lifted, per layer
        self.weights: dict[str, bool] = {}  # l2 applies to the parameter

    def param(self, p: Param) -> sp.Symbol:
        self.params.append(p)
        self.weights[p.name] = p.weight
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
        kind: Callable[..., Stmt] = Assign,
    ) -> sp.Symbol:
        """Add `name = expr` (name: the role's name for layer l, unless given), a
        statement of the class `kind` (or made by it: a partial of Masked with its
        direct form), into the open block's branch if there is one."""
        target = arr(name or nm.value(role, l))
        self.shapes[target] = shape if shape is not None else self.shape_of(expr)
        self.roles[target] = (role, l)
        label = name or nm.value_text(role, l)
        eq = equation or f"{label} = {_text(expr)}"
        self.add(phase, kind(target, expr, phase, section, eq, note))
        return target

    def add(self, phase: str, s: Stmt) -> None:
        """Append a statement to its phase, or to the open block's branch."""
        (self._open if self._open is not None else self.stmts[phase]).append(s)

    @contextmanager
    def block(
        self, phase: str, *when: Condition, note: str = "", otherwise_note: str = ""
    ) -> Iterator[_OpenBlock]:
        """A block on `when`: what is emitted inside goes into its body, or into its
        otherwise inside `with blk.otherwise():`."""
        blk = _OpenBlock(self, when, note, otherwise_note)
        outer, self._open = self._open, blk.body
        try:
            yield blk
        finally:
            self._open = outer
        self.add(phase, blk.close())  # type: ignore[arg-type]

    def gradient(
        self, param: str, expr: sp.Expr, section: str, equation: str
    ) -> sp.Symbol:
        """∂L/∂param = expr (the loss term's gradient), plus l2·param for a weight when
        the spec has an l2 term: every kind's weights carry it alike."""
        target = arr(nm.grad(param))
        self.shapes[target] = self.shapes[arr(param)]
        self.grads[param] = target
        if self.d.spec.l2 > 0 and self.weights.get(param, False):
            expr += L2_GRAD * arr(param)
            equation += f" + l2·{param}" if equation else ""
        self.add("backward", Assign(target, expr, "backward", section, equation))
        return target

    def shape_of(self, e: sp.Expr) -> Shape:
        """The shape of e's value: its arrays broadcast, reductions reduced."""
        if isinstance(e, sp.Symbol):
            return self.shapes.get(e, ())
        if isinstance(e, ReductionBase):
            inner = self.shape_of(e.args[0])
            if e.axis is None:
                return ()
            if isinstance(
                e.axis, tuple
            ):  # an image's: (m, 1, 1, 1), (1, C, 1, 1), (C,)
                if e.keepdims:
                    return tuple(1 if k in e.axis else d for k, d in enumerate(inner))
                return tuple(d for k, d in enumerate(inner) if k not in e.axis)
            if e.axis == 1:
                return (inner[0], 1) if inner else ()
            return (inner[-1],) if inner else ()
        if isinstance(e, MatProduct):
            left, right = (self.shape_of(x) for x in e.args)
            return (left[0], right[-1])
        if isinstance(e, Transposed):
            return tuple(reversed(self.shape_of(e.args[0])))
        if isinstance(e, Expanded):
            return e.shape_of(self.shape_of(e.args[0]))
        shapes = [self.shape_of(x) for x in e.args]
        return _broadcast([s for s in shapes if s])

    def lift(
        self, e: sp.Expr, l: int, phase: str, section: str  # noqa: E741
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
                return self.emit(phase, "r", l, node, None, section, name=name)
            return node

        return visit(e, True)


class _OpenBlock:
    """A block being built (Builder.block): its branches collect the emitted statements."""

    def __init__(
        self, bd: Builder, when: tuple[Condition, ...], note: str, otherwise_note: str
    ) -> None:
        self.bd, self.when, self.note, self.otherwise_note = (
            bd,
            when,
            note,
            otherwise_note,
        )
        self.body: list[Stmt] = []
        self.other: list[Stmt] = []

    @contextmanager
    def otherwise(self) -> Iterator[None]:
        outer, self.bd._open = self.bd._open, self.other
        try:
            yield
        finally:
            self.bd._open = outer

    def close(self) -> Block:
        return Block(
            self.when,
            tuple(self.body),
            tuple(self.other),
            self.note,
            self.otherwise_note,
        )


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


def section(rule: Rule) -> str:
    """The plan section of a layer's statements: its kind and position, `dense-3`."""
    return f"{rule.kind}-{rule.index}"


# ---------------------------------------------------------------- the plan


def build(d: Derivation) -> Plan:
    """The plan of a derivation: forward, loss, backward and update as statements.

    Each layer's kind (layer_registry) makes its op; the ops run forward in order, the
    output layer's op adds the loss, and the backward pass runs from the output down,
    each op's gradient at its input stored as G{l-1} for the op below.
    """
    bd = Builder(d)
    bd.shapes[X] = (nm.BATCH, d.spec.sizes[0])  # an image input arrives flat
    bd.shapes[Y] = (nm.BATCH, d.out.units)
    chain = [layer_registry.of(rule).op(rule, d) for rule in d.layers]
    inputs: list[sp.Symbol] = []
    x = X
    for op in chain:
        inputs.append(x)
        x = op.forward(bd, x)
    output = chain[-1]
    output.loss(bd, [arr(p.name) for p in bd.params if p.weight])
    g: sp.Symbol | None = None
    # a layer passes its gradient down only where a layer below it has trainable
    # parameters: the gradient into a first pooling, flatten or dropout would be
    # computed for nothing (layer i + 1 of the chain sits on layers 1 to i)
    lowest = min((p.layer for p in bd.params if p.trainable), default=len(chain) + 1)
    passes = [lowest <= i for i in range(len(chain))]
    for i in range(len(chain) - 1, -1, -1):
        back = chain[i].backward(bd, g, need_input=passes[i])
        if back is None:
            break
        below = d.layers[i - 1]
        g = bd.emit(
            "backward",
            "back",
            below.index,
            back.expr,
            bd.shapes[inputs[i]],
            section(below),
            f"G{below.index} = {back.text}",
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


def _update(d: Derivation) -> Update:
    """The spec's optimizer as an Update: its entry's statements with the spec's
    settings (η as the schedule's ηₜ under one), its numbers, names and temporaries,
    the clipping, and the rule as a textbook writes it."""
    spec = d.spec.optimizer
    settings = dict(spec.params)
    definition = optimizers.OPTIMIZERS[spec.name]
    scalars, rule = optimizers.statements(definition, settings)
    g, p = optimizers.g, optimizers.p
    names = optimizers.math_names(definition)
    lr = definition.setting("learning_rate").symbol
    schedule, schedule_shown, extra_numbers = _schedule(d, lr, names)
    if schedule is not None:  # ηₜ in place of η, in the rule and the scalars
        scalars = [replace(a, expr=a.expr.xreplace({lr: LR_T})) for a in scalars]
        rule = [replace(a, expr=a.expr.xreplace({lr: LR_T})) for a in rule]
    clipping = _clipping(d, names)
    clip = clipping.clip if clipping is not None else None
    if spec.clip_norm is not None:
        extra_numbers.append((CLIP_NORM, float(spec.clip_norm)))
    args = optimizers.arguments(definition, settings)
    if schedule is not None:
        args["learning_rate"] = LR_T
    shown = optimizers.textbook(definition, args)
    # the state arrays the rule keeps (rmsprop without momentum keeps no buffer)
    written = {a.target for a in rule}
    state = tuple(st for st in definition.state if st.symbol in written)
    step_rule, decay = list(rule), None
    folds = definition.folds_learning_rate and schedule is None and clip is None
    if folds:  # the step's gradients carry η already
        step_rule, decay = optimizers.folded(
            definition, rule, L2 if d.spec.l2 > 0 else None
        )
    step_rule, ratios = optimizers.averages_in_place(definition, step_rule)
    numbers = tuple(
        (s.symbol, float(settings[s.name]))
        for s in definition.settings
        if not isinstance(s.default, bool)
    ) + tuple(extra_numbers)
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
        tuple(decay) if decay is not None else None,
        tuple(ratios),
        state,
        tuple(nm.update_scratch(k) for k in range(1, definition.temporaries + 1)),
        names,
        folds,
        definition.notes,
        schedule,
        spec.schedule.name if spec.schedule is not None else "",
        clip,
        clipping.rule if clipping is not None else None,
        clipping.decay if clipping is not None else None,
        clipping.decay_step if clipping is not None else None,
        clipping.scalars if clipping is not None else (),
        clipping.unclipped if clipping is not None else None,
        tuple(shown),
        schedule_shown,
        clipping.shown if clipping is not None else (),
    )


def _schedule(
    d: Derivation, lr: sp.Symbol, names: dict[sp.Symbol, tuple[str, str]]
) -> tuple[
    optimizers.Assign | None, optimizers.Shown | None, list[tuple[sp.Symbol, float]]
]:
    """The spec's schedule as `ηₜ ← rate(t₀)`, its formula as written (t from 1) and
    the numbers its rate reads; its names go into `names`. (None, None, []) without."""
    spec = d.spec.optimizer.schedule
    if spec is None:
        return None, None, []
    entry = schedules.SCHEDULES[spec.name]
    values = dict(spec.params)
    rate = schedules.rate(entry, lr, schedules.T0, values)
    schedule = optimizers.Assign(
        LR_T, rate, f"the learning rate of this step: {entry.title}"
    )
    numbers = [
        (s.symbol, float(values[s.name]))
        for s in entry.all_settings()
        if s.symbol in rate.free_symbols
    ]
    names.update(schedules.math_names(entry))
    names[LR_T] = (r"\eta_{t}", "ηₜ")
    formula = schedules.shown(entry, lr, optimizers.t, values)
    return schedule, optimizers.Shown(LR_T, formula, define=True), numbers


@dataclass(frozen=True)
class _Clipping:
    """The parts of Update about clip_norm (see Update's clip_* attributes)."""

    clip: optimizers.Assign
    rule: optimizers.Assign
    decay: optimizers.Assign | None
    decay_step: optimizers.Assign | None
    scalars: tuple[optimizers.Assign, ...]
    unclipped: optimizers.Assign | None
    shown: tuple[optimizers.Shown, ...]


def _clipping(
    d: Derivation, names: dict[sp.Symbol, tuple[str, str]]
) -> _Clipping | None:
    """clip_norm as torch.nn.utils.clip_grad_norm_: the factor from the gradients'
    global norm, the clipped gradients (a weight's l2 term added after, as PyTorch's
    weight_decay), and the same as written; its names go into `names`."""
    if d.spec.optimizer.clip_norm is None:
        return None
    g, p, W = optimizers.g, optimizers.p, optimizers.written
    clip = optimizers.Assign(
        CLIP,
        sp.Min(1, CLIP_NORM / (GRAD_NORM + CLIP_EPS)),
        "torch.nn.utils.clip_grad_norm_",
    )
    rule = optimizers.Assign(g, CLIP * g, "clipped")
    eps = sp.Symbol("clip_eps", positive=True)  # 1e-6, named 10⁻⁶ in the report
    shown = [
        optimizers.Shown(
            CLIP,
            sp.Min(1, W("/", CLIP_NORM, W("+", GRAD_NORM, eps)), evaluate=False),
            define=True,
        ),
        optimizers.Shown(g, W("*", CLIP, g)),
    ]
    names[CLIP] = (r"\kappa_{t}", "κₜ")
    names[CLIP_NORM] = ("c", "c")
    names[GRAD_NORM] = (r"\lVert g \rVert", "‖g‖")
    names[eps] = ("10^{-6}", "10⁻⁶")
    if d.spec.l2 == 0:
        return _Clipping(clip, rule, None, None, (), None, tuple(shown))
    names[L2] = (r"\lambda", "λ")
    note = "a weight: its l2 term, added after clipping"
    shown.append(optimizers.Shown(g, W("+", W("*", CLIP, g), W("*", L2, p)), note=note))
    return _Clipping(
        clip,
        rule,
        optimizers.Assign(g, CLIP * g + L2 * p, "clipped, plus l2·p"),
        optimizers.Assign(
            g,
            sp.Mul(L2, sp.Add(CLIP_RATIO * g, p), evaluate=False),
            "clipped, plus l2·p",
        ),
        (optimizers.Assign(CLIP_RATIO, CLIP / L2, "clip / l2"),),
        optimizers.Assign(g, g - L2 * p, "the gradient without l2"),
        tuple(shown),
    )


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
    stmts = plan.step_pass()
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


__all__ = [
    "Accumulate",
    "Assign",
    "Block",
    "Condition",
    "Draw",
    "Plan",
    "Renew",
    "Stmt",
    "Storage",
    "build",
    "live",
    "resolve",
]
