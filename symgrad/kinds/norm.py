"""The normalization layer kind: layernorm, rmsnorm, batchnorm and every norm registered
in symgrad/norms.py (definitions only), and custom norms from a spec's
expression (`type: norm`).

One entry holds the whole kind: the spec keys and checks of each norm (its parameters
eps, momentum and a custom norm's own), its derivation (reductions.norm_rule: the
backward rule SymPy derives through the norm's reductions), its plan op (the rule's
statements placed on the norm's axis: rows for a norm over features, columns for
batchnorm; running statistics for inference), and its report sections
(report/sections/norm.py) and matrix-form rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import sympy as sp
from sympy.core.symbol import Str

from .. import layer_registry, norms
from .. import naming as nm
from ..derive import NormLayerRule
from ..errors import DerivationError, ExpressionError, SpecError, echo, number
from ..layer_registry import LayerAt, LayerKind, MatrixRows
from ..norm_rules import (
    BETA,
    DBETA,
    DGAMMA,
    DX,
    GAMMA,
    XHAT,
    G,
    H,
    N,
    Statement,
    norm_rule,
)
from ..norm_rules import text as rule_text
from ..plan import (
    BATCH,
    Back,
    Builder,
    Condition,
    Param,
    Renew,
    arr,
    live,
    section,
)
from ..report import tex as tex_mod
from ..report.document import Eq, M, Math
from ..report.notation import ELL, apply, partial, upstream, vec
from ..report.plan_view import BATCH_TEX, layer_tex, rule_symbols, symbol_tex
from ..report.printing import math
from ..report.sections import norm as report
from ..spec import NormSpec
from ..sym.arrays import (
    CHANNEL_AXES,
    IMAGE_AXES,
    ColSum,
    Expanded,
    PerChannelSum,
    on_axis,
)
from ..sym.parse import NORM_X
from ..sym.text import text

CUSTOM = "norm"  # the type of a norm written in the spec

# a norm's values that are row vectors (one example's)
ROW_VALUES = frozenset({NORM_X, XHAT, G, H, GAMMA, BETA})


class Norm(LayerKind):
    """Every registered norm by its name, and `type: norm` with an expression."""

    name = "norm"
    keys = ("name", "expr", "affine", "eps", "momentum")

    # ---- spec

    def types(self) -> tuple[str, ...]:
        return (*norms.NORMS, CUSTOM)

    def validate(self, check, item, at: LayerAt) -> NormSpec | None:
        kind = item.value["type"].value
        if kind != "norm":
            definition = norms.NORMS[kind]
            values = {**definition.params, **definition.stat_params}
            check.keys(item, ("type", *values), ())
        else:
            check.keys(item, tuple(item.value), ("name", "expr"))
            values = {}
        ok = True
        for key, pnode in item.value.items():
            if key in ("type", "name", "expr", "affine") and kind == "norm":
                continue
            if key == "type" or (kind != "norm" and key not in values):
                continue
            ploc = item.key_locs.get(key, pnode.loc)
            if kind == "norm" and (not key.isidentifier() or key.startswith("_")):
                check.err(
                    ploc, f"parameter name {key!r} is not usable", "pick another name"
                )
                ok = False
                continue
            value = check.parameter(pnode)
            if value is None:
                ok = False
            elif key == "momentum" and not 0 <= value <= 1:
                check.err(
                    pnode.loc, f"momentum must be in [0, 1], found {number(value)}"
                )
                ok = False
            elif key == "eps" and not value > 0:
                check.err(pnode.loc, f"eps must be positive, found {number(value)}")
                ok = False
            else:
                values[key] = value
        if kind != "norm":
            return (
                NormSpec(kind, tuple(values.items()), None, True, item.loc)
                if ok
                else None
            )
        return _custom(check, item, values) if ok else None

    def parameters(self, layer: NormSpec, width: int) -> int:
        # a gain and a shift; batchnorm's two running statistics
        return 4 * layer_registry.flat(width)

    # ---- derive

    def derive(self, layer: NormSpec, index: int, fan_in: int) -> NormLayerRule:
        if isinstance(
            fan_in, tuple
        ):  # over each example's image, as LayerNorm([C, H, W])
            rule = _derived(index, layer_registry.flat(fan_in), layer)
            return dataclasses.replace(rule, image=fan_in)
        return _derived(index, fan_in, layer)

    # ---- plan

    def op(self, rule: NormLayerRule, d) -> NormOp:
        return NormOp(rule)

    # ---- report

    def sections(self, ctx, l: int) -> tuple:  # noqa: E741
        return report.norm_sections(ctx, l)

    def matrix_form(self, ctx, rule: NormLayerRule) -> MatrixRows:
        l, n = rule.index, ctx.d.depth  # noqa: E741
        rows = MatrixRows(
            grads_note="a norm's gain and shift gradients are those of one example, "
            "summed over the batch"
        )
        a_in, a_out = vec("a", l - 1, n), vec("a", l, n)
        over = "(over the batch)" if rule.rule.group == norms.BATCH else ""
        rows.forward.append(Eq(a_out, (apply(_function(rule), a_in),), over))
        tex, txt = _row_names(rule)
        for st in rule.rule.backward:
            if st.role in ("gain", "shift"):  # Σ over the batch of one example's
                param = GAMMA if st.role == "gain" else BETA
                rows.grads.append(
                    Eq(
                        partial(ELL, M(tex[param], txt[param])),
                        (math(st.expr.args[0], tex, txt, ROW_VALUES),),
                    )
                )
        if l == 1:
            return rows
        over = "(means over the batch)" if rule.rule.group == norms.BATCH else ""
        for st in rule.rule.backward:
            if st.role == "upstream":
                rows.backward.append(
                    Eq(
                        M(tex[st.target], txt[st.target]),
                        (math(st.expr, tex, txt, ROW_VALUES),),
                    )
                )
            elif st.role == "input":
                rows.backward.append(
                    Eq(upstream(l - 1), (math(st.expr, tex, txt, ROW_VALUES),), over)
                )
        return rows

    def names(self, rule: NormLayerRule, plan) -> dict:
        """The rule's values as the report writes them: x̂^{[2]}, σ^{[2]}, and the
        running statistics μ^{[2]}_run."""
        l, r = rule.index, rule.rule  # noqa: E741
        tex = {}
        for s in rule_symbols(r):
            base = BATCH_TEX.get(s, symbol_tex(s))
            tex[arr(nm.norm_value(s.name, l))] = layer_tex(base, l)
        for upd in r.running:
            code = nm.running(upd.buffer.name.removeprefix("running_"), l)
            base = layer_tex(symbol_tex(upd.statistic), l)
            tex[arr(code)] = rf"{base}_{{\mathrm{{run}}}}"
        return tex


def _custom(check, item, values: dict[str, float]) -> NormSpec | None:
    v = item.value
    if "name" not in v or "expr" not in v:
        return None
    name, source = v["name"].value, v["expr"].value
    if not isinstance(name, str) or not name.isidentifier():
        check.err(v["name"].loc, f"custom norm name {echo(name)} is not an identifier")
        return None
    if name in norms.NORMS:
        check.err(
            v["name"].loc,
            f"{name!r} is a built-in norm; a custom expression needs its own name",
            f"e.g. my_{name}",
        )
        return None
    affine = check.flag(v["affine"]) if "affine" in v else True
    if not isinstance(source, str):
        check.err(v["expr"].loc, f"expr must be text, found {check.kind(source)}")
        return None
    try:
        norms.custom(name, source, values, affine=bool(affine))
    except ExpressionError as exc:
        check.err(v["expr"].loc, f"expression rejected: {exc}")
        return None
    if affine is None or not check.all_used(item, source, values):
        return None
    return NormSpec(name, tuple(values.items()), source, affine, item.loc)


def _row_names(layer: NormLayerRule) -> tuple[dict, dict]:
    """A norm rule's symbols as one example's row vectors of layer l: x̂^{[2]}, σ^{[2]},
    g^{[2]} (LaTeX) and x̂2, σ2, g2 (text)."""
    l, r = layer.index, layer.rule  # noqa: E741
    tex: dict = {}
    txt: dict = {}
    for sym in [*rule_symbols(r), G, GAMMA, BETA]:
        tex[sym] = layer_tex(symbol_tex(sym), l)
        txt[sym] = f"{rule_text(sym)}{l}"
    return tex, txt


def _function(layer: NormLayerRule) -> Math:
    """A norm as a function in formulas: its name upright."""
    name = layer.definition.name
    return Math(rf"\operatorname{{{tex_mod.identifier(name)}}}", name)


def _derived(index: int, units: int, layer: NormSpec) -> NormLayerRule:
    """A norm's definition (registered or from the spec's expression) and its rule."""
    values = dict(layer.params)
    if layer.custom:
        definition = norms.custom(
            layer.name, layer.expr or "", values, affine=layer.affine
        )
    else:
        definition = norms.NORMS[layer.name]
    try:
        known = {**definition.params, **definition.stat_params}  # eps, momentum
        rule = norm_rule(definition, {k: v for k, v in values.items() if k in known})
    except (RecursionError, MemoryError):
        raise SpecError(
            [
                layer.loc.problem(
                    f"norm {layer.name!r} is too large to derive (SymPy ran out of room)",
                    "write a smaller expression",
                )
            ]
        ) from None
    except DerivationError as exc:
        raise SpecError([layer.loc.problem(f"norm {layer.name!r}: {exc}")]) from None
    return NormLayerRule(index, units, definition, rule, tuple(values.items()))


# ---------------------------------------------------------------- the plan op


@dataclass
class NormOp:
    """A normalization layer: the statements of its derived rule (reductions.norm_rule)
    placed on its axis (rows: a norm over features; columns: batchnorm), with the
    reductions inside an expression lifted into statements of their own."""

    rule: NormLayerRule
    names: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    sub: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    shown: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    @property
    def l(self) -> int:  # noqa: E743
        return self.rule.index

    @property
    def section(self) -> str:
        return section(self.rule)

    @property
    def batch(self) -> bool:
        return self.rule.definition.group == "batch"

    @property
    def axis(self) -> int | tuple[int, ...]:
        """Where the group's reductions go: a row (1), the batch (0), an example's
        image (IMAGE_AXES), a channel over the batch of images (CHANNEL_AXES, as
        BatchNorm2d)."""
        if self.rule.image:
            return CHANNEL_AXES if self.batch else IMAGE_AXES
        return 0 if self.batch else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """The gain's and shift's shape (and the running statistics'): a feature's,
        the image's (C, H, W) over an example, a channel's (C,) over the batch."""
        if self.rule.image:
            return self.rule.image[:1] if self.batch else self.rule.image
        return (self.rule.units,)

    @property
    def _unbiased(self) -> str:
        """The running variance's factor, as its equation says it."""
        if self.rule.image:
            return "·N/(N − 1), N = m·H·W"
        return "·m/(m − 1)"

    def _spread(self, e: sp.Expr) -> sp.Expr:
        """A per-channel array (C,) as (1, C, 1, 1), against the images (the shape of the
        batch's statistics, so that both branches give a value one shape); else itself.
        """
        if self.rule.image and self.batch:
            return Expanded(e, Str("[None, :, None, None]"))
        return e

    def _value(self, s: sp.Symbol) -> str:
        return nm.norm_value(s.name, self.l)

    def forward(self, bd: Builder, x: sp.Symbol) -> sp.Symbol:
        l, r = self.l, self.rule.rule  # noqa: E741
        n = self.rule.units
        sub: dict[sp.Symbol, sp.Expr] = {NORM_X: x}
        self.shown = {NORM_X: x}  # as sub, with the parameters (ε) left as names
        sub.update({sym: value for sym, value in r.params})
        if self.rule.image and self.batch:  # a channel's values: m·H·W of them
            sub[N] = BATCH * self.rule.image[1] * self.rule.image[2]
        else:
            sub[N] = BATCH if self.axis == 0 else sp.Integer(n)
        if r.gain:
            gamma = bd.param(Param(nm.gamma(l), self.shape, ("ones",), l))
            sub[GAMMA] = self._spread(gamma)
        if r.shift:
            beta = bd.param(Param(nm.beta(l), self.shape, ("zeros",), l))
            sub[BETA] = self._spread(beta)
        buffers = {}
        for upd in r.running:
            buf = upd.buffer.name.removeprefix("running_")
            buffers[upd.buffer] = bd.param(
                Param(nm.running(buf, l), self.shape, (upd.init,), l, trainable=False)
            )
            sub[upd.buffer] = self._spread(buffers[upd.buffer])
        self.shown.update({k: v for k, v in sub.items() if k not in dict(r.params)})
        if r.inference:  # training: the batch's statistics; inference: the running ones
            with bd.block(
                "forward",
                Condition.TRAINING,
                note="the batch's statistics",
                otherwise_note="the running statistics",
            ) as blk:
                for st in r.forward:
                    self._statement(bd, st, sub, "forward")
                with blk.otherwise():
                    for st in r.inference:
                        self._statement(bd, st, sub, "forward")
        else:
            for st in r.forward:
                self._statement(bd, st, sub, "forward")
        if r.running:
            with bd.block("forward", Condition.RUNNING):
                for upd in r.running:
                    buf = buffers[upd.buffer]
                    expr = upd.update.xreplace({**sub, upd.buffer: buf})
                    stat = self.names[upd.statistic]
                    if self.rule.image:  # the batch's (1, C, 1, 1) statistic as (C,)
                        stat = Expanded(stat, Str("[0, :, 0, 0]"))
                    expr = expr.xreplace({**self.names, upd.statistic: stat})
                    bd.add(
                        "forward",
                        Renew(
                            buf,
                            on_axis(expr, self.axis),
                            "forward",
                            self.section,
                            f"{buf.name} ← (1 − momentum)·{buf.name} + momentum·"
                            f"{self._value(upd.statistic)}"
                            + (self._unbiased if "var" in buf.name else ""),
                            "running statistics for inference, as PyTorch keeps them",
                        ),
                    )
        self.sub = sub
        return self.names[r.output]

    def _statement(
        self,
        bd: Builder,
        st: Statement,
        sub: dict[sp.Symbol, sp.Expr],
        phase: str,
    ) -> sp.Symbol:
        l = self.l  # noqa: E741
        shown = on_axis(st.expr.xreplace(self.shown).xreplace(self.names), self.axis)
        expr = on_axis(st.expr.xreplace(sub).xreplace(self.names), self.axis)
        expr = bd.lift(expr, l, phase, self.section)
        if st.target == self.rule.rule.output:
            name, role = nm.A(l), "a"
        else:
            name, role = self._value(st.target), "norm"
        target = bd.emit(
            phase,
            role,
            l,
            expr,
            None,
            self.section,
            f"{name} = {text(shown)}",
            name=name,
        )
        self.names[st.target] = target
        return target

    def backward(
        self, bd: Builder, g: sp.Symbol | None, need_input: bool
    ) -> Back | None:
        l, r = self.l, self.rule.rule  # noqa: E741
        assert g is not None
        self.names[G] = g
        back = None
        # the statements the kept results read: without the input gradient (a norm on
        # the input X), the values only dx reads (h = γ ⊙ g, its means) are dead code
        wanted = {DGAMMA, DBETA} | ({DX} if need_input else set())
        for st in live(r.backward, wanted):
            if st.target == DX:
                if need_input:
                    expr = on_axis(
                        st.expr.xreplace(self.sub).xreplace(self.names), self.axis
                    )
                    rule = f"{self.rule.title}: ∂L/∂x = {rule_text(st.expr)}"
                    back = Back(
                        bd.lift(expr, l, "backward", self.section), text(expr), rule
                    )
                continue
            if st.target in (DGAMMA, DBETA):
                param = nm.gamma(l) if st.target == DGAMMA else nm.beta(l)
                expr = st.expr.xreplace(self.sub).xreplace(self.names)
                if self.rule.image and self.batch:  # Σ over n, h, w: shape (C,)
                    expr = expr.replace(
                        lambda e: isinstance(e, ColSum),
                        lambda e: PerChannelSum(e.args[0]),
                    )
                bd.gradient(param, expr, self.section, f"∂L/∂{param} = {text(expr)}")
                continue
            self._statement(bd, st, self.sub, "backward")
        return back


layer_registry.register(Norm())
