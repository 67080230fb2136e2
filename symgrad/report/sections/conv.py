"""The sections of the image layers: a convolution, a pooling, a flatten.

What they print is what window_rules.py derived: the forward index sum, the
derivative of L = Σ G·z by one entry of each parameter and of the input with the
Kronecker deltas summed out where they pin an index, the input's gradient once more
with the window's deltas summed out over the kernel offsets (δ dilated by the stride,
fully correlated with the flipped kernel), the contractions the code computes
(im2col: the windows as a view, each sum one einsum, computed as a matrix product),
and the layer's statements as the plan has them. Nothing here derives.
"""

from __future__ import annotations

from ...window_rules import ConvRule, FlattenRule, IndexSum, PoolRule
from ..document import Block, Code, D, Eq, M, Math, P, Section
from ..notation import ex
from .base import Context


def _shape(shape: tuple[int, ...]) -> Math:
    tex = r" \times ".join(str(d) for d in shape)
    return M(tex, "×".join(str(d) for d in shape))


def _pair(p: tuple[int, int]) -> Math:
    if p[0] == p[1]:
        return M(str(p[0]))
    return M(rf"{p[0]} \times {p[1]}", f"{p[0]}×{p[1]}")


def _entry(rule: IndexSum) -> Math:
    """∂L/∂W[F,C,P,Q] for a gradient; z[n,f,i,j] for the forward sum."""
    target = ex(rule.target)
    if str(rule.target.base) == "z":
        return target
    return M(r"\frac{\partial L}{\partial " + target.tex + "}", "∂L/∂" + target.text)


def _sums(rule: IndexSum) -> Eq:
    return Eq(_entry(rule), (ex(rule.shown),))


def _statements(ctx: Context, l: int) -> list[Block]:  # noqa: E741
    view = ctx.view
    if view is None:
        return []
    eqs = [view.eq(s) for s in view.forward(l) + view.backward(l)]
    return [
        P(
            "For a batch, in the order the generated code computes them (",
            M(r"\operatorname{win}", "win"),
            ": the strided window view of an array, a view and no copy; ",
            M(r"\operatorname{win}^{\mathsf{T}}", "winᵀ"),
            ": its adjoint, each window entry added back where it was read; einsum"
            " with its subscripts, computed as one matrix product):",
        ),
        D(*eqs),
    ]


def _geometry(rule: ConvRule | PoolRule) -> list[Block]:
    g = rule.geometry
    return [
        P(
            "Its input is ",
            _shape(g.image),
            " per example (channels, height, width), its output ",
            _shape(g.out),
            "; the kernel is " if isinstance(rule, ConvRule) else "; the window is ",
            _pair(g.kernel),
            ", the stride ",
            _pair(g.stride),
            *((", the zero padding ", _pair(g.padding)) if any(g.padding) else ()),
            ", so that an output has ",
            M(
                r"\lfloor (H + 2 p_{h} - k_{h}) / s_{h} \rfloor + 1",
                "⌊(H + 2p − k)/s⌋ + 1",
            ),
            " rows, as PyTorch counts them.",
        )
    ]


def conv_sections(ctx: Context, l: int) -> tuple[Section, ...]:  # noqa: E741
    """A conv2d layer: the index sum, its derivatives, the flipped kernel, the code."""
    rule = ctx.d.layer(l)
    assert isinstance(rule, ConvRule)
    rules = rule.rules
    blocks: list[Block] = [
        P(
            f"Layer {l} is a convolution as PyTorch's ",
            Code("Conv2d"),
            f" computes it (a cross-correlation) with {rule.filters} filters, then"
            f" {rule.activation.title}"
            + (", and its input added (residual)" if rule.residual else "")
            + ". Its pre-activation is an index sum over the channels and the kernel"
            " offsets, the input read as 0 outside its rows and columns (the"
            " padding):",
        ),
        D(_sums(rules.forward)),
        *_geometry(rule),
        P(
            "The loss depends on ",
            M("z", "z"),
            " through ",
            M("G = \\partial L / \\partial z", "G = ∂L/∂z"),
            " (the layer's delta, after the activation's derivative), so it is ",
            M(r"L = \sum G \, z + \dots", "L = Σ G z + …"),
            ". SymPy differentiates that sum by one entry of each parameter and of"
            " the input, and sums out each Kronecker delta that pins a summation"
            " index:",
        ),
        D(*(_sums(g) for _, g in rules.grads)),
        P(
            "The weight gradient is the correlation of the input with the delta; the"
            " bias gradient sums the delta. In the input's gradient each Kronecker"
            " delta puts a window"
            " entry's gradient back where the window read it. Summed out over the"
            " kernel offsets instead, it is the delta dilated by the stride and fully"
            " correlated with the flipped kernel (a weight entry outside the kernel"
            " reads as 0):",
        ),
        D(Eq(_entry(rules.grad("x")), (ex(rules.grad("x").textbook),))),
        *_statements(ctx, l),
    ]
    return (Section(f"Layer {l}: convolution", tuple(blocks)),)


def pool_sections(ctx: Context, l: int) -> tuple[Section, ...]:  # noqa: E741
    """A pooling layer: its sum over each window, its derivative."""
    rule = ctx.d.layer(l)
    assert isinstance(rule, PoolRule)
    rules = rule.rules
    what = (
        "the maximum of each window, written as the sum over the window of its"
        " entries times M, 1 at the window's first maximum (row-major, as PyTorch"
        " breaks ties) and 0 elsewhere: M is constant where the maximum is"
        " differentiable"
        if rules.op == "max"
        else "the mean of each window"
    )
    blocks: list[Block] = [
        P(f"Layer {l} pools: {what}."),
        D(_sums(rules.forward)),
        *_geometry(rule),
        P(
            "SymPy differentiates ",
            M(r"L = \sum G \, z + \dots", "L = Σ G z + …"),
            " by an entry of the input; the deltas put each window's gradient back"
            " on the entries it read"
            + (
                ", all of it on the maximum:"
                if rules.op == "max"
                else ", spread evenly:"
            ),
        ),
        D(_sums(rules.grad("x"))),
        P(
            "Summed out over the window offsets: the windows that contain the entry"
            " (an offset outside the window reads as 0)",
        ),
        D(Eq(_entry(rules.grad("x")), (ex(rules.grad("x").textbook),))),
        *_statements(ctx, l),
    ]
    title = "max pooling" if rules.op == "max" else "average pooling"
    return (Section(f"Layer {l}: {title}", tuple(blocks)),)


def flatten_sections(ctx: Context, l: int) -> tuple[Section, ...]:  # noqa: E741
    """flatten: the image as a row, row-major; the gradient reshaped back."""
    rule = ctx.d.layer(l)
    assert isinstance(rule, FlattenRule)
    blocks: list[Block] = [
        P(
            f"Layer {l} flattens each example's ",
            _shape(rule.image),
            f" image into a row of {rule.units} values, row-major, as ",
            Code("torch.flatten(x, 1)"),
            ": entry (c, h, w) goes to column ",
            M(
                rf"(c \cdot {rule.image[1]} + h) \cdot {rule.image[2]} + w",
                f"(c·{rule.image[1]} + h)·{rule.image[2]} + w",
            ),
            ". It moves values and computes nothing: its gradient is the gradient"
            " of its output, reshaped back.",
        ),
        *_statements(ctx, l),
    ]
    return (Section(f"Layer {l}: flatten", tuple(blocks)),)
