"""What every section builder gets, and the registry of layer kinds' builders.

A layer's sections are found by the kind of layer: `LAYER_SECTIONS` maps a kind to its
builder, registered with `@layer_sections(kind)` (dense.py registers "dense"), so that a
new kind (layernorm, batchnorm, dropout, residual) adds a module with its builder and
touches no other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...derive import ActivationRule, Derivation, LayerRule
from ..document import Section


@dataclass
class Context:
    """What a section builder reads.

    Attributes:
        d: the derivation.
        plan: the Plan (symgrad.plan) when the caller has one, else None; the report
            does not build it.
        derived: the activations whose derivative a section already derived, with the
            layer it was derived in (a later layer refers back to it).
    """

    d: Derivation
    plan: object | None = None
    derived: dict[ActivationRule, int] = field(default_factory=dict)


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


def units_word(count: int) -> str:
    """'unit' or 'units', for a count."""
    return "unit" if count == 1 else "units"
