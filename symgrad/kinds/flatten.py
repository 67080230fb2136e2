"""The flatten layer kind: an image (m, C, H, W) as rows (m, C·H·W), row-major, as
torch.flatten(x, 1); its gradient is the rows reshaped back (nothing to derive: a
reshape moves entries, each ∂a/∂x is 1 where it moved one).

One entry: its spec (no keys; its input must be an image), its rule, its plan op, and
its report section (report/sections/conv.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .. import layer_registry
from ..layer_registry import LayerAt, LayerKind
from ..plan import Back, Builder, X, section
from ..report.sections import conv as report
from ..spec.model import Loc
from ..sym.arrays import Reshaped
from ..window_rules import FlattenRule
from .images import Image


@dataclass(frozen=True)
class FlattenSpec:
    """`type: flatten`."""

    loc: Loc = field(default=Loc("<spec>"), compare=False)

    kind = "flatten"


class Flatten(LayerKind):
    """`type: flatten`."""

    name = "flatten"
    gives_image = False

    def validate(self, check, item, at: LayerAt) -> FlattenSpec | None:  # noqa: ANN001
        check.keys(item, ("type",), ())
        if isinstance(at.width, int) or (at.width is None and at.image is False):
            found = f" of {at.width} values" if at.width else f" ({at.unknown()})"
            check.err(
                item.loc,
                f"flatten turns an image into a vector, but its input is already a"
                f" vector{found}",
                "remove this flatten layer",
            )
            return None
        return FlattenSpec(item.loc)

    def width(self, layer: FlattenSpec, width: Image) -> int:  # type: ignore[override]
        return layer_registry.flat(width)

    def item_width(self, item, width):  # noqa: ANN001, ANN201
        return None if width is None else layer_registry.flat(width)

    def derive(self, layer: FlattenSpec, index: int, fan_in: Image) -> FlattenRule:  # type: ignore[override]
        return FlattenRule(index, layer_registry.flat(fan_in), fan_in)

    def op(self, rule: FlattenRule, d) -> FlattenOp:  # noqa: ANN001
        return FlattenOp(rule)

    def sections(self, ctx, l: int) -> tuple:  # noqa: ANN001, E741
        return report.flatten_sections(ctx, l)


@dataclass
class FlattenOp:
    """A = X as rows (m, C·H·W); backward: G as (m, C, H, W)."""

    rule: FlattenRule
    x: sp.Symbol = X

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        r, l = self.rule, self.rule.index  # noqa: E741
        self.x = x
        return bd.emit(
            "forward",
            "a",
            l,
            Reshaped(x, sp.Tuple(r.units)),
            (bd.shapes[x][0], r.units),
            section(r),
            f"A{l} = {x.name} as rows (m, {r.units}), row-major",
        )

    def backward(
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        assert g is not None
        if not need_input:
            return None
        back = Reshaped(g, sp.Tuple(*self.rule.image))
        return Back(back, f"G{self.rule.index} as (m, C, H, W)")


layer_registry.register(Flatten())
