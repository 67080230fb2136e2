"""Extreme inputs: pre-activations across [-1000, 1000], float64 and float32, stay finite
and match JAX's stable implementations (NumPy warnings are errors in this suite)."""

from __future__ import annotations

import jax_reference as ref
import numpy as np
import pytest
from harness import generate_module

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

ACTIVATIONS = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    {"name": "leaky_relu", "alpha": 0.1},
    {"name": "elu", "alpha": 1.0},
    "softplus",
    "silu",
    "gelu",
    "softsign",
]
OUTPUT_PAIRS = [
    ("sigmoid", "binary_crossentropy"),
    ("softmax", "categorical_crossentropy"),
    ("identity", "mse"),
    ("identity", "mae"),
    ("identity", {"name": "huber", "delta": 1.0}),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
    ("tanh", "mse"),
]
TOL = {np.float64: 1e-9, np.float32: 2e-4}
# with W1 below, Z1 spans [-1000, 1000]; an even count keeps z = 0 (a kink) out of the grid:
# at a kink symgrad takes the left derivative (as PyTorch), JAX differs for leaky_relu
X = np.linspace(-1000, 1000, 40)[:, None]


def _name(op) -> str:
    return op if isinstance(op, str) else op["name"]


def _targets(loss: str, m: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if loss == "categorical_crossentropy":
        return np.eye(n)[rng.integers(0, n, m)]
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (m, n)).astype(float)
    return rng.normal(size=(m, n))


def _compare(module, spec, params, Y, dtype) -> None:
    params = {k: v.astype(dtype) for k, v in params.items()}
    loss, grads = module.loss_and_grad(params, X.astype(dtype), Y.astype(dtype))
    ref_loss, ref_grads = ref.loss_and_grad(
        spec, {k: v.astype(np.float64) for k, v in params.items()}, X.astype(dtype), Y
    )
    assert np.isfinite(loss) and np.isfinite(ref_loss)
    assert abs(loss - ref_loss) <= TOL[dtype] * max(abs(ref_loss), 1.0)
    for key, g in grads.items():
        assert g.dtype == dtype, key
        assert np.all(np.isfinite(g)), key
        scale = max(np.linalg.norm(ref_grads[key]), 1e-30)
        assert np.linalg.norm(g - ref_grads[key]) <= TOL[dtype] * max(scale, 1.0), key


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("out", "loss"), OUTPUT_PAIRS, ids=lambda v: _name(v))
def test_output_layer_at_extreme_logits(tmp_path, out, loss, dtype) -> None:
    spec = {
        "name": "edge",
        "input": 1,
        "layers": [{"units": 3, "activation": out}],
        "loss": loss,
    }
    module = generate_module(spec, tmp_path)
    params = {"W1": np.array([[1.0, -0.7, 0.4]]), "b1": np.zeros(3)}
    _compare(module, spec, params, _targets(_name(loss), len(X), 3), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=_name)
def test_hidden_layer_at_extreme_pre_activations(tmp_path, act, dtype) -> None:
    spec = {
        "name": "edge",
        "input": 1,
        "layers": [
            {"units": 3, "activation": act},
            {"units": 2, "activation": "identity"},
        ],
        "loss": "mse",
    }
    module = generate_module(spec, tmp_path)
    params = {
        "W1": np.array([[1.0, -0.7, 0.4]]),
        "b1": np.zeros(3),
        "W2": np.array([[1e-3, -2e-3], [3e-3, 1e-3], [-1e-3, 2e-3]]),
        "b2": np.zeros(2),
    }
    _compare(module, spec, params, _targets("mse", len(X), 2), dtype)
