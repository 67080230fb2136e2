"""fit: seeded mini-batches (the last one partial), epochs, history, validation, verbose."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from harness import import_path

CLASSIFIER = {
    "name": "clf",
    "input": 3,
    "layers": [
        {"units": 8, "activation": "relu"},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.05},
}
BINARY = {
    "name": "binary",
    "input": 3,
    "layers": [
        {"units": 6, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "loss": "binary_crossentropy",
    "optimizer": {"name": "momentum", "learning_rate": 0.1, "nesterov": True},
}
REGRESSION = {
    "name": "reg",
    "input": 3,
    "layers": [
        {"units": 6, "activation": "tanh"},
        {"units": 2, "activation": "identity"},
    ],
    "loss": "mse",
    "l2": 0.01,
    "optimizer": {"name": "sgd", "learning_rate": 0.05},
}


@pytest.fixture
def modules(generate):
    return {spec["name"]: generate(spec) for spec in (CLASSIFIER, BINARY, REGRESSION)}


def data(name: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    if name == "clf":
        return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)  # labels
    if name == "binary":
        return X, (X[:, 0] + X[:, 2] > 0).astype(float)  # flat 0/1 targets
    return X, np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)


@pytest.mark.parametrize("name", ["clf", "binary", "reg"])
def test_fit_is_step_over_seeded_shuffled_batches(modules, name):
    module = modules[name]
    X, Y = data(name, 23)  # batches of 5: 5, 5, 5, 5, 3
    fitted, stepped = module.init_params(7), module.init_params(7)
    history = module.fit(fitted, X, Y, epochs=3, batch_size=5, seed=11)
    state = module.init_state(stepped)
    losses = []
    for epoch in range(3):
        order = np.random.default_rng(11 + epoch).permutation(len(X))
        total = 0.0
        for start in range(0, len(X), 5):
            batch = order[start : start + 5]
            total += module.step(stepped, state, X[batch], Y[batch]) * len(batch)
        losses.append(total / len(X))
    for k in fitted:
        np.testing.assert_array_equal(fitted[k], stepped[k])
    assert history["loss"] == pytest.approx(losses, rel=1e-12)
    assert sorted(state["buffers"]) == [3, 5]  # the partial batch has its own arrays
    if name == "reg":
        assert sorted(history) == ["loss", "lr"]
    else:
        assert sorted(history) == ["accuracy", "loss", "lr"]
        acc = module.predict(fitted, X).reshape(len(X), -1) == np.reshape(
            Y, (len(X), -1)
        )
        assert history["accuracy"][-1] == pytest.approx(acc.mean())


def test_seeds_and_continuing_from_a_state(modules):
    module = modules["clf"]
    X, Y = data("clf", 40)
    runs = {}
    for seed in (0, 0, 1):
        params = module.init_params(0)
        module.fit(params, X, Y, epochs=2, batch_size=8, seed=seed)
        runs.setdefault(seed, []).append(params["W1"])
    np.testing.assert_array_equal(runs[0][0], runs[0][1])
    assert not np.array_equal(runs[0][0], runs[1][0])
    # two calls of one epoch with one state = one call of two epochs
    once, twice = module.init_params(0), module.init_params(0)
    h = module.fit(once, X, Y, epochs=2, batch_size=8, seed=4)
    state = module.init_state(twice)
    h1 = module.fit(twice, X, Y, epochs=1, batch_size=8, seed=4, state=state)
    h2 = module.fit(twice, X, Y, epochs=1, batch_size=8, seed=5, state=state)
    for k in once:
        np.testing.assert_array_equal(once[k], twice[k])
    assert h["loss"] == h1["loss"] + h2["loss"]


def test_validation_and_verbose(modules, capsys):
    module = modules["clf"]
    X, Y = data("clf", 30)
    X_val, Y_val = data("clf", 12, seed=1)
    params = module.init_params(0)
    history = module.fit(
        params,
        X,
        np.eye(3)[Y],  # one-hot rows work as well as labels
        epochs=4,
        batch_size=7,
        validation_data=(X_val, Y_val),
        verbose=True,
    )
    assert sorted(history) == ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert all(len(v) == 4 for v in history.values())
    assert history["val_loss"][-1] == pytest.approx(module.loss(params, X_val, Y_val))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    pattern = r"epoch 4/4: loss [\d.e-]+, accuracy [\d.]+, val_loss [\d.e-]+, val_accuracy [\d.]+"
    assert re.fullmatch(pattern, lines[-1]), lines[-1]


def test_regression_history_and_float32(modules):
    module = modules["reg"]
    X, Y = data("reg", 50)
    params = module.init_params(0, dtype=np.float32)
    history = module.fit(
        params, X, Y, epochs=30, batch_size=16, validation_data=(X[:10], Y[:10])
    )
    assert sorted(history) == ["loss", "lr", "val_loss"]
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"epochs": -1, "batch_size": 4}, ValueError, "epochs must be a non-negative"),
        ({"epochs": 1, "batch_size": 0}, ValueError, "batch_size must be a positive"),
        ({"epochs": 1.5, "batch_size": 4}, TypeError, "epochs must be a non-negative"),
        ({"epochs": 2.0, "batch_size": 4}, TypeError, "found 2.0"),
        ({"epochs": 1, "batch_size": True}, TypeError, "batch_size must be a positive"),
        ({"epochs": 1, "batch_size": "4"}, TypeError, "found '4'"),
        (
            {"epochs": 1, "batch_size": 4, "seed": None},
            TypeError,
            "a seed repeats a run",
        ),
        ({"epochs": 1, "batch_size": 4, "seed": -1}, ValueError, "seed must be a non-"),
        ({"epochs": 1, "batch_size": 4, "seed": np.bool_(1)}, TypeError, "seed must"),
    ],
)
def test_fit_refuses_bad_settings(modules, kwargs, error, message):
    module = modules["reg"]
    X, Y = data("reg", 10)
    params = module.init_params(0)
    with pytest.raises(error, match=message):
        module.fit(params, X, Y, **kwargs)
    np.testing.assert_array_equal(params["W1"], module.init_params(0)["W1"])
    with pytest.raises(ValueError, match="X has 10 examples but Y has shape"):
        module.fit(module.init_params(0), X, Y[:9], epochs=1, batch_size=4)


def test_fit_with_zero_epochs_changes_nothing(modules):
    module = modules["binary"]
    X, Y = data("binary", 10)
    params = module.init_params(0)
    history = module.fit(params, X, Y, epochs=0, batch_size=4)
    assert history == {"loss": [], "lr": [], "accuracy": []}
    np.testing.assert_array_equal(params["W1"], module.init_params(0)["W1"])


def test_the_examples_modules_save_and_load(tmp_path):
    root = Path(__file__).resolve().parent.parent / "generated"
    for path in sorted(root.glob("*.py")):
        module = import_path(path, f"_saved_{path.stem}")
        params = module.init_params(5, dtype=np.float32)
        module.save_params(tmp_path / path.stem, params)
        loaded = module.load_params(tmp_path / f"{path.stem}.npz")
        assert list(loaded) == list(params), path.name
        for k in params:
            assert loaded[k].dtype == np.float32, (path.name, k)
            np.testing.assert_array_equal(loaded[k], params[k])


def test_fit_takes_any_integer_for_its_counts(modules):
    module = modules["clf"]
    X, Y = data("clf", 23)
    a, b = module.init_params(0), module.init_params(0)
    h1 = module.fit(a, X, Y, epochs=2, batch_size=5, seed=3)
    h2 = module.fit(
        b, X, Y, epochs=np.int64(2), batch_size=np.uint8(5), seed=np.int32(3)
    )
    assert h1 == h2 and len(h2["loss"]) == 2
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_fit_refuses_an_empty_training_or_validation_set(modules):
    module = modules["clf"]
    X, Y = data("clf", 10)
    params = module.init_params(0)
    with pytest.raises(ValueError, match=r"X has no examples \(shape \(0, 3\)\)"):
        module.fit(params, X[:0], Y[:0], epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="^validation_data: X_val has no examples"):
        module.fit(params, X, Y, epochs=1, batch_size=4, validation_data=(X[:0], Y[:0]))
    np.testing.assert_array_equal(params["W1"], module.init_params(0)["W1"])


def test_fit_refuses_a_state_of_another_optimizer_before_training(modules):
    clf, binary = modules["clf"], modules["binary"]  # adam, momentum
    X, Y = data("clf", 10)
    params = clf.init_params(0)
    momentum_state = binary.init_state(binary.init_params(0))
    with pytest.raises(
        ValueError,
        match=r"optimizer, adam, .*the keys of the momentum optimizer's state",
    ):
        clf.fit(params, X, Y, epochs=1, batch_size=4, state=momentum_state)
    np.testing.assert_array_equal(params["W1"], clf.init_params(0)["W1"])


def test_fit_keeps_the_arrays_of_its_full_and_partial_batch(modules):
    # 23 examples in batches of 5: sizes 5 and 3 alternate every epoch; their work
    # arrays are made once and reused, and the state holds a bounded number of sizes
    module = modules["reg"]
    X, Y = data("reg", 23)
    params = module.init_params(0)
    state = module.init_state(params)
    for m in (1, 2, 4):  # earlier sizes, least recently used first
        module.step(params, state, X[:m], Y[:m])
    module.fit(params, X, Y, epochs=1, batch_size=5, state=state)
    assert list(state["buffers"]) == [4, 5, 3]  # 1 and 2 were dropped
    kept = {m: state["buffers"][m] for m in (5, 3)}
    module.fit(params, X, Y, epochs=3, batch_size=5, state=state)
    assert list(state["buffers"]) == [4, 5, 3]
    assert all(state["buffers"][m] is kept[m] for m in kept)  # not made again
