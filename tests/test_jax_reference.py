"""The JAX reference itself: central differences, closed forms and the DESIGN.md losses."""

from __future__ import annotations

from math import erf, sqrt

import harness as H
import jax_reference as ref
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

ALL_ACTIVATIONS = [
    "identity",
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    {"name": "leaky_relu", "alpha": 0.1},
    "elu",
    {"name": "elu", "alpha": 0.5},
    "softplus",
    "silu",
    "swish",
    "gelu",
    "softsign",
]
OUTPUTS = [
    (3, "sigmoid", "binary_crossentropy"),
    (3, "softmax", "categorical_crossentropy"),
    (3, "sigmoid", "mse"),
    (3, "softmax", "mse"),
    (2, "identity", "mse"),
    (2, "identity", "mae"),
    (2, "identity", {"name": "huber", "delta": 0.5}),
    (2, "tanh", "huber"),
]


def _id(x) -> str:
    if isinstance(x, dict):
        return "_".join(str(v) for v in x.values())
    return str(x)


CASES = [
    pytest.param(
        H.spec("r", 4, [(5, a), (2, "identity")], "mse"), id=f"hidden-{_id(a)}"
    )
    for a in ALL_ACTIVATIONS
] + [
    pytest.param(
        H.spec("r", 4, [(5, "tanh"), (n, a)], loss, l2=0.05),
        id=f"out-{_id(a)}-{_id(loss)}",
    )
    for n, a, loss in OUTPUTS
]


def random_problem(spec, seed=0, m=6):
    """Random params (not from symgrad) and data with kinks at least 1e-3 away."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        sizes = [spec["input"]] + [layer["units"] for layer in spec["layers"]]
        params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            params[f"W{i}"] = rng.standard_normal((a, b)) / np.sqrt(a)
            params[f"b{i}"] = 0.3 * rng.standard_normal(b)
        X = rng.standard_normal((m, spec["input"]))
        Y = H.make_targets(spec, m, rng)
        if H.kink_distance(spec, params, X, Y) > 1e-3:
            return params, X, Y
    raise AssertionError("no kink-free data")


@pytest.mark.parametrize("spec", CASES)
def test_reference_matches_central_differences(spec):
    params, X, Y = random_problem(spec)
    _, grads = ref.loss_and_grad(spec, params, X, Y)
    rng = np.random.default_rng(1)
    fds = H.central_differences(lambda p: ref.loss_fn(spec, p, X, Y), params, rng)
    for key, (index, fd) in fds.items():
        g = grads[key][index]
        assert np.linalg.norm(fd - g) / max(np.linalg.norm(g), H.FD_FLOOR) <= 1e-6, key


def _dense(X, W, b):
    return X @ W + b


@pytest.mark.parametrize(
    "activation, loss",
    [
        ("sigmoid", "binary_crossentropy"),
        ("softmax", "categorical_crossentropy"),
        ("identity", "mse"),
    ],
)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_collapsed_output_delta(activation, loss, l2):
    """One layer: dL/dW = Xᵀ(Ŷ − Y)/m + l2·W and dL/db = mean(Ŷ − Y)."""
    spec = H.spec("r", 4, [(3, activation)], loss, l2=l2)
    params, X, Y = random_problem(spec, m=5)
    _, grads = ref.loss_and_grad(spec, params, X, Y)
    delta = ref.forward(spec, params, X) - Y
    expected_W = X.T @ delta / len(X) + l2 * params["W1"]
    np.testing.assert_allclose(grads["W1"], expected_W, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["b1"], delta.mean(axis=0), rtol=1e-12, atol=1e-15)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _huber(r, d):
    return np.where(np.abs(r) <= d, 0.5 * r**2, d * (np.abs(r) - 0.5 * d))


TABLE = {  # DESIGN.md's per-example losses, written out in NumPy from ŷ
    "mse": lambda yh, y: 0.5 * ((yh - y) ** 2).sum(1),
    "mae": lambda yh, y: np.abs(yh - y).sum(1),
    "huber": lambda yh, y: _huber(yh - y, 1.0).sum(1),
    "huber_0.3": lambda yh, y: _huber(yh - y, 0.3).sum(1),
    "binary_crossentropy": lambda yh, y: -(
        y * np.log(yh) + (1 - y) * np.log(1 - yh)
    ).sum(1),
    "categorical_crossentropy": lambda yh, y: -(y * np.log(yh)).sum(1),
}


@pytest.mark.parametrize(
    "activation, loss, key",
    [
        ("identity", "mse", "mse"),
        ("identity", "mae", "mae"),
        ("identity", "huber", "huber"),
        ("identity", {"name": "huber", "delta": 0.3}, "huber_0.3"),
        ("sigmoid", "binary_crossentropy", "binary_crossentropy"),
        ("softmax", "categorical_crossentropy", "categorical_crossentropy"),
        ("sigmoid", "mse", "mse"),
    ],
)
def test_loss_values_follow_design_table(activation, loss, key):
    spec = H.spec("r", 3, [(4, activation)], loss, l2=0.2)
    params, X, Y = random_problem(spec, m=8)
    z = _dense(X, params["W1"], params["b1"])
    yhat = {"identity": z, "sigmoid": _sigmoid(z), "softmax": _softmax(z)}[activation]
    expected = TABLE[key](yhat, Y).mean() + 0.1 * (params["W1"] ** 2).sum()
    assert ref.loss_fn(spec, params, X, Y) == pytest.approx(expected, rel=1e-12)
    if key == "huber_0.3":  # both branches of h are exercised
        r = np.abs(yhat - Y)
        assert (r <= 0.3).any() and (r > 0.3).any()


@pytest.mark.parametrize(
    "activation, expected",
    [
        ("identity", lambda z: z),
        ("leaky_relu", lambda z: np.where(z > 0, z, 0.01 * z)),
        ({"name": "leaky_relu", "alpha": 0.1}, lambda z: np.where(z > 0, z, 0.1 * z)),
        ("elu", lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0)))),
        (
            {"name": "elu", "alpha": 0.5},
            lambda z: np.where(z > 0, z, 0.5 * np.expm1(np.minimum(z, 0))),
        ),
        ("softplus", lambda z: np.logaddexp(0, z)),
        ("silu", lambda z: z * _sigmoid(z)),
        ("swish", lambda z: z * _sigmoid(z)),
        ("softsign", lambda z: z / (1 + np.abs(z))),
        ("tanh", np.tanh),
    ],
)
def test_activation_values(activation, expected):
    spec = H.spec("r", 3, [(4, activation)], "mse")
    params, X, _ = random_problem(spec)
    z = _dense(X, params["W1"], params["b1"])
    np.testing.assert_allclose(ref.forward(spec, params, X), expected(z), rtol=1e-13)


def test_gelu_is_exact():
    spec = H.spec("r", 1, [(1, "gelu")], "mse")
    params = {"W1": np.ones((1, 1)), "b1": np.zeros(1)}
    X = np.array([[-2.0], [-0.5], [0.0], [1.0], [3.0]])
    # x·Φ(x) with Φ from math.erf
    expected = [[x * 0.5 * (1 + erf(x / sqrt(2)))] for (x,) in X]
    np.testing.assert_allclose(ref.forward(spec, params, X), expected, rtol=1e-14)


def test_mae_gradient_is_zero_at_zero_residual():
    spec = H.spec("r", 3, [(2, "identity")], "mae")
    params, X, _ = random_problem(spec)
    Y = ref.forward(spec, params, X)
    _, grads = ref.loss_and_grad(spec, params, X, Y)
    for g in grads.values():
        assert not g.any()


@pytest.mark.parametrize("scale", [500.0, 800.0])
def test_saturated_cross_entropies_are_finite(scale):
    X = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    bce = H.spec("r", 1, [(1, "sigmoid")], "binary_crossentropy")
    params = {"W1": np.full((1, 1), scale), "b1": np.zeros(1)}
    Y = np.array([[1.0], [0.0], [1.0], [0.0]])
    value, grads = ref.loss_and_grad(bce, params, X, Y)
    assert value == pytest.approx(scale / 2, rel=1e-12)  # two examples cost `scale`
    np.testing.assert_allclose(grads["b1"], [0.0], atol=1e-12)
    np.testing.assert_allclose(grads["W1"], [[0.5]], rtol=1e-12)

    cce = H.spec("r", 3, [(3, "softmax")], "categorical_crossentropy")
    params = {"W1": scale * np.eye(3), "b1": np.zeros(3)}
    X = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    labels = np.array([1, 1])  # logit -scale (loss 2·scale), then the max (loss ~0)
    value, grads = ref.loss_and_grad(cce, params, X, labels)
    assert value == pytest.approx(scale, rel=1e-12)
    assert all(np.isfinite(g).all() for g in grads.values())


def test_integer_labels_equal_one_hot():
    spec = H.spec("r", 3, [(4, "tanh"), (3, "softmax")], "categorical_crossentropy")
    params, X, _ = random_problem(spec)
    labels = np.array([0, 2, 1, 2, 0, 1])
    a = ref.loss_and_grad(spec, params, X, labels)
    b = ref.loss_and_grad(spec, params, X, np.eye(3)[labels])
    assert a[0] == b[0]
    for key in params:
        np.testing.assert_array_equal(a[1][key], b[1][key])


def test_custom_activation_callable():
    spec = H.spec(
        "r", 3, [(4, {"name": "cube", "expr": "z**3"}), (2, "identity")], "mse"
    )
    params, X, Y = random_problem(
        H.spec("r", 3, [(4, "identity"), (2, "identity")], "mse")
    )
    with pytest.raises(NotImplementedError):
        ref.loss_fn(spec, params, X, Y)
    custom = {"cube": lambda z: z**3}
    direct = H.spec("r", 3, [(4, lambda z: z**3), (2, "identity")], "mse")
    a = ref.loss_and_grad(spec, params, X, Y, custom=custom)
    b = ref.loss_and_grad(direct, params, X, Y)
    assert a[0] == b[0] and np.isfinite(a[0])


def test_softmax_rejected_in_hidden_layer():
    spec = H.spec("r", 3, [(4, "softmax"), (2, "identity")], "mse")
    params, X, Y = random_problem(H.spec("r", 3, [(4, "tanh"), (2, "identity")], "mse"))
    with pytest.raises(ValueError, match="softmax"):
        ref.loss_fn(spec, params, X, Y)
