"""The runtime (symgrad/runtime.py), exercised directly: configured copies of it.

Each test writes a module as render.py does — constants, a derived part, then the
runtime as render.py copies it — but with constants chosen by the test and a derived
part of a few lines of NumPy written here (a linear layer with ½‖Ŷ − Y‖², optionally
recording what it is called with). So the runtime's own behaviour is seen apart from
any derivation: the checks, init_params' draws, the wrappers, predict by TASK,
save/load with buffers, init_state by MOMENTS, the work arrays, step's all-or-nothing,
fit, and the v2 parts no v1 module shows (BUFFER_NAMES, DROPOUT's generator).
"""

from __future__ import annotations

import ast
import copy
import inspect
import itertools
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from harness import import_path

from symgrad import activations, render
from symgrad.optimizers import OPTIMIZERS

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "symgrad" / "runtime.py"
_ids = itertools.count()

BASE = {  # a 3 → 2 linear layer; BUFFER_NAMES adds two arrays of 2 beside its params
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
    "OPTIMIZER_STATES": {
        n: tuple(s.key for s in o.state) for n, o in OPTIMIZERS.items()
    },
    "DROPOUT": False,
    "MIN_BATCH": 1,
    "CHECK_FINITE": True,
}
BUFFERS = {
    "BUFFER_NAMES": ("mean1", "var1"),
    "BUFFER_SHAPES": {"mean1": (2,), "var1": (2,)},
    "INIT": {**BASE["INIT"], "mean1": ("zeros",), "var1": ("ones",)},
}

# ½ Σ (XW + b − Y)² / m, its gradient, and plain gradient descent; every call is
# recorded in CALLS; _step draws from state["rng"] when DROPOUT (as dropout's masks)
LINEAR = """
CALLS = []


def _forward(params, X, training, rng):
    CALLS.append(("_forward", X, training, rng))
    return X @ params["W1"] + params["b1"]


def _loss(params, X, Y, training, rng):
    CALLS.append(("_loss", X, Y, training, rng))
    R = X @ params["W1"] + params["b1"] - Y
    return float(0.5 * np.vdot(R, R)) / X.shape[0]


def _loss_and_grad(params, X, Y, rng):
    CALLS.append(("_loss_and_grad", X, Y, rng))
    R = X @ params["W1"] + params["b1"] - Y
    D = R / X.shape[0]
    return float(0.5 * np.vdot(R, R)) / X.shape[0], {"W1": X.T @ D, "b1": D.sum(axis=0)}


def _make_work(m, dtype):
    return {"D": np.empty((m, LAYER_SIZES[-1]), dtype), "ones": np.ones(m, dtype)}


def _step(params, state, X, Y, work):
    CALLS.append(("_step", X, Y, work))
    grads, D = state["grads"], work["D"]
    np.dot(X, params["W1"], out=D)
    D += params["b1"]
    D -= Y
    L = float(0.5 * np.vdot(D, D)) / X.shape[0]
    D /= X.shape[0]
    np.dot(X.T, D, out=grads["W1"])  # refuses arrays that are not C-contiguous
    np.dot(work["ones"], D, out=grads["b1"])
    if DROPOUT:
        CALLS.append(("mask", state["rng"].random()))
    for key in MOMENTS:
        for k in PARAM_NAMES:
            state[key][k] += grads[k]
    for k in PARAM_NAMES:
        params[k] -= OPTIMIZER["learning_rate"] * grads[k]
    state["t"] += 1
    return L


def learning_rate(t):
    return OPTIMIZER["learning_rate"]
"""


def configure(directory: Path, derived: str = LINEAR, **constants) -> ModuleType:
    """A module of the given constants (over BASE), the derived part and the runtime."""
    values = {**BASE, **constants}
    assert values.keys() == BASE.keys(), "a name that is not one of the constants"
    lines = ["import numpy as np", ""]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    source = "\n".join(lines) + "\n\n" + derived + "\n\n" + render.runtime_code() + "\n"
    n = next(_ids)
    path = directory / f"configured{n}.py"
    path.write_text(source, encoding="utf-8")
    return import_path(path, f"_runtime_configured_{n}")


@pytest.fixture
def make(tmp_path):
    def build(**constants) -> ModuleType:
        return configure(tmp_path, **constants)

    return build


def batch(m: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 3)), rng.standard_normal((m, 2))


# --- the file and its contract ------------------------------------------------------------


def _configuration_names() -> list[str]:
    """The names runtime.py's configuration block defines, in order."""
    text = RUNTIME.read_text(encoding="utf-8")
    block = text[: text.index(render.CONFIG_END)]
    names = []
    for node in ast.parse(block).body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets]
        elif isinstance(node, ast.FunctionDef):
            names.append(node.name)
    return names


def test_the_runtime_is_the_shared_runtime_then_what_follows_the_configuration_block():
    code = render.runtime_code()
    shared = render.copied_runtime(render.RUNTIME_SHARED)
    assert code.startswith(shared + "\n\n\n")
    text = RUNTIME.read_text(encoding="utf-8")
    own = code[len(shared) + 3 :]
    assert text.endswith(own + "\n") and text.count(render.CONFIG_END) == 1
    tree = ast.parse(code)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert defined.isdisjoint(_configuration_names())
    assert {"init_params", "forward", "loss", "loss_and_grad", "predict"} <= defined
    assert {"save_params", "load_params", "init_state", "step", "fit"} <= defined
    # what a module gets imports NumPy only; the file alone imports the shared runtime
    # (in a module, its code comes first instead)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    # NumPy, and the standard library's zipfile (load_params reads the archive), sys
    # and time (fit's progress line: where it goes, and its clock)
    assert {alias.name for n in imports for alias in n.names} == {
        "numpy",
        "sys",
        "time",
        "zipfile",
    }
    file_imports = [
        n
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.Import | ast.ImportFrom)
    ]
    assert [getattr(n, "module", None) or n.names[0].name for n in file_imports] == [
        "numpy",
        "symgrad.runtime_shared",
        "zipfile",  # inside load_params
    ]


def test_the_configuration_block_is_the_constants_and_the_derived_functions():
    names = _configuration_names()
    assert names[: len(BASE)] == list(
        BASE
    )  # the constants, in the order modules print them
    assert names[len(BASE) :] == [
        "_forward",
        "_loss",
        "_loss_and_grad",
        "_make_work",
        "_step",
        "learning_rate",
    ]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "generated").glob("*.py")), ids=lambda p: p.stem
)
def test_every_generated_module_defines_what_the_runtime_reads(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    runtime = ast.parse(render.runtime_code()).body
    derived = tree.body[: len(tree.body) - len(runtime)]
    assert ast.dump(ast.Module(tree.body[len(derived) :], [])) == ast.dump(
        ast.Module(runtime, [])
    )  # the runtime comes last, as it is in runtime.py
    functions = {n.name: n for n in derived if isinstance(n, ast.FunctionDef)}
    constants = [t.id for n in derived if isinstance(n, ast.Assign) for t in n.targets]
    # nothing the derived part defines is redefined by the runtime (a derived helper
    # named like a runtime function would be silently replaced)
    ran = {
        n.name
        for n in runtime
        if isinstance(n, ast.FunctionDef | ast.Assign) and hasattr(n, "name")
    }
    assert not ran & (set(functions) | set(constants)), ran & set(functions)
    reference = ast.parse(RUNTIME.read_text(encoding="utf-8")).body
    for name in _configuration_names():
        if name in BASE:
            assert name in constants, name
        else:  # the derived functions take the arguments the runtime passes
            expected = next(n for n in reference if getattr(n, "name", None) == name)
            assert ast.dump(functions[name].args) == ast.dump(expected.args), name


def test_the_placeholder_configuration_imports_and_says_what_it_is():
    module = import_path(RUNTIME, "_runtime_placeholders")
    params = module.init_params(0)
    assert list(params) == ["W1", "b1"]
    with pytest.raises(NotImplementedError, match="derived part"):
        module.forward(params, np.zeros((1, 2)))


@pytest.mark.formatted  # black's layout is what is tested
def test_the_optimizer_table_is_printed_from_the_registry():
    # the state of another optimizer is named by its arrays (a message only): each
    # generated module lists every registered optimizer's, with no table to keep by hand
    want = {name: tuple(s.key for s in opt.state) for name, opt in OPTIMIZERS.items()}
    for path in sorted((ROOT / "generated").glob("*.py")):
        if not path.name.endswith("_xp.py"):
            module = import_path(path, f"_optimizer_states_{path.stem}")
            assert module.OPTIMIZER_STATES == want, path.name


# --- init_params ------------------------------------------------------------------------


def test_init_params_draws_in_key_order_from_default_rng(make):
    module = make(
        LAYER_SIZES=(3, 4, 2),
        PARAM_NAMES=("W1", "b1", "W2", "b2"),
        PARAM_SHAPES={"W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,)},
        BUFFER_NAMES=("mean2", "var2"),
        BUFFER_SHAPES={"mean2": (2,), "var2": (2,)},
        INIT={
            "W1": ("he_normal", 3, 4),
            "b1": ("zeros",),
            "W2": ("glorot_uniform", 4, 2),
            "b2": ("zeros",),
            "mean2": ("zeros",),
            "var2": ("ones",),
        },
    )
    params = module.init_params(7, dtype=np.float32)
    rng = np.random.default_rng(7)
    W1 = rng.standard_normal((3, 4)) * np.sqrt(2 / 3)
    limit = np.sqrt(6 / (4 + 2))
    W2 = rng.uniform(-limit, limit, (4, 2))
    expected = {"W1": W1, "b1": 0.0, "W2": W2, "b2": 0.0, "mean2": 0.0, "var2": 1.0}
    assert list(params) == list(expected)
    for k, value in expected.items():
        assert params[k].dtype == np.float32 and params[k].shape == module._SHAPES[k]
        np.testing.assert_array_equal(
            params[k], np.broadcast_to(value, params[k].shape).astype(np.float32)
        )


def _auto_init(activation) -> str:
    name = activation if isinstance(activation, str) else activation["name"]
    return "he_normal" if name in activations.RELU_FAMILY else "glorot_uniform"


@pytest.mark.parametrize(
    "spec", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_example_draws_its_initial_weights_as_the_spec_says(spec: Path):
    # init "auto": He normal for the ReLU family, Glorot uniform otherwise; biases 0
    data = yaml.safe_load(spec.read_text())
    module = import_path(
        ROOT / "generated" / f"{data['name']}.py", f"_init_{spec.stem}"
    )
    params = module.init_params(3)
    rng = np.random.default_rng(3)
    fan_in = data["input"]  # a width, or an image's [C, H, W]
    for l, layer in enumerate(data["layers"], start=1):
        kind = layer.get("type", "dense")
        if kind in ("layernorm", "batchnorm"):  # keep the width: gain 1, shift 0
            shape = fan_in if isinstance(fan_in, int) else tuple(fan_in)
            if kind == "batchnorm" and not isinstance(fan_in, int):
                shape = fan_in[0]  # BatchNorm2d: per channel
            np.testing.assert_array_equal(params[f"gamma{l}"], np.ones(shape))
            np.testing.assert_array_equal(params[f"beta{l}"], np.zeros(shape))
            if kind == "batchnorm":  # running statistics start as PyTorch's
                np.testing.assert_array_equal(params[f"mean{l}"], np.zeros(shape))
                np.testing.assert_array_equal(params[f"var{l}"], np.ones(shape))
            continue
        if kind == "dropout":  # no parameters
            assert not [k for k in params if k.rstrip("0123456789") + str(l) == k]
            continue
        if kind in ("conv2d", "maxpool2d", "avgpool2d", "flatten"):
            fan_in = _image_layer(layer, fan_in, params, l, rng, data)
            continue
        assert layer.get("type", "dense") == "dense", "a layer kind this test knows"
        units = layer["units"]
        init = data.get("init", "auto")
        init = _auto_init(layer["activation"]) if init == "auto" else init
        if init == "he_normal":
            W = rng.standard_normal((fan_in, units)) * np.sqrt(2 / fan_in)
        else:
            limit = np.sqrt(6 / (fan_in + units))
            W = rng.uniform(-limit, limit, (fan_in, units))
        np.testing.assert_array_equal(params[f"W{l}"], W)
        np.testing.assert_array_equal(params[f"b{l}"], np.zeros(units))
        fan_in = units


def _image_layer(layer, image, params, l, rng, data):  # noqa: E741
    """Check an image layer's initial parameters (conv2d: as a dense layer's with
    fan-in C·kh·kw and fan-out filters·kh·kw, in PyTorch's layout (filters, C, kh,
    kw)); return its output shape, by PyTorch's ⌊(H + 2p − k)/s⌋ + 1."""
    kind = layer["type"]
    c, h, w = image
    if kind == "flatten":
        return c * h * w

    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    if kind == "conv2d":
        kh, kw = pair(layer["kernel"])
        sh, sw = pair(layer.get("stride", 1))
        pad = layer.get("padding", 0)
        if pad == "same":
            pad = ((kh - 1) // 2, (kw - 1) // 2)
        ph, pw = pair(0 if pad == "valid" else pad)
        f = layer["filters"]
        init = data.get("init", "auto")
        init = _auto_init(layer["activation"]) if init == "auto" else init
        fan_in, fan_out = c * kh * kw, f * kh * kw
        if init == "he_normal":
            W = rng.standard_normal((f, c, kh, kw)) * np.sqrt(2 / fan_in)
        else:
            limit = np.sqrt(6 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, (f, c, kh, kw))
        np.testing.assert_array_equal(params[f"W{l}"], W)
        np.testing.assert_array_equal(params[f"b{l}"], np.zeros(f))
        return [f, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1]
    kh, kw = pair(layer["size"])
    sh, sw = pair(layer.get("stride", layer["size"]))
    return [c, (h - kh) // sh + 1, (w - kw) // sw + 1]


# --- the public functions: checks, then the derived ones ---------------------------------


def test_the_wrappers_pass_checked_arrays_and_the_keywords_through(make):
    module = make()
    params = module.init_params(0, dtype=np.float32)
    X, Y = batch()
    g = np.random.default_rng(0)
    module.forward(params, X.tolist(), training=True, rng=g)
    module.loss(params, X, Y[:, :].tolist(), training=True, rng=g)
    module.loss_and_grad(params, X, Y, rng=g)
    module.forward(params, X)
    (_, fX, f_training, f_rng), (_, lX, lY, l_training, l_rng) = module.CALLS[:2]
    (_, gX, gY, g_rng), (_, _, default_training, default_rng) = module.CALLS[2:]
    for a in (fX, lX, lY, gX, gY):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert f_training is True and l_training is True and default_training is False
    assert f_rng is g and l_rng is g and g_rng is g and default_rng is None
    with pytest.raises(TypeError, match="rng must be a NumPy Generator"):
        module.loss(params, X, Y, rng=0)


def test_nothing_is_called_on_inputs_that_fail_the_checks(make):
    module = make()
    params = module.init_params(0)
    X, Y = batch()
    with pytest.raises(ValueError, match=r"X must have shape \(m, 3\), found \(5, 2\)"):
        module.forward(params, X[:, :2])
    with pytest.raises(ValueError, match=r"Y must have shape \(5, 2\), found \(4, 2\)"):
        module.loss(params, X, Y[:4])
    with pytest.raises(ValueError, match="X contains NaN"):
        module.loss_and_grad(params, X * np.nan, Y)
    with pytest.raises(ValueError, match="Y contains NaN"):
        module.loss_and_grad(params, X, Y * np.inf)
    with pytest.raises(ValueError, match="at least one example"):
        module.loss(params, X[:0], Y[:0])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        module.forward(params, X.astype(complex))
    with pytest.raises(
        ValueError, match=r"params must be a dict with keys \['W1', 'b1'\]"
    ):
        module.forward({"W1": params["W1"]}, X)
    assert module.CALLS == []
    module.CHECK_FINITE = False  # read at each call, as users set it
    module.forward(params, X * np.nan)
    assert len(module.CALLS) == 1


@pytest.mark.parametrize(
    "targets, labels, Y, message",
    [
        ("simplex", True, [[0.5, 0.5], [1.2, -0.2]], r"on the simplex .* found Y\[1\]"),
        (
            "simplex",
            True,
            [0, 2],
            r"labels must be 2 integers in \[0, 2\), found 2 at Y\[1\]",
        ),
        (
            "unit_interval",
            False,
            [[0, 1], [1, 1.5]],
            r"in \[0, 1\] .* found Y\[1, 1\] = 1.5",
        ),
        ("real", False, [[0, 1], [1, np.nan]], "Y contains NaN or inf"),
    ],
)
def test_targets_are_checked_by_what_they_hold(make, targets, labels, Y, message):
    module = make(TARGETS=targets, LABELS=labels)
    params = module.init_params(0)
    with pytest.raises(ValueError, match=message):
        module.loss(params, np.zeros((2, 3)), np.array(Y))
    module.CHECK_FINITE = False  # the range is part of the values' scan
    if np.asarray(Y).ndim == 2:
        module.loss(params, np.zeros((2, 3)), np.array(Y))


def test_labels_are_one_hot_rows_and_a_single_output_takes_a_flat_y(make):
    module = make(TARGETS="simplex", LABELS=True)
    module.loss(module.init_params(0), np.zeros((3, 3)), np.array([1, 0, 1.0]))
    np.testing.assert_array_equal(module.CALLS[-1][2], [[0, 1], [1, 0], [0, 1]])
    single = make(
        LAYER_SIZES=(3, 1),
        PARAM_SHAPES={"W1": (3, 1), "b1": (1,)},
        INIT={"W1": ("glorot_uniform", 3, 1), "b1": ("zeros",)},
    )
    single.loss(single.init_params(0), np.zeros((3, 3)), [1.0, 2.0, 3.0])
    assert single.CALLS[-1][2].shape == (3, 1)


@pytest.mark.parametrize(
    "task, expected",
    [
        ("classes", [0, 1]),
        ("binary", [[1, 0], [0, 1]]),
        ("values", [[0.7, 0.2], [-1.0, 0.5]]),
    ],
)
def test_predict_decides_by_task(make, task, expected):
    module = make(TASK=task)
    params = module.init_params(0)
    params["W1"][...] = 0
    params["b1"][...] = 0
    Yhat = np.array([[0.7, 0.2], [-1.0, 0.5]])
    module._forward = lambda params, X, training, rng: Yhat  # what the network gives
    prediction = module.predict(params, np.zeros((2, 3)))
    np.testing.assert_array_equal(prediction, expected)
    assert prediction.dtype == np.asarray(expected).dtype


# --- saved parameters, with buffers -----------------------------------------------------


def test_buffers_live_in_params_and_are_saved_and_loaded_with_them(make, tmp_path):
    module = make(**BUFFERS)
    params = module.init_params(1)
    assert list(params) == ["W1", "b1", "mean1", "var1"]
    params["mean1"][...] = [0.25, -0.5]
    module.save_params(tmp_path / "p", params)
    loaded = module.load_params(tmp_path / "p.npz")
    assert list(loaded) == list(params)
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])
    np.savez(tmp_path / "no_buffers.npz", W1=params["W1"], b1=params["b1"])
    with pytest.raises(ValueError, match=r"keys \['W1', 'b1', 'mean1', 'var1'\]"):
        module.load_params(tmp_path / "no_buffers.npz")


def test_buffers_are_not_trained(make):
    module = make(**BUFFERS, MOMENTS=("m", "v"))
    params = module.init_params(1)
    state = module.init_state(params)
    assert list(state) == ["t", "m", "v", "grads", "buffers"]
    for key in ("m", "v", "grads"):
        assert list(state[key]) == ["W1", "b1"]
    X, Y = batch()
    module.step(params, state, X, Y)
    assert state["t"] == 1
    params["var1"].flags.writeable = (
        False  # step may update buffers (running statistics)
    )
    before = copy.deepcopy(params)
    with pytest.raises(ValueError, match=r"params\['var1'\] is read-only"):
        module.step(params, state, X, Y)
    assert state["t"] == 1
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


# --- step: state, work arrays, all or nothing -------------------------------------------


@pytest.mark.parametrize("moments", [(), ("velocity",), ("m", "v")])
def test_init_state_has_the_optimizers_arrays(make, moments):
    module = make(MOMENTS=moments)
    params = module.init_params(0, dtype=np.float32)
    state = module.init_state(params)
    assert list(state) == ["t", *moments, "grads", "buffers"]
    for key in (*moments, "grads"):
        for k, a in state[key].items():
            assert a.dtype == np.float32 and a.shape == params[k].shape and not a.any()
            assert a.flags.c_contiguous and a is not params[k]


def test_a_state_of_another_optimizer_is_named(make):
    module = make(
        MOMENTS=("velocity",), OPTIMIZER={"name": "momentum", "learning_rate": 0.1}
    )
    adam = make(MOMENTS=("m", "v"), OPTIMIZER={"name": "adam", "learning_rate": 0.1})
    params = module.init_params(0)
    X, Y = batch()
    with pytest.raises(
        ValueError, match=r"momentum, with keys .* \(the keys of the adam"
    ):
        module.step(params, adam.init_state(params), X, Y)


def test_work_arrays_are_made_once_per_batch_size_and_dtype(make):
    module = make()
    params = module.init_params(0)
    state = module.init_state(params)
    X, Y = batch(12)
    works = {}
    for m in (4, 5, 4, 6, 7):
        module.step(params, state, X[:m], Y[:m])
        works.setdefault(m, module.CALLS[-1][3])
        assert module.CALLS[-1][3] is works[m]  # the same arrays again
    assert list(state["buffers"]) == [4, 6, 7]  # the three most recently used sizes
    f32 = {k: v.astype(np.float32) for k, v in params.items()}
    state32 = module.init_state(f32)
    state32["buffers"] = state["buffers"]  # arrays of float64: remade for float32
    module.step(f32, state32, X[:7], Y[:7])
    assert state32["buffers"][7]["D"].dtype == np.float32


def test_step_is_the_derived_step_after_the_checks(make):
    module = make()
    params = module.init_params(0)
    reference = copy.deepcopy(params)
    state = module.init_state(params)
    X, Y = batch()
    L = module.step(params, state, X.tolist(), Y)
    L_ref, grads = module.loss_and_grad(reference, X, Y)
    assert L == pytest.approx(L_ref, rel=1e-14)
    for k in params:
        np.testing.assert_allclose(params[k], reference[k] - 0.1 * grads[k], rtol=1e-14)
    spoiled = copy.deepcopy(state)
    spoiled["grads"]["W1"] = np.asfortranarray(spoiled["grads"]["W1"])
    before = copy.deepcopy(params)
    with pytest.raises(
        ValueError, match=r"state\['grads'\]\['W1'\] must be C-contiguous"
    ):
        module.step(params, spoiled, X, Y)  # refused by np.dot(out=), then named
    assert spoiled["t"] == 1
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


# --- dropout's generator, fit -----------------------------------------------------------


def test_with_dropout_the_state_carries_a_seeded_generator(make):
    module = make(DROPOUT=True)
    params = module.init_params(0)
    state = module.init_state(params, seed=5)
    assert list(state) == ["t", "grads", "buffers", "rng"]
    assert state["rng"].random() == np.random.default_rng(5).random()
    X, Y = batch()
    state = module.init_state(params, seed=5)
    module.step(params, state, X, Y)
    assert module.CALLS[-1] == ("mask", np.random.default_rng(5).random())
    state["rng"] = 5
    with pytest.raises(TypeError, match=r"state\['rng'\] must be a NumPy Generator"):
        module.step(params, state, X, Y)
    assert "rng" not in make().init_state(params, seed=5)  # no dropout, no generator


def test_fit_seeds_the_masks_from_its_seed_and_a_given_state_goes_on(make):
    module = make(DROPOUT=True)
    X, Y = batch(10)

    def masks(seed, state=None):
        del module.CALLS[:]
        module.fit(
            module.init_params(0), X, Y, epochs=2, batch_size=4, seed=seed, state=state
        )
        return [call[1] for call in module.CALLS if call[0] == "mask"]

    first = masks(3)
    assert len(first) == 6  # 2 epochs of 3 batches
    assert masks(3) == first and masks(4) != first
    state = module.init_state(module.init_params(0), seed=3)
    state["rng"].random()  # a generator used before: fit goes on with it
    assert masks(3, state) != first


@pytest.mark.parametrize(
    "task, keys",
    [
        ("values", ["loss", "lr", "val_loss"]),
        ("classes", ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]),
        ("binary", ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]),
    ],
)
def test_fit_reports_accuracy_for_classifiers_only(make, task, keys):
    targets = {"values": "real", "classes": "simplex", "binary": "unit_interval"}[task]
    module = make(TASK=task, TARGETS=targets, LABELS=task == "classes")
    X, _ = batch(9)
    Y = np.eye(2)[np.arange(9) % 2]
    params = module.init_params(0)
    history = module.fit(params, X, Y, epochs=2, batch_size=4, validation_data=(X, Y))
    assert sorted(history) == keys
    assert all(len(v) == 2 for v in history.values())
    losses = [call for call in module.CALLS if call[0] == "_step"]
    assert [len(call[1]) for call in losses] == [4, 4, 1] * 2


def test_the_runtime_functions_have_the_documented_signatures(make):
    module = make()
    signatures = {
        "forward": "(params, X, *, training=False, rng=None)",
        "loss": "(params, X, Y, *, training=False, rng=None)",
        "loss_and_grad": "(params, X, Y, *, rng=None)",
        "predict": "(params, X)",
        "predict_proba": "(params, X)",
        "init_params": "(seed=0, dtype=<class 'numpy.float64'>)",
        "init_state": "(params, seed=0)",
        "step": "(params, state, X, Y)",
        "save_params": "(path, params)",
        "load_params": "(path)",
    }
    for name, signature in signatures.items():
        assert str(inspect.signature(getattr(module, name))) == signature, name
    fit = inspect.signature(module.fit)
    assert list(fit.parameters) == [
        "params",
        "X",
        "Y",
        "epochs",
        "batch_size",
        "seed",
        "verbose",
        "validation_data",
        "state",
        "early_stopping",
        "callback",
    ]


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
    history = module.fit(params, X[:2], Y[:2], epochs=1, batch_size=4)
    losses = history["loss"]
    assert losses[0] > 0
    assert not np.array_equal(params["W1"], kept["W1"])
