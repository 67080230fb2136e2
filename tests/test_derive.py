"""Derived rules: the textbook results come out of SymPy, and collapse is found, not looked up."""

from __future__ import annotations

import pytest
import sympy as sp

from symgrad.activations import a, y, z
from symgrad.derive import activation_rule, output_rule
from symgrad.spec import OpSpec
from symgrad.sym.text import text


def act(name: str, **params: float) -> OpSpec:
    return OpSpec(name, tuple(params.items()))


def test_sigmoid_derivative_is_rewritten_in_its_output() -> None:
    rule = activation_rule(act("sigmoid"))
    assert rule.in_a and text(rule.df) == "a·(1 - a)"
    assert (
        sp.simplify(rule.raw - sp.exp(-z) / (1 + sp.exp(-z)) ** 2) == 0
    )  # straight diff


def test_tanh_derivative() -> None:
    rule = activation_rule(act("tanh"))
    assert rule.in_a and text(rule.df) == "1 - a²"


def test_relu_family_derivatives() -> None:
    assert text(activation_rule(act("relu")).df) == "{0 if a ≤ 0; else 1}"
    leaky = activation_rule(act("leaky_relu", alpha=0.1)).df
    assert leaky == sp.Piecewise((sp.Rational(1, 10), a <= 0), (1, True))
    elu = activation_rule(act("elu", alpha=1.0)).df
    assert elu == sp.Piecewise((a + 1, a <= 0), (1, True))


def test_wrong_solve_branches_are_rejected() -> None:
    # solve() inverts swish with LambertW, valid only on one branch: the rule stays in z
    rule = activation_rule(act("silu"))
    assert not rule.in_a and not rule.df.has(sp.LambertW)


def test_bce_on_sigmoid_collapses() -> None:
    rule = output_rule(OpSpec("binary_crossentropy"), act("sigmoid"))
    assert rule.collapsed and rule.delta == a - y
    # the unsimplified product is not a - y: SymPy did the work
    assert rule.product != a - y and sp.simplify(rule.product - (a - y)) == 0


def test_cce_on_softmax_collapses() -> None:
    rule = output_rule(OpSpec("categorical_crossentropy"), act("softmax"))
    assert rule.collapsed and not rule.jvp and rule.delta == a - y


def test_half_mse_on_identity_collapses() -> None:
    rule = output_rule(OpSpec("mse"), act("identity"))
    assert rule.collapsed and rule.delta == a - y


def test_mse_on_sigmoid_keeps_its_derived_form() -> None:
    rule = output_rule(OpSpec("mse"), act("sigmoid"))
    assert not rule.collapsed
    assert sp.expand(rule.delta - (a - y) * a * (1 - a)) == 0
    assert text(rule.delta) == "a·(1 - a)·(a - y)"


def test_custom_bce_collapses_through_the_same_path() -> None:
    custom = OpSpec("my_bce", (), "-(y*log(yhat) + (1 - y)*log(1 - yhat))")
    rule = output_rule(custom, act("sigmoid"))
    assert rule.collapsed and rule.delta == a - y


def test_bce_forward_loss_is_written_from_logits() -> None:
    rule = output_rule(OpSpec("binary_crossentropy"), act("sigmoid"))
    assert not rule.forward.has(sp.log) and not rule.forward.has(
        a
    )  # softplus of z only


def test_custom_softplus_activation_gets_the_stable_form() -> None:
    rule = activation_rule(OpSpec("my_softplus", (), "log(1 + exp(z))"))
    assert not rule.forward.has(sp.exp) and not rule.forward.has(sp.log)


TASK_CASES = [
    # (output activation, loss, task): one rule for predict, fit, check and the report
    ("softmax", "categorical_crossentropy", "classes"),
    ("sigmoid", "binary_crossentropy", "binary"),
    ("sigmoid", "mse", "values"),
    ("tanh", {"name": "sq", "expr": "(yhat - y)**2"}, "values"),
    (
        "sigmoid",
        {"name": "bce", "expr": "-(y*log(yhat) + (1-y)*log(1-yhat))"},
        "binary",
    ),
    # a custom sigmoid is a probability as much as the built-in one (it was not, once)
    (
        {"name": "sig", "expr": "1/(1 + exp(-z))"},
        {"name": "bce", "expr": "-(y*log(yhat) + (1-y)*log(1-yhat))"},
        "binary",
    ),
    ({"name": "sig", "expr": "1/(1 + exp(-z))"}, "binary_crossentropy", "binary"),
    (
        {"name": "wave", "expr": "sin(z)"},
        {"name": "sq", "expr": "(yhat-y)**2"},
        "values",
    ),
    ("identity", "mse", "values"),
]


@pytest.mark.parametrize(("output", "loss", "task"), TASK_CASES)
def test_the_task_is_decided_once_by_one_rule(output, loss, task) -> None:
    import symgrad

    spec = {
        "name": "t",
        "input": 2,
        "layers": [
            {"units": 3, "activation": "tanh"},
            {"units": 2, "activation": output},
        ],
        "loss": loss,
    }
    assert symgrad.derive(spec).task == task


CUSTOM_BCE = {"name": "bce", "expr": "-(y*log(yhat) + (1-y)*log(1-yhat))"}
OVERRIDES = [
    # (output activation, loss, the spec's task, Derivation.task, Derivation.targets):
    # the spec's task wins over the rule above; the targets stay what the loss needs
    ("sigmoid", CUSTOM_BCE, None, "binary", "real"),  # the guess ...
    ("sigmoid", CUSTOM_BCE, "values", "values", "real"),  # ... and its correction
    ("sigmoid", "mse", "binary", "binary", "real"),
    ("sigmoid", "binary_crossentropy", "values", "values", "unit_interval"),
    ("softmax", "categorical_crossentropy", "values", "values", "simplex"),
    ("softmax", "categorical_crossentropy", "binary", "binary", "simplex"),
    ("softmax", "mse", "classes", "classes", "real"),
]


@pytest.mark.parametrize(("output", "loss", "given", "task", "targets"), OVERRIDES)
def test_the_spec_task_overrides_the_rule(output, loss, given, task, targets) -> None:
    import symgrad

    spec = {
        "name": "t",
        "input": 2,
        "layers": [{"units": 2, "activation": output}],
        "loss": loss,
        **({"task": given} if given else {}),
    }
    d = symgrad.derive(spec)
    assert (d.task, d.targets) == (task, targets)
