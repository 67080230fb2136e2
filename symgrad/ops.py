"""The registry of built-in activations and losses: definitions only, never derivatives.

An activation is a SymPy expression in the pre-activation `z`; a loss is a per-unit SymPy
expression in the prediction `a` (ŷ) and the target `y`, summed over output units and
averaged over the batch. Parameters (leaky_relu's alpha, huber's delta) are passed in as
exact SymPy numbers. Every derivative is computed from these definitions in derive.py.

A loss also declares its traits, and nothing else in symgrad tests a loss by name:
`targets` (what Y must hold: one of TARGETS), `output` (what the output layer must give:
one of OUTPUTS) and `task` (what its output means, what `predict` returns: one of TASKS).
derive.py turns them into one decision per spec (`Derivation.task`, `.targets`); the
spec's validation, the generated modules' constants, `symgrad check` and the report
read that decision.
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


# what a loss's targets Y must hold, by the names the generated modules' TARGETS use:
# any real numbers; values in [0, 1] (0/1 labels or probabilities); rows on the simplex
# (entries >= 0 summing to 1: one-hot rows; integer class labels are turned into them)
TARGETS = ("real", "unit_interval", "simplex")
# what a loss needs of the output layer: nothing; predictions in (0, 1); a softmax
OUTPUTS = ("any", "unit_interval", "softmax")
# what the output means, so what predict returns: class indices, 0/1 per output, Ŷ itself
TASKS = ("classes", "binary", "values")
# what a task needs of the output layer, as a loss's `output` trait says it
TASK_NEEDS = {"classes": "softmax", "binary": "unit_interval", "values": "any"}


def output_gives(need: str, softmax: bool, unit_range: bool) -> bool:
    """Whether an output layer gives what a loss or a task needs (one of OUTPUTS):
    `softmax` tells whether it is the softmax, `unit_range` whether every output lies
    in [0, 1] (a softmax's do)."""
    if need == "softmax":
        return softmax
    if need == "unit_interval":
        return softmax or unit_range
    return True


def unit_range(activation: str) -> bool:
    """Whether a built-in activation's outputs lie in [0, 1], as registered."""
    low, high = ACTIVATIONS[activation].output_range
    return low is not None and high is not None and 0 <= low and high <= 1


ACTIVATIONS: dict[str, OpDef] = {}
LOSSES: dict[str, OpDef] = {}
ALIASES: dict[str, str] = {}

SOFTMAX = (
    "softmax"  # the one vector activation; handled by derive.py, output layer only
)


def _register(table: dict[str, OpDef], **kwargs: object) -> Callable:
    def register(build: Callable[..., sp.Expr]) -> Callable[..., sp.Expr]:
        op = OpDef(build=build, **kwargs)  # type: ignore[arg-type]
        table[op.name] = op
        for alias in op.aliases:
            ALIASES[alias] = op.name
        return build

    return register


def activation(name: str, **kwargs: object) -> Callable:
    return _register(ACTIVATIONS, name=name, **kwargs)


def loss(
    name: str,
    *,
    targets: str = "real",
    output: str = "any",
    task: str = "values",
    **kwargs: object,
) -> Callable:
    """Register a loss: its per-unit expression in `a` and `y`, with its traits.

    Args:
        targets: what Y must hold, one of TARGETS ("simplex" rows also accept integer
            class labels).
        output: what the output layer must give, one of OUTPUTS.
        task: what the output means, one of TASKS ("binary" needs an output in
            (0, 1), "classes" a softmax).
    """
    for trait, value, choices in (
        ("targets", targets, TARGETS),
        ("output", output, OUTPUTS),
        ("task", task, TASKS),
    ):
        if value not in choices:
            raise ValueError(
                f"loss {name!r}: {trait} must be one of {', '.join(choices)}, found {value!r}"
            )
    if not output_gives(TASK_NEEDS[task], output == "softmax", output != "any"):
        raise ValueError(
            f"loss {name!r}: task {task!r} needs output {TASK_NEEDS[task]!r},"
            f" found {output!r}"
        )
    return _register(
        LOSSES, name=name, targets=targets, output=output, task=task, **kwargs
    )


# ---------------------------------------------------------------- activations


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


# ---------------------------------------------------------------------- losses


@loss("mse", title="mean squared error (½ Σ (ŷ − y)²)")
def _mse() -> sp.Expr:
    return (a - y) ** 2 / 2


@loss("mae", title="mean absolute error")
def _mae() -> sp.Expr:
    return sp.Abs(a - y)


@loss("huber", title="Huber", params={"delta": 1.0})
def _huber(delta: sp.Expr) -> sp.Expr:
    r = a - y
    return sp.Piecewise(
        (r**2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True)
    )


@loss(
    "binary_crossentropy",
    title="binary cross-entropy",
    targets="unit_interval",
    output="unit_interval",
    task="binary",
)
def _binary_crossentropy() -> sp.Expr:
    return -(y * sp.log(a) + (1 - y) * sp.log(1 - a))


@loss(
    "categorical_crossentropy",
    title="categorical cross-entropy",
    targets="simplex",
    output="softmax",
    task="classes",
)
def _categorical_crossentropy() -> sp.Expr:
    return -y * sp.log(a)


def canonical(name: str) -> str:
    """The registered name for a name or an alias."""
    return ALIASES.get(name, name)


INITS = ("auto", "glorot_uniform", "he_normal")
RELU_FAMILY = ("relu", "leaky_relu", "elu")  # "auto" init uses He for these
