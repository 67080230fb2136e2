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

from ... import layer_registry
from ...derive import Derivation
from ...plan import Plan
from ...plan import build as build_plan
from ...version import __version__
from ..document import Block, Code, Inline, M, Name, P, Report, Section, cat
from ..notation import ELL, RIGHT, loss_formula, loss_title
from .base import Context
from .network import NETWORK_SECTIONS, batch_equations


def _intro(d: Derivation) -> tuple[Block, ...]:
    spec = d.spec
    network: list[Inline] = [str(spec.input)]
    for r in d.layers:
        network += [" ", RIGHT, f" {r.units} (", Name(r.label), ")"]
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
    for l in range(d.depth, 0, -1):  # backpropagation: from the output layer down
        sections += layer_registry.of(d.layer(l)).sections(ctx, l)
    for builder in NETWORK_SECTIONS:
        section = builder(ctx)
        if section is not None:
            sections.append(section)
    return Report(f"The derivation of {d.spec.name}", _intro(d), tuple(sections))


def _source_name(source: str) -> str:
    """The spec's file name, with anything a terminal could act on escaped."""
    from pathlib import Path

    from ...errors import printable

    return printable(Path(source).name)


__all__ = ["NETWORK_SECTIONS", "Context", "batch_equations", "build"]
