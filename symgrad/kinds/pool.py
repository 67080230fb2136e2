"""The pooling layer kinds: maxpool2d and avgpool2d, PyTorch's MaxPool2d and AvgPool2d
without padding (`size`, an int or a pair; `stride`, default the size; overlapping
windows allowed).

One class, registered once per kind: its spec keys and checks (images.pooling: the
window must fit the input), its derivation (window_rules: the max as Σ M·x with M the
first maximum of each window, the mean as Σ x/(kh·kw), differentiated by SymPy), its
plan op (the window max and its indicator; the contractions the derivation found, the
gradient scattered back through the windows), and its report section
(report/sections/conv.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .. import layer_registry
from ..layer_registry import LayerAt, LayerKind
from ..plan import Back, Builder, X, section
from ..report.sections import conv as report
from ..spec.model import Loc
from ..sym.arrays import FirstMax, WindowMax
from ..window_rules import PoolRule, WindowGeometry, window_rules
from . import images
from .images import Image, Window


@dataclass(frozen=True)
class PoolSpec:
    """A pooling layer: `kind` maxpool2d or avgpool2d, and its window."""

    kind: str
    window: Window
    loc: Loc = field(default=Loc("<spec>"), compare=False)


class Pool(LayerKind):
    """`type: maxpool2d` (op "max") or `type: avgpool2d` (op "avg")."""

    keys = ("size", "stride")
    gives_image = True

    def __init__(self, name: str, op: str) -> None:
        self.name, self.op_name = name, op

    def read(
        self, check, item, at: LayerAt
    ) -> tuple[PoolSpec, Image] | None:  # noqa: ANN001
        got = images.pooling(check, item, at, self.name)
        return None if got is None else (PoolSpec(self.name, got[0], item.loc), got[1])

    def validate(self, check, item, at: LayerAt) -> PoolSpec | None:  # noqa: ANN001
        got = self.read(check, item, at)
        return None if got is None else got[0]

    def width(self, layer: PoolSpec, width: Image) -> Image:  # type: ignore[override]
        return layer.window.out(width, width[0])

    def item_width(self, item, width):  # noqa: ANN001, ANN201
        got = images.quietly(self.read, item, LayerAt(0, False, width))
        return None if got is None else got[1]

    def derive(self, layer: PoolSpec, index: int, fan_in: Image) -> PoolRule:  # type: ignore[override]
        w = layer.window
        out = w.out(fan_in, fan_in[0])
        geometry = WindowGeometry(fan_in, out, w.kernel, w.stride, w.padding)
        units = layer_registry.flat(out)
        return PoolRule(index, units, geometry, window_rules(self.op_name), self.name)

    def op(self, rule: PoolRule, d) -> PoolOp:  # noqa: ANN001
        return PoolOp(rule)

    def sections(self, ctx, l: int) -> tuple:  # noqa: ANN001, E741
        return report.pool_sections(ctx, l)


@dataclass
class PoolOp:
    """max: A = the max of each window, M = its first maximum; avg: A = Σ windows / k.
    Backward: the derived ∂L/∂X, scattered back through the windows."""

    rule: PoolRule
    x: sp.Symbol = X
    mask: sp.Symbol | None = None

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        r, l = self.rule, self.rule.index  # noqa: E741
        geo, sec = r.geometry, section(r)
        self.x = images.as_image(bd, x, geo.image, l, sec)
        windows = images.windows_of(bd, self.x, geo, l, sec)
        shape = (bd.shapes[self.x][0], *geo.out)
        if r.rules.op == "max":
            out = bd.emit(
                "forward",
                "a",
                l,
                WindowMax(windows),
                shape,
                sec,
                f"A{l}[n,c,i,j] = max_p,q {self.x.name}[n,c,s·i+p,s·j+q]",
            )
            self.mask = bd.emit(
                "forward",
                "winmask",
                l,
                FirstMax(windows, out),
                (shape[0], *geo.windows),
                sec,
                f"MX{l} = 1 at each window's first maximum (row-major), else 0",
                "A = Σ_p,q MX·windows: the max, and the sum SymPy differentiates"
                " (ties go to the first maximum, as PyTorch)",
            )
            return out
        return bd.emit(
            "forward",
            "a",
            l,
            images.contract(r.rules.forward, {}, windows, geo),
            shape,
            sec,
            f"A{l}[n,c,i,j] = Σ_p,q {self.x.name}[n,c,s·i+p,s·j+q] / (kh·kw)",
        )

    def backward(
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        assert g is not None
        if not need_input:
            return None
        r, l = self.rule, self.rule.index  # noqa: E741
        arrays = {"G": g} if self.mask is None else {"G": g, "M": self.mask}
        back = images.back_through_windows(
            bd, r.rules.grad("x"), arrays, r.geometry, l, section(r)
        )
        return Back(back, f"∂L/∂{self.x.name}: each window's gradient put back")


layer_registry.register(Pool("maxpool2d", "max"))
layer_registry.register(Pool("avgpool2d", "avg"))
