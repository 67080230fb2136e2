"""The dense layer kind: z = a W + b, a = f(z), optionally residual (a = x + f(z)); the
only kind that may end the network, where its op also computes the loss and the derived
output delta.

One entry holds the whole kind: its spec keys and checks, its derivation (the
activation's rule, derived in derive.py), its plan op (the statements of the forward and
backward pass, with the fusions decided once: ReLU's mask, softplus shared by a sigmoid
and its loss, softmax's row reductions shared by its log-softmax), and its report
sections (report/sections/dense.py) and matrix-form rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp

from .. import activations, layer_registry
from .. import naming as nm
from ..activations import a, y, z
from ..derive import (
    L1M,
    LS,
    ActivationRule,
    LayerRule,
    activation_rule,
    factored,
    guarded,
    mask_factor,
)
from ..layer_registry import LayerAt, LayerKind, MatrixRows
from ..plan import (
    BATCH,
    L2,
    LOSS,
    SCALE,
    YHAT,
    Accumulate,
    Assign,
    Back,
    Builder,
    Masked,
    Param,
    X,
    Y,
    arr,
    section,
)
from ..report.document import Eq, M, cat
from ..report.notation import (
    ELL,
    apply,
    delta,
    fn_name,
    mat,
    partial,
    transposed,
    upstream,
    vec,
)
from ..report.sections import dense as report
from ..report.sections.base import passes_down
from ..spec import LayerSpec
from ..sym.arrays import ColSum, MatProduct, RowMax, RowSum, Total, Transposed
from ..sym.functions import sigmoid, softplus
from ..sym.text import text

REQUIRED_KEYS = ("units", "activation")
KEYS = ("units", "activation", "residual")


class Dense(LayerKind):
    """The dense layer (a layer item without `type`, or `type: dense`)."""

    name = layer_registry.DENSE
    keys = KEYS
    output = True
    gives_image = False

    # ---- spec

    def validate(self, check, item, at: LayerAt) -> LayerSpec | None:
        check.keys(item, ("type", *KEYS), REQUIRED_KEYS)
        v = item.value
        units = check.integer(v["units"], 1, check.max_units) if "units" in v else None
        act = (
            check.op(v["activation"], activations.ACTIVATIONS, "activation")
            if "activation" in v
            else None
        )
        if act and act.name == activations.SOFTMAX and not at.last:
            check.err(
                act.loc,
                "softmax is only supported on the output (last) layer",
                "use relu or tanh in hidden layers",
            )
        residual = check.flag(v["residual"]) if "residual" in v else False
        width = at.width
        if width is None and at.image:
            check.err(
                item.loc,
                f"a dense layer needs a vector, but its input is an image ({at.unknown()})",
                "put {type: flatten} before it",
            )
            return None
        if isinstance(width, tuple):
            flat = layer_registry.flat(width)
            check.err(
                item.loc,
                "a dense layer needs a vector, but its input is an image of shape"
                f" {'×'.join(map(str, width))}",
                f"put {{type: flatten}} before it (giving {flat} features)",
            )
            return None
        if residual and at.last:
            check.err(
                v["residual"].loc,
                "the output layer cannot be residual: its output is the prediction",
                "put the residual connection on a hidden layer",
            )
            residual = None
        elif residual and units is not None and width is not None and units != width:
            check.err(
                v["residual"].loc,
                f"a residual layer adds its input to its output: its units ({units})"
                f" must equal its input width ({width})",
                f"set units: {width}, or drop residual",
            )
            residual = None
        if units is None or act is None or residual is None:
            return None
        return LayerSpec(units, act, item.loc, residual)

    def width(self, layer: LayerSpec, width: int) -> int:
        return layer.units

    def parameters(self, layer: LayerSpec, width: int) -> int:
        return (width + 1) * layer.units

    def item_width(self, item, width: int | None) -> int | None:
        units = item.value.get("units")
        value = None if units is None else units.value
        whole = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return value if whole else None  # a vector (gives_image) of unknown width

    # ---- derive

    def derive(self, layer: LayerSpec, index: int, fan_in: int) -> LayerRule:
        act = guarded(activation_rule, layer.activation)
        return LayerRule(index, fan_in, layer.units, act, layer.residual)

    # ---- plan

    def op(self, rule: LayerRule, d) -> DenseOp:
        return DenseOp(rule, _init(d.spec.init, rule.activation), rule.index == d.depth)

    # ---- report

    def sections(self, ctx, l: int) -> tuple:  # noqa: E741
        return report.dense_sections(ctx, l)

    def matrix_form(self, ctx, rule: LayerRule) -> MatrixRows:
        d, l = ctx.d, rule.index  # noqa: E741
        n = d.depth
        a_in, a_out = vec("a", l - 1, n), vec("a", l, n)
        rows = MatrixRows()
        rows.forward.append(
            Eq(vec("z", l, n), (cat(a_in, " ", mat("W", l), " + ", mat("b", l)),))
        )
        rows.forward.append(
            Eq(a_out, (report.activation_of(rule, vec("z", l, n), a_in),))
        )
        rows.grads.append(
            Eq(
                partial(ELL, mat("W", l)),
                (cat(transposed(a_in), " ", delta(l)),),
                note=M(
                    rf"({rule.fan_in} \times 1)(1 \times {rule.units})",
                    f"({rule.fan_in} × 1)(1 × {rule.units})",
                ),
            )
        )
        rows.grads.append(Eq(partial(ELL, mat("b", l)), (delta(l),)))
        if l == n:
            rows.backward.append(
                Eq(delta(n), (report.output_delta_vector(d, batch=False),))
            )
        else:
            rows.backward.append(
                Eq(delta(l), (report.hidden_delta(d, l, batch=False),))
            )
        if passes_down(d, l):
            row = cat(delta(l), " ", transposed(mat("W", l)))
            if rule.residual:
                row = cat(row, " + ", upstream(l))
            rows.backward.append(Eq(upstream(l - 1), (row,)))
        return rows

    def batch_forward(self, ctx, view, rule: LayerRule) -> list:
        """The product and activation as the matrix form writes them, with the mask a
        ReLU-like activation keeps for the backward pass, as the code computes it."""
        l, n = rule.index, ctx.d.depth  # noqa: E741
        a_in = mat("A", l - 1, n)
        fwd = [Eq(mat("Z", l), (cat(a_in, " ", mat("W", l), " + ", mat("b", l)),))]
        for s in view.forward(l):
            if view.plan.roles.get(s.target, ("", 0))[0] == "mask":
                fwd.append(
                    Eq(
                        view.lhs(s),
                        (view.ex(s.expr),),
                        note=cat(
                            "(",
                            apply(fn_name(rule.activation), mat("Z", l), prime=True),
                            ", kept for the backward pass)",
                        ),
                    )
                )
        fwd.append(Eq(mat("A", l, n), (report.activation_of(rule, mat("Z", l), a_in),)))
        return fwd


def _init(init: str, act: ActivationRule) -> str:
    """The spec's init; for `auto`, He normal for the ReLU family, else Glorot."""
    if init != "auto":
        return init
    relu = act.name in activations.RELU_FAMILY and not act.custom
    return "he_normal" if relu else "glorot_uniform"


# ---------------------------------------------------------------- the plan op


def _act_forward(
    bd: Builder,
    act: ActivationRule,
    zs: sp.Symbol,
    l: int,
    section: str,
    role: str,  # noqa: E741
) -> tuple[sp.Symbol, sp.Symbol | None]:
    """f(Z) of a hidden layer, as the value `role` (a, or f under a residual sum);
    with a mask M = f'(Z) when f(z) = z·f'(z) piecewise (ReLU), the value then Z ⊙ M,
    which also carries its direct form max(Z, 0) where the mask is 0/1 and f a max
    (plan.Masked). Returns (value, mask)."""
    shape = bd.shapes[zs]
    f = factored(act.forward).xreplace({z: zs})
    if f == zs:  # identity
        return zs, None
    g = mask_factor(act)
    name = nm.value(role, l)
    if g is not None:
        mask = bd.emit(
            "forward",
            "mask",
            l,
            g.xreplace({z: zs}),
            shape,
            section,
            f"M{l} = {act.name}'(Z{l})",
        )
        direct = None
        if _is_step(g) and not f.has(sp.Piecewise):
            # a 0/1 mask and f written with max (ReLU): max(Z, 0) reads no mask
            target = arr(nm.value(role, l))
            direct = Assign(
                target,
                f,
                "forward",
                section,
                f"{name} = {act.name}(Z{l})",
                f"from Z{l} alone: NaN stays NaN, no mask read",
            )
        out = bd.emit(
            "forward",
            role,
            l,
            zs * mask,
            shape,
            section,
            f"{name} = {act.name}(Z{l}) = Z{l} ⊙ M{l}",
            kind=functools.partial(Masked, direct=direct),
        )
        return out, mask
    out = bd.emit("forward", role, l, f, shape, section, f"{name} = {act.name}(Z{l})")
    return out, None


def _is_step(g: sp.Expr) -> bool:
    """g is a 0/1 rule of z: {0 if ...; else 1} or {1 if ...; else 0}."""
    if not isinstance(g, sp.Piecewise) or len(g.args) != 2:
        return False
    return {g.args[0][0], g.args[1][0]} == {sp.S.Zero, sp.S.One}


@dataclass
class DenseOp:
    """A dense layer: Z = X W + b, then its activation (the output layer: the output
    activation and the loss, whose derived delta starts the backward pass); residual:
    A = X + f(Z)."""

    rule: LayerRule
    init: str
    last: bool
    x: sp.Symbol = X
    W: sp.Symbol = X  # noqa: N815 - set by forward
    b: sp.Symbol = X
    z: sp.Symbol = X
    out: sp.Symbol = X  # f(Z) (F{l} under a residual sum)
    mask: sp.Symbol | None = None
    names: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    loss_expr: sp.Expr = sp.S.Zero

    @property
    def l(self) -> int:  # noqa: E743
        return self.rule.index

    @property
    def section(self) -> str:
        return "output" if self.last else section(self.rule)

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        l, r = self.l, self.rule  # noqa: E741
        self.x = x
        self.W = bd.param(
            Param(
                nm.W(l),
                (r.fan_in, r.units),
                (self.init, r.fan_in, r.units),
                l,
                weight=True,
            )
        )
        self.b = bd.param(Param(nm.b(l), (r.units,), ("zeros",), l))
        self.z = bd.emit(
            "forward",
            "z",
            l,
            MatProduct(x, self.W) + self.b,
            (nm.BATCH, r.units),
            section(r),
            f"Z{l} = {x.name} W{l} + b{l}",
        )
        if self.last:
            return self._output(bd)
        role = "f" if r.residual else "a"
        self.out, self.mask = _act_forward(
            bd, r.activation, self.z, l, self.section, role
        )
        if not r.residual:
            return self.out
        return bd.emit(
            "forward",
            "a",
            l,
            x + self.out,
            None,
            self.section,
            f"A{l} = {x.name} + F{l}",
            "a residual connection: the input goes around",
        )

    def _output(self, bd: Builder) -> sp.Symbol:
        d, l, zs = bd.d, self.l, self.z  # noqa: E741
        act = self.rule.activation
        shape = bd.shapes[zs]
        loss = d.output.forward
        names: dict[sp.Symbol, sp.Expr] = {z: zs, y: Y}
        sec = self.section
        if act.vector:
            # softmax, with its row max and row sums shared by the log-softmax
            zmax = bd.emit("forward", "rowmax", l, RowMax(zs), (nm.BATCH, 1), sec)
            s = bd.emit(
                "forward",
                "shifted",
                l,
                zs - zmax,
                shape,
                sec,
                note="subtracting the row max keeps exp() from overflowing",
            )
            e = bd.emit("forward", "exp", l, sp.exp(s), shape, sec)
            esum = bd.emit("forward", "expsum", l, RowSum(e), (nm.BATCH, 1), sec)
            self.out = bd.emit(
                "forward", "a", l, e / esum, shape, sec, f"Ŷ = A{l} = softmax(Z{l})"
            )
            if loss.has(LS):
                log_sum = bd.emit(
                    "forward", "logsum", l, sp.log(esum), (nm.BATCH, 1), sec
                )
                names[LS] = bd.emit(
                    "forward",
                    "logsoftmax",
                    l,
                    s - log_sum,
                    shape,
                    sec,
                    f"LS{l} = log softmax(Z{l}) = S{l} − log Σⱼ E{l}",
                )
            if loss.has(L1M):
                names[L1M] = _log1m_softmax(bd, l, s, log_sum, self.out, shape, sec)
        elif act.forward == sigmoid(z) and loss.has(softplus(-z)):
            sp_ = bd.emit(
                "forward",
                "softplus",
                l,
                softplus(-zs),
                shape,
                sec,
                note="softplus(−Z) serves the loss and σ(Z) = e^{−softplus(−Z)}",
            )
            self.out = bd.emit(
                "forward",
                "a",
                l,
                sp.exp(-sp_),
                shape,
                sec,
                f"Ŷ = A{l} = σ(Z{l}) = exp(−SP{l})",
            )
            loss = loss.xreplace({softplus(-z): sp_})
        else:
            f = factored(act.forward).xreplace({z: zs})
            if f == zs:
                self.out = zs
            else:
                self.out = bd.emit(
                    "forward", "a", l, f, shape, sec, f"Ŷ = A{l} = {act.name}(Z{l})"
                )
        names[a] = self.out
        self.names = names
        self.loss_expr = loss.xreplace(names)
        return self.out

    def loss(self, bd: Builder, weights: list[sp.Symbol]) -> None:
        d = bd.d
        term = Total(self.loss_expr) / BATCH
        shown = text(d.output.loss.xreplace({a: YHAT}))
        bd.add("loss", Assign(LOSS, term, "loss", "loss", f"L = Σ ℓ / m,  ℓ = {shown}"))
        if d.spec.l2 > 0:
            squares = sp.Add(*(Total(w**2) for w in weights))
            bd.add(
                "loss",
                Accumulate(
                    LOSS, L2 / 2 * squares, "loss", "loss", "L += l2/2 · Σ ‖W‖²"
                ),
            )

    def output_delta(self, bd: Builder) -> sp.Symbol:
        d, l = bd.d, self.l  # noqa: E741
        out = d.output
        shape = bd.shapes[self.z]
        sec = self.section
        if out.log_terms is not None:
            return self._delta_through_logs(bd)
        if out.jvp:
            h = bd.emit(
                "backward",
                "h",
                l,
                factored(out.delta).xreplace(self.names),
                shape,
                sec,
                f"H{l} = Ŷ ⊙ ∂ℓ/∂Ŷ = {text(out.delta)}",
            )
            hsum = bd.emit("backward", "hsum", l, RowSum(h), (nm.BATCH, 1), sec)
            return bd.emit(
                "backward",
                "delta",
                l,
                (h - self.out * hsum) * SCALE,
                shape,
                sec,
                f"δ{l} = (H{l} − Ŷ ⊙ Σₖ H{l}ₖ) / m",
                "softmax's Jacobian: δ = h − ŷ ⊙ Σₖ hₖ",
            )
        shown = text(out.delta.xreplace({a: YHAT}))
        batch = text(out.delta, {a: "Ŷ", y: "Y", z: f"Z{l}"})
        why = f"{out.loss_title.split(' (')[0]} on {self.rule.activation.title}: "
        why += (
            f"SymPy simplified ∂ℓ/∂ŷ · ∂ŷ/∂z to {shown}"
            if out.collapsed
            else f"∂ℓ/∂ŷ · ∂ŷ/∂z = {shown}"
        )
        return bd.emit(
            "backward",
            "delta",
            l,
            factored(out.delta).xreplace(self.names) * SCALE,
            shape,
            sec,
            f"δ{l} = ({batch}) / m" + ("   (collapsed)" if out.collapsed else ""),
            why,
        )

    def _delta_through_logs(self, bd: Builder) -> sp.Symbol:
        """δ for a loss g(LS, L1M, y) on a softmax: δ_j = Σ_k c_k (δ_jk − ŷ_j) with
        c = P − Q·ŷ/(1 − ŷ), P = ∂g/∂LS, Q = ∂g/∂L1M (derived), written so that
        ŷ/(1 − ŷ) is never formed where it overflows:

            δ_j = P_j (1 − ŷ_j) − ŷ_j Σ_{k≠j} P_k − Q_j ŷ_j + ŷ_j Σ_{k≠j} Q_k ŷ_k/(1 − ŷ_k)

        with 1 − ŷ = e^{L1M}. ŷ_k/(1 − ŷ_k) ≤ 1 except at an output above 1/2 (at most
        one a row, k*); its term enters as Q_k* ŷ_k* · e^{LS_j − L1M_k*}, whose exponent
        is log(e^{z_j} / Σ_{i≠k*} e^{z_i}) ≤ 0 for j ≠ k*.
        """
        d, l = bd.d, self.l  # noqa: E741
        p, q = (
            t.xreplace(self.names) for t in d.output.log_terms  # type: ignore[union-attr]
        )
        yhat, ls, l1m = self.out, self.names[LS], self.names[L1M]
        shape, sec = bd.shapes[self.z], self.section
        row = (nm.BATCH, 1)
        big = sp.Piecewise((1, yhat > sp.S.Half), (0, True))
        small = sp.Piecewise((1, yhat <= sp.S.Half), (0, True))
        odds = sp.exp(sp.Min(ls - l1m, 0))  # ŷ/(1 − ŷ) below 1/2; 1 (unused) above
        psum = bd.emit("backward", "psum", l, RowSum(p), row, sec, f"Psum{l} = Σₖ P")
        qsum = bd.emit(
            "backward",
            "qsum",
            l,
            RowSum(small * q * odds),
            row,
            sec,
            f"Qsum{l} = Σₖ Q ŷ/(1 − ŷ) over the outputs up to 1/2",
        )
        qbig = bd.emit(
            "backward",
            "qbig",
            l,
            RowSum(big * q * yhat),
            row,
            sec,
            f"Qbig{l} = Q ŷ at the output above 1/2 (0 if none)",
        )
        lbig = bd.emit(
            "backward",
            "lbig",
            l,
            RowSum(big * l1m),
            row,
            sec,
            f"L1Mbig{l} = L1M at the output above 1/2 (0 if none)",
        )
        expr = (
            p * sp.exp(l1m)
            - yhat * (psum - p)
            - q * yhat
            + yhat * (qsum - small * q * odds)
            + small * qbig * sp.exp(sp.Min(ls - lbig, 0))
        )
        return bd.emit(
            "backward",
            "delta",
            l,
            expr * SCALE,
            shape,
            sec,
            f"δ{l} = (P(1 − Ŷ) − Ŷ Σₖ≠ⱼ P − QŶ + Ŷ Σₖ≠ⱼ QŶ/(1 − Ŷ)) / m,"
            f"  P = {text(d.output.log_terms[0])}, Q = {text(d.output.log_terms[1])}",
            "softmax's Jacobian through log ŷ and log(1 − ŷ): finite where ŷ rounds"
            " to 1",
        )

    def backward(
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        """From G = ∂L/∂A (None at the output layer: its delta) to ∂L/∂X."""
        l, act = self.l, self.rule.activation  # noqa: E741
        if g is None:
            delta = self.output_delta(bd)
        else:
            factor: sp.Expr
            if self.mask is not None:
                factor = self.mask
            else:
                factor = factored(act.df).xreplace({a: self.out, z: self.z})
            rule = f"{act.name}'(z) = {text(act.df)}"
            if factor == 1:
                delta = g  # δ = G: nothing to compute
            else:
                delta = bd.emit(
                    "backward",
                    "delta",
                    l,
                    g * factor,
                    bd.shapes[self.z],
                    self.section,
                    f"δ{l} = G{l} ⊙ {act.name}'(Z{l}),   {rule}",
                )
        x_name = self.x.name
        dW = MatProduct(Transposed(self.x), delta)  # noqa: N806
        eq = f"∂L/∂W{l} = {x_name}ᵀ δ{l}"
        bd.gradient(nm.W(l), dW, section(self.rule), eq)
        bd.gradient(nm.b(l), ColSum(delta), section(self.rule), f"∂L/∂b{l} = Σₙ δ{l}")
        if not need_input:
            return None
        back = MatProduct(delta, Transposed(self.W))
        if self.rule.residual and g is not None:
            return Back(back + g, f"δ{l} W{l}ᵀ + G{l}")
        return Back(back, f"δ{l} W{l}ᵀ")


layer_registry.register(Dense())


def _log1m_softmax(
    bd: Builder,
    l: int,  # noqa: E741
    s: sp.Symbol,
    log_sum: sp.Symbol,
    yhat: sp.Symbol,
    shape: tuple,
    sec: str,
) -> sp.Symbol:
    """log(1 − softmax(Z)), finite where softmax rounds to 1: up to 1/2, log(1 − ŷ)
    itself; above (the unique max, S = 0 there) the log-sum-exp of the other classes,
    shifted by their own max S2max, minus log Σⱼ E."""
    row = (nm.BATCH, 1)
    second = bd.emit(
        "forward",
        "second",
        l,
        RowMax(sp.Piecewise((s, s < 0), (-RowMax(-s), True))),
        row,
        sec,
        f"S2max{l} = the largest S{l} below 0 (the row min where there is none)",
    )
    others = bd.emit(
        "forward",
        "othersum",
        l,
        RowSum(sp.Piecewise((sp.exp(sp.Min(s, second) - second), s < 0), (0, True))),
        row,
        sec,
        f"Osum{l} = Σ over S{l} < 0 of e^(S{l} − S2max{l})",
    )
    return bd.emit(
        "forward",
        "log1m",
        l,
        sp.Piecewise(
            (second + sp.log(sp.Max(others, 1)) - log_sum, yhat > sp.S.Half),
            (sp.log(1 - sp.Min(yhat, sp.S.Half)), True),
        ),
        shape,
        sec,
        f"L1M{l} = log(1 − Ŷ): above 1/2, S2max{l} + log Osum{l} − log Σⱼ E{l}",
        "log(1 − ŷ) as a log-sum-exp over the other classes: finite where ŷ rounds"
        " to 1",
    )
