"""The report's sections: the backpropagation of a Derivation laid out as a textbook does.

The order is that of the handwritten notes symgrad grew from: the output layer's chain rule
with each factor derived, the output delta (and its collapse to ŷ − y where SymPy finds
it), the bias, each hidden layer with its activation's derivative taken from the definition
and rewritten in the layer's output, the matrix form, the optimizer's update rule, the
loss, K output units, a batch of m examples and, where sigmoid or tanh is used, saturation
versus ReLU.

Every formula that depends on the spec is a SymPy result from derive.py (the layer rules,
the output rule and `Derivation.facts`), only printed here; the dense-layer algebra, the
same for every layer, is written out.

A layer's sections are found by the kind of layer: `LAYER_SECTIONS` maps a kind to its
builder (registered with `@layer_sections(kind)`), so that a new kind adds a builder and
touches no other. Every builder gets a `Context`: the derivation, the plan when the report
has one, and what earlier sections derived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from .. import naming as nm
from .. import ops
from ..derive import LS, ActivationRule, Derivation, LayerRule
from ..functions import log_softmax, softplus
from ..ops import a, y, z
from .document import (
    Block,
    Code,
    D,
    Eq,
    Inline,
    M,
    Math,
    Name,
    P,
    Report,
    Section,
    cat,
)
from .notation import (
    ARROW,
    DOT,
    ELEMENTWISE,
    ELL,
    LOSS,
    ODOT,
    PREDICTION,
    RIGHT,
    TO,
    act_unit,
    apply,
    delta,
    ex,
    fn_name,
    function,
    indexed,
    loss_formula,
    loss_phrase,
    loss_title,
    mat,
    number,
    paren,
    partial,
    summed,
    target,
    times,
    transposed,
    unit,
    vec,
    weight,
)


@dataclass
class Context:
    """What a section builder reads.

    Attributes:
        d: the derivation.
        plan: the Plan (symgrad.plan) when the caller has one, else None; the report
            does not build it.
        derived: the activations whose derivative a section already derived, with the
            layer it was derived in (a later layer refers back to it).
    """

    d: Derivation
    plan: object | None = None
    derived: dict[ActivationRule, int] = field(default_factory=dict)


LayerBuilder = Callable[[Context, int], tuple[Section, ...]]
LAYER_SECTIONS: dict[str, LayerBuilder] = {}


def layer_sections(kind: str) -> Callable[[LayerBuilder], LayerBuilder]:
    """Register the builder of a layer kind's sections: builder(context, l)."""

    def register(builder: LayerBuilder) -> LayerBuilder:
        LAYER_SECTIONS[kind] = builder
        return builder

    return register


def layer_kind(rule: LayerRule) -> str:
    """The kind of a layer; every layer is dense until LayerRule says otherwise."""
    return getattr(rule, "kind", "dense")


# ------------------------------------------------------------------ activations


def _activation_blocks(rule: ActivationRule, where: str) -> list[Block]:
    """f defined, then f'(z) from diff, simplified, and rewritten in a = f(z)."""
    f = fn_name(rule)
    fz, fpz = apply(f, M("z")), apply(f, M("z"), prime=True)
    intro: list[Inline] = [where, " The ", Name(rule.title), " activation is"]
    if rule.custom:
        intro = [where, " The custom activation ", Code(rule.name), " is"]
    steps = [
        Math(
            rf"\frac{{d}}{{dz}}\left({ex(rule.f).tex}\right)",
            f"d/dz [{ex(rule.f).text}]",
        ),
        ex(rule.raw),
    ]
    if not rule.f.has(z):
        steps = steps[1:]
    for form in (rule.dz, rule.df if rule.in_a else None):
        if form is not None and ex(form).tex not in {s.tex for s in steps}:
            steps.append(ex(form))
    blocks: list[Block] = []
    if isinstance(rule.f, sp.Function) and rule.f.args == (z,):
        # tanh(z) = tanh(z) would say nothing
        blocks.append(P(*intro, " ", ex(rule.f), "."))
    else:
        blocks += [P(*intro), D(Eq(fz, (ex(rule.f),)))]
    blocks += [
        P("SymPy differentiates it and simplifies:"),
        D(Eq(fpz, tuple(steps))),
    ]
    if rule.in_a and rule.df.has(a):
        blocks.append(
            P(
                "The last form is written in the output ",
                cat(M("a"), " = ", fz),
                ", found by substituting and checked numerically: the backward pass "
                "reuses the activation stored by the forward pass.",
            )
        )
    elif not rule.in_a:
        blocks.append(
            P(
                "No form in the output ",
                cat(M("a"), " = ", fz),
                " checked out at no extra cost, so the backward pass keeps ",
                M("z"),
                " from the forward pass.",
            )
        )
    return blocks


def _units(count: int) -> str:
    return "unit" if count == 1 else "units"


# ------------------------------------------------------------------ the output layer


def _softmax_output_blocks(ctx: Context) -> list[Block]:
    d = ctx.d
    n, out = d.depth, d.output
    facts = d.facts.softmax
    assert facts is not None  # derive() gives a softmax output its facts
    jac = facts.jacobian
    zj, yj_hat, yk_hat = unit("z", n, "j"), act_unit(n, "j", n), act_unit(n, "k", n)
    yj, yk = target("j"), target("k")
    zi, zk = unit("z", n, "i"), unit("z", n, "k")
    s = M(*nm.SOFTMAX_SUM)
    names = {
        jac.z_j: zj,
        jac.z_k: zk,
        jac.total: s,
        jac.yhat_j: yj_hat,
        jac.yhat_k: yk_hat,
    }
    kronecker = (M(r" \left([k = j] - ", " · ([k = j] - "), yj_hat, M(r"\right)", ")"))
    blocks: list[Block] = [
        P(
            "(2) The activation. Softmax couples the units: with ",
            Math(
                rf"{s.tex} = \sum_{{i}} e^{{{zi.tex}}}", f"{s.text} = Σᵢ exp({zi.text})"
            ),
            ", every output ",
            cat(
                yk_hat,
                Math(rf" = e^{{{zk.tex}}} / {s.tex}", f" = exp({zk.text})/{s.text}"),
            ),
            " depends on every ",
            zj,
            ". SymPy differentiates and rewrites the result in the outputs:",
        ),
        D(
            Eq(
                partial(yj_hat, zj),
                (ex(jac.diagonal_raw, names), ex(jac.diagonal, names)),
            ),
            Eq(
                partial(yk_hat, zj),
                (ex(jac.off_diagonal_raw, names), ex(jac.off_diagonal, names)),
                note=M(r"(k \neq j)", "(k ≠ j)"),
            ),
        ),
        P(
            "that is ",
            cat(partial(yk_hat, zj), " = ", yk_hat, *kronecker),
            ", where ",
            M("[k = j]"),
            " is 1 for ",
            M("k = j"),
            " and 0 otherwise.",
        ),
    ]
    h_name, h_text = nm.SOFTMAX_H
    hj = ex(facts.h, {a: yj_hat, y: yj})
    hk = paren(facts.summand, {a: yk_hat, y: yk})
    sum_form = cat(
        hj,
        M(" + " if facts.negated else " - "),
        yj_hat,
        " ",
        Math(rf"\sum_{{k}} {hk.tex}", f"Σₖ {hk.text}"),
    )
    steps = [
        Math(
            rf"\sum_{{k}} {partial(ELL, yk_hat).tex}" rf" \, {partial(yk_hat, zj).tex}",
            f"Σₖ {partial(ELL, yk_hat).text} · {partial(yk_hat, zj).text}",
        ),
        cat(
            summed("k"),
            paren(out.dl_da, {a: yk_hat, y: yk}),
            DOT,
            yk_hat,
            *kronecker,
        ),
        sum_form,
    ]
    names_j = {a: yj_hat, y: yj, z: zj}
    note = ""
    final = ex(out.delta, names_j)
    if out.collapsed:
        note = "(collapsed)"
    elif out.jvp:
        final = Math(
            rf"{h_name}_{{j}} - \hat{{y}}_{{j}} \sum_{{k}} {h_name}_{{k}}",
            f"{h_text}ⱼ - ŷⱼ·Σₖ {h_text}ₖ",
        )
    steps.append(final)
    blocks += [
        P(
            "Combining the loss and the Jacobian gives the output delta ",
            cat(delta(n, "j"), " = ", partial(ELL, zj)),
            ", a sum over the outputs:",
        ),
        D(Eq(delta(n, "j"), tuple(steps), note)),
    ]
    if out.collapsed:
        blocks.append(
            P(
                "With one-hot targets, ",
                cat(summed("k"), yk, " = 1"),
                ", and SymPy's simplification collapses the delta to ",
                final,
                ": the softmax Jacobian has cancelled against the logarithm.",
            )
        )
    elif out.jvp:
        blocks.append(
            P(
                "with ",
                cat(
                    indexed(nm.SOFTMAX_H, "k"),
                    " = ",
                    yk_hat,
                    DOT,
                    partial(ELL, yk_hat),
                    " = ",
                    ex(facts.h, {a: yk_hat, y: yk}),
                ),
                "; it does not collapse, and the code computes it in this form.",
            )
        )
    return blocks


def _output_section(ctx: Context) -> Section:
    d = ctx.d
    n, out = d.depth, d.output
    layer = d.layers[-1]
    act = layer.activation
    ctx.derived.setdefault(act, n)
    zj, yj_hat, yj = unit("z", n, "j"), act_unit(n, "j", n), target("j")
    wij, bj, ai = weight(n, "i", "j"), unit("b", n, "j"), act_unit(n - 1, "i", n)
    dj = delta(n, "j")
    names_j = {a: yj_hat, y: yj, z: zj}
    f = fn_name(act)
    zk = unit("z", n, "k")
    fwd = (
        Math(
            rf"\frac{{e^{{{zj.tex}}}}}{{\sum_{{k}} e^{{{zk.tex}}}}}",
            f"exp({zj.text}) / Σₖ exp({zk.text})",
        )
        if act.vector
        else apply(f, zj)
    )
    loss_def = ex(out.loss, {a: PREDICTION, y: M("y")})
    blocks: list[Block] = [
        P(
            f"Layer {n}, the output layer, has {layer.units} {_units(layer.units)} with "
            "the ",
            Name(act.title),
            " activation. Unit ",
            M("j"),
            " computes",
        ),
        D(
            Eq(zj, (cat(summed("i"), ai, " ", wij, " + ", bj),)),
            Eq(yj_hat, (fwd,)),
        ),
        P(
            "and one example's loss is ",
            *loss_phrase(d),
            ", summed over the outputs:",
        ),
        D(
            Eq(ELL, (cat(summed("j"), ELL, "(", yj_hat, ", ", yj, ")"),)),
            Eq(cat(ELL, "(", PREDICTION, ", ", M("y"), ")"), (loss_def,)),
        ),
    ]
    yk_hat = act_unit(n, "k", n)
    if act.vector:
        chain = Math(
            rf"\sum_{{k}} {partial(ELL, yk_hat).tex}"
            rf" \, {partial(yk_hat, zj).tex} \, {partial(zj, wij).tex}",
            f"Σₖ {partial(ELL, yk_hat).text} · "
            f"{partial(yk_hat, zj).text} · {partial(zj, wij).text}",
        )
        path: list[Inline] = ["through its pre-activation and then every output"]
    else:
        chain = times(partial(ELL, yj_hat), partial(yj_hat, zj), partial(zj, wij))
        path = ["through ", zj, " and ", yj_hat, " only"]
    blocks += [
        P(
            "A weight ",
            wij,
            " reaches the loss ",
            *path,
            " (",
            cat(wij, TO, zj, TO, yk_hat if act.vector else yj_hat, TO, ELL),
            "), so the chain rule gives",
        ),
        D(Eq(partial(ELL, wij), (chain,))),
    ]
    if act.vector:
        blocks += [
            P("(1) The loss, differentiated by SymPy:"),
            D(Eq(partial(ELL, yk_hat), (ex(out.dl_da, {a: yk_hat, y: target("k")}),))),
        ]
        blocks += _softmax_output_blocks(ctx)
    else:
        blocks += [P("(1) The loss, differentiated by SymPy:")]
        blocks += [D(Eq(partial(ELL, yj_hat), (ex(out.dl_da, names_j),)))]
        blocks += _activation_blocks(act, "(2) The activation.")
        blocks += [
            P("At the output this factor is"),
            D(Eq(partial(yj_hat, zj), (apply(f, zj, prime=True), ex(act.df, names_j)))),
        ]
    blocks += [
        P("(3) The weight: ", zj, " is linear in ", wij, ", so"),
        D(Eq(partial(zj, wij), (ai,))),
    ]
    if not act.vector:
        product = times(paren(out.dl_da, names_j), paren(out.da_dz, names_j))
        steps = [times(partial(ELL, yj_hat), partial(yj_hat, zj)), product]
        result = ex(out.delta, names_j)
        if result.tex != product.tex:
            steps.append(result)
        blocks += [
            P(
                "The first two factors make the output delta ",
                cat(dj, " = ", partial(ELL, zj)),
                ":",
            ),
            D(Eq(dj, tuple(steps), "(collapsed)" if out.collapsed else "")),
        ]
        if out.collapsed and out.da_dz != 1:
            blocks.append(
                P(
                    "SymPy's simplification collapses the product to ",
                    result,
                    ": the activation's derivative cancels against the loss's, "
                    "which is why ",
                    *loss_phrase(d),
                    " is paired with a ",
                    Name(act.title),
                    " output.",
                )
            )
        elif out.collapsed:
            blocks.append(P("The delta is the error ", result, " itself."))
    blocks += [
        P("So each output weight's gradient is its unit's delta times its input:"),
        D(Eq(partial(ELL, wij), (cat(dj, " ", ai),))),
    ]
    return Section(f"Output layer (layer {n})", tuple(blocks))


def _bias_section(ctx: Context) -> Section:
    d = ctx.d
    n = d.depth
    zj, yj_hat, bj, dj = (
        unit("z", n, "j"),
        act_unit(n, "j", n),
        unit("b", n, "j"),
        delta(n, "j"),
    )
    if d.layers[-1].activation.vector:
        chain = times(partial(ELL, zj), partial(zj, bj))
    else:
        chain = times(partial(ELL, yj_hat), partial(yj_hat, zj), partial(zj, bj))
    return Section(
        "Bias",
        (
            P(
                "The bias reaches the loss the same way, and ",
                zj,
                " has slope 1 in it:",
            ),
            D(
                Eq(partial(zj, bj), (M("1"),)),
                Eq(partial(ELL, bj), (chain, cat(dj, DOT, "1"), dj)),
            ),
            P(
                "This holds in every layer: a bias's gradient is its unit's delta.",
            ),
        ),
    )


# ------------------------------------------------------------------ hidden layers


def _hidden_section(ctx: Context, l: int) -> Section:
    d = ctx.d
    n = d.depth
    layer = d.layers[l - 1]
    act = layer.activation
    f = fn_name(act)
    zj, aj, ai = unit("z", l, "j"), act_unit(l, "j", n), act_unit(l - 1, "i", n)
    wij, bj = weight(l, "i", "j"), unit("b", l, "j")
    zk1, wjk1 = unit("z", l + 1, "k"), weight(l + 1, "j", "k")
    dj, dk1 = delta(l, "j"), delta(l + 1, "k")
    blocks: list[Block] = [
        P(
            f"Layer {l} has {layer.units} {_units(layer.units)} with the ",
            Name(act.title),
            " activation:",
        ),
        D(
            Eq(zj, (cat(summed("i"), ai, " ", wij, " + ", bj),)),
            Eq(aj, (apply(f, zj),)),
        ),
        P(
            "A weight ",
            wij,
            " now reaches the loss through every unit ",
            M("k"),
            f" of layer {l + 1}, so the chain rule sums over ",
            M("k"),
            ":",
        ),
        D(
            Eq(
                partial(ELL, wij),
                (
                    cat(
                        summed("k"),
                        times(
                            partial(ELL, zk1),
                            partial(zk1, aj),
                            partial(aj, zj),
                            partial(zj, wij),
                        ),
                    ),
                ),
            )
        ),
        P(
            f"The first factor is layer {l + 1}'s delta, ",
            cat(dk1, " = ", partial(ELL, zk1)),
            ". The second: since ",
            cat(zk1, " = ", summed("j"), aj, " ", wjk1, " + ", unit("b", l + 1, "k")),
            ",",
        ),
        D(Eq(partial(zk1, aj), (wjk1,))),
    ]
    if act in ctx.derived:
        where = ctx.derived[act]
        blocks.append(
            P(
                f"The third is the activation's derivative, derived in layer {where}:",
            )
        )
        blocks.append(D(Eq(apply(f, M("z"), prime=True), (ex(act.df),))))
    else:
        ctx.derived[act] = l
        blocks += _activation_blocks(act, "The third is the activation's derivative.")
    names = {a: aj, z: zj}
    fp = ex(act.df, names)
    back = cat(summed("k"), dk1, " ", wjk1)
    back_p = cat("(", back, ")")
    steps = [partial(ELL, zj), times(back_p, apply(f, zj, prime=True))]
    if act.df != 1:
        steps.append(times(back_p, paren(act.df, names)))
    else:
        steps.append(back)
    blocks += [
        P("In this layer it is"),
        D(Eq(partial(aj, zj), (apply(f, zj, prime=True), fp))),
        P("The last factor is"),
        D(Eq(partial(zj, wij), (ai,))),
        P("Together, the delta of layer ", str(l), " and the gradients are"),
        D(
            Eq(dj, tuple(steps)),
            Eq(partial(ELL, wij), (cat(dj, " ", ai),)),
            Eq(partial(ELL, bj), (dj,)),
        ),
        P(
            "For all units of the layer at once (row vectors; ",
            ELEMENTWISE,
            " multiplies elementwise):",
        ),
        D(
            Eq(
                delta(l),
                (
                    cat(
                        "(",
                        delta(l + 1),
                        " ",
                        transposed(mat("W", l + 1)),
                        ")",
                        ODOT,
                        apply(f, vec("z", l, n), prime=True),
                    ),
                ),
            )
        ),
    ]
    return Section(f"Hidden layer {l}", tuple(blocks))


@layer_sections("dense")
def dense_sections(ctx: Context, l: int) -> tuple[Section, ...]:
    """A dense layer: the output layer (with the bias), or a hidden layer."""
    if l == ctx.d.depth:
        return (_output_section(ctx), _bias_section(ctx))
    return (_hidden_section(ctx, l),)


# ------------------------------------------------------------------ matrix form


def _output_delta_vector(d: Derivation, batch: bool) -> Math:
    """δ of the output layer for one example (row vectors) or a batch (with 1/m)."""
    n, out = d.depth, d.output
    if batch:
        names = {a: mat("A", n, n), y: M(nm.TARGET), z: mat("Z", n)}
    else:
        names = {a: vec("a", n, n), y: M("y"), z: vec("z", n, n)}
    if out.jvp:
        h = ex(out.delta, names)
        yhat = names[a]
        h_name, h_text = nm.SOFTMAX_H
        body = Math(
            rf"{h_name} - {yhat.tex} \odot \left({h_name} \, \mathbf{{1}}\,"
            rf"\mathbf{{1}}^{{\mathsf{{T}}}}\right), \quad {h_name} = {h.tex}",
            f"{h_text} - {yhat.text} ⊙ Σₖ {h_text}ₖ,  {h_text} = {h.text}",
        )
    else:
        body = ex(out.delta, names)
    if not batch:
        return body
    return Math(rf"\frac{{1}}{{m}} \left({body.tex}\right)", f"({body.text}) / m")


def _hidden_delta(d: Derivation, l: int, batch: bool) -> Math:
    """(δ^{[l+1]} W^{[l+1]T}) ⊙ f'(z^{[l]}), with f' in the layer's output where derived so."""
    n = d.depth
    act = d.layers[l - 1].activation
    if batch:
        names = {a: mat("A", l, n), z: mat("Z", l)}
    else:
        names = {a: vec("a", l, n), z: vec("z", l, n)}
    back = cat(delta(l + 1), " ", transposed(mat("W", l + 1)))
    if act.df == 1:
        return back
    return cat("(", back, ")", ODOT, paren(act.df, names))


def _activation_of(rule: LayerRule, arg: Math) -> Math:
    """f(arg) for a layer's activation; softmax by name."""
    if rule.activation.vector:
        return apply(function(ops.SOFTMAX), arg)
    return apply(fn_name(rule.activation), arg)


def _matrix_section(ctx: Context) -> Section:
    d = ctx.d
    n = d.depth
    fwd, back, grads = [], [], []
    for rule in d.layers:
        l = rule.index
        fwd.append(
            Eq(
                vec("z", l, n),
                (cat(vec("a", l - 1, n), " ", mat("W", l), " + ", mat("b", l)),),
            )
        )
        fwd.append(Eq(vec("a", l, n), (_activation_of(rule, vec("z", l, n)),)))
        grads.append(
            Eq(
                partial(ELL, mat("W", l)),
                (cat(transposed(vec("a", l - 1, n)), " ", delta(l)),),
                note=M(
                    rf"({rule.fan_in} \times 1)(1 \times {rule.units})",
                    f"({rule.fan_in} × 1)(1 × {rule.units})",
                ),
            )
        )
        grads.append(Eq(partial(ELL, mat("b", l)), (delta(l),)))
    back.append(Eq(delta(n), (_output_delta_vector(d, batch=False),)))
    for l in range(n - 1, 0, -1):
        back.append(Eq(delta(l), (_hidden_delta(d, l, batch=False),)))
    return Section(
        "Matrix form",
        (
            P(
                "Write a layer's units as a row vector, ",
                M(r"a^{[l]} = (a^{[l]}_{1}, \dots, a^{[l]}_{n_l})", "a = (a₁, …, aₙ)"),
                "; layer ",
                M("l"),
                "'s weights form the ",
                M(r"n_{l-1} \times n_{l}", "n_{l-1} × n_l"),
                " matrix ",
                M(r"W^{[l]}", "W"),
                " whose row ",
                M("i"),
                ", column ",
                M("j"),
                " holds ",
                M(r"w^{[l]}_{ij}", "wᵢⱼ"),
                ". For one example, the forward pass is",
            ),
            D(*fwd),
            P(
                "and the backward pass, with the derivatives above (products of vectors "
                "are elementwise, ",
                ELEMENTWISE,
                "):",
            ),
            D(*back),
            P(
                "Each weight gradient is an outer product of the layer's input and its "
                "delta; each bias gradient is the delta:"
            ),
            D(*grads),
        ),
    )


# ------------------------------------------------------------------ update rule


def _update_section(ctx: Context) -> Section:
    opt = ctx.d.spec.optimizer
    params = dict(opt.params)
    p, g = M(*nm.PARAMETER), M(*nm.GRADIENT)
    eta = M(*nm.LEARNING_RATE)
    blocks: list[Block] = [
        P(
            "Training moves every parameter ",
            p,
            " (each ",
            M(r"W^{[l]}", "Wˡ"),
            " and ",
            M(r"b^{[l]}", "bˡ"),
            ") against its gradient ",
            cat(g, " = ", partial(LOSS, p)),
            ", the gradient of the batch loss ",
            LOSS,
            " (see 'Many examples'). The ",
            Name(opt.name),
            " update, as torch.optim computes it:",
        )
    ]
    values: list[Inline] = [
        "with ",
        cat(eta, " = ", number(float(params["learning_rate"]))),
    ]
    if opt.name == "sgd":
        blocks.append(D(Eq(p, (cat(p, " - ", eta, " ", g),), rel=ARROW)))
    elif opt.name == "momentum":
        v, mu = M(*nm.VELOCITY), M(*nm.MOMENTUM)
        step = (
            cat(p, " - ", eta, " (", g, " + ", mu, " ", v, ")")
            if params.get("nesterov")
            else cat(p, " - ", eta, " ", v)
        )
        blocks.append(
            D(
                Eq(v, (cat(mu, " ", v, " + ", g),), rel=ARROW),
                Eq(
                    p,
                    (step,),
                    "(Nesterov)" if params.get("nesterov") else "",
                    rel=ARROW,
                ),
            )
        )
        values += [
            ", ",
            cat(mu, " = ", number(float(params["momentum"]))),
            ", ",
            cat(v, " = 0"),
            " at the start",
        ]
    else:
        m1, m2 = M(*nm.FIRST_MOMENT), M(*nm.SECOND_MOMENT)
        b1, b2, eps = M(*nm.BETA1), M(*nm.BETA2), M(*nm.EPSILON)
        m1h, m2h = M(*nm.FIRST_MOMENT_HAT), M(*nm.SECOND_MOMENT_HAT)
        t = M(*nm.STEP)
        blocks.append(
            D(
                Eq(t, (cat(t, " + 1"),), rel=ARROW),
                Eq(m1, (cat(b1, " ", m1, " + (1 - ", b1, ") ", g),), rel=ARROW),
                Eq(
                    m2, (cat(b2, " ", m2, " + (1 - ", b2, ") ", g, ODOT, g),), rel=ARROW
                ),
                Eq(
                    m1h,
                    (
                        Math(
                            rf"\frac{{{m1.tex}}}{{1 - {b1.tex}^{{{t.tex}}}}}",
                            f"{m1.text} / (1 - {b1.text}ᵗ)",
                        ),
                    ),
                ),
                Eq(
                    m2h,
                    (
                        Math(
                            rf"\frac{{{m2.tex}}}{{1 - {b2.tex}^{{{t.tex}}}}}",
                            f"{m2.text} / (1 - {b2.text}ᵗ)",
                        ),
                    ),
                ),
                Eq(
                    p,
                    (
                        Math(
                            rf"{p.tex} - {eta.tex} \, \frac{{{m1h.tex}}}"
                            rf"{{\sqrt{{{m2h.tex}}} + {eps.tex}}}",
                            f"{p.text} - {eta.text} · {m1h.text} / "
                            f"(√{m2h.text} + {eps.text})",
                        ),
                    ),
                    rel=ARROW,
                ),
            )
        )
        values += [
            ", ",
            cat(b1, " = ", number(float(params["beta1"]))),
            ", ",
            cat(b2, " = ", number(float(params["beta2"]))),
            ", ",
            cat(eps, " = ", number(float(params["eps"]))),
            "; the moment estimates ",
            m1,
            " and ",
            m2,
            " (not the batch size ",
            M("m"),
            ") start at 0, and the square root and division are elementwise",
        ]
    blocks.append(P(*values, "."))
    return Section("Update rule", tuple(blocks))


# ------------------------------------------------------------------ the loss


def _targets_note(d: Derivation) -> str:
    if d.task == "classes":
        return (
            "Targets are one-hot rows (the generated module also accepts integer class "
            "labels and turns them into one-hot rows)."
        )
    if d.task == "binary":
        return "Targets are 0/1 labels (or probabilities in [0, 1])."
    return ""


def _loss_section(ctx: Context) -> Section:
    d = ctx.d
    n, out = d.depth, d.output
    spec_loss = d.spec.loss
    act = d.layers[-1].activation
    yk_hat, yk, zk = act_unit(n, "k", n), target("k"), unit("z", n, "k")
    names = {a: yk_hat, y: yk, z: zk}
    title = loss_title(d)[0]
    intro: list[Inline] = [
        "The ",
        Name(title),
        " of one example, summed over the outputs",
    ]
    if spec_loss.custom:
        intro = [
            "The custom loss ",
            Code(spec_loss.name),
            " is the spec's expression ",
            Code(spec_loss.expr or ""),
            ", summed over the outputs",
        ]
    blocks: list[Block] = [
        P(*intro, ":"),
        D(Eq(ELL, (loss_formula(d),))),
    ]
    targets = _targets_note(d)
    if targets:
        blocks.append(P(targets))
    if out.forward != out.loss:
        ls_tex, ls_text = nm.FUNCTIONS["log_softmax"]
        forward_names = {
            **names,
            LS: Math(
                rf"\left({ls_tex} {nm.tex('z', n)}\right)_{{k}}",
                f"{ls_text}(z{n})ₖ",
            ),
        }
        blocks += [
            P(
                "Written in the prediction, the logarithm loses precision or overflows "
                "when the output saturates; the generated code evaluates the same loss "
                "from the pre-activation instead:"
            ),
            D(Eq(ELL, (cat(summed("k"), paren(out.forward, forward_names)),))),
        ]
        if out.forward.has(softplus):
            u = M("u")
            blocks.append(
                P(
                    "where ",
                    cat(
                        apply(function("softplus"), u),
                        M(r" = \log(1 + e^{u})", " = log(1 + eᵘ)"),
                    ),
                    " is computed without overflow as ",
                    Code("np.logaddexp(0, u)"),
                    ".",
                )
            )
        if out.forward.has(LS) or out.forward.has(log_softmax):
            blocks.append(
                P(
                    "where the log-softmax subtracts the row maximum before "
                    "exponentiating, so it never overflows.",
                )
            )
    dk = delta(n, "k")
    h_name, h_text = nm.SOFTMAX_H
    blocks += [
        P("Its output delta, derived in the output layer section:"),
        D(
            Eq(
                dk,
                (
                    partial(ELL, zk),
                    (
                        Math(
                            rf"{h_name}_{{k}} - \hat{{y}}_{{k}} \sum_{{i}} {h_name}_{{i}}",
                            f"{h_text}ₖ - ŷₖ·Σᵢ {h_text}ᵢ",
                        )
                        if out.jvp
                        else ex(out.delta, names)
                    ),
                ),
                "(collapsed)" if out.collapsed else "",
            )
        ),
    ]
    if out.collapsed and act.name in ("sigmoid", ops.SOFTMAX) and not act.custom:
        blocks.append(
            P(
                "The error ",
                cat(yk_hat, " - ", yk),
                " itself: the further the prediction is from the target, the larger "
                "the step, with no factor of the activation's derivative in between.",
            )
        )
    return Section(f"The loss: {title}", tuple(blocks))


# ------------------------------------------------------------------ K outputs, batch


def _classes_section(ctx: Context) -> Section:
    d = ctx.d
    n = d.depth
    k = d.layers[-1].units
    act = d.layers[-1].activation
    K = cat(M("K"), f" = {k}")
    yk_hat = act_unit(n, "k", n)
    if d.task == "classes":
        body = P(
            "The output has ",
            K,
            " units, one per class. Softmax turns the ",
            M("K"),
            " pre-activations into a probability vector (",
            M(r"\hat{y}_{k} > 0, \ \sum_{k} \hat{y}_{k} = 1", "ŷₖ > 0, Σₖ ŷₖ = 1"),
            "), so every output depends on every pre-activation: that is why the output "
            "delta sums over ",
            M("k"),
            " through the Jacobian. The classes exclude each other, targets are "
            "one-hot, and ",
            Code("predict"),
            " returns ",
            cat(M(r"\arg\max_{k} ", "argmaxₖ "), yk_hat),
            ".",
        )
    elif d.task == "binary" and k == 1:
        body = P(
            "One output unit: binary classification. ",
            cat(PREDICTION, " = ", apply(fn_name(act), M("z"))),
            " is the predicted probability of class 1, and ",
            Code("predict"),
            " returns 1 where it is at least 0.5. For ",
            M("K"),
            " exclusive classes one would use ",
            M("K"),
            " softmax units with categorical cross-entropy; ",
            M("K"),
            " sigmoid units with binary cross-entropy are ",
            M("K"),
            " independent yes/no questions.",
        )
    elif d.task == "binary":
        body = P(
            "The output has ",
            K,
            " sigmoid units: ",
            M("K"),
            " independent yes/no questions (multi-label). Each ",
            yk_hat,
            " depends on its own ",
            unit("z", n, "k"),
            " only and the loss sums over ",
            M("k"),
            ", so the output delta of unit ",
            M("k"),
            " involves unit ",
            M("k"),
            " alone, as derived above.",
        )
    else:
        body = P(
            "The output has ",
            K,
            " " + _units(k) + ". Each ",
            yk_hat,
            " depends on its own ",
            unit("z", n, "k"),
            " only and the loss sums over ",
            M("k"),
            ", so the output delta of unit ",
            M("k"),
            " involves unit ",
            M("k"),
            " alone: the derivation of the output layer holds unit by unit.",
        )
    return Section("K output units", (body,))


def batch_equations(d: Derivation) -> list[Eq]:
    """The batch backward pass in the order the generated code computes it."""
    n = d.depth
    l2 = d.spec.l2 > 0
    lam = M(*nm.L2)
    one = M(*nm.ONES_ROW)
    eqs = [Eq(delta(n), (_output_delta_vector(d, batch=True),))]
    for l in range(n, 0, -1):
        grad = cat(transposed(mat("A", l - 1, n)), " ", delta(l))
        if l2:
            grad = cat(grad, " + ", lam, " ", mat("W", l))
        eqs.append(Eq(partial(LOSS, mat("W", l)), (grad,)))
        eqs.append(Eq(partial(LOSS, mat("b", l)), (cat(one, " ", delta(l)),)))
        if l > 1:
            eqs.append(Eq(delta(l - 1), (_hidden_delta(d, l - 1, batch=True),)))
    return eqs


def _batch_section(ctx: Context) -> Section:
    d = ctx.d
    n = d.depth
    l2 = d.spec.l2
    lam = M(*nm.L2)
    mean = Math(
        r"\frac{1}{m} \sum_{n=1}^{m} \ell\left(\hat{y}^{(n)}, y^{(n)}\right)",
        "(1/m) Σₙ ℓ(ŷ⁽ⁿ⁾, y⁽ⁿ⁾)",
    )
    if l2:
        mean = cat(
            mean,
            " + ",
            Math(
                r"\frac{\lambda}{2} \sum_{l} \lVert W^{[l]} \rVert^{2}",
                "(λ/2) Σₗ ‖Wˡ‖²",
            ),
        )
    fwd = []
    for rule in d.layers:
        l = rule.index
        fwd.append(
            Eq(
                mat("Z", l),
                (cat(mat("A", l - 1, n), " ", mat("W", l), " + ", mat("b", l)),),
            )
        )
        fwd.append(Eq(mat("A", l, n), (_activation_of(rule, mat("Z", l)),)))
    z_l, a_l, delta_l = (
        M(r"Z^{[l]}", "Zˡ"),
        M(r"A^{[l]}", "Aˡ"),
        M(r"\delta^{[l]}", "δˡ"),
    )
    blocks: list[Block] = [
        P(
            "A batch stacks ",
            M("m"),
            " examples as the rows of ",
            M(nm.A(0)),
            " (",
            Math(rf"m \times {d.spec.input}", f"m × {d.spec.input}"),
            "); every ",
            z_l,
            " and ",
            a_l,
            " then has one row per example, and the bias is added to every row. "
            "The batch loss is the mean of the examples' losses"
            + (", plus the l2 term on the weights" if l2 else "")
            + ":",
        ),
        D(Eq(LOSS, (mean,))),
    ]
    if l2:
        blocks.append(
            P("with ", cat(lam, " = ", number(l2)), " (biases are not decayed).")
        )
    blocks += [
        P("The forward pass, one matrix product per layer:"),
        D(*fwd),
        P(
            "Because ",
            LOSS,
            " is a mean, each example's delta carries a factor ",
            M("1/m"),
            ": ",
            cat(delta_l, " = ", partial(LOSS, z_l)),
            " has one row per example. The sums over examples become matrix products ("
            "a row of ones, ",
            M(*nm.ONES_ROW),
            ", sums the rows)",
            (", and the l2 term adds " if l2 else ""),
            *((cat(lam, " ", M(r"W^{[l]}", "Wˡ")),) if l2 else ()),
            ". In the order the generated code computes them:",
        ),
        D(*batch_equations(d)),
        P(
            M(r"A^{[l-1]\mathsf{T}} \delta^{[l]}", "Aˡ⁻¹ᵀ δˡ"),
            " is (",
            M(r"n_{l-1} \times m", "n_{l-1} × m"),
            ")(",
            M(r"m \times n_{l}", "m × n_l"),
            "): the sum over the batch of the per-example outer products of the matrix "
            "form. In the generated module ",
            delta_l,
            " is ",
            Code(nm.D("{l}")),
            ", the gradients are ",
            Code(nm.dW("{l}")),
            " and ",
            Code(nm.db("{l}")),
            "; ",
            a_l,
            " and ",
            z_l,
            " are ",
            Code(nm.A("{l}")),
            " and ",
            Code(nm.Z("{l}")),
            ".",
        ),
    ]
    return Section("Many examples", tuple(blocks))


# ------------------------------------------------------------------ saturation


def _saturation_section(ctx: Context) -> Section | None:
    d = ctx.d
    facts = d.facts
    if not facts.saturation or facts.relu is None:
        return None
    blocks: list[Block] = []
    zm = M("z")
    for sat in facts.saturation:
        rule = sat.rule
        f = fn_name(rule)
        lim = Math(
            rf"\lim_{{z \to \pm\infty}} {f.tex}'(z)", f"lim_{{z→±∞}} {f.text}'(z)"
        )
        far = (ex(sat.at_plus_infinity), ex(sat.at_minus_infinity))
        blocks += [
            P(
                "SymPy evaluates the ",
                Name(rule.title),
                " derivative at 0 and in the limits:",
            ),
            D(
                Eq(apply(f, M("0"), prime=True), (ex(sat.at_zero),)),
                Eq(lim, far[:1] if far[0] == far[1] else far),
            ),
        ]
    seen = [sat.rule.name for sat in facts.saturation]
    names = " and ".join(sorted(seen, key=("sigmoid", "tanh").index))
    verb = "saturate" if len(seen) > 1 else "saturates"
    z0 = M("z = 0")
    shrink: list[Inline] = []
    if "sigmoid" in seen:
        shrink += [
            "sigmoid's derivative is at most ",
            M("1/4"),
            " (at ",
            z0,
            "), so every sigmoid layer shrinks the delta at least fourfold even where "
            "it is not saturated, and a deep sigmoid stack shrinks it geometrically",
        ]
    if "tanh" in seen:
        shrink += ["; "] if shrink else []
        shrink += [
            "tanh's peak derivative is 1 (at ",
            z0,
            "): tanh by itself does not shrink the delta; what does is saturation — "
            "pre-activations of large ",
            M(r"|z|"),
            ", from large weights or inputs — and products with weight matrices whose "
            "norm is below 1",
        ]
    blocks.append(
        P(
            f"So {names} {verb}: where ",
            M(r"|z|"),
            " is large the output sits near its bound, the derivative is close to 0, "
            "and a delta that passes back through such a layer is multiplied by almost "
            "nothing. Beyond that, ",
            *shrink,
            ". In a deep stack the gradients of the first layers then vanish.",
        )
    )
    relu = facts.relu
    blocks += [
        P("ReLU's derivative, derived the same way:"),
        D(Eq(apply(fn_name(relu), zm, prime=True), (ex(relu.dz),))),
        P(
            "It is exactly 1 for ",
            M("z > 0"),
            " however large ",
            zm,
            " is, so the delta passes through unchanged and ReLU does not saturate; for ",
            M(r"z \le 0", "z ≤ 0"),
            " it passes nothing (a unit that is negative on every example stops "
            "learning, which leaky ReLU avoids with a small slope).",
        ),
    ]
    out_act = d.layers[-1].activation
    saturating = out_act.name in seen and not out_act.custom
    if saturating or out_act.vector:
        if d.output.collapsed:
            blocks.append(
                P(
                    "At the output, ",
                    *loss_phrase(d),
                    " cancels the ",
                    Name(out_act.title),
                    " derivative (",
                    cat(M(*nm.DELTA), " = ", PREDICTION, " - ", M("y")),
                    "), so a confident wrong prediction still gets a large gradient.",
                )
            )
        elif not out_act.vector:
            blocks.append(
                P(
                    "At the output, the delta keeps the ",
                    Name(out_act.title),
                    " derivative as a factor, so learning slows down where the output "
                    "saturates.",
                )
            )
    return Section("Saturation: sigmoid and tanh versus ReLU", tuple(blocks))


# ------------------------------------------------------------------ the document

# the sections after the layers', each builder(context) -> Section or None
NETWORK_SECTIONS: tuple[Callable[[Context], Section | None], ...] = (
    _matrix_section,
    _update_section,
    _loss_section,
    _classes_section,
    _batch_section,
    _saturation_section,
)


def _intro(d: Derivation) -> tuple[Block, ...]:
    from .. import __version__

    spec = d.spec
    network: list[Inline] = [str(spec.input)]
    for r in d.layers:
        network += [" ", RIGHT, f" {r.units} (", Name(r.activation.title), ")"]
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
    )


def build(d: Derivation, plan: object | None = None) -> Report:
    """The derivation of d as a document, in the order of the seed notes.

    Args:
        d: the derivation.
        plan: the Plan of d, when the caller has one (sections may read it).
    """
    ctx = Context(d, plan)
    sections: list[Section] = []
    for l in range(d.depth, 0, -1):  # backpropagation: from the output layer down
        kind = layer_kind(d.layer(l))
        if kind not in LAYER_SECTIONS:
            raise NotImplementedError(
                f"the report has no section for {kind} layers: register a builder with"
                f" @layer_sections({kind!r}) in symgrad/report/sections.py"
            )
        sections += LAYER_SECTIONS[kind](ctx, l)
    for builder in NETWORK_SECTIONS:
        section = builder(ctx)
        if section is not None:
            sections.append(section)
    return Report(f"The derivation of {d.spec.name}", _intro(d), tuple(sections))


def _source_name(source: str) -> str:
    """The spec's file name, with anything a terminal could act on escaped."""
    from pathlib import Path

    from ..errors import printable

    return printable(Path(source).name)
