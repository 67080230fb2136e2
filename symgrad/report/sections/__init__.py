"""The report's sections: the backpropagation of a Derivation laid out as a textbook does.

The order is that of the handwritten notes symgrad grew from: each layer from the output
down (dense.py: the output layer's chain rule with each factor derived, the output delta
and its collapse to ŷ − y where SymPy finds it, the bias, each hidden layer), then the
network's sections (network.py: matrix form, update rule, loss, K output units, a batch of
m examples, saturation versus ReLU). Layers of other kinds have their own modules
(norm.py, dropout.py); a residual dense layer shows the identity term in dense.py. A
layer's sections are its kind's (layer_registry: the entry names its builder).

Every formula that depends on the spec is a SymPy result from derive.py (the layer rules,
the output rule and `Derivation.facts`), only printed here; the dense-layer algebra, the
same for every layer, is written out. Every builder gets a `Context`: the derivation,
the plan when the report has one, and what earlier sections derived.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from itertools import takewhile

from ... import layer_registry
from ...derive import Derivation
from ...plan import Plan
from ...plan import build as build_plan
from ...version import __version__
from ..document import Block, Code, Inline, M, Name, P, Report, Section, cat
from ..notation import ELL, RIGHT, loss_formula, loss_title
from .base import Context
from .network import NETWORK_SECTIONS, batch_equations


def _shape(shape: int | tuple[int, ...]) -> Inline:
    """A layer's width, or an image's C×H×W (as math: × is a formula's sign)."""
    if isinstance(shape, int):
        return str(shape)
    return M(r" \times ".join(map(str, shape)), layer_registry.shape_text(shape))


def _intro(d: Derivation) -> tuple[Block, ...]:
    spec = d.spec
    shapes = spec.shapes
    network: list[Inline] = [_shape(shapes[0])]
    for r, shape in zip(d.layers, shapes[1:], strict=True):
        network += [" ", RIGHT, " ", _shape(shape), " (", Name(r.label), ")"]
    title, cut = loss_title(d)
    loss: list[Inline] = [Name(title)]
    if cut:
        loss += [" (", cat(ELL, " = ", loss_formula(d)), ")"]
    return (
        P(
            f"Derived by symgrad {__version__} from ",
            Code(_source_name(spec.source)),
            ". Network: ",
            *network,
            ". Loss: ",
            *loss,
            ". Optimizer: ",
            Name(spec.optimizer.name),
            *(
                [", schedule ", Name(spec.optimizer.schedule.name)]
                if spec.optimizer.schedule is not None
                else []
            ),
            *(
                [", gradients clipped by norm"]
                if spec.optimizer.clip_norm is not None
                else []
            ),
            ".",
        ),
        P(
            "Notation: layer ",
            M("l"),
            " has ",
            M("n_{l}", "n_l"),
            " units; ",
            M(r"z^{[l]}_{j}", "zˡⱼ"),
            " is the pre-activation of unit ",
            M("j"),
            ", ",
            M(r"a^{[l]}_{j} = f(z^{[l]}_{j})", "aˡⱼ = f(zˡⱼ)"),
            " its output, ",
            M(r"a^{[0]} = x", "a⁰ = x"),
            " the input, ",
            M(r"\hat{y} = a^{[L]}", "ŷ = aᴸ"),
            " the prediction and ",
            M("y"),
            " the target; ",
            ELL,
            " is the loss of one example and ",
            M(
                r"\delta^{[l]}_{j} = \partial \ell / \partial z^{[l]}_{j}",
                "δˡⱼ = ∂ℓ/∂zˡⱼ",
            ),
            " the delta of unit ",
            M("j"),
            ". Every expression below that depends on the spec was derived and "
            "simplified by SymPy.",
        ),
        *_intro_v2(d),
    )


def _intro_v2(d: Derivation) -> tuple[Block, ...]:
    """The notation of layers that are not plain dense ones, when the network has any."""
    if all(r.plain_dense for r in d.layers):
        return ()
    return (
        P(
            "Every layer's output is ",
            M(r"a^{[l]}", "aˡ"),
            ", whatever its kind (dense, normalization, dropout), and ",
            M(
                r"g^{[l]}_{j} = \partial \ell / \partial a^{[l]}_{j}",
                "gˡⱼ = ∂ℓ/∂aˡⱼ",
            ),
            " is the gradient that reaches it, which each layer's section receives "
            "from the layer above and passes down to the layer below.",
        ),
    )


def build(d: Derivation, plan: Plan | None = None) -> Report:
    """The derivation of d as a document, in the order of the seed notes.

    Args:
        d: the derivation.
        plan: the Plan of d (symgrad.plan.build(d)), whose statements the report lists
            in the order the generated code computes them; built here when not given.
    """
    ctx = Context(d, plan if plan is not None else build_plan(d))
    sections: list[Section] = []
    l = d.depth  # noqa: E741 - backpropagation: from the output layer down
    while l >= 1:
        sections += layer_registry.of(d.layer(l)).sections(ctx, l)
        below = range(l - 1, 0, -1)
        run = list(takewhile(partial(_alike, d, l), below))
        if run:
            sections.append(_folded(l, run))
        l -= 1 + len(run)  # noqa: E741
    for builder in NETWORK_SECTIONS:
        section = builder(ctx)
        if section is not None:
            sections.append(section)
    return Report(f"The derivation of {d.spec.name}", _intro(d), tuple(sections))


def _signature(d: Derivation, l: int) -> tuple[object, ...]:  # noqa: E741
    """What a layer's sections depend on: its rule and its neighbours' (the layer that
    feeds it, the one it passes its gradient to), each with its position left out."""

    def rule(k: int) -> object:
        if not 1 <= k <= d.depth:
            return None
        r = d.layer(k)
        # a rule that is not a dataclass with an index is never folded: it equals itself
        return dataclasses.replace(r, index=0) if dataclasses.is_dataclass(r) else r

    return (rule(l - 1), rule(l), rule(l + 1))


def _alike(d: Derivation, l: int, k: int) -> bool:  # noqa: E741
    return _signature(d, k) == _signature(d, l)


def _folded(reference: int, layers: list[int]) -> Section:
    """One section for layers derived exactly as the reference layer above them (six
    identical residual layers would repeat the same pages five times)."""
    low, high = min(layers), max(layers)
    if low == high:
        title, subject = f"Layer {low}", f"Layer {low} is"
    else:
        joined = f"{low} and {high}" if high == low + 1 else f"{low}\u2013{high}"
        title, subject = f"Layers {joined}", f"Layers {joined} are"
    return Section(
        title,
        (
            P(
                f"{subject} derived exactly as layer {reference} above: the same kind, width "
                "and activation, between layers of the same kinds. Each has its own "
                "parameters and values; read its index for ",
                M(f"[{reference}]"),
                f" in layer {reference}'s equations (",
                M(
                    rf"W^{{[{reference}]}} \to W^{{[l]}},\ "
                    rf"\delta^{{[{reference}]}} \to \delta^{{[l]}}",
                    f"W{reference} → Wˡ, δ{reference} → δˡ",
                ),
                ", and so on).",
            ),
        ),
    )


def _source_name(source: str) -> str:
    """The spec's file name, with anything a terminal could act on escaped."""
    from pathlib import Path

    from ...errors import printable

    return printable(Path(source).name)


__all__ = ["NETWORK_SECTIONS", "Context", "batch_equations", "build"]
