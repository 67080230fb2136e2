"""The registry of layer kinds: the contract a kind fulfils, and the table every stage
dispatches through.

A layer kind — dense (residual or not), the norms, dropout, and any kind added later —
is one `LayerKind` entry that holds the whole kind, stage by stage:

    spec      `types`, `validate`: the `type` values it answers to, its keys and their
              checks (one located message each), giving its spec object
              `width`: the width of its output, given its input's (an image's
              shape (C, H, W) where the layer keeps or makes an image)
    derive    `derive`: its spec object → its rule (a `Rule`: sizes, derived facts)
    plan      `op`: its rule → the op that adds its statements to the plan (forward, and
              backward from the gradient that reaches its output)
    report    `sections`, `matrix_form`, `batch_forward`, `names`: its sections of the
              derivation, its rows of the matrix-form summary, its batch forward pass
              and the LaTeX names of its values

The built-in kinds are registered by symgrad/kinds/ (one module each); a kind defined
anywhere else registers itself the same way (`register(MyKind())`) and is then named by
specs, derived, planned, printed and reported with no other change: the stages ask this
table and never test a kind by name or by class.

This module sits below every stage (it imports none of them; the built-in kinds are
loaded by name on the table's first use): a stage reaches a kind's code through the
entry it finds here, never by importing the kind's module.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DENSE = "dense"  # the kind of a layer item without `type`


class Rule:
    """What every derived layer (a kind's rule) tells the stages that do not know its
    kind. A kind's rule is a frozen dataclass with at least `index` (1-based position)
    and `units` (output width); these defaults hold for a layer that sets nothing else.
    (No property here may share a name with a field of a subclass: a dataclass would
    take it for the field's default.)
    """

    kind: str = ""  # the name of its LayerKind
    index: int
    units: int
    trainable: int = 0  # numbers training adjusts (the check's and summary's count)
    residual: bool = False  # adds its input to its output
    plain_dense: bool = False  # the textbook's dense layer: z = a W + b, a = f(z)

    @property
    def title(self) -> str:
        return self.kind

    @property
    def label(self) -> str:
        """What the report's network line shows after the layer's width: `4 → 16
        (ReLU) → ...` (the default: its title)."""
        return self.title

    @property
    def activations(self) -> tuple[Any, ...]:
        """The activation rules (derive.ActivationRule) the layer applies: their notes,
        saturation facts and report sections are the network's."""
        return ()

    @property
    def notes(self) -> tuple[str, ...]:
        """Where the layer's derived code is not overflow-free: the generate summary's
        warnings (an activation's notes are added from `activations`)."""
        return ()


@dataclass
class MatrixRows:
    """A layer's rows of the report's matrix-form summary, for one example: its forward
    equations, its backward equations (the gradient it passes down) and its parameters'
    gradients; `grads_note` adds a clause to the sentence above the gradients."""

    forward: list[Any] = field(default_factory=list)
    backward: list[Any] = field(default_factory=list)
    grads: list[Any] = field(default_factory=list)
    grads_note: str = ""


class LayerKind:
    """A kind of layer, whole. Subclass it, set `name` (and `keys`), implement the
    methods of each stage, and `register` an instance.

    Attributes:
        name: the registry key, the `type` a spec names it by (dense: the default),
            and the prefix of its plan sections (`dense-3`).
        keys: the spec keys it reads besides `type` (`validate` checks them).
        output: it may be the output layer (its op then computes the prediction, the
            loss and the output delta).
        gives_image: its output is an image (True: conv2d, the poolings) or a vector
            (False: dense, flatten) whatever its input, or has its input's form
            (None): what the layers after it are checked with where its output's
            size is unknown (its item has an error).
    """

    name: str = ""
    keys: tuple[str, ...] = ()
    output: bool = False
    gives_image: bool | None = None

    # ---- spec (no SymPy here: a spec is read before anything is derived)

    def types(self) -> tuple[str, ...]:
        """The `type` values a spec names this kind by."""
        return (self.name,)

    def validate(
        self, check: Any, item: Any, at: LayerAt
    ) -> Any | None:  # noqa: ANN401
        """The spec object of a layer item (`item.value`: its keys' nodes), or None
        after reporting each problem with `check.err` (`check`: the spec validator,
        with its `keys`, `integer`, `real`, `flag`, `parameter`, `op` checks)."""
        raise NotImplementedError

    def width(self, layer: Any, width: int) -> int:  # noqa: ANN401
        """The width of the layer's output, given its input's (the default keeps it);
        for an image, its shape (channels, height, width) as a tuple."""
        return width

    def parameters(self, layer: Any, width: int) -> int:  # noqa: ANN401
        """How many numbers the layer keeps (parameters and buffers), at most, given
        its input's width: what `symgrad check` budgets before deriving anything."""
        return 0

    def item_width(self, item: Any, width: int | None) -> int | None:  # noqa: ANN401
        """The output width read from a layer item that may have failed validation, so
        that the layers after it are still checked (the default keeps the width)."""
        return width

    # ---- derive

    def derive(self, layer: Any, index: int, fan_in: int) -> Rule:  # noqa: ANN401
        """The layer's rule: its sizes and what SymPy derives for it."""
        raise NotImplementedError

    # ---- plan

    def op(self, rule: Any, d: Any) -> Any:  # noqa: ANN401
        """The plan op of a rule (d: the Derivation): an object with
        `forward(builder, x) -> symbol` and
        `backward(builder, g, need_input) -> plan.Back | None`; an output kind's op also
        has `loss(builder, weights)` and starts the backward pass with g = None."""
        raise NotImplementedError

    # ---- report

    def sections(self, ctx: Any, l: int) -> tuple[Any, ...]:  # noqa: ANN401, E741
        """The report's sections of layer l (ctx: report.sections.Context)."""
        raise NotImplementedError

    def matrix_form(self, ctx: Any, rule: Any) -> MatrixRows:  # noqa: ANN401
        """The layer's rows of the matrix-form summary (the default: none)."""
        return MatrixRows()

    def batch_forward(
        self, ctx: Any, view: Any, rule: Any
    ) -> list[Any]:  # noqa: ANN401
        """The layer's forward pass for a batch, as equations (the default: the plan's
        training statements of the layer, as PlanView shows them)."""
        return [view.eq(s) for s in view.forward(rule.index)]

    def names(self, rule: Any, plan: Any) -> dict[Any, str]:  # noqa: ANN401
        """LaTeX names of the layer's plan values that the roles do not name."""
        return {}


@dataclass(frozen=True)
class LayerAt:
    """Where a layer item stands: its position, whether it is the output layer, and
    its input's width (None where an earlier layer's could not be read): an int for a
    vector, (channels, height, width) for an image. Where the width is None, what is
    still known: whether the input is an image (True), a vector (False) or either
    (None), and the key path of the layer whose error hid its size (`layers[0]`), so
    that a check that needs only the form (a dense layer after an image needs a
    flatten) still runs."""

    index: int
    last: bool
    width: int | tuple[int, ...] | None
    image: bool | None = None
    hidden_by: str = ""

    def unknown(self) -> str:
        """Why the input's size is not given, for a message: the layer to fix first."""
        return f"its size is unknown until the error at {self.hidden_by} is fixed"


LAYER_KINDS: dict[str, LayerKind] = {}
BUILTIN_KINDS = "symgrad.kinds"  # the package whose import registers the built-in kinds
_builtins = {"loaded": False}


def _with_builtins() -> dict[str, LayerKind]:
    """The table, with the built-in kinds registered first on first use.

    The built-ins live above every stage (a kind is whole: spec, derivation, plan and
    report parts), so this table, below every stage, loads them by name when it is
    first asked, as a plugin table would: whichever module asks first — the validator,
    a test, a kind registered from outside — finds dense, norm and dropout there, in
    the same order.
    """
    if not _builtins["loaded"]:
        _builtins["loaded"] = True  # before the import: the built-ins call register
        importlib.import_module(BUILTIN_KINDS)
    return LAYER_KINDS


def register(kind: LayerKind) -> LayerKind:
    """Add a kind to the registry (replacing one of the same name)."""
    if not kind.name:
        raise ValueError("a layer kind needs a name")
    _with_builtins()[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (a test's kind, after the test)."""
    _with_builtins().pop(name, None)


def types() -> tuple[str, ...]:
    """Every `type` a spec may name, in the order the kinds were registered."""
    return tuple(t for kind in _with_builtins().values() for t in kind.types())


def named(name: str) -> LayerKind:
    """The kind registered under a name (`DENSE` for a layer item without `type`)."""
    return _with_builtins()[name]


def for_type(type_name: str) -> LayerKind | None:
    """The kind a spec's `type` names, or None."""
    return next((k for k in _with_builtins().values() if type_name in k.types()), None)


def of(layer: Any) -> LayerKind:  # noqa: ANN401
    """The kind of a spec object or rule (its `kind` attribute names it)."""
    table = _with_builtins()
    try:
        return table[layer.kind]
    except KeyError:
        known = ", ".join(table)
        raise KeyError(
            f"no layer kind {layer.kind!r} is registered (known: {known}); register"
            " one with symgrad.layer_registry.register"
        ) from None


def flat(shape: int | tuple[int, ...]) -> int:
    """How many values a layer's output holds per example: its width, or C·H·W."""
    return shape if isinstance(shape, int) else math.prod(shape)


def shape_text(shape: int | tuple[int, ...]) -> str:
    """3×8×8 for an image, 64 for a vector."""
    return "×".join(str(d) for d in shape) if isinstance(shape, tuple) else str(shape)


def any_but_plain_dense(rules: Iterable[Rule]) -> bool:
    """A network with a layer that is not the textbook's dense layer."""
    return any(not r.plain_dense for r in rules)


__all__ = [
    "DENSE",
    "LAYER_KINDS",
    "LayerAt",
    "LayerKind",
    "MatrixRows",
    "Rule",
    "flat",
    "for_type",
    "named",
    "of",
    "register",
    "types",
    "unregister",
]
