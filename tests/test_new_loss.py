"""A loss added by its registry entry alone: the generator's test of its loss traits.

Issue 18's criterion for losses: a loss whose targets must lie in [0, 1] is registered
with its traits (targets in [0, 1], predictions in (0, 1), a binary task) and nothing
else, from this file; the generated modules (NumPy and array API) then check its targets,
predict 0/1, the report renders it, `symgrad check` passes, and in float64 its loss, its
gradients and 50 SGD steps equal PyTorch's (autograd and torch.optim.SGD) on the same
formula written in torch.

The loss is the focal loss of Lin et al. (2017) on a sigmoid output, per unit
    ℓ(ŷ, y) = −[y (1 − ŷ)^γ log ŷ + (1 − y) ŷ^γ log(1 − ŷ)],
with γ a parameter (γ = 0 is binary cross-entropy).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
import torch_reference as tr
from harness import import_path, make_targets, perturb_biases, rel_err

import symgrad
from symgrad import activations, losses
from symgrad.report import render_report

NAME = "focal"
GAMMA = 1.5  # not an integer: (1 − ŷ)^γ stays a real power
RTOL = 1e-9
LEARNING_RATE = 0.1
SPEC = {
    "name": "focalnet",
    "input": 3,
    "layers": [
        {"units": 5, "activation": "tanh"},
        {"units": 2, "activation": "sigmoid"},
    ],
    "loss": {"name": NAME, "gamma": GAMMA},
    "optimizer": {"name": "sgd", "learning_rate": LEARNING_RATE},
}


def _torch_focal(gamma: float = 2.0):
    """The same formula in torch, written from the docstring, not from symgrad."""
    return lambda yhat, y: -(
        y * (1 - yhat) ** gamma * torch.log(yhat)
        + (1 - y) * yhat**gamma * torch.log(1 - yhat)
    )


@pytest.fixture
def registered(monkeypatch):
    """The focal loss, registered like binary cross-entropy: a definition and its
    traits, nothing about its derivative; and its torch formula for the reference."""
    a, y = activations.a, activations.y

    @losses.loss(
        NAME,
        title="focal loss",
        params={"gamma": 2.0},
        targets="unit_interval",
        output="unit_interval",
        task="binary",
    )
    def _focal(gamma: sp.Expr) -> sp.Expr:
        return -(y * (1 - a) ** gamma * sp.log(a) + (1 - y) * a**gamma * sp.log(1 - a))

    monkeypatch.setitem(tr.LOSSES, NAME, _torch_focal)
    yield
    del losses.LOSSES[NAME]


@pytest.fixture
def modules(registered, tmp_path):
    """The NumPy module and the array-API module of SPEC."""
    numpy_path = symgrad.generate(SPEC, tmp_path)
    xp_path = symgrad.generate(SPEC, tmp_path, target="array-api")
    return (
        import_path(numpy_path, f"_focal_{tmp_path.name}"),
        import_path(xp_path, f"_focal_xp_{tmp_path.name}"),
    )


def _problem(module, m: int = 8, seed: int = 0):
    """Params (biases moved off zero), X, and soft targets in [0, 1]."""
    rng = np.random.default_rng(seed)
    params = module.init_params(seed)
    perturb_biases(params, rng)
    X = rng.standard_normal((m, SPEC["input"]))
    return params, X, make_targets(SPEC, m, rng)


def test_both_modules_take_the_traits_from_the_registry(modules) -> None:
    for module in modules:
        assert module.TASK == "binary"
        assert module.TARGETS == "unit_interval"
        assert module.LABELS is False


def test_both_modules_refuse_targets_outside_0_1(modules) -> None:
    for module in modules:
        params, X, Y = _problem(module)
        module.loss_and_grad(params, X, Y)  # accepted
        for bad in (1.5, -0.25):
            Y_bad = Y.copy()
            Y_bad[3, 1] = bad
            with pytest.raises(ValueError, match=r"takes targets in \[0, 1\]"):
                module.loss_and_grad(params, X, Y_bad)


def test_loss_and_gradients_match_torch(modules) -> None:
    for module in modules:
        params, X, Y = _problem(module)
        value, grads = module.loss_and_grad(params, X, Y)
        ref_value, ref_grads, _ = tr.loss_and_grad(SPEC, params, X, Y)
        assert rel_err(float(value), ref_value) <= RTOL
        assert rel_err(float(module.loss(params, X, Y)), ref_value) <= RTOL
        assert sorted(grads) == sorted(ref_grads)
        for key, ref in ref_grads.items():
            assert rel_err(np.asarray(grads[key]), ref) <= RTOL, key


def test_predict_gives_0_1_at_the_threshold(modules) -> None:
    numpy_module, xp_module = modules
    params, X, _ = _problem(numpy_module, m=40, seed=1)
    expected = (tr.forward(SPEC, params, X) >= 0.5).astype(np.int64)
    assert 0 < expected.sum() < expected.size  # both classes occur
    for module in modules:
        predicted = np.asarray(module.predict(params, X))
        np.testing.assert_array_equal(predicted, expected)


def test_50_sgd_steps_match_torch_optim(modules) -> None:
    module = modules[0]
    params, X, Y = _problem(module, seed=2)
    net = tr.Net(SPEC, params)
    sgd = torch.optim.SGD(list(net.params.values()), lr=LEARNING_RATE)
    state = module.init_state(params)
    for i in range(50):
        sgd.zero_grad()
        ref_value = net.loss(X, Y, training=True)
        ref_value.backward()
        sgd.step()
        value = module.step(params, state, X, Y)
        assert rel_err(value, float(ref_value.detach())) <= RTOL, i
    for key, ref in net.params.items():
        assert rel_err(params[key], ref.detach().numpy()) <= RTOL, key


def test_the_report_renders_it_in_every_format(registered) -> None:
    d = symgrad.derive(SPEC)
    assert (d.task, d.targets) == ("binary", "unit_interval")
    for fmt in ("latex", "markdown", "text"):
        report = render_report(d, fmt)
        assert "focal loss (gamma=1.5)" in report, fmt
        assert "Targets are 0/1 labels (or probabilities in [0, 1])." in report, fmt
    assert render_report(d, "latex", standalone=True).isascii()


def test_the_gradient_check_passes(registered) -> None:
    result = symgrad.check_gradients(SPEC)
    assert result.ok, result.table()
    assert {p.name for p in result.params} == {"W1", "b1", "W2", "b2"}


def test_its_traits_are_checked_against_the_output(registered) -> None:
    spec = {**SPEC, "layers": [{"units": 2, "activation": "tanh"}]}
    with pytest.raises(symgrad.SpecError) as info:
        symgrad.as_spec(spec)
    assert [str(p) for p in info.value.problems] == [
        "<dict>: loss: focal needs predictions in (0, 1), found output activation"
        " 'tanh' (use a sigmoid output layer)"
    ]


def test_registering_inconsistent_traits_is_refused() -> None:
    def build() -> sp.Expr:
        return activations.a

    with pytest.raises(ValueError, match="targets must be one of"):
        losses.loss("bad_targets", targets="probabilities")(build)
    with pytest.raises(ValueError, match="task 'binary' needs output 'unit_interval'"):
        losses.loss("bad_task", task="binary")(build)
    assert "bad_targets" not in losses.LOSSES and "bad_task" not in losses.LOSSES
