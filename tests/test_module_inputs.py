"""A generated module checks what it is given: shapes, params, NaN/inf; and keeps dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import import_path

ROOT = Path(__file__).resolve().parent.parent


def load(name: str):
    return import_path(ROOT / "generated" / f"{name}.py", f"gen_{name}")


@pytest.fixture()
def iris():
    return load("iris_mlp")


def data(m: int = 5):
    rng = np.random.default_rng(0)
    return rng.normal(size=(m, 4)), rng.integers(0, 3, m)


@pytest.mark.parametrize("fn", ["forward", "predict"])
def test_wrong_x_shape(iris, fn) -> None:
    params = iris.init_params()
    with pytest.raises(ValueError, match=r"X must have shape \(m, 4\), found \(5, 3\)"):
        getattr(iris, fn)(params, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"found \(4,\)"):
        getattr(iris, fn)(params, np.zeros(4))


def test_wrong_y_shape_and_labels(iris) -> None:
    params = iris.init_params()
    X, _ = data()
    with pytest.raises(ValueError, match=r"Y must have shape \(5, 3\), found \(5, 2\)"):
        iris.loss(params, X, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="labels must be 5 integers in"):
        iris.loss(params, X, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="labels must be 5 integers in"):
        iris.loss_and_grad(params, X, np.array([0, 1, 2]))


def test_params_missing_extra_misshaped(iris) -> None:
    X, Y = data()
    params = iris.init_params()
    missing = {k: v for k, v in params.items() if k != "b2"}
    with pytest.raises(ValueError, match="params must be a dict with keys"):
        iris.loss_and_grad(missing, X, Y)
    with pytest.raises(ValueError, match="params must be a dict with keys"):
        iris.loss_and_grad({**params, "W9": np.zeros(1)}, X, Y)
    with pytest.raises(
        ValueError, match=r"params\['W2'\] must have shape \(16, 8\), found \(8, 16\)"
    ):
        iris.loss_and_grad({**params, "W2": params["W2"].T}, X, Y)


def test_nan_and_inf_are_refused_unless_opted_out(iris) -> None:
    params = iris.init_params()
    X, Y = data()
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        iris.loss(params, X, Y)
    Yf = np.eye(3)[Y]
    Yf[0, 0] = np.inf
    with pytest.raises(ValueError, match="Y contains NaN or inf"):
        iris.loss(params, data()[0], Yf)
    iris.CHECK_FINITE = False
    try:
        with np.errstate(invalid="ignore"):
            assert np.isnan(iris.forward(params, X)).any()
    finally:
        iris.CHECK_FINITE = True


def test_float32_in_float32_throughout(iris) -> None:
    params = iris.init_params(dtype=np.float32)
    X, Y = data()
    assert iris.forward(params, X).dtype == np.float32
    _, grads = iris.loss_and_grad(params, X, Y)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    state = iris.init_state(params)
    iris.step(params, state, X, Y)
    assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}


def test_integer_labels_equal_one_hot(iris) -> None:
    params = iris.init_params()
    X, Y = data()
    L1, g1 = iris.loss_and_grad(params, X, Y)
    L2, g2 = iris.loss_and_grad(params, X, np.eye(3)[Y])
    assert L1 == L2 and all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_single_output_accepts_flat_targets() -> None:
    xor = load("xor")
    params = xor.init_params()
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    assert xor.loss(params, X, [0, 1, 1, 0]) == xor.loss(
        params, X, [[0], [1], [1], [0]]
    )
