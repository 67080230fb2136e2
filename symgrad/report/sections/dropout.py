"""A dropout layer's section: inverted dropout as PyTorch applies it, forward and backward.

The layer's definition (the rate) is all there is to it: a mask k drawn in training,
1/(1 − p) with probability 1 − p and 0 otherwise; a = x ⊙ k; the identity in inference;
the gradient multiplied by the same mask. The batch statements are the Plan's.
"""

from __future__ import annotations

from ...derive import DropoutRule
from ..document import Block, Code, D, Eq, M, Math, P, Section, cat
from ..notation import ELL, act_unit, number, partial, upstream
from .base import Context


def dropout_sections(ctx: Context, l: int) -> tuple[Section, ...]:  # noqa: E741
    """Inverted dropout with the layer's rate."""
    layer = ctx.d.layer(l)
    assert isinstance(layer, DropoutRule)
    n = ctx.d.depth
    p = M("p")
    kj = M("k_{j}", "kⱼ")
    aj, xj = act_unit(l, "j", n), act_unit(l - 1, "j", n)
    keep = Math(
        r"\begin{cases} \frac{1}{1 - p} & \text{with probability } 1 - p \\"
        r" 0 & \text{with probability } p \end{cases}",
        "1/(1 − p) with probability 1 − p, else 0",
    )
    blocks: list[Block] = [
        P(
            f"Layer {l} is inverted dropout, as PyTorch applies it, with the rate ",
            cat(p, " = ", number(layer.rate)),
            ". In training, each value of the layer's input is kept with probability ",
            M("1 - p", "1 − p"),
            " and scaled up, or set to 0, by a mask drawn afresh for every example "
            "and unit:",
        ),
        D(Eq(kj, (keep,)), Eq(aj, (cat(xj, " ", kj),))),
        P(
            "The scale keeps each value's expectation: ",
            M(
                r"\mathrm{E}[k_{j}] = (1 - p) \cdot \frac{1}{1 - p} = 1",
                "E[kⱼ] = (1 − p) · 1/(1 − p) = 1",
            ),
            ". In inference nothing is dropped, ",
            M("k_{j} = 1", "kⱼ = 1"),
            ", and the layer is the identity, ",
            cat(aj, " = ", xj),
            " (the generated ",
            Code("loss_and_grad"),
            " and ",
            Code("loss"),
            " draw masks only when given a generator, ",
            Code("rng="),
            "; ",
            Code("step"),
            " and ",
            Code("fit"),
            " always do).",
        ),
    ]
    if l > 1:
        blocks += [
            P(
                "Backward: the mask does not depend on the input, so the chain rule "
                "has a single factor, and the gradient ",
                upstream(l, "j"),
                " reaching the output is multiplied by the same mask, drawn once in the "
                "forward pass:",
            ),
            D(
                Eq(
                    upstream(l - 1, "j"),
                    (
                        partial(ELL, xj),
                        cat(partial(ELL, aj), " ", partial(aj, xj)),
                        cat(upstream(l, "j"), " ", kj),
                    ),
                )
            ),
            P("A dropped value passes no gradient back."),
        ]
    view = ctx.view
    if view is not None:
        blocks += [
            P(
                "For a batch, ",
                view.name(view.symbol("keep", l)),
                " holds the masks of all examples (one entry per value). In the order "
                "the generated code computes them:",
            ),
            D(*(view.eq(s) for s in view.forward(l) + view.backward(l))),
        ]
    return (Section(f"Layer {l}: dropout", tuple(blocks)),)
