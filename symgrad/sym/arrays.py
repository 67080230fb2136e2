"""Array-level SymPy nodes: what a Plan's statements say beyond elementwise math.

A Plan statement is a SymPy expression over array symbols (Z1, A1, Y, W2, ...). Elementwise
math is plain SymPy (broadcasting as NumPy does: a (n,) row vector or an (m, 1) column
broadcasts against an (m, n) array). What is not elementwise is one of these nodes, and
every printer has a `_print_<Class>` method for each:

    MatProduct(A, B)        A @ B
    Transposed(A)        Aᵀ (inside a MatProduct)
    RowSum(e)           Σ over each row's entries, kept as a column (m, 1)
    RowMean(e), RowMax(e)
    ColSum(e)           Σ over the batch (the rows): shape (n,)
    ColMean(e)
    Total(e)            Σ over every entry: a scalar

Images (the window layers: conv2d, pooling, flatten) add views and contractions; each
is a general array operation, none a layer's backward pass:

    Reshaped(A, dims)       A as (m, *dims): a view
    Expanded(A, index)      A with unit axes inserted (b[:, None, None]): a view
    Padded(A, ph, pw)       A with ph, pw zero rows and columns on each side of H, W
    Cropped(A, ph, pw, h, w)  the inverse view: A[:, :, ph:ph+h, pw:pw+w]
    Windows(A, kh, kw, sh, sw)  the kh×kw windows of A (m, C, H, W) at stride (sh, sw):
                            a strided view of shape (m, C, H', W', kh, kw)
    ScatterWindows(A, h, w, kh, kw, sh, sw)  its adjoint: each window entry of A added back
                            where Windows reads it, into (m, C, h, w)
    Einsum(subscripts, A, B, ...)  a contraction with fixed subscripts
    WindowMax(A)            the max over each window of a Windows view
    FirstMax(A, T)          1 at each window's first entry equal to its max T
                            (row-major), else 0

Derivations of functions with reductions (norms) do not know which axis they reduce: they
are written for one group of values (one example's features, or for batchnorm one
feature's batch) with GroupSum, GroupMean and GroupMax; `on_axis` turns those into the row
or column nodes when the Plan places the layer.

None of these nodes is differentiated by SymPy: derivations replace reductions by symbols
first (see derive.py), and matrix products appear only in Plan statements.
"""

from __future__ import annotations

import sympy as sp


class ArrayNode(sp.Function):
    """Base of the array-level nodes: real-valued, never evaluated by SymPy."""

    is_real = True

    @classmethod
    def eval(cls, *args: sp.Expr) -> None:  # keep the node as it is
        return None


class MatProduct(ArrayNode):
    """A @ B. (The node commutes with others: a product of arrays in a Plan is
    elementwise; the order of A and B is its arguments'.)"""

    nargs = 2
    precedence = 49  # just below a product's: parenthesized inside one, as @ needs


class Transposed(ArrayNode):
    """Aᵀ, a matrix operand of MatProduct."""

    nargs = 1


class KeepMask(ArrayNode):
    """KeepMask(X, rate): an array shaped like X, 1/(1 − rate) with probability 1 − rate
    and 0 otherwise, drawn from the generator of the call (inverted dropout)."""

    nargs = 2


class ImageBase(ArrayNode):
    """The nodes of image layers (printers dispatch on this name: SymPy's printers
    skip a Function's base classes unless their names end in Base)."""


class ViewBase(ImageBase):
    """A view of an array (no arithmetic): an operand as it is printed, never a value
    of its own in the in-place step (which copies it where it is a statement's whole
    value)."""


class Reshaped(ViewBase):
    """Reshaped(A, Tuple(dims)): A as (m, *dims), row-major."""

    nargs = 2


class Expanded(ViewBase):
    """Expanded(A, Str(index)): A[index], with None axes so that it broadcasts (and
    0 to drop a unit axis: mean[0, :, 0, 0])."""

    nargs = 2

    def shape_of(self, inner: tuple) -> tuple:
        """The view's shape, given A's."""
        out, k = [], 0
        for item in self.args[1].name.strip("[]").split(","):
            item = item.strip()
            if item == "None":
                out.append(1)
            elif item == ":":
                out.append(inner[k])
                k += 1
            else:  # an index: the axis is dropped
                k += 1
        return tuple(out)


class Cropped(ViewBase):
    """Cropped(A, ph, pw, h, w): A[:, :, ph:ph + h, pw:pw + w]."""

    nargs = 5


class Windows(ViewBase):
    """Windows(A, kh, kw, sh, sw): the strided window view (m, C, H', W', kh, kw)."""

    nargs = 5


class Padded(ImageBase):
    """Padded(A, ph, pw): A (m, C, H, W) with zeros around H and W."""

    nargs = 3


class ScatterWindows(ImageBase):
    """ScatterWindows(A, h, w, kh, kw, sh, sw): A (m, C, H', W', kh, kw) added window
    by window into zeros of shape (m, C, h, w), where Windows(·, kh, kw, sh, sw)
    reads."""

    nargs = 7


class Einsum(ImageBase):
    """Einsum(Str(subscripts), *operands): np.einsum with fixed subscripts."""

    @property
    def matrix_product(self) -> tuple[str, str, str] | None:
        """(kept of a, summed, kept of b) where the einsum of two operands is one
        matrix product, a as (kept, summed) times b as (summed, kept); None where it
        is not (one operand, or a letter kept from both)."""
        ins, res = self.args[0].name.split("->")
        if len(self.args) != 3:
            return None
        la, lb = ins.split(",")
        if any(c in lb and c in res for c in la):
            return None
        summed = "".join(c for c in la if c in lb and c not in res)
        keep_a = "".join(c for c in la if c not in summed)
        keep_b = "".join(c for c in lb if c not in summed)
        return keep_a, summed, keep_b


class WindowMax(ImageBase):
    """The max of each window of a Windows view: (m, C, H', W')."""

    nargs = 1


class FirstMax(ImageBase):
    """FirstMax(A, T): 1 at the first entry of each window of A equal to T (its max),
    in row-major order within the window, else 0."""

    nargs = 2


def window_label(e: sp.Expr) -> tuple[str, str, str] | None:
    """How the report writes an image node: (LaTeX operator, text operator, what goes
    after the arguments), or None for a node it prints otherwise."""
    nums = [int(v) for v in e.args[1:] if isinstance(v, sp.Integer)]
    if isinstance(e, Windows):
        kh, kw, sh, sw = nums
        return (
            rf"\operatorname{{win}}_{{{kh} \times {kw},\, s = {sh},{sw}}}",
            f"win[{kh}×{kw}, s={sh},{sw}]",
            "",
        )
    if isinstance(e, ScatterWindows):
        _, _, kh, kw, sh, sw = nums
        return (
            rf"\operatorname{{win}}^{{\mathsf{{T}}}}_{{{kh} \times {kw},\, s ="
            rf" {sh},{sw}}}",
            f"winᵀ[{kh}×{kw}, s={sh},{sw}]",
            "",
        )
    if isinstance(e, Padded):
        return (rf"\operatorname{{pad}}_{{{nums[0]},{nums[1]}}}", "pad", "")
    if isinstance(e, Cropped):
        return (rf"\operatorname{{crop}}_{{{nums[0]},{nums[1]}}}", "crop", "")
    if isinstance(e, Reshaped):
        dims = ",".join(str(int(d)) for d in e.args[1])
        return (rf"\operatorname{{reshape}}_{{m,{dims}}}", f"reshape[m,{dims}]", "")
    if isinstance(e, WindowMax):
        return (r"\max_{\mathrm{win}}", "max_win", "")
    if isinstance(e, FirstMax):
        return (r"\operatorname{first\,max}", "firstmax", "")
    if isinstance(e, Einsum):
        subs = e.args[0].name.replace("->", " \\to ")
        return (
            rf"\operatorname{{einsum}}_{{\mathtt{{{subs}}}}}",
            f"einsum[{e.args[0].name}]",
            "",
        )
    return None


def window_operands(e: sp.Expr) -> tuple[sp.Expr, ...]:
    """The array operands of an image node, as the report prints them."""
    if isinstance(e, Einsum):
        return e.args[1:]
    if isinstance(e, FirstMax):
        return e.args
    return e.args[:1]


class ReductionBase(ArrayNode):
    """A sum, mean or max over one axis of an (m, n) array; `axis` and `keepdims` as
    NumPy's (a row reduction keeps its dimension so that it broadcasts back)."""

    nargs = 1
    axis: int | None = None
    keepdims: bool = False
    op: str = ""


class RowSum(ReductionBase):
    axis, keepdims, op = 1, True, "sum"


class RowMean(ReductionBase):
    axis, keepdims, op = 1, True, "mean"


class RowMax(ReductionBase):
    axis, keepdims, op = 1, True, "max"


class ColSum(ReductionBase):
    axis, keepdims, op = 0, False, "sum"


class ColMean(ReductionBase):
    axis, keepdims, op = 0, False, "mean"


class ColMax(ReductionBase):
    axis, keepdims, op = 0, False, "max"


IMAGE_AXES = (1, 2, 3)  # an example's values of an image (m, C, H, W)


class ImageRowSum(ReductionBase):
    """Σ over each example's image (C, H, W), kept as (m, 1, 1, 1)."""

    axis, keepdims, op = IMAGE_AXES, True, "sum"


class ImageRowMean(ReductionBase):
    axis, keepdims, op = IMAGE_AXES, True, "mean"


class ImageRowMax(ReductionBase):
    axis, keepdims, op = IMAGE_AXES, True, "max"


CHANNEL_AXES = (0, 2, 3)  # a channel's values over a batch of images (m, C, H, W)


class ChannelSum(ReductionBase):
    """Σ over each channel's values in the batch, kept as (1, C, 1, 1)."""

    axis, keepdims, op = CHANNEL_AXES, True, "sum"


class ChannelMean(ReductionBase):
    axis, keepdims, op = CHANNEL_AXES, True, "mean"


class ChannelMax(ReductionBase):
    axis, keepdims, op = CHANNEL_AXES, True, "max"


class PerChannelSum(ReductionBase):
    """Σ over each channel's values in the batch, as (C,): a per-channel parameter's
    gradient (BatchNorm2d's gain and shift)."""

    axis, keepdims, op = CHANNEL_AXES, False, "sum"


class Total(ReductionBase):
    """Σ over every entry: a scalar."""

    axis, keepdims, op = None, False, "sum"


class GroupReductionBase(ArrayNode):
    """A reduction over the group a norm acts on, before the Plan gives it an axis."""

    nargs = 1
    op: str = ""


class GroupSum(GroupReductionBase):
    op = "sum"


class GroupMean(GroupReductionBase):
    op = "mean"


class GroupMax(GroupReductionBase):
    op = "max"


GroupReduction = GroupReductionBase  # the name derivations use

ROW = {"sum": RowSum, "mean": RowMean, "max": RowMax}
COL = {"sum": ColSum, "mean": ColMean, "max": ColMax}
IMAGE_ROW = {"sum": ImageRowSum, "mean": ImageRowMean, "max": ImageRowMax}
CHANNEL = {"sum": ChannelSum, "mean": ChannelMean, "max": ChannelMax}
TABLES = {1: ROW, 0: COL, IMAGE_AXES: IMAGE_ROW, CHANNEL_AXES: CHANNEL}


def on_axis(e: sp.Expr, axis: int | tuple[int, ...]) -> sp.Expr:
    """e with each group reduction made a row (axis 1), column (axis 0) or image
    (IMAGE_AXES: an example's C, H, W), or channel (CHANNEL_AXES) reduction."""
    table = TABLES[axis]
    return e.replace(
        lambda n: isinstance(n, GroupReductionBase),
        lambda n: table[n.op](n.args[0]),
    )
