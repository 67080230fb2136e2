"""fit as users expect it, in both generated modules: early stopping that restores the
best epoch (running statistics, optimizer state and dropout generator with it),
callbacks that stop, the progress line (a terminal, a pipe, silence), predict_proba
against torch.softmax / torch.sigmoid, and the array-API module's refusal (or, under
jax.jit, skip) of a step that comes out NaN or inf.

The restored parameters are checked against an independent run of fit stopped at the
best epoch (epochs=best_epoch + 1), the best epoch against the argmin of a run's whole
validation history, probabilities against PyTorch applied to logits computed here.
"""

from __future__ import annotations

import io
import itertools
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import xp_backends as xb

import symgrad

# a wide network on twelve noisy points of y = x: it fits the noise (the training loss
# falls far below the noise's, the validation loss rises after its minimum)
OVERFIT = {
    "name": "overfit",
    "input": 1,
    "layers": [
        {"units": 64, "activation": "tanh"},
        {"type": "batchnorm", "momentum": 0.5},
        {"type": "dropout", "rate": 0.1},
        {"units": 64, "activation": "tanh"},
        {"units": 1, "activation": "identity"},
    ],
    "loss": "mse",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}
CLASSES = {
    "name": "classes",
    "input": 3,
    "layers": [
        {"units": 8, "activation": "tanh"},
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
    "optimizer": {"name": "momentum", "learning_rate": 0.1},
}
REGRESSION = {
    "name": "regression",
    "input": 3,
    "layers": [{"units": 2, "activation": "identity"}],
    "loss": "mse",
    "optimizer": {"name": "sgd", "learning_rate": 0.1},
}
OVERFLOWING = {  # no batchnorm to hide an overflow (tests/test_silent_traps.py's)
    "name": "overflowing",
    "input": 3,
    "layers": [
        {"units": 4, "activation": "identity"},
        {"units": 1, "activation": "identity"},
    ],
    "loss": "mse",
    "optimizer": {"name": "adam", "learning_rate": 0.1},
}
TARGETS = ("numpy", "array-api")
PATIENCE = 5

_modules: dict = {}


@pytest.fixture
def module(generate, tmp_path_factory):
    """module(spec, target) -> the generated module of that target, made once."""

    def make(spec, target="numpy"):
        key = (spec["name"], target)
        if key not in _modules:
            if target == "numpy":
                _modules[key] = generate(spec)
            else:
                out = tmp_path_factory.mktemp("fit_features")
                path = symgrad.generate(spec, out, target="array-api")
                _modules[key] = xb.load_module(path, f"_fit_features_{spec['name']}_xp")
        return _modules[key]

    return make


def fit(module, target, params, X, Y, **kwargs):
    """fit in either module: (params, state, history), params the dict passed in."""
    if target == "numpy":
        state = kwargs.pop("state", None)
        if state is None:
            state = module.init_state(params, kwargs.get("seed", 0))
        history = module.fit(params, X, Y, state=state, **kwargs)
        return params, state, history
    return module.fit(params, X, Y, **kwargs)


def noisy_line(n, rng):
    X = rng.uniform(-2, 2, (n, 1))
    return X, X + 0.7 * rng.standard_normal((n, 1))


def overfit_data():
    rng = np.random.default_rng(1)
    X, Y = noisy_line(12, rng)
    return X, Y, noisy_line(50, rng)


def state_arrays(module, state):
    """What the state holds of an epoch: t and the optimizer's arrays, as NumPy."""
    out = {"t": int(state["t"])}
    for key in module.MOMENTS:
        out.update({(key, k): np.asarray(state[key][k]) for k in module.PARAM_NAMES})
    return out


def classes_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)


# --- early stopping ---------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_early_stopping_restores_the_best_epoch_as_a_run_stopped_there(module, target):
    m = module(OVERFIT, target)
    X, Y, validation = overfit_data()
    kwargs = {"batch_size": 6, "seed": 2, "validation_data": validation}
    # the whole run, for its validation history: the task overfits
    _, _, whole = fit(m, target, m.init_params(0), X, Y, epochs=60, **kwargs)
    params = m.init_params(0)
    arrays = dict(params)
    params, state, history = fit(
        m, target, params, X, Y, epochs=60, early_stopping=PATIENCE, **kwargs
    )
    best = history["best_epoch"]
    ran = len(history["loss"])
    assert history["stopped_early"] is True
    assert ran == best + 1 + PATIENCE < 60
    # the same epochs as the whole run, the best one its argmin so far
    assert history["val_loss"] == whole["val_loss"][:ran]
    assert best == int(np.argmin(whole["val_loss"][:ran])) > 0
    # it overfits after the best epoch: training loss lower, validation loss higher
    assert history["loss"][-1] < history["loss"][best]
    assert history["val_loss"][-1] > history["val_loss"][best]
    # an independent run that stops at the best epoch leaves the same numbers
    again = m.init_params(0)
    again, again_state, _ = fit(m, target, again, X, Y, epochs=best + 1, **kwargs)
    assert list(params) == list(again)
    for k in params:  # the running statistics (mean, var of batchnorm) too
        assert np.asarray(params[k]).tobytes() == np.asarray(again[k]).tobytes(), k
    assert {"mean2", "var2"} <= set(m.BUFFER_NAMES)
    got, want = (state_arrays(m, s) for s in (state, again_state))
    assert got.keys() == want.keys() and got["t"] == want["t"]
    for k in got:
        assert np.array_equal(got[k], want[k]), k
    if target == "numpy":  # in place: the caller's arrays hold the best epoch's
        assert all(params[k] is arrays[k] for k in params)
        drawn = state["rng"].bit_generator.state
        assert drawn == again_state["rng"].bit_generator.state
        # and the validation loss of the restored params is the best epoch's
        assert m.loss(params, *validation) == history["val_loss"][best]


def test_early_stopping_gives_the_numpy_modules_numbers_in_both_modules(module):
    X, Y, validation = overfit_data()
    kwargs = {"epochs": 60, "batch_size": 6, "validation_data": validation}
    runs = {}
    for target in TARGETS:
        m = module(OVERFIT, target)
        runs[target] = fit(
            m, target, m.init_params(0), X, Y, early_stopping=3, **kwargs
        )
    (p_np, _, h_np), (p_xp, _, h_xp) = runs["numpy"], runs["array-api"]
    assert h_np["best_epoch"] == h_xp["best_epoch"]
    assert len(h_np["loss"]) == len(h_xp["loss"])
    for k in p_np:
        assert xb.relative_error(np.asarray(p_xp[k]), p_np[k]) <= xb.TRAIN_RTOL, k


@pytest.mark.parametrize(
    "backend",
    xb.pytest_params(lambda b: b.name in ("array-api-strict", "torch-cpu", "jax-jit")),
)
def test_early_stopping_on_other_array_libraries(module, backend):
    """The array-API module's early stopping holds the best epoch's arrays of any
    library (and, under jax.jit, of a compiled step): the NumPy module's numbers."""
    xp_module, np_module = module(OVERFIT, "array-api"), module(OVERFIT)
    X, Y, (X_val, Y_val) = overfit_data()
    kwargs = {"epochs": 40, "batch_size": 6, "early_stopping": 3}
    p_np = np_module.init_params(0)
    want = np_module.fit(p_np, X, Y, validation_data=(X_val, Y_val), **kwargs)
    assert want["stopped_early"]
    with backend.context():
        params = xp_module.init_params(
            0, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64")
        )
        if backend.name == "jax-jit":
            kwargs["step"] = backend.call(xp_module.train_step)
        params, _, got = xp_module.fit(
            params,
            backend.data(X),
            backend.data(Y),
            validation_data=(backend.data(X_val), backend.data(Y_val)),
            **kwargs,
        )
        params = backend.back(params)
    assert got["best_epoch"] == want["best_epoch"] and got["stopped_early"]
    for k in p_np:
        assert xb.relative_error(params[k], p_np[k]) <= xb.TRAIN_RTOL, k


@pytest.mark.parametrize("target", TARGETS)
def test_early_stopping_after_the_last_epoch_still_restores_the_best(module, target):
    m = module(OVERFIT, target)
    X, Y, validation = overfit_data()
    kwargs = {"batch_size": 6, "validation_data": validation}
    _, _, whole = fit(m, target, m.init_params(0), X, Y, epochs=40, **kwargs)
    best = int(np.argmin(whole["val_loss"]))
    assert best < 39  # the task overfits: the last epoch is not the best
    params, _, history = fit(
        m, target, m.init_params(0), X, Y, epochs=40, early_stopping=100, **kwargs
    )
    assert history["best_epoch"] == best and history["stopped_early"] is False
    assert len(history["loss"]) == 40
    again, _, _ = fit(m, target, m.init_params(0), X, Y, epochs=best + 1, **kwargs)
    for k in params:
        assert np.array_equal(np.asarray(params[k]), np.asarray(again[k])), k


@pytest.mark.parametrize("target", TARGETS)
def test_early_stopping_needs_validation_data_and_a_positive_patience(module, target):
    m = module(CLASSES, target)
    X, Y = classes_data()
    params = m.init_params(0)
    before = {k: np.asarray(v).copy() for k, v in params.items()}
    with pytest.raises(ValueError, match=r"early_stopping=3 .*pass validation_data="):
        m.fit(params, X, Y, epochs=2, batch_size=8, early_stopping=3)
    for bad, error in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="early_stopping must be a positive int"):
            m.fit(
                params,
                X,
                Y,
                epochs=2,
                batch_size=8,
                early_stopping=bad,
                validation_data=(X, Y),
            )
    assert all(np.array_equal(np.asarray(params[k]), before[k]) for k in params)
    # without early_stopping, history has no keys of it
    _, _, history = fit(m, target, params, X, Y, epochs=1, batch_size=8)
    assert sorted(history) == ["accuracy", "loss", "lr"]


# --- callbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_a_callback_sees_each_epoch_and_may_stop(module, target):
    m = module(CLASSES, target)
    X, Y = classes_data()
    seen = []

    def callback(epoch, history):
        seen.append((epoch, len(history["loss"]), history["loss"][-1]))
        return epoch == 2 or None

    params, state, history = fit(
        m, target, m.init_params(0), X, Y, epochs=10, batch_size=8, callback=callback
    )
    assert [(e, n) for e, n, _ in seen] == [(0, 1), (1, 2), (2, 3)]
    assert [L for _, _, L in seen] == history["loss"]
    again, _, want = fit(m, target, m.init_params(0), X, Y, epochs=3, batch_size=8)
    assert history == want
    for k in params:
        assert np.array_equal(np.asarray(params[k]), np.asarray(again[k])), k
    assert int(state["t"]) == 3 * 5


@pytest.mark.parametrize("target", TARGETS)
def test_a_callback_that_stops_with_early_stopping_restores_the_best(
    module, target, capsys
):
    m = module(OVERFIT, target)
    X, Y, validation = overfit_data()
    kwargs = {"batch_size": 6, "validation_data": validation}
    params, _, history = fit(
        m,
        target,
        m.init_params(0),
        X,
        Y,
        epochs=60,
        early_stopping=100,
        callback=lambda epoch, history: epoch == 8,
        verbose=True,
        **kwargs,
    )
    assert len(history["loss"]) == 9 and history["stopped_early"] is False
    best = history["best_epoch"]
    assert best == int(np.argmin(history["val_loss"])) < 8  # not the last: restored
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"stopped by the callback: restored epoch {best + 1}, ")
    again, _, _ = fit(m, target, m.init_params(0), X, Y, epochs=best + 1, **kwargs)
    for k in params:
        assert np.array_equal(np.asarray(params[k]), np.asarray(again[k])), k


@pytest.mark.parametrize("target", TARGETS)
def test_an_interrupted_fit_keeps_what_it_trained(module, target):
    """Ctrl-C (here from the callback) ends fit with the arrays of its last step in
    the caller's dicts: in place in the NumPy module, stored by the array-API one."""
    m = module(CLASSES, target)
    X, Y = classes_data()

    def interrupt(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    params, state = m.init_params(0), None
    if target == "array-api":
        state = m.init_state(params)
    with pytest.raises(KeyboardInterrupt):
        m.fit(params, X, Y, epochs=5, batch_size=8, callback=interrupt, state=state)
    again, again_state, _ = fit(
        m, target, m.init_params(0), X, Y, epochs=2, batch_size=8
    )
    for k in params:
        assert np.array_equal(np.asarray(params[k]), np.asarray(again[k])), k
    if state is not None:
        assert int(state["t"]) == int(again_state["t"]) == 2 * 5


@pytest.mark.parametrize("target", TARGETS)
def test_a_callback_is_checked(module, target):
    m = module(CLASSES, target)
    X, Y = classes_data()
    params = m.init_params(0)
    with pytest.raises(
        TypeError, match="callback must be a function fn.epoch, history"
    ):
        m.fit(params, X, Y, epochs=1, batch_size=8, callback="stop")
    with pytest.raises(TypeError, match="must return True .*found list"):
        m.fit(params, X, Y, epochs=3, batch_size=8, callback=lambda e, h: [e])
    stopped = fit(
        m, target, params, X, Y, epochs=3, batch_size=8, callback=lambda e, h: np.True_
    )
    assert len(stopped[2]["loss"]) == 1


# --- the progress line ----------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("target", TARGETS)
def test_progress_on_a_terminal_is_one_line_per_epoch_redrawn(
    module, target, monkeypatch
):
    m = module(CLASSES, target)
    X, Y = classes_data()
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(m, "_REDRAW_S", 0.0)  # every batch redraws
    shown = fit(m, target, m.init_params(0), X, Y, epochs=3, batch_size=8, verbose=True)
    quiet = fit(m, target, m.init_params(0), X, Y, epochs=3, batch_size=8)
    assert shown[2] == quiet[2]  # the display changes no number
    for k in quiet[0]:
        assert np.array_equal(np.asarray(shown[0][k]), np.asarray(quiet[0][k])), k
    text = screen.getvalue()
    lines = text.split("\n")
    assert len(lines) == 4 and lines[-1] == ""
    for e, line in enumerate(lines[:3], 1):
        draws = line.split("\r")[1:]
        assert line.startswith("\r") and len(draws) == 5  # batches 1-4, then the epoch
        for b, draw in enumerate(draws[:4], 1):
            pattern = (
                rf"epoch {e}/3: batch {b}/5, loss [\d.e+-]+, [\d.]+s elapsed, "
                r"ETA [\d.]+s *"
            )
            assert re.fullmatch(pattern, draw), draw
        final = rf"epoch {e}/3: 5/5 batches, loss [\d.e+-]+, accuracy [\d.]+, [\d.]+s *"
        assert re.fullmatch(final, draws[-1]), draws[-1]
        # each draw covers the one before it
        assert all(len(b) >= len(a.rstrip()) for a, b in itertools.pairwise(draws))


@pytest.mark.parametrize("target", TARGETS)
def test_progress_in_a_pipe_is_one_line_per_epoch_and_silent_without_verbose(
    module, target, capsys
):
    m = module(OVERFIT, target)
    X, Y, validation = overfit_data()
    kwargs = {"batch_size": 6, "validation_data": validation, "epochs": 60}
    fit(m, target, m.init_params(0), X, Y, **kwargs)
    assert capsys.readouterr().out == ""
    _, _, history = fit(
        m,
        target,
        m.init_params(0),
        X,
        Y,
        early_stopping=PATIENCE,
        verbose=True,
        **kwargs,
    )
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    ran, best = len(history["loss"]), history["best_epoch"]
    assert len(lines) == ran + 1
    for e, line in enumerate(lines[:-1]):
        v = history["val_loss"][e]
        assert (
            line == f"epoch {e + 1}/60: loss {history['loss'][e]:.4g}, val_loss {v:.4g}"
        )
    assert lines[-1] == (
        f"stopped early: restored epoch {best + 1}, the one with the lowest val_loss "
        f"({history['val_loss'][best]:.4g})"
    )


# --- predict_proba ---------------------------------------------------------------------------


def torch_logits(params, X):
    """The output layer's pre-activation of a one-hidden-layer tanh network, in
    PyTorch float64."""
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(np.asarray(v)) for k, v in params.items()}
    hidden = torch.tanh(torch.tensor(X) @ t["W1"] + t["b1"])
    return hidden @ t["W2"] + t["b2"]


@pytest.mark.parametrize("target", TARGETS)
def test_predict_proba_is_softmax_rows_and_sigmoid_columns(module, target):
    torch = pytest.importorskip("torch")
    X, _ = classes_data(15, seed=4)
    for spec, reference in ((CLASSES, torch.softmax), (BINARY, torch.sigmoid)):
        m = module(spec, target)
        params = m.init_params(3)
        for k in params:  # biases away from 0
            params[k] = params[k] + 0.1 * np.arange(params[k].size).reshape(
                params[k].shape
            )
        proba = np.asarray(m.predict_proba(params, X))
        logits = torch_logits(params, X)
        want = reference(logits, 1) if spec is CLASSES else reference(logits)
        assert proba.shape == tuple(want.shape) == (15, spec["layers"][-1]["units"])
        np.testing.assert_allclose(proba, want.numpy(), rtol=1e-13, atol=1e-15)
        predicted = np.asarray(m.predict(params, X))
        if spec is CLASSES:
            assert np.array_equal(predicted, proba.argmax(axis=1))
        else:
            assert np.array_equal(predicted, (proba >= 0.5).astype(predicted.dtype))


def test_predict_proba_keeps_float32_and_the_array_library(module):
    torch = pytest.importorskip("torch")
    m = module(CLASSES, "array-api")
    params = m.init_params(0, xp=torch, dtype=torch.float32)
    proba = m.predict_proba(params, torch.ones((4, 3), dtype=torch.float32))
    assert isinstance(proba, torch.Tensor) and proba.dtype == torch.float32
    assert torch.allclose(proba.sum(dim=1), torch.ones(4, dtype=torch.float32))
    numpy_module = module(CLASSES)
    p32 = numpy_module.init_params(0, dtype=np.float32)
    assert numpy_module.predict_proba(p32, np.ones((4, 3))).dtype == np.float32


@pytest.mark.parametrize("target", TARGETS)
def test_predict_proba_refuses_a_regression_network(module, target):
    m = module(REGRESSION, target)
    with pytest.raises(ValueError, match="predict_proba is for classifiers; this net"):
        m.predict_proba(m.init_params(0), np.ones((2, 3)))


# --- the array-API module's step: refused or skipped when it overflows ------------------------


def assert_same_bytes(got, want):
    """Trees of arrays (dicts, tuples), equal bit for bit."""
    got, want = xb._leaves(got), xb._leaves(want)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize(
    "backend",
    xb.pytest_params(
        lambda b: b.name in ("numpy", "array-api-strict", "torch-cpu", "jax")
    ),
)
def test_xp_train_step_refuses_a_step_that_overflows(module, backend):
    m, reference = module(OVERFLOWING, "array-api"), module(OVERFLOWING)
    X, Y = np.ones((4, 3)), np.zeros((4, 1))
    huge = np.full((4, 3), 1e200)
    with backend.context():
        params = backend.to(m.init_params(0))
        state = m.init_state(params)
        params, state, _ = m.train_step(params, state, backend.data(X), backend.data(Y))
        kept = backend.back((params, state))
        # NumPy warns of the overflow (the standard has no errstate), then the refusal
        with np.errstate(over="ignore", invalid="ignore"):
            with pytest.raises(ValueError) as refused:
                m.train_step(params, state, backend.data(huge), backend.data(Y))
        # the inputs are as they were (the module never writes into them)
        assert_same_bytes(backend.back((params, state)), kept)
    # the NumPy module's step says the same
    p, s = reference.init_params(0), None
    s = reference.init_state(p)
    reference.step(p, s, X, Y)
    with pytest.raises(ValueError) as numpy_refused:
        reference.step(p, s, huge, Y)
    said = str(refused.value)
    assert said.startswith(
        "step refused: the loss came out inf and the gradients of W1, W2 came out NaN "
        "or inf; the update was skipped"
    )
    assert said.split(";")[0] == str(numpy_refused.value).split(";")[0]


def test_xp_train_step_under_jit_skips_a_step_that_overflows(module):
    pytest.importorskip("jax")
    backend = xb.backend("jax-jit")
    m = module(OVERFLOWING, "array-api")
    X, Y, huge = np.ones((4, 3)), np.zeros((4, 1)), np.full((4, 3), 1e200)
    step = backend.call(m.train_step)
    params = backend.to(m.init_params(0))
    state = m.init_state(params)
    params, state, _ = step(params, state, backend.data(X), backend.data(Y))
    kept = backend.back((params, state))
    new, new_state, L = step(params, state, backend.data(huge), backend.data(Y))
    assert not np.isfinite(float(L))
    assert int(new_state["t"]) == 1  # t did not move: the step was skipped
    assert_same_bytes(backend.back((new, new_state)), kept)
    # and a good step after it goes on as if the skipped one had not been tried
    after = step(new, new_state, backend.data(X), backend.data(Y))
    direct = step(params, state, backend.data(X), backend.data(Y))
    assert_same_bytes(after, direct)


def test_xp_fit_stops_after_an_epoch_with_a_step_that_overflows(module):
    """fit skips the step (no flag read each step) and stops at the end of its epoch,
    params holding the epoch's other steps: eager and under jax.jit alike. The NumPy
    module's fit stops at the step itself, with the same params here (the bad row is
    in the epoch's last batch)."""
    pytest.importorskip("jax")
    m, reference = module(OVERFLOWING, "array-api"), module(OVERFLOWING)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    X[np.random.default_rng(0).permutation(8)[4]] = 1e200  # in the second batch
    p = reference.init_params(0)
    with pytest.raises(ValueError, match="^step refused"):
        reference.fit(p, X, Y, epochs=2, batch_size=4)
    assert not np.array_equal(p["W1"], reference.init_params(0)["W1"])  # one step
    jax_jit = xb.backend("jax-jit")
    for backend, step in (
        (xb.backend("numpy"), None),
        (jax_jit, jax_jit.call(m.train_step)),
    ):
        params = backend.to(m.init_params(0))
        with np.errstate(over="ignore", invalid="ignore"):  # NumPy's warnings
            with pytest.raises(
                ValueError, match=r"^fit stopped: 1 step\(s\) up to epoch 1 were skip"
            ):
                m.fit(
                    params,
                    backend.data(X),
                    backend.data(Y),
                    epochs=2,
                    batch_size=4,
                    step=step,
                )
        for k in p:  # the skipped step left them as the first step made them
            assert xb.relative_error(np.asarray(params[k]), p[k]) <= xb.TRAIN_RTOL, k


# --- the docs ---------------------------------------------------------------------------------


def test_the_example_in_the_docs_runs(tmp_path, monkeypatch, capsys):
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "generated-module.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(# docs/generated-module.md.*?)```", text, re.S)
    package = tmp_path / "generated"
    symgrad.generate(root / "examples" / "iris.yaml", package)
    (package / "__init__.py").write_text("")
    for name in ("generated", "generated.iris"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    scope: dict = {}
    exec(compile(block, "docs/generated-module.md", "exec"), scope)
    history, best = scope["history"], scope["best"]
    assert scope["iris"].__file__ == str(package / "iris.py")
    lines = capsys.readouterr().out.splitlines()
    ran = len(history["loss"])
    assert history["stopped_early"] and best + 1 + 5 == ran < 100
    assert len(lines) == ran + 1 and lines[0].startswith("epoch 1/100: loss ")
    assert lines[-1].startswith(f"stopped early: restored epoch {best + 1}, the one")
    assert history["val_loss"][best] == min(history["val_loss"])
    assert scope["proba"].shape == (30, 3)
