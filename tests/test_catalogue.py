"""Extended catalogue (elu, softplus, silu, swish, gelu, softsign, mae, huber) vs JAX."""

from __future__ import annotations

import harness as H
import numpy as np
import pytest

pytestmark = pytest.mark.catalogue

HUBER_05 = {"name": "huber", "delta": 0.5}
ELU_05 = {"name": "elu", "alpha": 0.5}
ACTIVATIONS = ["elu", ELU_05, "softplus", "silu", "swish", "gelu", "softsign"]
LOSSES = ["mae", HUBER_05]


def _id(x) -> str:
    return x if isinstance(x, str) else "_".join(str(v) for v in x.values())


def _case(case_id: str, n_in, layers, loss, **extra):
    name = "cat_" + "".join(c if c.isalnum() else "_" for c in case_id)
    return pytest.param(H.spec(name, n_in, layers, loss, **extra), id=case_id)


CASES = (
    # each activation as a hidden layer and as the output layer
    [
        _case(f"{_id(a)}-identity-mse", 4, [(5, a), (2, "identity")], "mse")
        for a in ACTIVATIONS
    ]
    + [
        _case(f"tanh-{_id(a)}-mse", 4, [(5, "tanh"), (2, a)], "mse")
        for a in ACTIVATIONS
    ]
    # each loss on a linear and on a squashing output, and alone
    + [_case(f"{_id(loss)}-identity", 3, [(2, "identity")], loss) for loss in LOSSES]
    + [
        _case(f"tanh-identity-{_id(loss)}", 3, [(5, "tanh"), (2, "identity")], loss)
        for loss in LOSSES
    ]
    + [
        _case(f"relu-sigmoid-{_id(loss)}", 3, [(5, "relu"), (3, "sigmoid")], loss)
        for loss in LOSSES
    ]
    + [_case("tanh-tanh-huber_default", 3, [(5, "tanh"), (2, "tanh")], "huber")]
    # mixes
    + [
        _case(
            "mix4-catalogue",
            5,
            [(8, "gelu"), (6, ELU_05), (4, "softsign"), (3, "softplus")],
            HUBER_05,
            l2=0.05,
        ),
        _case(
            "mix3-silu-mae",
            4,
            [(7, "silu"), (5, "elu"), (2, "identity")],
            "mae",
            l2=0.1,
        ),
        _case(
            "mix3-swish-softmax-cce",
            4,
            [(6, "swish"), (5, "softplus"), (3, "softmax")],
            "categorical_crossentropy",
        ),
    ]
)


@pytest.mark.parametrize("spec", CASES)
def test_matches_jax_reference(generate, spec):
    H.check_against_reference(generate(spec), spec)


@pytest.mark.parametrize("spec", CASES)
def test_matches_finite_differences(generate, spec):
    H.check_finite_differences(generate(spec), spec)


def test_huber_data_covers_both_branches(generate):
    """The huber cases above see residuals on both sides of delta (guards the data)."""
    spec = H.spec("cat_huber_branches", 3, [(5, "tanh"), (2, "identity")], HUBER_05)
    module = generate(spec)
    params, X, Y = H.make_problem(module, spec)
    r = np.abs(module.forward(params, X) - Y)
    assert (r <= 0.5).any() and (r > 0.5).any()
    H.check_against_reference(module, spec)


def test_mae_gradient_is_zero_at_zero_residual(generate):
    """DESIGN.md: the mae gradient is sign(ŷ − y), 0 at 0."""
    spec = H.spec("cat_mae_zero", 3, [(4, "tanh"), (2, "identity")], "mae")
    module = generate(spec)
    params, X, _ = H.make_problem(module, spec)
    Y = module.forward(params, X).copy()
    value, grads = module.loss_and_grad(params, X, Y)
    assert value == 0.0
    for key in params:
        np.testing.assert_array_equal(grads[key], 0.0, err_msg=key)
