"""Custom activations and losses: every whitelisted function derives, prints and matches
central finite differences of the generated module's own loss."""

from __future__ import annotations

import re

import numpy as np
import pytest

ACTIVATIONS = [
    "exp(-z*z)",
    "log(1 + z*z)",
    "sqrt(1 + z*z)",
    "abs(z)",
    "sign(z)*z*z",
    "2*tanh(z)",
    "sinh(z/3)",
    "cosh(z/3)",
    "sin(z)",
    "cos(z)",
    "atan(z)",
    "erf(z)",
    "sigmoid(z)*z",
    "relu(z) + 0.1*z",
    "2*relu(z)",  # a 0/1 mask inside a product: printed (A > 0), not 2*A > 0
    "z**3/(1 + z*z)",  # solve() on a cubic runs away: the search is cut off, z is kept
    "max(z, 0.5*z)",
    "min(z, 1)",
    "z**3/3",
    "k*z",
    "1/(1 + z*z)",
    "log(1 + exp(z))",
    "e**z/(1 + e**z)",
    "pi*z",
    "z/(1 + abs(z))",
]
LOSSES = [
    "(yhat - y)**2",
    "abs(yhat - y)",
    "log(cosh(yhat - y))",
    "-(y*log(yhat) + (1 - y)*log(1 - yhat))",
    "(yhat - y)**4/4 + c*(yhat - y)**2",
]


def spec_with(act: str, loss: str) -> dict:
    """The expressions in a network; k and c are given where they are read (a
    parameter that expr never reads is refused)."""
    k = {"k": 1.5} if re.search(r"\bk\b", act) else {}
    c = {"c": 0.5} if re.search(r"\bc\b", loss) else {}
    return {
        "name": "custom",
        "input": 3,
        "layers": [
            {"units": 4, "activation": {"name": "my_act", "expr": act, **k}},
            {"units": 2, "activation": "sigmoid"},
        ],
        "loss": {"name": "my_loss", "expr": loss, **c},
    }


def fd_error(module) -> float:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    Y = rng.uniform(0.1, 0.9, size=(6, 2))
    params = module.init_params(1)
    _, grads = module.loss_and_grad(params, X, Y)
    worst = 0.0
    for key, value in params.items():
        for idx in np.ndindex(value.shape):
            h = 1e-6
            shifted = {k: v.copy() for k, v in params.items()}
            shifted[key][idx] += h
            up = module.loss(shifted, X, Y)
            shifted[key][idx] -= 2 * h
            down = module.loss(shifted, X, Y)
            fd = (up - down) / (2 * h)
            worst = max(worst, abs(fd - grads[key][idx]) / max(abs(fd), 1e-6))
    return worst


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_custom_activation_matches_finite_differences(generate, act: str) -> None:
    assert fd_error(generate(spec_with(act, "(yhat - y)**2"))) < 1e-5


@pytest.mark.parametrize("loss", LOSSES)
def test_custom_loss_matches_finite_differences(generate, loss: str) -> None:
    assert fd_error(generate(spec_with("tanh(z)", loss))) < 1e-5


def test_custom_bce_on_sigmoid_collapses_and_is_finite_at_saturated_logits(
    generate,
) -> None:
    # only the collapsed delta ŷ - y is finite where σ saturates to 0 or 1: the chain
    # rule's ((ŷ - y) / (ŷ(1 - ŷ))) · ŷ(1 - ŷ) is 0/0 there; the loss must come from
    # the logits (softplus), where log(ŷ) would be log(0)
    module = generate(spec_with("tanh(z)", "-(y*log(yhat) + (1 - y)*log(1 - yhat))"))
    params = {k: np.zeros_like(v) for k, v in module.init_params(0).items()}
    params["W1"][0, 0] = 5.0
    params["W2"][0, :] = [800.0, -800.0]
    X = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    Y = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    Z = np.tanh(X @ params["W1"]) @ params["W2"]  # ±800·tanh(5) and 0
    expected = np.sum(Y * np.logaddexp(0, -Z) + (1 - Y) * np.logaddexp(0, Z)) / 3
    loss, grads = module.loss_and_grad(params, X, Y)
    assert loss == pytest.approx(expected, rel=1e-12)
    sigma = np.exp(-np.logaddexp(0, -Z))  # σ(Z) = 0 or 1 at ±800·tanh(5)
    np.testing.assert_allclose(grads["b2"], np.sum(sigma - Y, axis=0) / 3, rtol=1e-12)
    assert all(np.isfinite(g).all() for g in grads.values())


def test_custom_log_cosh_loss_is_finite_at_huge_residuals(generate) -> None:
    spec = {
        "name": "logcosh",
        "input": 1,
        "layers": [{"units": 1, "activation": "identity"}],
        "loss": {"name": "log_cosh", "expr": "log(cosh(yhat - y))"},
    }
    module = generate(spec)
    params = {"W1": np.array([[1.0]]), "b1": np.zeros(1)}
    X = np.array([[-1000.0], [0.0], [2000.0]])
    loss, grads = module.loss_and_grad(params, X, np.zeros((3, 1)))
    # log cosh r = |r| - log 2 + log(1 + e^{-2|r|}); its derivative is tanh r
    expected = (1000 - np.log(2) + 0 + 2000 - np.log(2)) / 3
    assert np.isclose(loss, expected, rtol=1e-15)
    assert np.allclose(grads["W1"], [[(-1000 * -1 + 0 + 2000 * 1) / 3]], rtol=1e-15)
