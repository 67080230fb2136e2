"""The registry of norms: each a definition, never a derivative (the norm layer kind,
kinds/norm.py, derives and lays out every norm registered here).

A norm is a SymPy expression in one value `x` of the group it acts on, with the group
reductions GroupMean / GroupSum / GroupMax (sym/arrays.py) and named parameters (eps), each a
symbol (sym/parse.parameter) whose value the rule carries. The group is one example's features
("features": layernorm, rmsnorm, custom norms) or one feature's batch ("batch":
batchnorm). An affine gain γ (ones) and shift β (zeros) per feature follow the
normalization when the norm has them: y = γ ⊙ x̂ + β.

Backward rules are derived from these definitions in norm_rules.py; nothing here knows
one. Running statistics (batchnorm) are definitions too: which reduction each buffer
tracks, with PyTorch's momentum update and unbiased variance.

    from symgrad import norms
    norm = layers.NORMS["layernorm"]          # built-in
    mine = layers.custom("mynorm", "x / (mean(abs(x)) + eps)", {"eps": 1e-5})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy as sp

from .sym.arrays import GroupMean
from .sym.parse import NORM_VARIABLE, NORM_X, parameter, parse, parse_norm

x = NORM_X  # one value of the group

FEATURES = "features"  # one example's features (a row of the batch)
BATCH = "batch"  # one feature's values over the batch (a column)


@dataclass(frozen=True)
class RunningStat:
    """A buffer that tracks one batch statistic for inference (batchnorm's mean, var).

    Updated in training as PyTorch does: buffer ← (1 − momentum)·buffer + momentum·r,
    with r·n/(n − 1) for an unbiased variance; in inference the buffer stands in for r.

    Attributes:
        buffer: the buffer's role name ("mean", "var"); the Plan names it per layer.
        statistic: which reduction of the definition it tracks, by its name.
        unbiased: track r·n/(n − 1) (the group's sample variance), not r.
        init: "zeros" or "ones".
    """

    buffer: str
    statistic: str
    unbiased: bool = False
    init: str = "zeros"


@dataclass(frozen=True)
class NormDef:
    """A registered (or custom) norm.

    Attributes:
        name: registry name (or the custom norm's name).
        build: params as symbols -> the expression in x with group reductions.
        params: parameters of the expression, name -> default value (eps).
        title: human name, for comments and LaTeX.
        group: FEATURES or BATCH.
        gain: a learnable γ per feature (ones).
        shift: a learnable β per feature (zeros).
        names: names of the reductions in the order the derivation meets them
            (innermost first), e.g. ("mu", "var"); unnamed ones are r1, r2, ...
        stat_params: parameters of the running statistics only, name -> default.
        running: the running statistics (batchnorm).
        custom: written as an expression in the spec.
        expr: the expression text of a custom norm.
    """

    name: str
    build: Callable[..., sp.Expr]
    params: dict[str, float] = field(default_factory=dict)
    title: str = ""
    group: str = FEATURES
    gain: bool = True
    shift: bool = True
    names: tuple[str, ...] = ()
    stat_params: dict[str, float] = field(default_factory=dict)
    running: tuple[RunningStat, ...] = ()
    custom: bool = False
    expr: str = ""

    @property
    def affine(self) -> bool:
        return self.gain or self.shift

    def expression(self, params: Mapping[str, float] | None = None) -> sp.Expr:
        """The definition in x, each parameter a symbol (see expr.parameter).

        Args:
            params: values overriding the defaults; only the sign of each enters the
                expression (eps > 0), the values are the rule's to carry.
        """
        values = self.values(params)
        return self.build(**{k: parameter(k, values[k]) for k in self.params})

    def values(self, params: Mapping[str, float] | None = None) -> dict[str, float]:
        """The expression's parameters: defaults, overridden by `params`."""
        values = dict(self.params)
        for k, v in (params or {}).items():
            if k in values:
                values[k] = v
        return values


NORMS: dict[str, NormDef] = {}


def norm(name: str, **kwargs: object) -> Callable:
    """Register the decorated builder as the norm `name` (NormDef's fields as keywords)."""

    def register(build: Callable[..., sp.Expr]) -> Callable[..., sp.Expr]:
        NORMS[name] = NormDef(name=name, build=build, **kwargs)  # type: ignore[arg-type]
        return build

    return register


def custom(
    name: str,
    text: str,
    params: Mapping[str, float] | None = None,
    affine: bool = True,
) -> NormDef:
    """A norm from a spec's `{type: norm, name, expr, <params>, affine}` entry.

    The expression is parsed (and refused, with the reason) here, once; it is an
    expression in x over one example's features, with gain and shift unless
    `affine` is false.

    Raises:
        ExpressionError: the expression or a parameter is not allowed.
    """
    params = dict(params or {})
    parse_norm(text, params)  # refuse early, with the parser's message

    def build(**symbols: sp.Expr) -> sp.Expr:
        return parse(text, {NORM_VARIABLE: x}, symbols, reductions=True)

    return NormDef(
        name=name,
        build=build,
        params=params,
        title=f"{name} (custom)",
        group=FEATURES,
        gain=affine,
        shift=affine,
        custom=True,
        expr=text,
    )


# ---------------------------------------------------------------------- norms


@norm(
    "layernorm",
    title="layer normalization",
    params={"eps": 1e-5},
    names=("mu", "var"),
)
def _layernorm(eps: sp.Expr) -> sp.Expr:
    mu = GroupMean(x)
    return (x - mu) / sp.sqrt(GroupMean((x - mu) ** 2) + eps)


@norm(
    "rmsnorm",
    title="RMS normalization",
    params={"eps": 1e-6},
    shift=False,
    names=("ms",),
)
def _rmsnorm(eps: sp.Expr) -> sp.Expr:
    return x / sp.sqrt(GroupMean(x**2) + eps)


@norm(
    "batchnorm",
    title="batch normalization",
    params={"eps": 1e-5},
    group=BATCH,
    names=("mu", "var"),
    stat_params={"momentum": 0.1},
    running=(
        RunningStat("mean", "mu", unbiased=False, init="zeros"),
        RunningStat("var", "var", unbiased=True, init="ones"),
    ),
)
def _batchnorm(eps: sp.Expr) -> sp.Expr:
    # training normalizes with the biased batch variance, as PyTorch does
    mu = GroupMean(x)
    return (x - mu) / sp.sqrt(GroupMean((x - mu) ** 2) + eps)
