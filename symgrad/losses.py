"""The registry of losses: definitions and traits, never derivatives.

A loss is a per-unit SymPy expression in the prediction `a` (ŷ) and the target `y`
(symbols of activations.py), summed over output units and averaged over the batch;
parameters (huber's delta) are passed in as exact SymPy numbers, and the output delta is
derived in derive.py.

A loss also declares its traits, and nothing else in symgrad tests a loss by name:
`targets` (what Y must hold: one of TARGETS), `output` (what the output layer must give:
one of OUTPUTS) and `task` (what its output means, what `predict` returns: one of TASKS).
derive.py turns them into one decision per spec (`Derivation.task`, `.targets`); the
spec's validation, the generated modules' constants, `symgrad check` and the report
read that decision.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from .activations import OpDef, a, register, y

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


LOSSES: dict[str, OpDef] = {}


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
    return register(
        LOSSES, name=name, targets=targets, output=output, task=task, **kwargs
    )


# ---------------------------------------------------------------- the built-ins


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
