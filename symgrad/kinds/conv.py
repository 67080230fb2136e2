"""The conv2d layer kind: PyTorch's Conv2d (cross-correlation, NCHW, zero padding), then
an activation, optionally residual (a = x + f(z), equal shapes only).

One entry holds the whole kind: its spec keys (filters, kernel, stride, padding —
an int, a pair [h, w], `same` or `valid` — activation, residual) and their checks, each
shape mistake one located message naming the shapes computed; its derivation (the
index sum SymPy differentiates: window_rules.py, and the activation's rule as a dense
layer's); its plan op, the contractions the derivation found as statements (images.py);
and its report section (report/sections/conv.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .. import activations, layer_registry
from .. import naming as nm
from ..activations import a, z
from ..derive import activation_rule, factored, guarded
from ..layer_registry import LayerAt, LayerKind
from ..plan import Back, Builder, Param, X, section
from ..report.sections import conv as report
from ..spec.model import Loc, OpSpec
from ..window_rules import ConvRule, WindowGeometry, window_rules
from . import images
from .dense import _act_forward, _init
from .images import Image, Window, shape_text

KEYS = ("filters", "kernel", "stride", "padding", "activation", "residual")
REQUIRED = ("filters", "kernel", "activation")


@dataclass(frozen=True)
class ConvSpec:
    """A conv2d layer as the spec gives it."""

    filters: int
    window: Window
    activation: OpSpec
    loc: Loc = field(default=Loc("<spec>"), compare=False)
    residual: bool = False

    kind = "conv2d"


def _padding(check, node, kernel, stride) -> tuple[int, int] | None:  # noqa: ANN001
    """padding: an int or pair ≥ 0, `valid` (0) or `same` (stride 1, odd kernel)."""
    v = node.value
    if v == "valid":
        return (0, 0)
    if v == "same":
        if stride is not None and stride != (1, 1):
            check.err(
                node.loc,
                "padding: same keeps the input's height and width only with stride 1,"
                f" found stride {images._pair_text(stride)}",
                "give the padding as a number, or use stride 1",
            )
            return None
        if kernel is not None and (kernel[0] % 2 == 0 or kernel[1] % 2 == 0):
            check.err(
                node.loc,
                f"padding: same needs an odd kernel, found"
                f" {images._pair_text(kernel)} (PyTorch pads an even kernel unevenly,"
                " which symgrad does not support yet)",
                "use an odd kernel, or give the padding as a number",
            )
            return None
        if kernel is None:
            return None
        return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    if isinstance(v, str):
        check.err(
            node.loc,
            f"padding must be a number, a pair [h, w], same or valid; found {v!r}",
            "e.g. padding: 1, or padding: same",
        )
        return None
    return images.pair(check, node, 0)


def read(
    check, item, at: LayerAt  # noqa: ANN001
) -> tuple[ConvSpec | None, Image | None]:
    """The spec object of a conv2d item (None after reporting each problem) and its
    output shape (None where the item's geometry or its input's cannot be read: a wrong
    activation leaves the shape known, for the layers after it)."""
    check.keys(item, ("type", *KEYS), REQUIRED)
    v = item.value
    filters = (
        check.integer(v["filters"], 1, check.max_units) if "filters" in v else None
    )
    kernel = images.pair(check, v["kernel"], 1) if "kernel" in v else None
    stride = images.pair(check, v["stride"], 1) if "stride" in v else (1, 1)
    padding = (
        _padding(check, v["padding"], kernel, stride) if "padding" in v else (0, 0)
    )
    act = (
        check.op(v["activation"], activations.ACTIVATIONS, "activation")
        if "activation" in v
        else None
    )
    if act and act.name == activations.SOFTMAX and not act.custom:
        check.err(
            act.loc,
            "softmax is only supported on the output (last) layer",
            "use relu or tanh on a conv2d layer",
        )
        act = None
    residual = check.flag(v["residual"]) if "residual" in v else False
    image = images.image_input(check, item, at, "conv2d")
    if None in (filters, kernel, stride, padding, image):
        return None, None
    window = Window(kernel, stride, padding)  # type: ignore[arg-type]
    if not window.fits(image):  # type: ignore[arg-type]
        hp, wp = window.padded(image)  # type: ignore[arg-type]
        check.err(
            v["kernel"].loc,
            f"the {images._pair_text(kernel)} kernel is larger than the padded input:"  # type: ignore[arg-type]
            f" the input is {shape_text(image)}, {hp}×{wp} with padding"  # type: ignore[arg-type]
            f" {images._pair_text(padding)}",  # type: ignore[arg-type]
            "use a smaller kernel or more padding",
        )
        return None, None
    out = window.out(image, filters)  # type: ignore[arg-type]
    if act is None or residual is None:
        return None, out
    if residual and out != image:
        check.err(
            v["residual"].loc,
            f"a residual layer adds its input to its output, but this conv2d turns"
            f" {shape_text(image)} into {shape_text(out)}",  # type: ignore[arg-type]
            f"use filters: {image[0]}, stride 1 and padding: same, or drop residual",  # type: ignore[index]
        )
        return None, out
    spec = ConvSpec(filters, window, act, item.loc, bool(residual))  # type: ignore[arg-type]
    return spec, out


class Conv2d(LayerKind):
    """`type: conv2d`."""

    name = "conv2d"
    keys = KEYS
    gives_image = True

    # ---- spec

    def validate(self, check, item, at: LayerAt) -> ConvSpec | None:
        return read(check, item, at)[0]

    def width(self, layer: ConvSpec, width: Image) -> Image:  # type: ignore[override]
        return layer.window.out(width, layer.filters)

    def item_width(self, item, width):  # noqa: ANN001, ANN201
        got = images.quietly(read, item, LayerAt(0, False, width))
        return None if got is None else got[1]

    def parameters(self, layer: ConvSpec, width: Image) -> int:  # type: ignore[override]
        kh, kw = layer.window.kernel
        return (width[0] * kh * kw + 1) * layer.filters

    # ---- derive

    def derive(self, layer: ConvSpec, index: int, fan_in: Image) -> ConvRule:  # type: ignore[override]
        act = guarded(activation_rule, layer.activation)
        w = layer.window
        out = w.out(fan_in, layer.filters)
        geometry = WindowGeometry(fan_in, out, w.kernel, w.stride, w.padding)
        rules = window_rules("conv")
        units = layer_registry.flat(out)
        return ConvRule(index, units, geometry, act, rules, layer.residual)

    # ---- plan

    def op(self, rule: ConvRule, d) -> ConvOp:  # noqa: ANN001
        return ConvOp(rule, _init(d.spec.init, rule.activation))

    # ---- report

    def sections(self, ctx, l: int) -> tuple:  # noqa: ANN001, E741
        return report.conv_sections(ctx, l)


@dataclass
class ConvOp:
    """Z = Σ W · windows(X) + b (the derived contraction), A = f(Z); residual:
    A = X + f(Z). Backward: the derived contractions of ∂L/∂W, ∂L/∂b, ∂L/∂X."""

    rule: ConvRule
    init: str
    x: sp.Symbol = X
    windows: sp.Expr = X
    W: sp.Symbol = X  # noqa: N815
    b: sp.Symbol = X
    z: sp.Symbol = X
    out: sp.Symbol = X
    mask: sp.Symbol | None = None

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        r, l = self.rule, self.rule.index  # noqa: E741
        geo = r.geometry
        sec = section(r)
        self.x = images.as_image(bd, x, geo.image, l, sec)
        kh, kw = geo.kernel
        self.W = bd.param(
            Param(
                nm.W(l),
                (r.filters, geo.image[0], kh, kw),
                (self.init, r.fan_in, r.fan_out),
                l,
                weight=True,
            )
        )
        self.b = bd.param(Param(nm.b(l), (r.filters,), ("zeros",), l))
        arrays = {"W": self.W, "b": self.b}
        self.windows = images.windows_of(bd, self.x, geo, l, sec)
        zexpr = images.contract(r.rules.forward, arrays, self.windows, geo)
        self.z = bd.emit(
            "forward",
            "z",
            l,
            zexpr,
            (nm.BATCH, *geo.out),
            sec,
            f"Z{l}[n,f,i,j] = Σ_c,p,q W{l}[f,c,p,q] {self.x.name}[n,c,{_pos(geo)}]"
            f" + b{l}[f]",
        )
        role = "f" if r.residual else "a"
        self.out, self.mask = _act_forward(bd, r.activation, self.z, l, sec, role)
        if not r.residual:
            return self.out
        return bd.emit(
            "forward",
            "a",
            l,
            self.x + self.out,
            None,
            sec,
            f"A{l} = {self.x.name} + F{l}",
            "a residual connection: the input goes around",
        )

    def backward(
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        r, l, act = self.rule, self.rule.index, self.rule.activation  # noqa: E741
        assert g is not None
        sec = section(r)
        geo = r.geometry
        if self.mask is not None:
            factor = self.mask
        else:
            factor = factored(act.df).xreplace({a: self.out, z: self.z})
        delta = g
        if factor != 1:
            delta = bd.emit(
                "backward",
                "delta",
                l,
                g * factor,
                bd.shapes[self.z],
                sec,
                f"δ{l} = G{l} ⊙ {act.name}'(Z{l})",
            )
        arrays = {"W": self.W, "b": self.b, "G": delta}
        rules = r.rules
        bd.gradient(
            nm.W(l),
            images.contract(rules.grad("W"), arrays, self.windows, geo),
            sec,
            f"∂L/∂W{l}[f,c,p,q] = Σ_n,i,j δ{l}[n,f,i,j] {self.x.name}[n,c,{_pos(geo)}]",
        )
        bd.gradient(
            nm.b(l),
            images.contract(rules.grad("b"), arrays, self.windows, geo),
            sec,
            f"∂L/∂b{l}[f] = Σ_n,i,j δ{l}[n,f,i,j]",
        )
        if not need_input:
            return None
        back = images.back_through_windows(bd, rules.grad("x"), arrays, geo, l, sec)
        if r.residual:
            return Back(back + g, f"∂L/∂{self.x.name} (through the windows) + G{l}")
        return Back(
            back,
            f"Σ_f,i,j,p,q δ{l}[n,f,i,j] W{l}[f,c,p,q] [u = s·i + p − pad]"
            " [v = s·j + q − pad]",
            "the derivative's deltas: each window entry's gradient added back where"
            " it was read",
        )


def _pos(geo: WindowGeometry) -> str:
    (sh, sw), (ph, pw) = geo.stride, geo.padding

    def one(s: int, i: str, p: str, pad: int) -> str:
        return (f"{s}·" if s != 1 else "") + f"{i}+{p}" + (f"−{pad}" if pad else "")

    return f"{one(sh, 'i', 'p', ph)},{one(sw, 'j', 'q', pw)}"


layer_registry.register(Conv2d())
