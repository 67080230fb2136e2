"""The dense layer's sections: the output layer (the chain rule with each factor derived,
the output delta and its collapse, softmax's Jacobian), the bias, and each hidden layer
with its activation's derivative taken from the definition and rewritten in the layer's
output. Also the dense layer's rows of the matrix form, which network.py lays out.
"""

from __future__ import annotations

import sympy as sp

from ... import activations
from ... import naming as nm
from ...activations import a, y, z
from ...derive import ActivationRule, Derivation, LayerRule
from ..document import (
    Block,
    Code,
    D,
    Eq,
    Inline,
    M,
    Math,
    Name,
    P,
    Section,
    cat,
)
from ..notation import (
    DOT,
    ELEMENTWISE,
    ELL,
    ODOT,
    PREDICTION,
    TO,
    act_unit,
    apply,
    delta,
    ex,
    fn_name,
    function,
    grouped,
    indexed,
    loss_phrase,
    mat,
    paren,
    partial,
    summed,
    target,
    times,
    transposed,
    unit,
    upstream,
    vec,
    weight,
)
from .base import Context, passes_down, units_word
from .base import classic as is_classic

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
    layer = d.out
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
            f"Layer {n}, the output layer, has {layer.units} {units_word(layer.units)} with "
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
    blocks += passed_down(ctx, n)
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
    if d.out.activation.vector:
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


def _hidden_section(ctx: Context, l: int) -> Section:  # noqa: E741
    """A hidden dense layer. Below a plain dense layer, its weights reach the loss
    through every unit of the next layer (the textbook's Σₖ δₖ wⱼₖ); below a layer of
    another kind, or a residual one, through the gradient g^{[l]} that layer passes down.
    """
    d = ctx.d
    n = d.depth
    layer = d.layer(l)
    assert isinstance(layer, LayerRule)
    act = layer.activation
    f = fn_name(act)
    classic = is_classic(d, l)
    zj, aj, ai = unit("z", l, "j"), act_unit(l, "j", n), act_unit(l - 1, "i", n)
    wij, bj = weight(l, "i", "j"), unit("b", l, "j")
    zk1, wjk1 = unit("z", l + 1, "k"), weight(l + 1, "j", "k")
    dj, dk1 = delta(l, "j"), delta(l + 1, "k")
    gj = upstream(l, "j")
    fj = unit("f", l, "j")  # f(z) of a residual layer, to which its input is added
    forward = [Eq(zj, (cat(summed("i"), ai, " ", wij, " + ", bj),))]
    if layer.residual:
        forward += [
            Eq(fj, (apply(f, zj),)),
            Eq(aj, (cat(act_unit(l - 1, "j", n), " + ", fj),)),
        ]
    else:
        forward.append(Eq(aj, (apply(f, zj),)))
    blocks: list[Block] = [
        P(
            f"Layer {l} has {layer.units} {units_word(layer.units)} with the ",
            Name(act.title),
            " activation"
            + (
                " and a residual connection: its input is added to its output:"
                if layer.residual
                else ":"
            ),
        ),
        D(*forward),
    ]
    if classic:
        blocks += [
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
                cat(
                    zk1, " = ", summed("j"), aj, " ", wjk1, " + ", unit("b", l + 1, "k")
                ),
                ",",
            ),
            D(Eq(partial(zk1, aj), (wjk1,))),
        ]
        third = "third"
    else:
        blocks += [
            P(
                f"Layer {l + 1} passes down the gradient of the loss with respect to "
                "this layer's output, ",
                cat(gj, " = ", partial(ELL, aj)),
                f" (derived in layer {l + 1}'s section). A weight ",
                wij,
                " reaches ",
                aj,
                " through ",
                zj,
                " only, so the chain rule gives",
            ),
            D(
                Eq(
                    partial(ELL, wij),
                    (times(partial(ELL, aj), partial(aj, zj), partial(zj, wij)),),
                )
            ),
        ]
        third = "second"
    if act in ctx.derived:
        where = ctx.derived[act]
        blocks.append(
            P(
                f"The {third} is the activation's derivative, derived in layer {where}:",
            )
        )
        blocks.append(D(Eq(apply(f, M("z"), prime=True), (ex(act.df),))))
    else:
        ctx.derived[act] = l
        blocks += _activation_blocks(
            act, f"The {third} is the activation's derivative."
        )
    names = {a: fj if layer.residual else aj, z: zj}
    fp = ex(act.df, names)
    if classic:
        back = cat(summed("k"), dk1, " ", wjk1)
        back_p = grouped(back)
        incoming = delta(l + 1)
        row = grouped(cat(incoming, " ", transposed(mat("W", l + 1))))
    else:
        back = back_p = gj
        row = upstream(l)
    steps = [partial(ELL, zj), times(back_p, apply(f, zj, prime=True))]
    if act.df != 1:
        steps.append(times(back_p, paren(act.df, names)))
    else:
        steps.append(back)
    blocks += [
        P(
            "In this layer it is",
            *(
                (" (the input added to the output does not depend on ", zj, ")")
                if layer.residual
                else ()
            ),
        ),
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
                (cat(row, ODOT, apply(f, vec("z", l, n), prime=True)),),
            )
        ),
    ]
    blocks += passed_down(ctx, l)
    title = f"Hidden layer {l}" + (" (residual)" if layer.residual else "")
    return Section(title, tuple(blocks))


def passed_down(ctx: Context, l: int) -> list[Block]:  # noqa: E741
    """What dense layer l passes down when the layer below is not a dense layer (whose
    section would sum over this layer's units itself) or when l is residual: the
    gradient at its input, with the identity term of a residual connection."""
    d = ctx.d
    layer = d.layer(l)
    assert isinstance(layer, LayerRule)
    if not passes_down(d, l):
        return []
    n = d.depth
    ai, ali = act_unit(l - 1, "i", n), act_unit(l, "i", n)
    zj, wij = unit("z", l, "j"), weight(l, "i", "j")
    through_z = cat(summed("j"), partial(ELL, zj), " ", partial(zj, ai))
    blocks: list[Block]
    if layer.residual:
        blocks = [
            P(
                "The residual connection gives the layer's input ",
                ai,
                " two ways to the loss: through every ",
                zj,
                ", as in any dense layer, and around the layer, through ",
                cat(
                    ali,
                    " = ",
                    ai,
                    " + ",
                    apply(fn_name(layer.activation), unit("z", l, "i")),
                ),
                ", with slope 1. The chain rule adds the two paths:",
            ),
            D(
                Eq(
                    upstream(l - 1, "i"),
                    (
                        partial(ELL, ai),
                        cat(through_z, " + ", partial(ELL, ali), " ", partial(ali, ai)),
                        cat(
                            summed("j"),
                            delta(l, "j"),
                            " ",
                            wij,
                            " + ",
                            upstream(l, "i"),
                        ),
                    ),
                )
            ),
            P(
                "The second term is the identity term: the gradient that reaches the "
                "layer's output passes to its input unchanged, whatever the activation "
                "does to the first. As row vectors, ",
                cat(
                    upstream(l - 1),
                    " = ",
                    delta(l),
                    " ",
                    transposed(mat("W", l)),
                    " + ",
                    upstream(l),
                ),
                ".",
            ),
        ]
    else:
        why = (
            "is residual and reads it twice (through its activation and around it)"
            if d.layer(l - 1).residual
            else "is not a dense layer"
        )
        blocks = [
            P(
                f"Layer {l - 1} below {why}, so this layer passes down the gradient at "
                "its input: ",
                ai,
                " reaches the loss through every ",
                zj,
                ", with ",
                cat(partial(zj, ai), " = ", wij),
                ":",
            ),
            D(
                Eq(
                    upstream(l - 1, "i"),
                    (
                        partial(ELL, ai),
                        through_z,
                        cat(summed("j"), delta(l, "j"), " ", wij),
                    ),
                )
            ),
        ]
    view = ctx.view
    if view is not None:
        stmts = [
            s
            for s in view.backward(l)
            if view.plan.roles.get(s.target) == ("back", l - 1)
        ]
        if stmts:
            blocks += [
                P("For a batch, the generated code computes"),
                D(*(view.eq(s) for s in stmts)),
            ]
    return blocks


def dense_sections(ctx: Context, l: int) -> tuple[Section, ...]:
    """A dense layer: the output layer (with the bias), or a hidden layer."""
    if l == ctx.d.depth:
        return (_output_section(ctx), _bias_section(ctx))
    return (_hidden_section(ctx, l),)


# ------------------------------------------------------------------ as matrices


def output_delta_vector(d: Derivation, batch: bool) -> Math:
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


def hidden_delta(d: Derivation, l: int, batch: bool) -> Math:  # noqa: E741
    """(δ^{[l+1]} W^{[l+1]T}) ⊙ f'(z^{[l]}), with f' in the layer's output where derived
    so; g^{[l]} ⊙ f'(z^{[l]}) below a layer of another kind or a residual one."""
    n = d.depth
    layer = d.layer(l)
    assert isinstance(layer, LayerRule)
    act = layer.activation
    if batch:
        names = {a: mat("A", l, n), z: mat("Z", l)}
        if layer.residual:  # f(Z) under the residual sum
            names[a] = Math(nm.tex("F", l), nm.value("f", l))
    else:
        names = {a: vec("a", l, n), z: vec("z", l, n)}
        if layer.residual:
            names[a] = Math(nm.tex("f", l), f"f{l}")
    if not is_classic(d, l):
        back = Math(nm.tex("G", l), f"G{l}") if batch else upstream(l)
        if act.df == 1:
            return back
        return cat(back, ODOT, paren(act.df, names))
    back = cat(delta(l + 1), " ", transposed(mat("W", l + 1)))
    if act.df == 1:
        return back
    return cat(grouped(back), ODOT, paren(act.df, names))


def activation_of(rule: LayerRule, arg: Math, before: Math | None = None) -> Math:
    """f(arg) for a layer's activation; softmax by name; before + f(arg) for a residual
    layer whose input is `before`."""
    if rule.activation.vector:
        out = apply(function(activations.SOFTMAX), arg)
    else:
        out = apply(fn_name(rule.activation), arg)
    if rule.residual and before is not None:
        return cat(before, " + ", out)
    return out
