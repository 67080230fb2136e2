"""The array-API runtime (symgrad/runtime_xp.py), exercised directly: configured copies.

Each test writes a module as render_xp.py does — constants, a derived part, then the
runtime as render_xp.py copies it — with constants chosen by the test and a derived
part of a few lines written here (a linear layer with ½‖Ŷ − Y‖², recording what it is
called with). So the runtime's own behaviour is seen apart from any derivation: the
namespace and its errors, the checks (static always, values where at hand), init_params'
draws on each library, noise, init_state, update, train_step, fit, and jax.jit. The
numbers of generated modules are tests/test_xp_module.py's.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import xp_backends as xb
from harness import import_path

from symgrad import render, render_xp

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "symgrad" / "runtime_xp.py"
_ids = itertools.count()

BASE = {  # a 3 → 2 linear layer
    "NAME": "configured",
    "LAYER_SIZES": (3, 2),
    "INPUT_SHAPE": None,  # a vector input; an image's (C, H, W) lets X be (m, C, H, W)
    "LOSS": "mse",
    "OPTIMIZER": {"name": "sgd", "learning_rate": 0.1},
    "L2": 0.0,
    "PARAM_NAMES": ("W1", "b1"),
    "PARAM_SHAPES": {"W1": (3, 2), "b1": (2,)},
    "BUFFER_NAMES": (),
    "BUFFER_SHAPES": {},
    "INIT": {"W1": ("glorot_uniform", 3, 2), "b1": ("zeros",)},
    "TASK": "values",
    "TARGETS": "real",
    "LABELS": False,
    "MOMENTS": (),
    "DROPOUT": False,
    "NOISE": {},
    "MIN_BATCH": 1,
    "CHECK_FINITE": True,
}

# ½ Σ (XW + b − Y)² / m and its gradient; with NOISE, the noise K1 scales the output
# (as a dropout mask would); "mean1" stands for a running statistic: the batch's mean
# of the output. Every call is recorded in CALLS.
LINEAR = """
CALLS = []


def _out(xp, params, X, noise):
    Z = X @ params["W1"] + params["b1"]
    return Z * noise["K1"] if noise is not None else Z


def _forward(xp, params, X, training, noise):
    CALLS.append(("_forward", training, noise))
    return _out(xp, params, X, noise)


def _loss(xp, params, X, Y, training, noise):
    CALLS.append(("_loss", training, noise))
    R = _out(xp, params, X, noise) - Y
    return xp.sum(R * R) / (2 * X.shape[0])


def _loss_and_grad(xp, params, X, Y, noise):
    CALLS.append(("_loss_and_grad", noise))
    Z = _out(xp, params, X, noise)
    D = (Z - Y) / X.shape[0]
    if noise is not None:
        D = D * noise["K1"]
    stats = {"mean1": xp.mean(Z, axis=0)} if BUFFER_NAMES else {}
    L = xp.sum((Z - Y) * (Z - Y)) / (2 * X.shape[0])
    return L, {"W1": X.T @ D, "b1": xp.sum(D, axis=0)}, stats


def _update(xp, params, grads, state):
    new = dict(params)
    for k in PARAM_NAMES:
        new[k] = params[k] - OPTIMIZER["learning_rate"] * grads[k]
    new_state = {"t": state["t"] + 1}
    for name in MOMENTS:
        new_state[name] = {k: state[name][k] + grads[k] for k in PARAM_NAMES}
    return new, new_state


def learning_rate(t):
    return OPTIMIZER["learning_rate"]
"""
BUFFERS = {
    "BUFFER_NAMES": ("mean1",),
    "BUFFER_SHAPES": {"mean1": (2,)},
    "INIT": {**BASE["INIT"], "mean1": ("ones",)},
}


def configure(directory: Path, derived: str = LINEAR, **constants) -> ModuleType:
    values = {**BASE, **constants}
    assert values.keys() == BASE.keys(), "a name that is not one of the constants"
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    source = "\n".join(lines) + "\n\n" + derived + "\n\n" + render_xp.runtime_code()
    n = next(_ids)
    path = directory / f"configured_xp{n}.py"
    path.write_text(source + "\n", encoding="utf-8")
    return import_path(path, f"_runtime_xp_configured_{n}")


@pytest.fixture
def make(tmp_path):
    def build(**constants) -> ModuleType:
        return configure(tmp_path, **constants)

    return build


def batch(m: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 3)), rng.standard_normal((m, 2))


# --- the file ------------------------------------------------------------------------------


def test_the_runtime_is_the_shared_runtime_then_what_follows_the_configuration_block():
    code = render_xp.runtime_code()
    shared = render.copied_runtime(render.RUNTIME_SHARED)
    assert code.startswith(shared + "\n\n\n")
    text = RUNTIME.read_text(encoding="utf-8")
    assert text.endswith(code[len(shared) + 3 :] + "\n")
    assert text.count(render.CONFIG_END) == 1
    block = ast.parse(text[: text.index(render.CONFIG_END)]).body
    names = [t.id for n in block if isinstance(n, ast.Assign) for t in n.targets]
    assert names == list(BASE)  # the constants, in the order modules print them
    functions = [n.name for n in block if isinstance(n, ast.FunctionDef)]
    assert functions == [
        "_forward",
        "_loss",
        "_loss_and_grad",
        "_update",
        "learning_rate",
    ]
    tree = ast.parse(code)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert defined.isdisjoint(functions)
    public = {"init_params", "forward", "loss", "loss_and_grad", "predict", "update"}
    assert public | {"init_state", "train_step", "fit", "draw_noise"} <= defined
    # no array library at the top: array_api_compat, guarded; NumPy and Dask inside
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not top
    (guard,) = [n for n in tree.body if isinstance(n, ast.Try)]
    assert [a.name for a in guard.body[0].names] == ["array_api_compat"]


def test_the_placeholder_configuration_runs(tmp_path):
    """runtime_xp.py imports and runs as it is: its placeholders are a linear layer,
    whose gradient agrees with central differences of its loss."""
    module = import_path(RUNTIME, "_runtime_xp_as_is")
    X, Y = np.random.default_rng(0).standard_normal((5, 2)), np.ones((5, 1))
    params = module.init_params(0)
    params["b1"] = params["b1"] + 0.3
    _, grads = module.loss_and_grad(params, X, Y)
    for k, v in params.items():
        fd = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            up, down = dict(params), dict(params)
            up[k], down[k] = v.copy(), v.copy()
            up[k][i] += 1e-6
            down[k][i] -= 1e-6
            fd[i] = (module.loss(up, X, Y) - module.loss(down, X, Y)) / 2e-6
        assert xb.relative_error(grads[k], fd) < 1e-6, k


# --- the namespace ----------------------------------------------------------------------------


def test_arrays_of_two_libraries_or_lists_are_refused(make):
    torch = pytest.importorskip("torch")
    module = make()
    X, Y = batch()
    params = module.init_params(0)
    with pytest.raises(TypeError, match="convert it first"):
        module.loss_and_grad(params, torch.asarray(X), Y)
    with pytest.raises(TypeError, match="convert it first"):
        module.forward(params, X.tolist())
    mixed = {"W1": params["W1"], "b1": torch.asarray(params["b1"])}
    with pytest.raises(TypeError, match="params must be arrays of one array library"):
        module.forward(mixed, X)


def test_without_compat_numpy_works_and_torch_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_compat", None)
    module = configure(tmp_path)
    assert module._compat is None
    X, Y = batch()
    params = module.init_params(0)
    L, grads = module.loss_and_grad(params, X, Y)
    assert isinstance(L, np.ndarray | np.floating) and grads["W1"].shape == (3, 2)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="need array-api-compat"):
        module.forward({k: torch.asarray(v) for k, v in params.items()}, X)
    with pytest.raises(TypeError, match="is not an array API namespace"):
        module.init_params(0, xp=torch)


# --- checks --------------------------------------------------------------------------------


def test_params_are_checked_statically(make):
    module = make(**BUFFERS)
    params = module.init_params(0)
    X, _ = batch()
    with pytest.raises(TypeError, match="params must be a dict"):
        module.forward([params["W1"]], X)
    with pytest.raises(ValueError, match=r"keys \['W1', 'b1', 'mean1'\]"):
        module.forward({"W1": params["W1"], "b1": params["b1"]}, X)
    with pytest.raises(ValueError, match=r"params\['W1'\] must have shape \(3, 2\)"):
        module.forward({**params, "W1": np.zeros((2, 3))}, X)
    with pytest.raises(ValueError, match="all float32 or all float64, found float32"):
        module.forward({**params, "b1": params["b1"].astype(np.float32)}, X)
    with pytest.raises(ValueError, match="found int64"):
        module.forward({k: v.astype(np.int64) for k, v in params.items()}, X)
    # keys in another order (jax.jit sorts them) are fine
    module.forward(dict(reversed(params.items())), X)


def test_inputs_are_checked_and_cast(make):
    module = make()
    params = module.init_params(0, dtype=np.float32)
    X, Y = batch()
    assert module.forward(params, X).dtype == np.float32  # float64 X: cast
    assert module.forward(params, X > 0).dtype == np.float32  # bool X: cast
    with pytest.raises(ValueError, match=r"X must have shape \(m, 3\)"):
        module.forward(params, X[:, :2])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        module.forward(params, X.astype(np.complex128))
    with pytest.raises(ValueError, match=r"Y must have shape \(6, 2\)"):
        module.loss(params, X, Y[:, :1])
    with pytest.raises(ValueError, match="X has no examples"):
        module.loss(params, X[:0], Y[:0])
    X_nan = X.copy()
    X_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        module.loss_and_grad(params, X_nan, Y)
    module.CHECK_FINITE = False
    L, _ = module.loss_and_grad(params, X_nan, Y)
    assert np.isnan(L)


@pytest.mark.parametrize(
    "constants, Y, message",
    [
        ({"TARGETS": "unit_interval"}, np.full((6, 2), 1.5), "targets in \\[0, 1\\]"),
        ({"TARGETS": "simplex"}, np.full((6, 2), 0.4), "on the simplex"),
        ({"TARGETS": "simplex", "LABELS": True}, np.array([0, 1, 2, 0, 1, 0]), "at Y"),
        ({"TARGETS": "simplex", "LABELS": True}, np.full(6, 0.5), "found 0.5 at Y"),
        ({}, np.full((6, 2), np.inf), "Y contains NaN or inf"),
    ],
)
def test_target_values_are_checked(make, constants, Y, message):
    module = make(**constants)
    X, _ = batch()
    with pytest.raises(ValueError, match=message):
        module.loss(module.init_params(0), X, Y)


def test_labels_become_one_hot_rows(make):
    module = make(TARGETS="simplex", LABELS=True, TASK="classes")
    X, _ = batch()
    labels = np.array([0, 1, 1, 0, 1, 0])
    params = module.init_params(0)
    want = module.loss(params, X, np.eye(2)[labels])
    assert float(module.loss(params, X, labels)) == float(want)
    assert float(module.loss(params, X, labels.astype(np.float32))) == float(want)
    assert module.predict(params, X).shape == (6,)


def test_value_checks_are_skipped_under_jit_and_on_dask(make):
    """Static checks run while jax.jit traces; the values are not at hand there, nor
    on Dask (bool() would compute the graph): NaN shows in the loss instead."""
    jax = pytest.importorskip("jax")
    da = pytest.importorskip("dask.array")
    import dask

    jax.config.update("jax_enable_x64", True)
    module = make()
    X, Y = batch()
    X[0, 0] = np.nan
    params = module.init_params(0)
    jitted = jax.jit(module.loss_and_grad)
    on_jax = {k: jax.numpy.asarray(v) for k, v in params.items()}
    L, _ = jitted(on_jax, jax.numpy.asarray(X), jax.numpy.asarray(Y))
    assert np.isnan(float(L))
    with pytest.raises(ValueError, match=r"X must have shape \(m, 3\)"):  # static
        jitted(on_jax, jax.numpy.asarray(X[:, :2]), jax.numpy.asarray(Y))
    with dask.config.set(scheduler="synchronous"):
        on_dask = {k: da.from_array(v) for k, v in params.items()}
        Xd, Yd = da.from_array(X, chunks=3), da.from_array(Y, chunks=3)
        L, _ = module.loss_and_grad(on_dask, Xd, Yd)
        assert np.isnan(float(L))
        with pytest.raises(ValueError, match="X contains NaN"):  # fit checks once
            module.fit(on_dask, Xd, Yd, epochs=1, batch_size=3)


def test_min_batch_is_checked_by_training_calls(make):
    module = make(MIN_BATCH=2, **BUFFERS)
    X, Y = batch(1)
    params = module.init_params(0)
    module.forward(params, X)  # inference: one example is fine
    for call in (
        lambda: module.loss_and_grad(params, X, Y),
        lambda: module.loss(params, X, Y, training=True),
        lambda: module.train_step(params, module.init_state(params), X, Y),
    ):
        with pytest.raises(ValueError, match="at least 2 examples, found 1"):
            call()


# --- init_params ---------------------------------------------------------------------------


def test_init_params_draws_as_numpy_does(make):
    """The draws of default_rng(seed), in key order: W1 uniform in ±√(6/(3+2))."""
    module = make(
        INIT={"W1": ("he_normal", 3, 2), "b1": ("ones",)},
    )
    rng = np.random.default_rng(5)
    want = rng.standard_normal((3, 2)) * np.sqrt(2 / 3)
    got = module.init_params(5)
    assert np.array_equal(got["W1"], want) and np.array_equal(got["b1"], np.ones(2))
    got = module.init_params(5, dtype=np.float32)
    assert np.array_equal(got["W1"], want.astype(np.float32))
    module.INIT = {"W1": ("orthogonal",), "b1": ("zeros",)}
    with pytest.raises(ValueError, match="unknown initialization 'orthogonal'"):
        module.init_params(0)
    with pytest.raises(ValueError, match="float32 or float64, found int32"):
        make().init_params(0, dtype=np.int32)


def test_init_params_takes_a_library_and_its_default_float(make):
    torch = pytest.importorskip("torch")
    module = make()
    params = module.init_params(0, xp=torch)  # torch itself: through array-api-compat
    default = torch.get_default_dtype()  # float32, unless a test set it
    assert params["W1"].dtype == default
    want = module.init_params(0, dtype=np.dtype(str(default).removeprefix("torch.")))
    assert np.array_equal(params["W1"].numpy(), want["W1"])


# --- noise, state, update, train_step ------------------------------------------------------


def test_noise_is_checked_and_drawn_on_the_host(make):
    module = make(DROPOUT=True, NOISE={"K1": 2})
    X, Y = batch()
    params = module.init_params(0)
    noise = module.draw_noise(params, X, np.random.default_rng(4))
    assert np.array_equal(noise["K1"], np.random.default_rng(4).random((6, 2)))
    with pytest.raises(TypeError, match="rng must be a NumPy Generator"):
        module.draw_noise(params, X, 4)
    with pytest.raises(ValueError, match=r"noise\['K1'\] must have shape \(6, 2\)"):
        module.loss_and_grad(params, X, Y, noise={"K1": noise["K1"][:3]})
    with pytest.raises(TypeError, match="uniform floats"):
        module.loss_and_grad(params, X, Y, noise={"K1": noise["K1"] > 0.5})
    module.CALLS.clear()
    module.forward(params, X, noise=noise)  # not training: no dropout
    module.loss_and_grad(params, X, Y, dropout=False)  # explicitly no dropout
    module.loss_and_grad(params, X, Y, rng=np.random.default_rng(4))
    calls = module.CALLS
    assert calls[0] == ("_forward", False, None) and calls[1] == (
        "_loss_and_grad",
        None,
    )
    assert np.array_equal(calls[2][1]["K1"], noise["K1"])


def test_training_with_dropout_needs_its_noise_or_says_so(make):
    module = make(DROPOUT=True, NOISE={"K1": 2})
    X, Y = batch()
    params = module.init_params(0)
    state = module.init_state(params)
    message = r"has dropout \(K1\): training needs .* rng=.* noise=.* dropout=False"
    module.CALLS.clear()
    for call in (
        lambda **kw: module.loss_and_grad(params, X, Y, **kw),
        lambda **kw: module.train_step(params, state, X, Y, **kw),
        lambda **kw: module.loss(params, X, Y, training=True, **kw),
        lambda **kw: module.forward(params, X, training=True, **kw),
    ):
        with pytest.raises(ValueError, match=message):
            call()
        with pytest.raises(ValueError, match="dropout=False trains without masks"):
            call(dropout=False, rng=np.random.default_rng(0))
        call(dropout=False)
    assert module.CALLS and all(c[-1] is None for c in module.CALLS)  # no noise
    module.forward(params, X)  # inference: no noise needed
    module.fit(params, X, Y, epochs=1, batch_size=3)  # fit draws it (seeded)


@pytest.mark.parametrize("low, high", [(-0.5, 0.5), (0.5, 1.0), (0.0, 2.0)])
def test_noise_outside_0_1_is_refused(make, low, high):
    module = make(DROPOUT=True, NOISE={"K1": 2})
    X, Y = batch()
    params = module.init_params(0)
    u = np.linspace(low, high, 12).reshape(6, 2)
    with pytest.raises(
        ValueError, match=r"noise\['K1'\] must hold uniform numbers in \[0, 1\)"
    ):
        module.loss_and_grad(params, X, Y, noise={"K1": u})
    module.loss_and_grad(params, X, Y, noise={"K1": np.clip(u, 0, 0.999)})


@pytest.mark.parametrize("xp", [__import__("os"), "numpy", 3, None.__class__])
def test_init_params_says_what_xp_must_be(make, xp):
    module = make()
    with pytest.raises(
        TypeError, match="xp must be an array library or array API namespace"
    ):
        module.init_params(0, xp=xp)


def test_a_row_off_the_simplex_is_named_with_the_checks_tolerance(make):
    module = make(TARGETS="simplex", LOSS="categorical_crossentropy", TASK="classes")
    X, _ = batch()
    params = module.init_params(0)
    Y = np.full((6, 2), 0.5)
    Y[3, 0] += 1e-6  # off by more than √ε, less than 1e-3
    with pytest.raises(ValueError, match=r"bad row Y\[3\] \(sum 1.000001\)"):
        module.loss(params, X, Y)
    Y[3, 0] -= 1e-6 - 1e-9  # within √ε of float64: accepted
    module.loss(params, X, Y)


def test_update_is_functional_and_checks_its_inputs(make):
    module = make(
        MOMENTS=("velocity",), OPTIMIZER={"name": "momentum", "learning_rate": 0.1}
    )
    X, Y = batch()
    params = module.init_params(0)
    state = module.init_state(params)
    assert state["t"].shape == () and state["velocity"]["W1"].shape == (3, 2)
    _, grads = module.loss_and_grad(params, X, Y)
    before = {k: v.copy() for k, v in params.items()}
    new, new_state = module.update(params, grads, state)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert int(new_state["t"]) == 1 and int(state["t"]) == 0
    assert np.array_equal(new["W1"], params["W1"] - 0.1 * grads["W1"])
    with pytest.raises(ValueError, match="with keys \\['t', 'velocity'\\]"):
        module.update(params, grads, {"t": state["t"]})
    with pytest.raises(TypeError, match="0-d integer array"):
        module.update(params, grads, {**state, "t": 0})
    with pytest.raises(ValueError, match=r"grads\['b1'\] must have shape"):
        module.update(params, {**grads, "b1": grads["W1"]}, state)


def test_train_step_returns_the_running_statistics(make):
    module = make(**BUFFERS)
    X, Y = batch()
    params = module.init_params(0)
    new, state, L = module.train_step(params, module.init_state(params), X, Y)
    Z = X @ params["W1"] + params["b1"]
    assert np.array_equal(new["mean1"], Z.mean(axis=0))
    assert np.array_equal(params["mean1"], np.ones(2))  # the input is untouched
    assert float(L) == float(module.loss(params, X, Y))
    updated, _ = module.update(params, module.loss_and_grad(params, X, Y)[1], state)
    assert np.array_equal(updated["mean1"], params["mean1"])  # update: left as is


def test_train_step_compiles_whole_under_jit(make):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    module = make(DROPOUT=True, NOISE={"K1": 2}, **BUFFERS)
    X, Y = batch()
    params = module.init_params(0, xp=jax.numpy)
    state = module.init_state(params)
    noise = {
        "K1": jax.random.uniform(jax.random.key(0), (6, 2), dtype=jax.numpy.float64)
    }
    step = jax.jit(module.train_step)
    got = step(params, state, jax.numpy.asarray(X), jax.numpy.asarray(Y), noise=noise)
    want = module.train_step(
        module.init_params(0),
        module.init_state(module.init_params(0)),
        X,
        Y,
        noise={"K1": np.asarray(noise["K1"])},
    )
    for a, b in zip(xb._leaves(got), xb._leaves(want), strict=True):
        assert xb.relative_error(np.asarray(a), np.asarray(b)) < 1e-14


# --- fit ---------------------------------------------------------------------------------


def test_fit_validates_its_arguments(make):
    module = make()
    X, Y = batch()
    params = module.init_params(0)
    with pytest.raises(TypeError, match="epochs must be a non-negative int"):
        module.fit(params, X, Y, epochs=1.5, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive int, found 0"):
        module.fit(params, X, Y, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="with keys"):
        module.fit(params, X, Y, epochs=1, batch_size=2, state={})


def test_fit_walks_the_numpy_modules_batches_and_reports(make, capsys):
    module = make(TASK="binary", TARGETS="unit_interval")
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((7, 3)), rng.integers(0, 2, (7, 2)).astype(float)
    params = module.init_params(0)
    initial = {k: v.copy() for k, v in params.items()}
    module.CALLS.clear()
    new, state, history = module.fit(
        params, X, Y, epochs=2, batch_size=3, verbose=True, validation_data=(X, Y)
    )
    assert int(state["t"]) == 6  # 7 = 3 + 3 + 1, two epochs
    assert list(history) == ["loss", "lr", "accuracy", "val_loss", "val_accuracy"]
    # the first epoch's losses are those of the NumPy module's batches: the rows of
    # default_rng(seed + epoch).permutation(7), three at a time, each before its update
    order = np.random.default_rng(0).permutation(7)
    p, total = initial, 0.0
    for start in (0, 3, 6):
        rows = order[start : start + 3]
        L, g = module.loss_and_grad(p, X[rows], Y[rows])
        total += float(L) * len(rows)
        p, _ = module.update(p, g, module.init_state(p))
    assert history["loss"][0] == pytest.approx(total / 7, rel=1e-14)
    assert "epoch 2/2: loss" in capsys.readouterr().out
    assert not np.array_equal(new["W1"], initial["W1"])


def test_fit_stores_the_trained_arrays_into_the_dicts_it_is_given(make):
    """As the NumPy module's fit trains params and state in place, this one stores its
    new arrays into the caller's dicts, and writes into no array."""
    module = make()
    X, Y = batch()
    params = module.init_params(0)
    before = dict(params)  # the arrays themselves
    state = module.init_state(params)
    new, new_state, _ = module.fit(params, X, Y, epochs=1, batch_size=2, state=state)
    assert new is params and new_state is state and int(state["t"]) == 3
    assert list(params) == ["W1", "b1"]
    assert not np.array_equal(params["W1"], before["W1"])
    # the arrays of before are as they were: training from them again gives the same
    again = dict(before)
    module.fit(again, X, Y, epochs=1, batch_size=2)
    for k in params:
        np.testing.assert_array_equal(again[k], params[k])


def test_fit_refuses_batches_that_would_all_be_left_out(make):
    """With batchnorm (MIN_BATCH 2), batch_size 1 or a single example used to train
    nothing and report a loss of 0.0 each epoch."""
    module = make(MIN_BATCH=2)
    X, Y = batch()
    params = module.init_params(0)
    kept = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="batch_size must be at least 2, found 1"):
        module.fit(params, X, Y, epochs=2, batch_size=1)
    with pytest.raises(ValueError, match="at least 2 examples to train on, found 1"):
        module.fit(params, X[:1], Y[:1], epochs=2, batch_size=4)
    for k in params:
        np.testing.assert_array_equal(params[k], kept[k])
    # two examples train: the loss is a real one, and params move
    _, _, history = module.fit(params, X[:2], Y[:2], epochs=1, batch_size=4)
    losses = history["loss"]
    assert losses[0] > 0
    assert not np.array_equal(params["W1"], kept["W1"])
