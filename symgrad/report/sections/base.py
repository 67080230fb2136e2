"""What every section builder gets, and what the dense sections ask of the layers
around them (whether a neighbour is the textbook's dense layer).

A layer's sections are found by its kind: the kind's entry (layer_registry) names its
builder, builder(context, l) (the built-in kinds' builders are dense.py, norm.py and
dropout.py here).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ...derive import ActivationRule, Derivation
from ...plan import Plan
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


def plain_dense(d: Derivation, l: int) -> bool:  # noqa: E741
    """Layer l is a dense layer without a residual connection (the chain rule into the
    layer below is the textbook's Σₖ δₖ wⱼₖ)."""
    return d.layer(l).plain_dense


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
    if l == 1 or not rule.plain_dense and not rule.residual:
        return False
    return rule.residual or not plain_dense(d, l - 1)


def units_word(count: int) -> str:
    """'unit' or 'units', for a count."""
    return "unit" if count == 1 else "units"
