"""What every section builder gets, and the registry of layer kinds' builders.

A layer's sections are found by the kind of layer: `LAYER_SECTIONS` maps a kind to its
builder, registered with `@layer_sections(kind)` (dense.py registers "dense"), so that a
new kind adds a module with its builder and touches no other (norm.py: layernorm,
rmsnorm, batchnorm and custom norms; dropout.py; a residual layer is dense).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from ...derive import ActivationRule, Derivation, LayerRule
from ...plan import Plan
from ..document import Section
from ..plan_view import PlanView


@dataclass
class Context:
    """What a section builder reads.

    Attributes:
        d: the derivation.
        plan: the Plan of d (symgrad.plan), which `build` makes when not given; None
            lays out a report without the generated code's statements.
        derived: the activations whose derivative a section already derived, with the
            layer it was derived in (a later layer refers back to it).
    """

    d: Derivation
    plan: Plan | None = None
    derived: dict[ActivationRule, int] = field(default_factory=dict)

    @functools.cached_property
    def view(self) -> PlanView | None:
        """The plan's statements as equations (None without a plan)."""
        return None if self.plan is None else PlanView(self.plan)


LayerBuilder = Callable[[Context, int], tuple[Section, ...]]
LAYER_SECTIONS: dict[str, LayerBuilder] = {}


def layer_sections(kind: str) -> Callable[[LayerBuilder], LayerBuilder]:
    """Register the builder of a layer kind's sections: builder(context, l)."""

    def register(builder: LayerBuilder) -> LayerBuilder:
        LAYER_SECTIONS[kind] = builder
        return builder

    return register


def layer_kind(rule: LayerRule) -> str:
    """The kind of a layer; every layer is dense until LayerRule says otherwise."""
    return getattr(rule, "kind", "dense")


def plain_dense(d: Derivation, l: int) -> bool:  # noqa: E741
    """Layer l is a dense layer without a residual connection (the chain rule into the
    layer below is the textbook's Σₖ δₖ wⱼₖ)."""
    rule = d.layer(l)
    return isinstance(rule, LayerRule) and not rule.residual


def classic(d: Derivation, l: int) -> bool:  # noqa: E741
    """Hidden layer l and the layer above are plain dense layers: l's delta is the
    textbook's (Σₖ δₖ wⱼₖ) · f'(zⱼ), with no gradient g^{[l]} written on its own."""
    return l < d.depth and plain_dense(d, l) and plain_dense(d, l + 1)


def passes_down(d: Derivation, l: int) -> bool:  # noqa: E741
    """Dense layer l writes the gradient g^{[l-1]} it passes down: when l is residual
    (the identity term), or the layer below is not a plain dense layer (a norm or
    dropout receives it; a residual layer reads it twice). Else the layer below sums
    over l's deltas itself."""
    rule = d.layer(l)
    if l == 1 or not isinstance(rule, LayerRule):
        return False
    return rule.residual or not plain_dense(d, l - 1)


def units_word(count: int) -> str:
    """'unit' or 'units', for a count."""
    return "unit" if count == 1 else "units"
