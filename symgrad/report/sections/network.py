"""The sections about the whole network: the matrix form, the optimizer's update rule,
the loss, K output units, a batch of m examples and, where sigmoid or tanh is used,
saturation versus ReLU. NETWORK_SECTIONS lists them in the order of the document.
"""

from __future__ import annotations

from collections.abc import Callable

from ... import activations, layer_registry, schedules
from ... import naming as nm
from ...activations import a, y, z
from ...derive import LS, Derivation
from ...optimizers import Shown
from ...plan import Plan
from ...plan import build as build_plan
from ...sym.functions import log_softmax, softplus
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
    ARROW,
    ELEMENTWISE,
    ELL,
    LOSS,
    PREDICTION,
    act_unit,
    apply,
    delta,
    ex,
    fn_name,
    function,
    loss_formula,
    loss_phrase,
    loss_title,
    number,
    paren,
    partial,
    shown,
    summed,
    target,
    unit,
)
from ..plan_view import PlanView
from .base import Context, units_word

# ------------------------------------------------------------------ matrix form


def _matrix_section(ctx: Context) -> Section:
    d = ctx.d
    n = d.depth
    fwd, back, grads = [], [], []
    notes: dict[str, None] = {}  # what the gradients' sentence adds, once each
    rows = {r.index: layer_registry.of(r).matrix_form(ctx, r) for r in d.layers}
    for l in range(1, n + 1):  # noqa: E741
        fwd += rows[l].forward
        grads += rows[l].grads
        if rows[l].grads_note:
            notes[rows[l].grads_note] = None
    for l in range(n, 0, -1):  # noqa: E741 - the backward pass, from the output down
        back += rows[l].backward
    mixed: list[Inline] = []
    if layer_registry.any_but_plain_dense(d.layers):
        mixed = [
            "; ",
            cat(M("g^{[l]}", "gˡ"), " = ", partial(ELL, M("a^{[l]}", "aˡ"))),
            " is the gradient that reaches layer ",
            M("l"),
            "'s output",
        ]
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
                *mixed,
                "):",
            ),
            D(*back),
            P(
                "Each weight gradient is an outer product of the layer's input and its "
                "delta; each bias gradient is the delta"
                + "".join(f"; {note}" for note in notes)
                + ":"
            ),
            D(*grads),
        ),
    )


def keep_mask(l: int) -> Math:  # noqa: E741
    """Dropout's mask of layer l for one example, k^{[l]}."""
    return Math(nm.tex("k", l), f"k{l}")


# ------------------------------------------------------------------ update rule


def _update_section(ctx: Context) -> Section:
    """The optimizer's update, printed from the plan's Update: its schedule's learning
    rate and its clipping factor, the rule as a textbook writes it (its registry
    entry's `textbook` lines), then the statements the generated step computes."""
    plan = ctx.plan if ctx.plan is not None else build_plan(ctx.d)
    up = plan.update
    names = {s: M(*n) for s, n in up.names.items()}
    p, g = names[up.param], names[up.grad]
    gains = any(q.name == nm.gamma(q.layer) for q in plan.trainable)
    shifts = any(q.name == nm.beta(q.layer) for q in plan.trainable)
    extra: list[Inline] = []
    if gains:
        extra = [", and each norm's gain ", M(r"\gamma^{[l]}", "γˡ")]
        if shifts:
            extra += [" and shift ", M(r"\beta^{[l]}", "βˡ")]
    blocks: list[Block] = [
        P(
            "Training moves every parameter ",
            p,
            " (each ",
            M(r"W^{[l]}", "Wˡ"),
            " and ",
            M(r"b^{[l]}", "bˡ"),
            *extra,
            ") against its gradient ",
            cat(g, " = ", partial(LOSS, p)),
            ", the gradient of the batch loss ",
            LOSS,
            " (see the section Many examples).",
        )
    ]
    if up.clip_shown:
        blocks += [
            P(
                "First the gradients are clipped together, as "
                "torch.nn.utils.clip_grad_norm_ does, ",
                names[up.clip_shown[0].target],
                " the factor from ",
                M(r"\lVert g \rVert", "‖g‖"),
                ", the 2-norm of all of them as one vector (without the l2 term, which "
                "PyTorch's weight_decay adds inside the optimizer, after clipping):",
            ),
            D(*(_shown_eq(a, names, p) for a in up.clip_shown)),
        ]
    if up.schedule_shown is not None:
        entry = schedules.SCHEDULES[up.schedule_name]
        warm = any(sym.name == "lr_warmup" and v for sym, v in up.numbers)
        blocks += [
            P(
                "The learning rate of step ",
                names[up.step],
                " follows the ",
                entry.title,
                " schedule",
                " after a linear warmup" if warm else "",
                f" (PyTorch's {entry.torch}"
                + (" after a LinearLR, in a SequentialLR" if warm else "")
                + ", stepped after every optimizer step):",
            ),
            D(_shown_eq(up.schedule_shown, names, p)),
        ]
    blocks += [
        P(
            "The ",
            Name(up.name),
            " update, elementwise, as textbooks write it:",
        ),
        D(*(_shown_eq(a, names, p) for a in up.textbook)),
    ]
    values: list[Inline] = ["with "]
    for k, (symbol, value) in enumerate(up.numbers):
        if k:
            values.append(", ")
        values.append(cat(names[symbol], " = ", number(value)))
    if up.scalars or up.schedule is not None:
        values += ["; ", names[up.step], " counts the steps from 1"]
    if up.state:
        values.append("; ")
        for k, state in enumerate(up.state):
            values += [" and " if k else "", names[state.symbol]]
        values.append(
            " start at 0 for every parameter"
            if len(up.state) > 1
            else " starts at 0 for every parameter"
        )
    blocks.append(P(*values, "."))
    computed = [Eq(names[a.target], (ex(a.expr, names),)) for a in up.scalars]
    computed += [
        Eq(names.get(a.target, p), (ex(a.expr, names),), rel=ARROW) for a in up.rule
    ]
    if up.scalars:  # torch's form differs from the textbook's
        blocks += [
            P(
                "The generated code computes the same numbers in the form "
                "torch.optim computes them:"
            ),
            D(*computed),
        ]
    return Section("Update rule", tuple(blocks))


def _shown_eq(a: Shown, names: dict, p: Math) -> Eq:
    """A line as written: `target = expr` (a definition) or `target ← expr`."""
    return Eq(
        names.get(a.target, p),
        (shown(a.expr, names),),
        f"({a.note})" if a.note and a.note.isascii() else "",
        rel=M("=") if a.define else ARROW,
    )


# ------------------------------------------------------------------ the loss


def _targets_note(d: Derivation) -> str:
    """What the targets are: what the loss needs (d.targets), or what the task means."""
    if d.targets == "simplex" or d.task == "classes":
        return (
            "Targets are one-hot rows (the generated module also accepts integer class "
            "labels and turns them into one-hot rows)."
        )
    if d.targets == "unit_interval" or d.task == "binary":
        return "Targets are 0/1 labels (or probabilities in [0, 1])."
    return ""


def _loss_section(ctx: Context) -> Section:
    d = ctx.d
    n, out = d.depth, d.output
    spec_loss = d.spec.loss
    act = d.out.activation
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
    if (
        out.collapsed
        and act.name in ("sigmoid", activations.SOFTMAX)
        and not act.custom
    ):
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
    k = d.out.units
    act = d.out.activation
    K = cat(M("K"), f" = {k}")
    yk_hat = act_unit(n, "k", n)
    if act.vector:  # a softmax: the coupling holds whatever the task says
        returns = {
            "classes": (cat(M(r"\arg\max_{k} ", "argmaxₖ "), yk_hat), "."),
            "binary": (
                "1 where ",
                yk_hat,
                " is at least 0.5 (the spec's task: binary).",
            ),
            "values": (PREDICTION, " itself (the spec's task: values)."),
        }[d.task]
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
            *returns,
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
            " " + units_word(k) + ". Each ",
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


def batch_equations(d: Derivation, plan: Plan | None = None) -> list[Eq]:
    """The batch backward pass in the order the generated code computes it: the Plan's
    statements (the plan of d is built when not given)."""
    return PlanView(plan if plan is not None else build_plan(d)).backward_eqs()


def _batch_forward(ctx: Context, view: PlanView) -> list[Eq]:
    """The forward pass for a batch, each layer as its kind writes it (a dense layer's
    product and activation as the matrix form does; a norm's and dropout's the Plan's
    training statements)."""
    fwd = []
    for rule in ctx.d.layers:
        fwd += layer_registry.of(rule).batch_forward(ctx, view, rule)
    return fwd


def _batch_section(ctx: Context) -> Section:
    d = ctx.d
    l2 = d.spec.l2
    lam = M(*nm.L2_COEFFICIENT)
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
    view = ctx.view if ctx.view is not None else PlanView(build_plan(d))
    v2 = layer_registry.any_but_plain_dense(d.layers)
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
        P(
            "The forward pass, one matrix product per "
            + ("dense layer (in training)" if v2 else "layer")
            + ":"
        ),
        D(*_batch_forward(ctx, view)),
        P(
            "Because ",
            LOSS,
            " is a mean, each example's delta carries a factor ",
            M("1/m"),
            ": ",
            cat(delta_l, " = ", partial(LOSS, z_l)),
            " has one row per example. The sums over the examples, ",
            M(r"\sum_{n}", "Σₙ"),
            ", become matrix products (the code multiplies by a row of ones, ",
            M(*nm.ONES_ROW),
            ")",
            (", and the l2 term adds " if l2 else ""),
            *((cat(lam, " ", M(r"W^{[l]}", "Wˡ")),) if l2 else ()),
            ". In the order the generated code computes them (the Plan's statements, "
            "which the generated module prints; ",
            ELEMENTWISE,
            " multiplies elementwise):",
        ),
        D(*view.backward_eqs()),
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
            *(
                (
                    " ",
                    M(r"G^{[l]}", "Gˡ"),
                    ", the gradient that reaches layer ",
                    M("l"),
                    "'s output, is ",
                    Code(nm.value("back", "{l}")),
                    "; a norm's values are named as in its section.",
                )
                if v2
                else ()
            ),
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
    out_act = d.out.activation
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


# the sections after the layers', each builder(context) -> Section or None
NETWORK_SECTIONS: tuple[Callable[[Context], Section | None], ...] = (
    _matrix_section,
    _update_section,
    _loss_section,
    _classes_section,
    _batch_section,
    _saturation_section,
)
