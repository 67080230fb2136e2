"""A normalization layer's section: layernorm, rmsnorm, batchnorm and custom norms alike.

Everything shown comes from the layer's derived rule (reductions.NormRule): the
definition, the forward statements (the reductions, the named scales, x̂ and the affine
output), the steps of the derivation of the backward pass (the elementwise part, one
term per reduction with its adjoint, the sum, the identities the definitions give, the
form in x̂ and the simplified result), the gradients of the gain and shift, batchnorm's
running statistics and inference; and, for a batch, the Plan's statements of the layer
in the order the generated code computes them. The report writes the frame (the chain
rule over the group, in words); it derives nothing.
"""

from __future__ import annotations

from sympy import Derivative

from ...derive import NormLayerRule
from ...norm_rules import BETA, DBETA, DGAMMA, DX, GAMMA, XHAT, G, H, N, NormRule, Step
from ...norm_rules import X as NORM_X
from ...norm_rules import Y as NORM_Y
from ...norms import BATCH
from ...sym.arrays import GroupReductionBase
from ..document import Block, Code, D, Eq, Inline, M, Math, Name, P, Section, cat
from ..notation import ARROW, LOSS, act_unit, number, partial, shown, upstream
from ..plan_view import rule_math, rule_name, symbol_tex
from .base import Context

SUM_OVER_BATCH = Math(r"\sum_{n}", "Σₙ")


def _lhs(sym: object) -> Math:
    """A statement's target: ∂L/∂x for dx, ∂L/∂γ, ∂L/∂β; else the rule's name."""
    wrt = {DX: NORM_X, DGAMMA: GAMMA, DBETA: BETA}
    if sym in wrt:
        return partial(LOSS, rule_name(wrt[sym]))
    return rule_name(sym)


def _statement(target: object, expr: object, rel: Math | None = None) -> Eq:
    if rel is None:
        return Eq(_lhs(target), (rule_math(expr),))
    return Eq(_lhs(target), (rule_math(expr),), rel=rel)


def _names(rule: NormRule) -> list[Math]:
    return [rule_name(r.symbol) for r in rule.reductions]


def _and(parts: list[Math]) -> list[Inline]:
    """μ, var and σ: formulas joined in prose."""
    out: list[Inline] = []
    for i, p in enumerate(parts):
        if i:
            out.append(" and " if i == len(parts) - 1 else ", ")
        out.append(p)
    return out


def _definition_blocks(ctx: Context, layer: NormLayerRule) -> list[Block]:
    l, r, defn = layer.index, layer.rule, layer.definition  # noqa: E741
    x_in = act_unit(l - 1, "j", ctx.d.depth)
    what: list[Inline] = (
        ["the custom norm ", Code(defn.name)] if defn.custom else [Name(r.title)]
    )
    if r.group == BATCH:
        group: list[Inline] = [
            f"each of its {layer.units} features over the ",
            M("m"),
            " examples of a batch. Write ",
            M("x"),
            " for one of the ",
            cat(M("n"), " = ", M("m")),
            " values of a feature (a column of the layer's input)",
        ]
    else:
        group = [
            f"the {layer.units} features of each example. Write ",
            M("x"),
            " for one of the ",
            cat(M("n"), f" = {layer.units}"),
            " values ",
            x_in,
            " of an example (a row of the layer's input)",
        ]
    blocks: list[Block] = [
        P(
            f"Layer {l} normalizes ",
            *group,
            "; ",
            M(r"\operatorname{mean}", "mean"),
            ", ",
            M(r"\sum", "sum"),
            " and ",
            M(r"\max", "max"),
            " reduce over those ",
            M("n"),
            " values. The layer is ",
            *what,
            (":" if not defn.custom else ", the spec's expression "),
            *((Code(defn.expr), ":") if defn.custom else ()),
        ),
        D(Eq(rule_name(XHAT), (rule_math(r.definition),))),
    ]
    shown = [
        cat(rule_name(sym), " = ", number(float(value)))
        for sym, value in r.params
        if sym in r.definition.free_symbols
    ]
    if shown:
        blocks.append(P("with ", *_and(shown), "."))
    blocks += [
        P(
            "SymPy replaces each reduction by a symbol (",
            *_and(_names(r)),
            (
                ") and names the values that are the same for the whole group"
                if r.scales
                else ")"
            ),
            ", so the forward pass computes, in order:",
        ),
        D(*(_statement(s.target, s.expr) for s in r.forward)),
    ]
    gamma, beta = rule_name(GAMMA), rule_name(BETA)
    if r.gain and r.shift:
        blocks.append(
            P(
                "where ",
                gamma,
                " and ",
                beta,
                ", one of each per feature, are the layer's gain and shift, learned "
                "with the weights (ones and zeros at the start).",
            )
        )
    elif r.gain:
        blocks.append(
            P(
                "where ",
                gamma,
                ", one per feature, is the layer's gain, learned with the weights "
                "(ones at the start); the layer has no shift.",
            )
        )
    else:
        blocks.append(
            P("The layer has no gain or shift: its output is ", rule_name(XHAT), ".")
        )
    return blocks


def _affine_blocks(ctx: Context, layer: NormLayerRule) -> list[Block]:
    l, r = layer.index, layer.rule  # noqa: E741
    g, h, xhat = rule_name(G), rule_name(H), rule_name(XHAT)
    y = rule_name(NORM_Y) if r.gain or r.shift else xhat
    above: list[Inline] = [f" passed down by layer {l + 1}"] if l < ctx.d.depth else []
    blocks: list[Block] = [
        P(
            "(1) The output. The gradient of the loss with respect to the layer's "
            "output, ",
            cat(g, " = ", partial(LOSS, y)),
            " (",
            upstream(l, "j"),
            " for unit ",
            M("j"),
            " of an example)",
            *above,
            ", is known for every value.",
        )
    ]
    backward = {s.role: s for s in r.backward}
    if r.gain:
        up = backward["upstream"]
        blocks += [
            P(
                "Since ",
                y,
                " is elementwise in ",
                xhat,
                ", the gradient at ",
                xhat,
                " is",
            ),
            D(Eq(h, (partial(LOSS, xhat), rule_math(up.expr)))),
        ]
    else:
        blocks.append(
            P("With no gain, the gradient at ", xhat, " is ", cat(h, " = ", g), ".")
        )
    params = [s for s in r.backward if s.role in ("gain", "shift")]
    if params:
        blocks += [
            P(
                "Every example uses the same ",
                *_and([rule_name(GAMMA if s.role == "gain" else BETA) for s in params]),
                ", so their gradients sum over the batch (",
                SUM_OVER_BATCH,
                " over the examples ",
                M("n"),
                "):",
            ),
            D(*(_statement(s.target, s.expr) for s in params)),
        ]
    return blocks


def _split(steps: tuple[Step, ...]) -> tuple[list[Step], list[Step], list[Step]]:
    """The chain rule up to the assembled dx; the identities; the later forms of dx."""
    first = next(i for i, s in enumerate(steps) if s.lhs == DX)
    chain, rest = list(steps[: first + 1]), steps[first + 1 :]
    identities = [s for s in rest if isinstance(s.lhs, GroupReductionBase)]
    later = [s for s in rest if s.lhs == DX]
    return chain, identities, later


def _chain_blocks(layer: NormLayerRule) -> list[Block]:
    r = layer.rule
    h, xhat = rule_name(H), rule_name(XHAT)
    dx = partial(LOSS, rule_name(NORM_X))
    chain, identities, later = _split(r.steps)
    names = _names(r)
    r_bar = Math(r"\bar{r}", "r̄")
    blocks: list[Block] = [
        (
            P(
                "(2) Through the normalization. A value ",
                M("x"),
                " reaches the loss through its own ",
                xhat,
                " and, through the reductions (",
                *_and(names),
                "), through every ",
                xhat,
                " of the group. The chain rule adds the two: the elementwise part, with "
                "the reductions held fixed, and for each reduction ",
                M("r"),
                " its adjoint ",
                cat(r_bar, " = ", partial(LOSS, M("r"))),
                " times ",
                partial(M("r"), M("x")),
                ", the adjoints taken from the last reduction back to the first:",
            )
            if r.reductions
            else P(
                "(2) Through the normalization. The layer has no reduction: each ",
                xhat,
                " depends on its own ",
                M("x"),
                " only.",
            )
        ),
    ]
    if r.reductions:
        blocks.append(
            D(
                Eq(
                    dx,
                    (
                        cat(
                            h,
                            " ",
                            partial(xhat, M("x")),
                            " + ",
                            Math(r"\sum_{r} ", "Σᵣ "),
                            r_bar,
                            " ",
                            partial(M("r"), M("x")),
                        ),
                    ),
                )
            )
        )
    current: list[Eq] = []  # the equations of one reduction: shown together
    for step in chain:
        lhs, eq = step.lhs, Eq(rule_math(step.lhs), (rule_math(step.rhs),))
        if isinstance(lhs, Derivative) and lhs.variables[0] == NORM_X:
            blocks += [P("SymPy differentiates the elementwise part:"), D(eq)]
        elif isinstance(lhs, Derivative):  # x̂ through a reduction: its own display
            if current:
                blocks.append(D(*current))
            red = next(u for u in r.reductions if u.symbol == lhs.variables[0])
            blocks.append(
                P(
                    "Through ",
                    cat(rule_name(red.symbol), " = ", rule_math(red.node)),
                    ": how ",
                    xhat,
                    " depends on it, its adjoint (",
                    h,
                    " times that, summed over the group",
                    (
                        ", plus what reaches it through the later reductions"
                        if _later(red, r)
                        else ""
                    ),
                    "), and its term:",
                )
            )
            current = [eq]
        elif lhs == DX:
            if current:
                blocks.append(D(*current))
                current = []
            blocks += [
                P(
                    "Adding the elementwise part and one term per reduction:"
                    if r.reductions
                    else "So:"
                ),
                D(Eq(dx, (rule_math(step.rhs),))),
            ]
        else:  # the reduction's adjoint r̄, then its term r̄ ∂r/∂x
            current.append(eq)
    if identities:
        blocks += [
            P(
                "The definitions of the reductions give identities among them (",
                rule_name(XHAT),
                " is centred or scaled by construction):",
            ),
            D(*(Eq(rule_math(s.lhs), (rule_math(s.rhs),)) for s in identities)),
        ]
    if len(later) > 1:
        how: list[Inline] = (
            [
                "Writing ",
                M("x"),
                " in terms of ",
                xhat,
                " (inverting its definition), each reduction made linear and the "
                "identities used, the reductions of ",
                M("x"),
                " become reductions of ",
                h,
                " and ",
                xhat,
                ":",
            ]
            if r.basis == "xhat"
            else [
                "Each reduction made linear (constants factored out, sums split) and "
                "the identities used:"
            ]
        )
        blocks += [P(*how), D(*(Eq(dx, (rule_math(s.rhs),)) for s in later[:-1]))]
    final = later[-1].rhs if later else r.dx
    blocks += [
        P(
            "SymPy's simplification, checked numerically against the chain rule "
            "written out in full (at random points and at extreme inputs), gives the "
            "rule the generated code uses:"
        ),
        D(Eq(dx, (rule_math(final),), "(simplified)")),
    ]
    if not r.gain:
        blocks += [
            P("With no gain, ", cat(h, " = ", rule_name(G)), ":"),
            D(Eq(dx, (rule_math(r.dx),))),
        ]
    blocks += [P("Note: ", Name(note), ".") for note in r.notes]
    return blocks


def _later(red: object, rule: NormRule) -> bool:
    """A later reduction's argument uses red's symbol (var = mean((x − μ)²) uses μ)."""
    i = rule.reductions.index(red)  # type: ignore[arg-type]
    return any(red.symbol in u.arg.free_symbols for u in rule.reductions[i + 1 :])  # type: ignore[attr-defined]


MOMENTUM = M(r"\mathrm{momentum}", "momentum")


def _as_written(upd: object, tex: dict) -> Math:
    """A running statistic's update as written, (1 − momentum)·buffer + momentum·μ,
    in the rule's names."""
    e = upd.shown  # type: ignore[attr-defined]
    names = {sym: rule_name(sym) for sym in e.free_symbols}
    names[upd.buffer] = Math(tex[upd.buffer], upd.buffer.name)  # type: ignore[attr-defined]
    m = shown(e, names)
    return Math(m.tex, m.text.replace(" - ", " − "))  # as the rule's other lines


def _running_eq(view: object, s: object, upd: object) -> Eq:
    """A running statistic's renewal as written, (1 − momentum)·buffer +
    momentum·statistic, in the plan's names (its Renew statement's target, and the
    batch statistic it reads), the momentum a symbol."""
    target = s.target  # type: ignore[attr-defined]
    stat = next(
        sym
        for sym in sorted(s.expr.free_symbols, key=str)  # type: ignore[attr-defined]
        if sym != target and sym.name != "m"
    )
    names = {
        upd.buffer: view.ex(target),  # type: ignore[attr-defined]
        upd.statistic: view.ex(stat),  # type: ignore[attr-defined]
        N: M("m"),
        next(x for x in upd.shown.free_symbols if x.name == "momentum"): MOMENTUM,  # type: ignore[attr-defined]
    }
    return Eq(view.lhs(s), (shown(upd.shown, names),), rel=ARROW)  # type: ignore[attr-defined]


def _batch_blocks(ctx: Context, layer: NormLayerRule) -> list[Block]:
    view = ctx.view
    if view is None:
        return []
    l, r = layer.index, layer.rule  # noqa: E741
    if r.group == BATCH:
        axis: list[Inline] = [
            "the group is a column of the batch: the reductions are column means (",
            M(r"\operatorname{mean}_{n}", "meanₙ"),
            ", over the ",
            M("m"),
            " examples), one value per feature",
        ]
    else:
        axis = [
            "the group is a row of the batch: the reductions are row means (",
            M(r"\operatorname{mean}_{j}", "meanⱼ"),
            ", over the features), one value per example, an ",
            M(r"m \times 1", "m × 1"),
            " column that broadcasts over the row",
        ]
    blocks: list[Block] = [
        P(
            "(3) For a batch. The generated code applies the rule to the whole batch at "
            "once: ",
            *axis,
            "; products written ",
            M(r"\odot", "⊙"),
            " are elementwise, and the reductions inside an expression are computed "
            "first (",
            M(r"R^{[l]}_{k}", "Mean{l}_k"),
            "). In the order the generated code computes them, the forward pass in "
            "training:",
        ),
        D(*(view.eq(s) for s in view.forward(l))),
    ]
    step = view.forward(l, "running")
    if step:
        momentum = [float(v) for sym, v in r.params if sym.name == "momentum"]
        blocks += [
            P("then, in the training step only, the running statistics:"),
            D(
                *(
                    _running_eq(view, s, upd)
                    for s, upd in zip(step, r.running, strict=True)
                )
            ),
        ]
        blocks += [
            P("with ", cat(MOMENTUM, " = ", number(v)), " and m the batch size.")
            for v in momentum
        ]
    evaluate = view.forward(l, "inference")
    if evaluate:
        blocks += [
            P("and in inference, with the running statistics:"),
            D(*(view.eq(s) for s in evaluate)),
        ]
    backward = view.backward(l)
    if not backward:  # the first layer, with no gain or shift
        blocks.append(
            P(
                "The backward pass computes nothing here: the layer has no gain or "
                "shift, and as the first layer it passes no gradient further down."
            )
        )
        return blocks
    blocks += [
        P(
            "The backward pass, from the gradient ",
            view.name(view.symbol("back", l)),
            " that reaches the layer's output",
            "" if l > 1 else " (the first layer passes nothing further down)",
            ":",
        ),
        D(*(view.eq(s) for s in backward)),
    ]
    return blocks


def _running_blocks(layer: NormLayerRule) -> list[Block]:
    r, defn = layer.rule, layer.definition
    if not r.running:
        return []
    names = {}
    for upd in r.running:
        names[upd.buffer] = rf"{symbol_tex(upd.statistic)}_{{\mathrm{{run}}}}"
    momentum = [(s, v) for s, v in r.params if s.name == "momentum"]
    unbiased = [s for s in defn.running if s.unbiased]
    blocks: list[Block] = [
        P(
            "(4) Running statistics. Training normalizes with the batch's own ",
            *_and(_names(r)),
            " (the variance biased: a mean over the batch, as in PyTorch's training "
            "mode). For inference the layer keeps running estimates, updated after "
            "each training step as PyTorch updates them",
            *(
                [
                    ", the variance tracked unbiased (times ",
                    M("n/(n - 1)", "n/(n − 1)"),
                    ")",
                ]
                if unbiased
                else []
            ),
            ":",
        ),
        D(
            *(
                Eq(
                    Math(names[upd.buffer], upd.buffer.name),
                    (_as_written(upd, names),),
                    rel=ARROW,
                )
                for upd in r.running
            )
        ),
    ]
    values: list[Inline] = [
        "with ",
        cat(rule_name(N), " = ", M("m")),
        " the batch size",
    ]
    for sym, value in momentum:
        values += [" and ", cat(rule_name(sym), " = ", number(float(value)))]
    starts = [
        cat(
            Math(names[upd.buffer], upd.buffer.name),
            f" = {1 if upd.init == 'ones' else 0}",
        )
        for upd in r.running
    ]
    blocks.append(P(*values, "; at the start ", *_and(starts), "."))
    blocks += [
        P(
            "In inference (",
            Code("forward"),
            ", ",
            Code("predict"),
            " and ",
            Code("loss"),
            " with ",
            Code("training=False"),
            ") the running estimates stand in for the batch statistics, so an "
            "example's output does not depend on the rest of its batch:",
        ),
        D(*(Eq(_lhs(s.target), (rule_math(s.expr, names),)) for s in r.inference)),
    ]
    return blocks


def norm_sections(ctx: Context, l: int) -> tuple[Section, ...]:  # noqa: E741
    """A normalization layer, derived step by step from its rule."""
    layer = ctx.d.layer(l)
    assert isinstance(layer, NormLayerRule)
    blocks = [
        *_definition_blocks(ctx, layer),
        *_affine_blocks(ctx, layer),
        *_chain_blocks(layer),
        *_batch_blocks(ctx, layer),
        *_running_blocks(layer),
    ]
    return (Section(f"Layer {l}: {layer.rule.title}", tuple(blocks)),)
