"""A generated module checks what it is given: shapes, params, NaN/inf; and keeps dtypes."""

from __future__ import annotations

import re
from pathlib import Path

import harness
import jax_reference as ref
import numpy as np
import pytest
import yaml
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


# --- the targets a loss's derivation assumes ---------------------------------------------

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)


def spec_of(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("bad, where", [(-1.0, "Y[1, 0] = -1.0"), (2, "Y[1, 0] = 2")])
@pytest.mark.parametrize("fn", ["loss", "loss_and_grad", "step", "fit"])
def test_binary_cross_entropy_refuses_targets_outside_0_1(fn, bad, where) -> None:
    xor = load("xor")
    params = xor.init_params()
    before = {k: v.copy() for k, v in params.items()}
    Y = np.array([0, bad, 1, 0])
    call = {
        "loss": lambda: xor.loss(params, XOR_X, Y),
        "loss_and_grad": lambda: xor.loss_and_grad(params, XOR_X, Y),
        "step": lambda: xor.step(params, xor.init_state(params), XOR_X, Y),
        "fit": lambda: xor.fit(params, XOR_X, Y, epochs=1, batch_size=2),
    }[fn]
    with pytest.raises(
        ValueError, match=rf"targets in \[0, 1\].*found {re.escape(where)}"
    ):
        call()
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_binary_cross_entropy_takes_probabilities_as_jax_does() -> None:
    xor, spec = load("xor"), spec_of("xor")
    params = xor.init_params(1)
    Y = np.array([0.0, 0.5, 1.0, 0.25])  # soft targets are in [0, 1]: accepted
    L, grads = xor.loss_and_grad(params, XOR_X, Y)
    L_ref, ref_grads = ref.loss_and_grad(spec, params, XOR_X, Y[:, None])
    assert harness.rel_err(L, L_ref) < 1e-12
    assert max(harness.grad_errors(grads, ref_grads).values()) < 1e-10


@pytest.mark.parametrize(
    "row, found",
    [
        ([1.2, -0.2, 0.0], r"Y\[2\] = \[ 1.2 -0.2  0. \]"),  # sums to 1, not ≥ 0
        ([0.5, 0.4, 0.0], r"Y\[2\] = \[0.5 0.4 0. \] \(sum 0.9\)"),
        ([0.0, 0.0, 0.0], r"Y\[2\] = \[0. 0. 0.\] \(sum 0\)"),
    ],
)
def test_categorical_cross_entropy_refuses_rows_off_the_simplex(
    iris, row, found
) -> None:
    params = iris.init_params()
    X, labels = data()
    Y = np.eye(3)[labels]
    Y[2] = row
    with pytest.raises(
        ValueError, match=r"on the simplex .*assumes it; found " + found
    ):
        iris.loss_and_grad(params, X, Y)
    with pytest.raises(ValueError, match="integers of shape"):  # the hint
        iris.step(params, iris.init_state(params), X, Y)


def test_off_the_simplex_the_derived_gradient_is_wrong(iris) -> None:
    # why the rows are refused: the derived δ = ŷ - y is the gradient only for Σy = 1
    spec = spec_of("iris_mlp")
    params = iris.init_params(2)
    X, labels = data()
    Y = 0.9 * np.eye(3)[labels]  # rows summing to 0.9
    iris.CHECK_FINITE = False  # skips the range check too, as the README says
    try:
        L, grads = iris.loss_and_grad(params, X, Y)
    finally:
        iris.CHECK_FINITE = True
    L_ref, ref_grads = ref.loss_and_grad(spec, params, X, Y)
    assert harness.rel_err(L, L_ref) < 1e-12  # the loss is right ...
    assert harness.rel_err(grads["b3"], ref_grads["b3"]) > 1e-2  # ... its gradient not


def test_categorical_cross_entropy_takes_smoothed_rows_as_jax_does(iris) -> None:
    spec = spec_of("iris_mlp")
    params = iris.init_params(3)
    X, labels = data()
    Y = 0.9 * np.eye(3)[labels] + 0.1 / 3  # label smoothing: on the simplex
    L, grads = iris.loss_and_grad(params, X, Y)
    L_ref, ref_grads = ref.loss_and_grad(spec, params, X, Y)
    assert harness.rel_err(L, L_ref) < 1e-12
    assert max(harness.grad_errors(grads, ref_grads).values()) < 1e-10
    # rows rounded to float32 sum to 1 within float32's rounding: accepted with
    # float64 params (the tolerance follows the coarser dtype)
    iris.loss(params, X, Y.astype(np.float32))


def test_float_labels_that_are_whole_numbers_are_labels(iris) -> None:
    params = iris.init_params()
    X, labels = data()
    L1, g1 = iris.loss_and_grad(params, X, labels)
    L2, g2 = iris.loss_and_grad(params, X, labels.astype(float))
    assert L1 == L2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    Y = labels.astype(float)
    Y[3] = 1.5
    with pytest.raises(ValueError, match=r"integers in \[0, 3\), found 1.5 at Y\[3\]"):
        iris.loss(params, X, Y)
    Y[3] = np.nan
    with pytest.raises(ValueError, match=r"found nan at Y\[3\]"):
        iris.loss(params, X, Y)


@pytest.mark.parametrize("label", [3, -1, 7])
def test_an_out_of_range_label_is_named_with_its_value(iris, label) -> None:
    params = iris.init_params()
    X, labels = data()
    labels[4] = label
    with pytest.raises(ValueError, match=rf"found {label} at Y\[4\]"):
        iris.step(params, iris.init_state(params), X, labels)


# --- arrays of the wrong kind, empty batches ---------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X + 0j,
        lambda X: X.astype(str),  # numbers as text are not parsed
        lambda X: X.astype(object),
        lambda X: X.astype("datetime64[s]"),
    ],
    ids=["complex", "str", "object", "datetime"],
)
@pytest.mark.parametrize("fn", ["forward", "loss", "step", "fit"])
def test_x_of_a_non_real_dtype_is_a_type_error(iris, make, fn) -> None:
    params = iris.init_params()
    X, Y = data()
    bad = make(np.round(X))
    call = {
        "forward": lambda: iris.forward(params, bad),
        "loss": lambda: iris.loss(params, bad, Y),
        "step": lambda: iris.step(params, iris.init_state(params), bad, Y),
        "fit": lambda: iris.fit(params, bad, Y, epochs=1, batch_size=2),
    }[fn]
    with pytest.raises(
        TypeError,
        match=f"X must hold real numbers .*found dtype {re.escape(str(bad.dtype))}",
    ):
        call()


@pytest.mark.parametrize("make", [lambda Y: Y + 0j, lambda Y: Y.astype(str)])
def test_y_of_a_non_real_dtype_is_a_type_error(iris, make) -> None:
    params = iris.init_params()
    X, labels = data()
    for Y in (labels, np.eye(3)[labels]):
        with pytest.raises(TypeError, match="Y must hold real numbers"):
            iris.loss_and_grad(params, X, make(Y))


def test_bool_and_integer_arrays_are_numbers() -> None:
    xor = load("xor")
    params = xor.init_params()
    X, Y = XOR_X.astype(bool), np.array([False, True, True, False])
    assert xor.loss(params, X, Y) == xor.loss(params, XOR_X, [0.0, 1.0, 1.0, 0.0])
    assert xor.loss(params, XOR_X.astype(np.int8), Y.astype(np.uint8)) == xor.loss(
        params, XOR_X, Y
    )


@pytest.mark.parametrize("fn", ["loss", "loss_and_grad", "step"])
def test_an_empty_batch_is_a_value_error(iris, fn) -> None:
    params = iris.init_params()
    X, Y = data()
    args = (params, iris.init_state(params)) if fn == "step" else (params,)
    with pytest.raises(ValueError, match=r"X has no examples \(shape \(0, 4\)\)"):
        getattr(iris, fn)(*args, X[:0], Y[:0])
    assert iris.forward(params, X[:0]).shape == (0, 3)  # no loss: nothing to refuse


def test_wrong_types_are_type_errors(iris) -> None:
    params = iris.init_params()
    X, Y = data()
    with pytest.raises(TypeError, match="params must be a dict"):
        iris.loss(list(params.values()), X, Y)
    with pytest.raises(TypeError, match=r"params\['b1'\] must be a NumPy array"):
        iris.loss({**params, "b1": [0.0] * 16}, X, Y)


def test_a_custom_loss_says_what_targets_it_takes(generate) -> None:
    module = generate(
        harness.spec(
            "customloss",
            2,
            [(3, "tanh"), (2, "sigmoid")],
            {"name": "sq", "expr": "(yhat - y)**2"},
        )
    )
    assert module.TARGETS == "real"
    assert "as the custom loss takes them" in Path(module.__file__).read_text()
    params = module.init_params()
    # no range is assumed: a target of 5 is the user's business
    assert np.isfinite(module.loss(params, np.zeros((2, 2)), [[5.0, 0.0], [0.0, 1.0]]))


# --- load_params on files that are not save_params' archives -------------------------------


@pytest.mark.parametrize(
    "write, found",
    [
        (lambda p, good: p.write_bytes(b""), "found an empty file"),
        (lambda p, good: p.write_text("W1,b1\n1,2\n"), "found a file starting b'W1,b1"),
        (lambda p, good: np.save(p, np.zeros(3)), r"found a \.npy file"),
        (
            lambda p, good: p.write_bytes(
                good.read_bytes()[: good.stat().st_size // 2]
            ),
            "not a readable .npz archive",
        ),
        (
            lambda p, good: np.savez(p, W1=np.zeros((4, 16), dtype=np.int64)),
            r"params must be a dict with keys",
        ),
    ],
    ids=["empty", "text", "npy", "truncated", "wrong-contents"],
)
def test_load_params_names_the_file_and_what_it_expected(iris, tmp_path, write, found):
    good = tmp_path / "good.npz"
    iris.save_params(good, iris.init_params())
    path = tmp_path / "params.npz"
    write(path, good)
    if not path.exists():  # np.save appended .npy
        path = path.with_suffix(".npz.npy")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + found):
        iris.load_params(path)
