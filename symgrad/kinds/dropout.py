"""The dropout layer kind: inverted dropout, as PyTorch's (kept values scaled by
1/(1 − rate) in training; the identity otherwise), on a vector or elementwise on an
image.

One entry holds the whole kind: its spec key `rate` and its check, its rule (the rate;
nothing to derive: ∂(x ⊙ k)/∂x = k), its plan op (the mask drawn in training, a
statement whose `when` is "dropout"), and its report section
(report/sections/dropout.py) and matrix-form rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .. import layer_registry
from ..derive import DropoutRule
from ..errors import number
from ..layer_registry import LayerAt, LayerKind, MatrixRows
from ..plan import Back, Builder, Condition, Draw, X, section
from ..report.document import Eq, cat
from ..report.notation import ODOT, upstream, vec
from ..report.sections import dropout as report
from ..report.sections.network import keep_mask
from ..spec import DropoutSpec
from ..sym.arrays import KeepMask


class Dropout(LayerKind):
    """`type: dropout` with its `rate`."""

    name = "dropout"
    keys = ("rate",)

    def validate(self, check, item, at: LayerAt) -> DropoutSpec | None:
        check.keys(item, ("type", "rate"), ("rate",))
        if "rate" not in item.value:
            return None
        rnode = item.value["rate"]
        rate = check.real(rnode)
        if rate is None:
            return None
        if not 0 <= rate < 1:
            check.err(
                rnode.loc,
                f"rate is the probability of dropping a value: expected a number in"
                f" [0, 1), found {number(rate)}",
                "e.g. rate: 0.1",
            )
            return None
        return DropoutSpec(rate, item.loc)

    def derive(self, layer: DropoutSpec, index: int, fan_in: int) -> DropoutRule:
        # on an image: elementwise, as on a vector; the rule counts its values
        return DropoutRule(index, layer_registry.flat(fan_in), layer.rate)

    def op(self, rule: DropoutRule, d) -> DropoutOp:
        return DropoutOp(rule)

    def sections(self, ctx, l: int) -> tuple:  # noqa: E741
        return report.dropout_sections(ctx, l)

    def matrix_form(self, ctx, rule: DropoutRule) -> MatrixRows:
        l, n = rule.index, ctx.d.depth  # noqa: E741
        rows = MatrixRows()
        rows.forward.append(
            Eq(vec("a", l, n), (cat(vec("a", l - 1, n), ODOT, keep_mask(l)),))
        )
        if l > 1:
            rows.backward.append(
                Eq(upstream(l - 1), (cat(upstream(l), ODOT, keep_mask(l)),))
            )
        return rows


# ---------------------------------------------------------------- the plan op


@dataclass
class DropoutOp:
    """Inverted dropout: A = X ⊙ K, K = 1/(1 − rate) with probability 1 − rate, else 0
    (drawn in training when a generator is given; K = 1 otherwise)."""

    rule: DropoutRule
    keep: sp.Symbol = X

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        l, rate = self.rule.index, self.rule.rate  # noqa: E741
        sec = section(self.rule)
        # drawn in training from the random numbers given, else 1: no dropout
        with bd.block(
            "forward",
            Condition.TRAINING,
            Condition.GENERATOR,
            otherwise_note="no dropout",
        ) as blk:
            self.keep = bd.emit(
                "forward",
                "keep",
                l,
                KeepMask(x, sp.Float(rate)),
                bd.shapes[x],
                sec,
                f"K{l} = 1/(1 − {rate:g}) with probability 1 − {rate:g}, else 0",
                "inverted dropout, as PyTorch: the kept values are scaled up in "
                "training",
                kind=Draw,
            )
            with blk.otherwise():
                bd.emit(
                    "forward",
                    "keep",
                    l,
                    sp.Float(1.0),
                    bd.shapes[x],
                    sec,
                    f"K{l} = 1",
                    name=self.keep.name,
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
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        assert g is not None
        if not need_input:
            return None
        return Back(g * self.keep, f"G{self.rule.index} ⊙ K{self.rule.index}")


layer_registry.register(Dropout())
