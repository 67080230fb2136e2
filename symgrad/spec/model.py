"""The spec model: a validated spec as frozen dataclasses that remember where each value
sat in the file (`Loc`), so that a later stage can still point at the line. No SymPy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import layer_registry
from ..errors import Problem


@dataclass(frozen=True)
class Loc:
    """Where a value sits in the spec file."""

    file: str
    line: int = 0
    col: int = 0
    path: str = ""

    def problem(self, message: str, hint: str = "") -> Problem:
        return Problem(self.file, self.line, self.col, self.path, message, hint)


@dataclass(frozen=True)
class OpSpec:
    """An activation or loss as the spec names it: built-in (expr None) or custom."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    expr: str | None = None
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    @property
    def custom(self) -> bool:
        return self.expr is not None

    def param(self, key: str) -> float:
        return dict(self.params)[key]


@dataclass(frozen=True)
class LayerSpec:
    """A dense layer: units and an activation; residual adds its input to its output."""

    units: int
    activation: OpSpec
    loc: Loc = field(default=Loc("<spec>"), compare=False)
    residual: bool = False

    kind = "dense"


@dataclass(frozen=True)
class NormSpec:
    """A normalization layer: a built-in norm (layernorm, rmsnorm, batchnorm) by name,
    or a custom one with its expression in x; params hold eps (and batchnorm's
    momentum), custom parameters included."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    expr: str | None = None
    affine: bool = True
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    kind = "norm"

    @property
    def custom(self) -> bool:
        return self.expr is not None

    def param(self, key: str) -> float:
        return dict(self.params)[key]


@dataclass(frozen=True)
class DropoutSpec:
    """Inverted dropout: in training, each value is kept with probability 1 − rate
    and scaled by 1/(1 − rate)."""

    rate: float
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    kind = "dropout"


Layer = LayerSpec | NormSpec | DropoutSpec  # or a layer kind's own spec object


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule (schedules.py): its name and its settings, warmup
    included (0: none)."""

    name: str
    params: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer: its name and settings, its schedule and its clipping norm."""

    name: str
    params: tuple[tuple[str, float | bool], ...]
    schedule: ScheduleSpec | None = None
    clip_norm: float | None = None

    def param(self, key: str) -> float | bool:
        return dict(self.params)[key]


@dataclass(frozen=True)
class Spec:
    """A validated network spec (format v1, v2 with layers beyond dense, or v3 with an
    image input and image layers)."""

    name: str
    input: (
        int | tuple[int, int, int]
    )  # features, or an image: (channels, height, width)
    layers: tuple[Layer, ...]  # the last is a dense layer: the output layer
    loss: OpSpec
    l2: float = 0.0
    optimizer: OptimizerSpec = OptimizerSpec("sgd", (("learning_rate", 0.01),))
    init: str = "auto"
    source: str = "<spec>"
    task: str | None = None  # what predict returns (losses.TASKS); None: derive decides
    task_loc: Loc = field(default=Loc("<spec>"), compare=False)

    @property
    def shapes(self) -> tuple[int | tuple[int, ...], ...]:
        """The input's shape, then each layer's output shape, as its kind says: a width
        (an int) for a vector, (channels, height, width) for an image."""
        shapes = [self.input]
        for layer in self.layers:
            shapes.append(layer_registry.of(layer).width(layer, shapes[-1]))
        return tuple(shapes)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The input width, then each layer's output width (as its kind says: a norm
        or dropout keeps the width it is given); an image counts its values, C·H·W."""
        return tuple(layer_registry.flat(s) for s in self.shapes)

    @property
    def output(self) -> LayerSpec:
        """The output layer (validated to be of a kind that may end the network)."""
        return self.layers[-1]  # type: ignore[return-value]


# what names a spec in the API: the Spec, a path, YAML text or a dict (see as_spec)
SpecSource = Spec | str | os.PathLike[str] | Mapping[str, Any]
