"""sgd, momentum (and Nesterov) and adam in the generated step, against optax.

The reference trajectory shares nothing with the generated module but the start: its
gradients come from the JAX network of tests/jax_reference.py and its updates from
optax (whose formulas equal torch.optim's: optax adam's m̂/(√v̂ + ε) is torch's
(m/(1 − β₁ᵗ)) / (√v/√(1 − β₂ᵗ) + ε); both Nesterov forms are p ← p − η(g + μ v) with
v ← μ v + g). benchmarks/optimizers_vs_torch.py runs the same comparison with torch.optim.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

jax.config.update("jax_enable_x64", True)

optax = pytest.importorskip("optax")
import jax_reference as ref  # noqa: E402 - tests/ is on sys.path (conftest.py)
from harness import batches  # noqa: E402

RTOL = 1e-10

OPTIMIZERS = {
    "sgd": ({"name": "sgd", "learning_rate": 0.1}, optax.sgd(0.1)),
    "momentum": (
        {"name": "momentum", "learning_rate": 0.05},  # momentum 0.9 by default
        optax.sgd(0.05, momentum=0.9),
    ),
    "momentum-0.7": (
        {"name": "momentum", "learning_rate": 0.05, "momentum": 0.7},
        optax.sgd(0.05, momentum=0.7),
    ),
    "nesterov": (
        {"name": "momentum", "learning_rate": 0.05, "momentum": 0.7, "nesterov": True},
        optax.sgd(0.05, momentum=0.7, nesterov=True),
    ),
    "adam": ({"name": "adam", "learning_rate": 0.01}, optax.adam(0.01)),
    "adam-custom": (
        {
            "name": "adam",
            "learning_rate": 0.003,
            "beta1": 0.8,
            "beta2": 0.95,
            "eps": 1e-4,
        },
        optax.adam(0.003, b1=0.8, b2=0.95, eps=1e-4),
    ),
}

NETWORKS = {
    "classifier": {
        "input": 4,
        "layers": [
            {"units": 6, "activation": "tanh"},
            {"units": 5, "activation": "relu"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
    },
    "regression-l2": {
        "input": 4,
        "layers": [
            {"units": 7, "activation": "sigmoid"},
            {"units": 2, "activation": "identity"},
        ],
        "loss": "mse",
        "l2": 0.05,
    },
}


def data(spec: dict, n: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, spec["input"]))
    units = spec["layers"][-1]["units"]
    if spec["loss"] == "categorical_crossentropy":
        return X, np.eye(units)[rng.integers(0, units, n)]
    return X, rng.standard_normal((n, units))


def rel_err(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_matches_optax_from_the_same_start(generate, network, name):
    settings, tx = OPTIMIZERS[name]
    spec = {"name": "opt", **NETWORKS[network], "optimizer": settings}
    module = generate(spec)
    params = module.init_params(seed=1)
    params["b1"] += 0.1  # non-zero biases
    reference = {k: jax.numpy.asarray(v) for k, v in params.items()}
    opt_state = tx.init(reference)
    state = module.init_state(params)
    X, Y = data(spec)
    for batch in batches(len(X), 8, epochs=4):
        loss = module.step(params, state, X[batch], Y[batch])
        ref_loss, grads = ref.loss_and_grad(spec, reference, X[batch], Y[batch])
        updates, opt_state = tx.update(grads, opt_state, reference)
        reference = optax.apply_updates(reference, updates)
        assert loss == pytest.approx(float(ref_loss), rel=RTOL)
    errors = {k: rel_err(params[k], np.asarray(reference[k])) for k in params}
    assert max(errors.values()) <= RTOL, errors
    moved = {k: rel_err(params[k], module.init_params(seed=1)[k]) for k in ("W1", "W2")}
    assert min(moved.values()) > 1e-3, moved  # the trajectory went somewhere


def test_nesterov_is_not_plain_momentum(generate):
    results = []
    for nesterov in (False, True):
        settings = {"name": "momentum", "learning_rate": 0.05, "nesterov": nesterov}
        spec = {"name": "nag", **NETWORKS["classifier"], "optimizer": settings}
        module = generate(spec)
        params = module.init_params(seed=2)
        state = module.init_state(params)
        X, Y = data(spec)
        for _ in range(3):
            module.step(params, state, X, Y)
        results.append(params["W1"])
    assert rel_err(results[0], results[1]) > 1e-4
