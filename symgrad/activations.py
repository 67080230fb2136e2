"""The registry of activations: definitions only, never derivatives.

An activation is a SymPy expression in the pre-activation `z`; parameters (leaky_relu's
alpha) are passed in as exact SymPy numbers, and every derivative is computed from the
definition in derive.py. Registering one (`@activation(name, title=..., params=...)`)
is all it takes for a spec to name it (docs/extending.md). This module also holds what
activations and losses (losses.py) share: the symbols they are written in (z, a = the
activation's output, ŷ at the output layer, and the target y), the definition record
and the aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

z = sp.Symbol("z", real=True)  # pre-activation
a = sp.Symbol("a", real=True)  # activation output; ŷ at the output layer
y = sp.Symbol("y", real=True)  # target


@dataclass(frozen=True)
class OpDef:
    """A registered activation or loss."""

    name: str
    build: Callable[..., sp.Expr]
    params: dict[str, float] = field(default_factory=dict)  # name -> default
    title: str = ""  # human name, for comments and LaTeX
    aliases: tuple[str, ...] = ()
    # activations: open interval the output lies in (None: unbounded side)
    output_range: tuple[float | None, float | None] = (None, None)
    # losses: their traits (see the module docstring)
    targets: str = "real"  # one of TARGETS
    output: str = "any"  # one of OUTPUTS
    task: str = (
        "values"  # one of TASKS; a softmax output means "classes" whatever this says
    )


ACTIVATIONS: dict[str, OpDef] = {}
ALIASES: dict[str, str] = {}  # another name -> the registered one (both registries)

SOFTMAX = (
    "softmax"  # the one vector activation; handled by derive.py, output layer only
)


def register(table: dict[str, OpDef], **kwargs: object) -> Callable:
    def register(build: Callable[..., sp.Expr]) -> Callable[..., sp.Expr]:
        op = OpDef(build=build, **kwargs)  # type: ignore[arg-type]
        table[op.name] = op
        for alias in op.aliases:
            ALIASES[alias] = op.name
        return build

    return register


def activation(name: str, **kwargs: object) -> Callable:
    return register(ACTIVATIONS, name=name, **kwargs)


def unit_range(activation: str) -> bool:
    """Whether a built-in activation's outputs lie in [0, 1], as registered."""
    low, high = ACTIVATIONS[activation].output_range
    return low is not None and high is not None and 0 <= low and high <= 1


def canonical(name: str) -> str:
    """The registered name for a name or an alias."""
    return ALIASES.get(name, name)


INITS = ("auto", "glorot_uniform", "he_normal")
RELU_FAMILY = ("relu", "leaky_relu", "elu")  # "auto" init uses He for these


# ---------------------------------------------------------------- the built-ins


@activation("identity", title="identity", aliases=("linear",))
def _identity() -> sp.Expr:
    return z


@activation("sigmoid", title="sigmoid", output_range=(0.0, 1.0))
def _sigmoid() -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


@activation("tanh", title="tanh", output_range=(-1.0, 1.0))
def _tanh() -> sp.Expr:
    return sp.tanh(z)


@activation("relu", title="ReLU", output_range=(0.0, None))
def _relu() -> sp.Expr:
    return sp.Max(0, z)


@activation("leaky_relu", title="leaky ReLU", params={"alpha": 0.01})
def _leaky_relu(alpha: sp.Expr) -> sp.Expr:
    return sp.Piecewise((alpha * z, z <= 0), (z, True))


@activation("elu", title="ELU", params={"alpha": 1.0})
def _elu(alpha: sp.Expr) -> sp.Expr:
    return sp.Piecewise((alpha * (sp.exp(z) - 1), z <= 0), (z, True))


@activation("softplus", title="softplus", output_range=(0.0, None))
def _softplus() -> sp.Expr:
    return sp.log(1 + sp.exp(z))


@activation("silu", title="SiLU (swish)", aliases=("swish",))
def _silu() -> sp.Expr:
    return z / (1 + sp.exp(-z))


@activation("gelu", title="GELU (exact)")
def _gelu() -> sp.Expr:
    return z * (1 + sp.erf(z / sp.sqrt(2))) / 2


@activation("softsign", title="softsign", output_range=(-1.0, 1.0))
def _softsign() -> sp.Expr:
    return z / (1 + sp.Abs(z))


@activation(SOFTMAX, title="softmax", output_range=(0.0, 1.0))
def _softmax() -> sp.Expr:
    # one component of softmax over K units; derive.py builds the vector form
    raise NotImplementedError("softmax is a vector function: see derive.softmax_rule")
