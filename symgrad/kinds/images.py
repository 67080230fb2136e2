"""What the image layer kinds (conv2d, maxpool2d and avgpool2d, flatten) share: the
geometry of a sliding window (kernel, stride, zero padding; each a pair (h, w)), how a
spec item's window keys are read and checked (each problem one located message naming
the shapes computed), the shapes a window gives, and the plan statements of a window
layer made from the contractions its derivation found (window_rules.py).

An image is (channels, height, width) per example, as PyTorch's NCHW without the batch;
a vector is an int. A window over an image of height H with kernel k, stride s and
padding p gives ⌊(H + 2p − k)/s⌋ + 1 rows, as PyTorch's Conv2d and MaxPool2d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.core.symbol import Str

from .. import naming as nm
from ..layer_registry import shape_text
from ..spec.checks import Checker
from ..sym.arrays import (
    Cropped,
    Einsum,
    Expanded,
    Padded,
    Reshaped,
    ScatterWindows,
    Windows,
)
from ..window_rules import Contraction, IndexSum, WindowGeometry, kh, kw

Image = tuple[int, int, int]
Pair = tuple[int, int]
MAX_WINDOW = 1024  # the largest kernel, stride or padding a spec may name


@dataclass(frozen=True)
class Window:
    """A sliding window: kernel (kh, kw), stride (sh, sw), zero padding (ph, pw)."""

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)

    def padded(self, image: Image) -> tuple[int, int]:
        """The padded input's height and width."""
        return image[1] + 2 * self.padding[0], image[2] + 2 * self.padding[1]

    def fits(self, image: Image) -> bool:
        """The kernel fits inside the padded input."""
        hp, wp = self.padded(image)
        return self.kernel[0] <= hp and self.kernel[1] <= wp

    def out(self, image: Image, channels: int) -> Image:
        """The output's shape, with `channels` channels."""
        hp, wp = self.padded(image)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return (channels, (hp - kh) // sh + 1, (wp - kw) // sw + 1)

    def text(self) -> str:
        """kernel 3×3, stride 1, padding 1, as the report and messages say it."""
        return (
            f"kernel {_pair_text(self.kernel)}, stride {_pair_text(self.stride)},"
            f" padding {_pair_text(self.padding)}"
        )


def _pair_text(p: Pair) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"


def pair(check: Checker, node: Any, low: int) -> Pair | None:  # noqa: ANN401
    """An int or a list [h, w] of ints from `low` to MAX_WINDOW."""
    v = node.value
    if isinstance(v, list):
        if len(v) != 2:
            check.err(
                node.loc,
                f"expected one integer or a pair [height, width], found {len(v)}"
                " numbers",
                "e.g. 3 or [3, 5]",
            )
            return None
        h, w = (check.integer(d, low, MAX_WINDOW) for d in v)
        return None if h is None or w is None else (h, w)
    n = check.integer(node, low, MAX_WINDOW)
    return None if n is None else (n, n)


def image_input(
    check: Checker, item: Any, at: Any, what: str
) -> Image | None:  # noqa: ANN401
    """The layer's input as an image, or None after saying that it is a vector (None
    without a message where an earlier layer's shape could not be read and its form
    is not known either)."""
    width = at.width
    if isinstance(width, tuple) or (width is None and at.image is not False):
        return width
    found = f" of {width} values" if width is not None else f" ({at.unknown()})"
    check.err(
        item.loc,
        f"{what} needs an image input (channels, height, width), but its input is a"
        f" vector{found}",
        "give the spec an image input, e.g. input: [1, 8, 8], and put image layers"
        " before flatten",
    )
    return None


def vector_only(check: Checker, item: Any, at: Any, what: str) -> bool:  # noqa: ANN401
    """False after saying that the layer is not supported on an image yet."""
    if not isinstance(at.width, tuple):
        return True
    check.err(
        item.loc,
        f"{what} on an image (here {shape_text(at.width)}) is not supported yet",
        "put it after flatten, or leave it out",
    )
    return False


def pooling(
    check: Checker, item: Any, at: Any, what: str  # noqa: ANN401
) -> tuple[Window, Image] | None:
    """A pooling item's window (size, stride: default size; no padding) and output
    shape, checked against its input; None after reporting each problem."""
    check.keys(item, ("type", "size", "stride"), ("size",))
    v = item.value
    size = pair(check, v["size"], 1) if "size" in v else None
    stride = pair(check, v["stride"], 1) if "stride" in v else size
    image = image_input(check, item, at, what)
    if size is None or stride is None or image is None:
        return None
    window = Window(size, stride)
    if not window.fits(image):
        check.err(
            v["size"].loc,
            f"the {_pair_text(size)} pooling window does not fit the"
            f" {shape_text(image)} input (height {image[1]}, width {image[2]})",
            f"use a size of at most {min(image[1], image[2])}, or pool earlier",
        )
        return None
    return window, window.out(image, image[0])


def quietly(read: Any, item: Any, at: Any) -> Any:  # noqa: ANN401
    """What read(check, item, at) gives with a checker whose messages are dropped: a
    layer's output shape for item_width, whether or not the item was valid."""
    from ..spec.validate import Validator  # the checks a kind's validate reads with

    try:
        return read(Validator(""), item, at)
    except (KeyError, TypeError, AttributeError):
        return None


# ---------------------------------------------------------------- the plan's statements
#
# What a window layer's op emits, from the contractions its derivation found
# (window_rules.contraction): the input as an image, padded; its window view; each
# contraction as an einsum (or a broadcast); a scatter back through the windows.


def as_image(
    bd: Any, x: sp.Symbol, image: Image, l: int, sec: str
) -> sp.Symbol:  # noqa: ANN401, E741
    """x as (m, C, H, W): itself, or the flat input (m, C·H·W) reshaped, row-major."""
    if len(bd.shapes[x]) == 4:
        return x
    return bd.emit(
        "forward",
        "image",
        l,
        Reshaped(x, sp.Tuple(*image)),
        (nm.BATCH, *image),
        sec,
        f"I{l} = {x.name} as (m, {', '.join(map(str, image))}), row-major",
    )


def windows_of(
    bd: Any, x: sp.Symbol, geo: WindowGeometry, l: int, sec: str
) -> sp.Expr:  # noqa: ANN401, E741
    """The window view of x, zero-padded first where the layer pads."""
    ph, pw = geo.padding
    if ph or pw:
        x = bd.emit(
            "forward",
            "padded",
            l,
            Padded(x, ph, pw),
            (nm.BATCH, geo.image[0], *geo.padded),
            sec,
            f"XP{l} = {x.name} with {ph} zero rows and {pw} zero columns around",
        )
    return Windows(x, *geo.kernel, *geo.stride)


def _sizes(geo: WindowGeometry) -> dict[sp.Symbol, int]:
    return {kh: geo.kernel[0], kw: geo.kernel[1]}


def _term(
    con: Contraction,
    arrays: dict[str, sp.Expr],
    windows: sp.Expr,
    geo: WindowGeometry,
) -> sp.Expr:
    """One contraction as an expression: an einsum, or one operand spread (a bias)."""
    ops = [windows if o.windowed else arrays[o.name] for o in con.operands]
    scale = con.scale.xreplace(_sizes(geo))
    if con.broadcast:
        (o,) = con.operands
        index = ", ".join(":" if ch in o.letters else "None" for ch in con.out)
        spread = Expanded(ops[0], Str(f"[{index}]"))
        return scale * spread
    return scale * Einsum(Str(con.subscripts), *ops)


def contract(
    rule: IndexSum,
    arrays: dict[str, sp.Expr],
    windows: sp.Expr,
    geo: WindowGeometry,
) -> sp.Expr:
    """The derived index sum as the sum of its contractions (none may scatter)."""
    if any(con.scatter for con in rule.contractions):
        raise ValueError("symgrad bug: a scatter is back_through_windows'")
    return sp.Add(*(_term(con, arrays, windows, geo) for con in rule.contractions))


def back_through_windows(
    bd: Any,  # noqa: ANN401
    rule: IndexSum,
    arrays: dict[str, sp.Expr],
    geo: WindowGeometry,
    l: int,  # noqa: E741
    sec: str,
) -> sp.Expr:
    """∂L/∂x where the derivative's deltas put each window entry's gradient back where
    the window read it: the entries' gradients (the contraction, window-shaped), added
    back through the window view (ScatterWindows), the padding cropped."""
    (con,) = rule.contractions
    if not con.scatter:
        raise ValueError("symgrad bug: ∂L/∂x of a window layer scatters")
    shape = (nm.BATCH, *geo.windows)
    cols = bd.emit(
        "backward",
        "cols",
        l,
        _term(con, arrays, sp.S.Zero, geo),
        shape,
        sec,
        f"GC{l}[n,c,i,j,p,q] = {con.subscripts}"
        + (f" · {con.scale}" if con.scale != 1 else ""),
        "the gradient at each entry of each window, as the derivative's sum over"
        " the letters not kept",
    )
    hp, wp = geo.padded
    ph, pw = geo.padding
    padded = bd.emit(
        "backward",
        "gpad",
        l,
        ScatterWindows(cols, hp, wp, *geo.kernel, *geo.stride),
        (nm.BATCH, geo.image[0], hp, wp),
        sec,
        f"GP{l}[n,c,u,v] = Σ_i,j,p,q GC{l}[n,c,i,j,p,q] [u = s·i + p] [v = s·j + q]",
        "the Kronecker deltas of the derivative: each window entry's gradient added"
        " where the window read it (col2im)",
    )
    if not (ph or pw):
        return padded
    return Cropped(padded, ph, pw, geo.image[1], geo.image[2])


__all__ = [
    "as_image",
    "back_through_windows",
    "contract",
    "windows_of",
    "Image",
    "Window",
    "image_input",
    "pair",
    "pooling",
    "quietly",
    "shape_text",
]
