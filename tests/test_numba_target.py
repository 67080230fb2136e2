"""The numba target (`symgrad generate --target numba`) against PyTorch.

The numba module is the NumPy module with its step's runs of elementwise statements
fused into numba kernels (symgrad/printers/fused.py). Its steps are checked here
against PyTorch: autograd's gradients of tests/torch_reference.py's network (built
independently from the spec dict) and torch.optim's updates, over every layer kind,
activation and loss of tests/test_layers.py and tests/test_step.py, several steps with
batch sizes that change, float64 to 1e-9; the update's kernels for every optimizer of
tests/test_training.py against its torch.optim loop (schedules, clipping, l2; float64
to 1e-9, float32 to 1e-5) and a CNN's. Also: the NumPy module never imports numba,
the numba module is black- and ruff-clean and allocates nothing after its first step,
and its compiled kernels load from the cache under another module name.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import harness
import numpy as np
import pytest
import test_training as tt
import torch
import torch_reference as tr
from test_conv import BATCHNORM_CNN, LAYERNORM_CNN
from test_layers import CUSTOM, OPTIMIZERS, SPECS, problem, torch_optimizer

pytest.importorskip("numba")
# one worker runs this file (pyproject: --dist loadgroup): its fixtures' modules, whose
# kernels numba compiles for seconds each, are compiled once, not once per worker
pytestmark = pytest.mark.xdist_group("numba_target")

RTOL = 1e-9
CCE, BCE = "categorical_crossentropy", "binary_crossentropy"
_counter = itertools.count()

# the activations and losses of test_step.py, custom ones included, written in torch
ACT_CUSTOM = {
    **CUSTOM,
    "xabsx": lambda z: z * torch.abs(z),
    "mysigmoid": lambda z: 1 / (1 + torch.exp(-z)),
    "bent": lambda z: (torch.sqrt(z * z + 1) - 1) / 2 + z,
}
HIDDEN = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    {"name": "leaky_relu", "alpha": 0.1},
    "elu",
    "softplus",
    "silu",
    "gelu",
    "softsign",
    {"name": "xabsx", "expr": "z * abs(z)"},
    {"name": "mysigmoid", "expr": "1 / (1 + exp(-z))"},
    {"name": "bent", "expr": "(sqrt(z*z + 1) - 1) / 2 + z"},
]
OUTPUTS = [  # (units, activation, loss)
    (2, "sigmoid", BCE),
    (3, "softmax", CCE),
    (3, "softmax", "mse"),
    (2, "identity", "mae"),
    (2, "identity", {"name": "huber", "delta": 0.5}),
    (2, "relu", "mse"),
    (2, "tanh", {"name": "logcosh", "expr": "log(cosh(yhat - y))"}),
    (2, "identity", {"name": "quartic", "expr": "(yhat - y)**4 / 4 + abs(yhat)"}),
]
LN = {"type": "layernorm"}
# the benchmarks' layers config, narrow: dense, two residual blocks with layernorm
BLOCKS = {
    "name": "blocks",
    "input": 6,
    "layers": [
        {"units": 8, "activation": "relu"},
        {"units": 8, "activation": "relu", "residual": True},
        LN,
        {"units": 8, "activation": "relu", "residual": True},
        LN,
        {"units": 3, "activation": "softmax"},
    ],
    "loss": CCE,
}


def _dense(act) -> dict:
    return {"units": 5, "activation": act}


def _specs() -> dict[str, dict]:
    specs = {**SPECS, "blocks": BLOCKS}
    # every hidden activation in one of three networks, a layer each (a module is
    # seconds of compiling and ~10 MB its process keeps: 3 modules, not 13)
    for k in range(3):
        acts = HIDDEN[k::3]
        name = "hidden_" + "_".join(
            a if isinstance(a, str) else a["name"] for a in acts
        )
        specs[name] = {
            "name": name,
            "input": 4,
            "layers": [*map(_dense, acts), {"units": 3, "activation": "softmax"}],
            "loss": CCE,
        }
    for units, act, loss in OUTPUTS:
        name = f"out_{act}_{loss if isinstance(loss, str) else loss['name']}"
        specs[name] = {
            "name": name,
            "input": 4,
            "layers": [_dense("tanh"), {"units": units, "activation": act}],
            "loss": loss,
        }
    return specs


STEP_OPTIMIZERS = [  # learning rates small enough that no spec diverges in 4 steps
    ({"name": "sgd", "learning_rate": 0.01}, 0.0),
    ({"name": "momentum", "learning_rate": 0.01, "momentum": 0.8}, 0.02),
    (
        {"name": "momentum", "learning_rate": 0.01, "momentum": 0.8, "nesterov": True},
        0.0,
    ),
    (OPTIMIZERS["adam"][0], 0.02),
]


def _with_optimizers(specs: dict[str, dict]) -> dict[str, dict]:
    """Each spec with one of the optimizers (and its l2), in turn; no adam before a
    batchnorm: the bias before it has gradient 0 in exact arithmetic, rounding noise
    in both, and adam scales noise up to steps of its learning rate."""
    out = {}
    for i, (name, spec) in enumerate(specs.items()):
        opt, l2 = STEP_OPTIMIZERS[i % len(STEP_OPTIMIZERS)]
        if opt["name"] == "adam" and any(
            layer.get("type") == "batchnorm" for layer in spec["layers"]
        ):
            opt, l2 = STEP_OPTIMIZERS[1]
        out[name] = {**spec, "optimizer": opt, "l2": l2}
    return out


SPECS_ALL = _with_optimizers(_specs())


def generate_numba(spec: dict, workdir: Path):
    """The numba module of spec, imported under a unique name."""
    import symgrad

    directory = workdir / f"numba{next(_counter)}"
    directory.mkdir(parents=True)
    path = Path(
        symgrad.generate(
            harness.write_spec(spec, directory), directory / "out", target="numba"
        )
    )
    assert path.name == f"{spec['name']}_numba.py"
    return harness.import_path(
        path, f"_symgrad_numba_{spec['name']}_{path.parent.name}"
    )


def module_store(tmp_path_factory, specs: dict[str, dict], folder: str):
    """build(name) -> the numba module of specs[name] (named name), generated and
    imported at its first call. The fixtures that return it live for the session,
    not the file: xdist can run another file's tests between this file's on the
    worker, and a module-scoped fixture would then be made again, each of its modules
    written anew and its kernels compiled again."""
    cache: dict[str, object] = {}
    workdir = tmp_path_factory.mktemp(folder)

    def build(name: str):
        if name not in cache:
            cache[name] = generate_numba({**specs[name], "name": name}, workdir)
        return cache[name]

    return build


@pytest.fixture(scope="session")
def numba_module(tmp_path_factory):
    return module_store(tmp_path_factory, SPECS_ALL, "numba")


@pytest.mark.parametrize("name", SPECS_ALL)
def test_steps_match_torch(numba_module, name: str) -> None:
    spec = SPECS_ALL[name]
    module = numba_module(name)
    params, _, _ = problem(module, spec)
    ref = copy.deepcopy(params)
    tensors = {k: torch.from_numpy(ref[k]) for k in module.PARAM_NAMES}
    optimizer = torch_optimizer(spec["optimizer"], list(tensors.values()))
    state = module.init_state(params, seed=7)
    generator = np.random.default_rng(7)  # the step's dropout masks
    rng = np.random.default_rng(8)
    for m in (7, 5, 7, 3):
        X = rng.standard_normal((m, spec["input"]))
        Y = harness.make_targets(spec, m, rng)
        drawn = tr.dropout_masks(spec, m, generator)
        ref_value, grads, stats = tr.loss_and_grad(
            spec, ref, X, Y, masks=drawn, custom=ACT_CUSTOM
        )
        value = module.step(params, state, X, Y)
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k])
        optimizer.step()  # into ref's arrays
        ref.update(stats)  # torch's running statistics
        assert harness.rel_err(value, ref_value) <= RTOL, (m, value, ref_value)
        for k in params:
            assert harness.rel_err(params[k], ref[k]) <= RTOL, (k, m)
    assert state["t"] == 4


def test_the_numpy_module_does_not_import_numba(tmp_path) -> None:
    import symgrad

    spec = harness.write_spec(BLOCKS, tmp_path)
    plain = Path(symgrad.generate(spec, tmp_path / "out")).read_text()
    fused = Path(symgrad.generate(spec, tmp_path / "out", target="numba")).read_text()
    assert "numba" not in plain
    assert "import numba\n" in fused
    # the same module around the step: the same public functions
    names = {
        line.split("(")[0] for line in plain.splitlines() if line.startswith("def ")
    }
    assert names <= {
        line.split("(")[0] for line in fused.splitlines() if line.startswith("def ")
    }
    # each residual block's forward (bias, ReLU, residual, layernorm) is one kernel:
    # its step has no broadcasting ufunc left for the layernorm
    start = fused.index("def _step(")
    step = fused[start : fused.index("\ndef ", start)]
    assert "np.subtract" not in step and "np.sqrt" not in step
    assert fused.count("\n@_kernel\n") >= 5


@pytest.mark.formatted
@pytest.mark.parametrize("name", ["blocks", "lenet_small"])
def test_the_numba_module_is_black_and_ruff_clean(tmp_path, name) -> None:
    import symgrad

    spec = harness.write_spec(
        BLOCKS if name == "blocks" else {"name": name, **IMAGE_SPECS[name]}, tmp_path
    )
    path = str(symgrad.generate(spec, tmp_path / "out", target="numba"))
    for command in (
        [sys.executable, "-m", "black", "--check", "--quiet", path],
        [sys.executable, "-m", "ruff", "check", "--quiet", "--isolated", path],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_step_allocates_nothing_after_the_first(numba_module, dtype) -> None:
    module = numba_module("blocks")
    params = module.init_params(0, dtype=dtype)
    rng = np.random.default_rng(0)
    m = 8192  # a row statistic (m, 1) is larger than the allowance below
    X = rng.standard_normal((m, 6)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, m)]
    smallest = m * np.dtype(dtype).itemsize
    harness.assert_step_allocates_nothing(module, params, X, Y, smallest)


def test_float32_steps_match_torch(numba_module) -> None:
    spec = SPECS_ALL["blocks"]
    module = numba_module("blocks")
    p64, _, _ = problem(module, spec)
    params = {k: v.astype(np.float32) for k, v in p64.items()}
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    tensors = {k: torch.from_numpy(ref[k]) for k in module.PARAM_NAMES}
    optimizer = torch_optimizer(spec["optimizer"], list(tensors.values()))
    state = module.init_state(params)
    rng = np.random.default_rng(3)
    for m in (16, 9, 16):
        X = rng.standard_normal((m, 6)).astype(np.float32)
        Y = harness.make_targets(spec, m, rng).astype(np.float32)
        ref_value, grads, _ = tr.loss_and_grad(spec, ref, X.astype(np.float64), Y)
        value = module.step(params, state, X, Y)
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k])
        optimizer.step()
        assert harness.rel_err(value, ref_value) <= 1e-5
        for k in params:
            assert params[k].dtype == np.float32
            assert harness.rel_err(params[k], ref[k]) <= 1e-5, k


def test_the_kernels_load_from_the_cache_under_another_name(numba_module) -> None:
    # numba keys its cache by file; the module is imported under a name of the
    # user's choosing, which may differ from the one the cache was written under (here
    # the fixture's module, compiled in this process, loaded by two others)
    module = numba_module("blocks")
    params = module.init_params(0)
    X, Y = np.linspace(-1, 1, 4 * 6).reshape(4, 6), np.eye(3)[[0, 1, 2, 0]]
    value = module.step(params, module.init_state(params), X, Y)
    path = Path(module.__file__)
    values = [step_in_another_process(path, name, 6)[0] for name in ("one", "two")]
    assert list((path.parent / "__pycache__").glob("*.nbi"))  # the cache's index
    assert values == [value, value]


def test_the_docstring_command_writes_the_numba_module_again(tmp_path, monkeypatch):
    # the docstring's last line is the command that wrote the module: with
    # --target numba, or it would write the NumPy module <name>.py instead
    import shlex

    from symgrad.cli import main

    harness.write_spec(BLOCKS, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "blocks.yaml", "-o", "out", "--target", "numba"]) == 0
    path = tmp_path / "out" / "blocks_numba.py"
    first = path.read_text()
    doc = first[: first.index('"""', 4)]
    command = doc[doc.index("Regenerate with:") + len("Regenerate with:") :]
    words = shlex.split(command.replace("\\\n", ""))
    assert words[:2] == ["symgrad", "generate"]
    path.unlink()
    assert main([*words[1:], "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.py")) == [path.name]
    assert path.read_text() == first


# ---------------------------------------------------------------- image layers
# The numba module's window primitives (_scatter_windows, _window_max, _first_max and
# _contract's window copies as numba kernels, templates/windows_numba.py.jinja) against
# PyTorch: tests/test_conv.py's network in torch.nn.functional (F.conv2d, F.max_pool2d,
# F.avg_pool2d), built from the spec dict, and torch.optim. The specs cover the window
# sizes the kernels compile as constants (3×3 stride 1, 2×2 stride 2) and others
# (their loops with the sizes as variables), odd image sizes (a row and a column no
# window reads), overlapping pooling windows, padding, several channels.
CONV = "conv2d"
IMAGE_SPECS = {
    "lenet_small": {  # odd sizes: 9×7 pooled by 2 leaves a row and a column unread
        "input": [3, 9, 7],
        "layers": [
            {"type": CONV, "filters": 4, "kernel": 3, "padding": 1, "activation": "relu"},
            {"type": "maxpool2d", "size": 2},
            {"type": CONV, "filters": 5, "kernel": 3, "stride": 2, "padding": 1,
             "activation": "tanh"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    },
    "overlapping": {  # max windows that overlap (their gradients added), avg pooling
        "input": [2, 8, 15],
        "layers": [
            {"type": CONV, "filters": 3, "kernel": [2, 3], "stride": [1, 2],
             "padding": [1, 0], "activation": "relu"},
            {"type": "maxpool2d", "size": 3, "stride": 2},
            {"type": "avgpool2d", "size": 2, "stride": 1},
            {"type": "flatten"},
            {"units": 3, "activation": "identity"},
        ],
        "loss": "mse",
        "optimizer": {"name": "momentum", "learning_rate": 0.01, "momentum": 0.8},
    },
    "generic_sizes": {  # 5×5 and 2×3 windows: the kernels' loops with variable sizes
        "input": [2, 11, 10],
        "layers": [
            {"type": CONV, "filters": 3, "kernel": 5, "padding": 2, "activation": "relu"},
            {"type": "maxpool2d", "size": [2, 3], "stride": [2, 3]},
            {"type": CONV, "filters": 2, "kernel": 2, "stride": 2, "activation": "relu"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
    },
    "long_sums": {  # ∂L/∂W sums over more (example, position) pairs than it has
        # entries (one product per example, summed) with fewer positions than a
        # window's entries: the products of 4 + 2, 2 + 1 and 2 + 2 examples at a time
        # (first conv) and 3 + 3, 1 × 3 and 2 + 2 (second) in the work array there is
        "input": [4, 7, 7],
        "layers": [
            {"type": CONV, "filters": 2, "kernel": 3, "activation": "tanh"},
            {"type": CONV, "filters": 1, "kernel": 3, "activation": "relu"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
    },
    "residual_conv": {  # a conv that adds its input, a kernel of one column
        "input": [1, 5, 6],
        "layers": [
            {"type": CONV, "filters": 2, "kernel": 3, "padding": 1, "activation": "tanh"},
            {"type": CONV, "filters": 2, "kernel": [3, 1], "padding": "same",
             "activation": "relu", "residual": True},
            {"type": "flatten"},
            {"units": 3, "activation": "identity"},
        ],
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
    },
    # layernorm and batchnorm over images (their statements NumPy's, between kernels)
    "ln_cnn": {k: v for k, v in LAYERNORM_CNN.items() if k != "name"},
    "bn_cnn": {
        **{k: v for k, v in BATCHNORM_CNN.items() if k != "name"},
        "optimizer": {"name": "momentum", "learning_rate": 0.01, "momentum": 0.8},
    },
}  # fmt: skip


@pytest.fixture(scope="session")
def image_module(tmp_path_factory):
    return module_store(tmp_path_factory, IMAGE_SPECS, "numba_images")


def _torch_optimizer(spec: dict, tensors: list):
    opt = spec["optimizer"]
    if opt["name"] == "adam":
        return torch.optim.Adam(tensors, lr=opt["learning_rate"])
    momentum = opt.get("momentum", 0.0)
    return torch.optim.SGD(tensors, lr=opt["learning_rate"], momentum=momentum)


# every spec in float64; float32 (a second compilation of every kernel, the suite's
# time) for the constant-size kernels, the variable-size ones and a norm's constants
IMAGE_CASES = [(name, np.float64) for name in IMAGE_SPECS] + [
    (name, np.float32) for name in ("lenet_small", "generic_sizes", "bn_cnn")
]


@pytest.mark.parametrize(("name", "dtype"), IMAGE_CASES)
def test_image_steps_match_torch(image_module, name: str, dtype) -> None:
    spec = {"name": name, **IMAGE_SPECS[name]}
    module = image_module(name)
    if spec["optimizer"]["name"] == "adam":  # 4-d kernels: the update walks .flat
        step = Path(module.__file__).read_text().split("def _step(")[1]
        assert re.search(r'_k\d+\(\s*params\["W1"\]', step)
    assert_steps_match_torch(module, spec, dtype, (6, 3, 6, 4), seed=5)


def assert_steps_match_torch(module, spec: dict, dtype, batches, seed: int) -> None:
    """A step of a CNN's numba module on each batch size in turn (random batches),
    against the network in torch.nn.functional (test_conv.torch_loss) and
    torch.optim, in float64: the loss and every parameter after each step."""
    from test_conv import problem as conv_problem
    from test_conv import torch_loss

    p64, _, _ = conv_problem(module, spec)
    params = {k: v.astype(dtype) for k, v in p64.items()}
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    optimizer = _torch_optimizer(spec, list(tensors.values()))
    state = module.init_state(params)
    rng = np.random.default_rng(seed)
    tol = RTOL if dtype == np.float64 else 2e-5
    n_out = spec["layers"][-1]["units"]
    for m in batches:
        X = rng.standard_normal((m, *spec["input"]))
        if spec["loss"] == CCE:
            Y = np.eye(n_out)[rng.integers(0, n_out, m)]
        else:
            Y = rng.standard_normal((m, n_out))
        value = module.step(params, state, X.astype(dtype), Y.astype(dtype))
        optimizer.zero_grad()
        loss = torch_loss(spec, tensors, X, Y)
        loss.backward()
        optimizer.step()
        assert harness.rel_err(value, float(loss.detach())) <= tol, (m, value)
        for k in module.PARAM_NAMES:  # (batchnorm's running statistics: torch's not)
            assert params[k].dtype == dtype
            assert harness.rel_err(params[k], tensors[k].detach().numpy()) <= tol, k
    assert state["t"] == len(batches)


def test_image_gradients_match_torch_and_nan_propagates_as_in_numpy(
    image_module, generate, monkeypatch
) -> None:
    # loss_and_grad and forward run the numba module's window kernels too (out=None)
    from test_conv import problem as conv_problem
    from test_conv import torch_grads

    name = "overlapping"
    spec = {"name": name, **IMAGE_SPECS[name]}
    fused, plain = image_module(name), generate(spec)
    params, X, Y = conv_problem(fused, spec, m=4)
    value, grads = fused.loss_and_grad(params, X, Y)
    ref_value, ref = torch_grads(spec, params, X, Y)
    assert harness.rel_err(value, ref_value) <= RTOL
    for k in ref:
        assert harness.rel_err(grads[k], ref[k]) <= RTOL, k
    # a NaN and an inf in the input: the same outputs, NaN where NumPy's are
    X[0, 0, 2, 3] = np.nan
    X[1, 1, 4, 4] = np.inf
    X[2, 0, 5, 5] = -np.inf
    assert_non_finite_as_in_numpy(fused, plain, params, X, Y, monkeypatch)


def assert_non_finite_as_in_numpy(fused, plain, params, X, Y, monkeypatch) -> None:
    """The numba module fused and the NumPy module plain of one spec, on X holding
    NaN and inf: the same forward outputs and, after a step, the same gradients, NaN
    where the NumPy module's are (CHECK_FINITE off in both)."""
    monkeypatch.setattr(fused, "CHECK_FINITE", False)
    monkeypatch.setattr(plain, "CHECK_FINITE", False)
    with np.errstate(invalid="ignore", over="ignore"):  # 0 · inf in ReLU's product
        out_fused, out_plain = fused.forward(params, X), plain.forward(params, X)
    np.testing.assert_array_equal(np.isnan(out_fused), np.isnan(out_plain))
    assert np.isnan(out_fused).any()
    np.testing.assert_allclose(out_fused, out_plain, rtol=1e-12, atol=0)
    grads = []
    for module in (fused, plain):
        p = {k: v.copy() for k, v in params.items()}
        state = module.init_state(p)
        with np.errstate(invalid="ignore", over="ignore"):
            module.step(p, state, X, Y)
        grads.append(state["grads"])
    for k in grads[1]:
        assert np.isnan(grads[1][k]).any(), k
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["lenet_small", "overlapping", "generic_sizes"])
def test_a_max_pool_runs_in_one_pass_each_way(image_module, name: str) -> None:
    # forward, the window maxima and the first-maximum mask in one _window_max call;
    # backward, the product with the mask in the scatter's call, its window-shaped
    # array unwritten (2×2 stride 2, overlapping 3×3 stride 2, 2×3); that the
    # numbers are PyTorch's, NaN's and ties too: the tests above and below
    import inspect

    step = inspect.getsource(image_module(name)._step)
    # (out the pooling's maxima, or the padded input of a convolution after it)
    assert re.search(r"_window_max\(_windows\(.*\), out=h\w+, first=mask2[,)]", step)
    assert "_first_max(" not in step
    calls = re.findall(r"_scatter_windows\((.*)\)", step)
    assert any(c.startswith("g2[:, :, :, :, None, None], ") for c in calls), calls
    assert any(c.endswith("by=mask2") for c in calls), calls
    assert "mask2, out=" not in step  # no np.multiply(…, mask2, out=…)


def test_image_max_pooling_ties_go_to_the_first_maximum(image_module) -> None:
    # whole numbers: windows with equal values; PyTorch's gradient goes to the first
    from test_conv import problem as conv_problem
    from test_conv import torch_grads

    name = "lenet_small"
    spec = {"name": name, **IMAGE_SPECS[name]}
    module = image_module(name)
    params, X, Y = conv_problem(module, spec, m=3)
    params["W1"][...] = np.round(params["W1"] * 2)
    params["b1"][...] = 0.0
    X[...] = np.round(X)
    value, grads = module.loss_and_grad(params, X, Y)
    ref_value, ref = torch_grads(spec, params, X, Y)
    assert harness.rel_err(value, ref_value) <= RTOL
    for k in ref:
        assert harness.rel_err(grads[k], ref[k]) <= RTOL, k


def assert_a_big_batch_allocates_nothing(module, spec: dict, dtype, smallest) -> None:
    """harness.assert_step_allocates_nothing for a CNN's module on a random batch of
    512, smallest the shape of its smallest image array after the batch axis (at
    that batch larger than the allowance)."""
    params = module.init_params(0, dtype=dtype)
    rng = np.random.default_rng(0)
    m = 512
    X = rng.standard_normal((m, *spec["input"])).astype(dtype)
    n_out = spec["layers"][-1]["units"]
    Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, m)]
    size = m * int(np.prod(smallest)) * np.dtype(dtype).itemsize
    harness.assert_step_allocates_nothing(module, params, X, Y, size)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_image_step_allocates_nothing_after_the_first(image_module, dtype) -> None:
    spec = IMAGE_SPECS["lenet_small"]
    assert_a_big_batch_allocates_nothing(
        image_module("lenet_small"), spec, dtype, (5, 3, 2)
    )


def compiled_kernels(module, dtype: str = "", kinds: bool = False) -> list[str]:
    """The names of module's numba functions that have compiled (or loaded) code (for
    arrays of dtype, where given); with kinds, a window kernel of one size
    (_scatter_kernel_3x3_1x1, _scatter_kernel_any) by its window kernel's name."""
    names = {
        name
        for name, f in vars(module).items()
        if hasattr(f, "stats")
        and any(dtype in str(sig) for sig in getattr(f, "signatures", ()))
    }
    if kinds:
        names = {re.sub(r"_(any|\d+x\d+_\d+x\d+)$", "", name) for name in names}
    return sorted(names)


def step_in_another_process(path, name: str, n_in: int) -> tuple[float, int, int, list]:
    """One step of the numba module at path, imported under name in a new process,
    params init_params(0), X (4, n_in) from -1 to 1, Y one-hot of 3 classes: the
    loss, numba's cache hits and misses over the kernels it called, their names."""
    script = textwrap.dedent("""
        import importlib.util, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location(sys.argv[2], sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys.argv[2]] = module
        spec.loader.exec_module(module)
        params = module.init_params(0)
        X = np.linspace(-1, 1, 4 * int(sys.argv[3])).reshape(4, -1)
        Y = np.eye(3)[[0, 1, 2, 0]]
        value = module.step(params, module.init_state(params), X, Y)
        used = [k for k, f in vars(module).items() if getattr(f, "signatures", None)]
        stats = [getattr(module, k).stats for k in used]
        hits = sum(sum(s.cache_hits.values()) for s in stats)
        misses = sum(sum(s.cache_misses.values()) for s in stats)
        print(repr(value), hits, misses, ",".join(sorted(used)))
        """)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), name, str(n_in)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    value, hits, misses, used = done.stdout.split()
    return float(value), int(hits), int(misses), used.split(",")


def test_the_window_kernels_load_from_the_cache_under_another_name(
    image_module,
) -> None:
    # the window kernels call inlined bodies (_inline): the cached code has them in,
    # and a second process, under another module name, loads what this one compiled
    # (the module the other tests use) instead of compiling
    module = image_module("lenet_small")
    params = module.init_params(0)
    X = np.linspace(-1, 1, 4 * 189).reshape(4, 189)
    Y = np.eye(3)[[0, 1, 2, 0]]
    value = module.step(params, module.init_state(params), X, Y)
    assert {"_window_copy_kernel", "_scatter_kernel"} <= set(
        compiled_kernels(module, kinds=True)
    )
    other, hits, misses, used = step_in_another_process(module.__file__, "other", 189)
    # each kernel the step called loaded from the cache this process wrote
    assert set(used) <= set(compiled_kernels(module))
    assert misses == 0 and hits >= len(used)
    assert other == value


# the update: one kernel per parameter (fused.py's Fuser.update) for every optimizer,
# schedule and clipping of tests/test_training.py, against its torch.optim loop
UPDATE_CASES = [
    (name, schedule, clip)
    for name in tt.OPTIMIZERS
    for schedule, clip in (("none", False), ("cosine", True))
]


@pytest.fixture(scope="session")
def update_module(tmp_path_factory):
    """build(opt, schedule, clip) -> (spec, module) of tests/test_training.py's network,
    one module per spec for the session (the float64 and float32 tests share it)."""
    cache: dict[tuple, tuple] = {}
    workdir = tmp_path_factory.mktemp("numba_updates")

    def build(opt: str, schedule: str, clip: bool):
        if (opt, schedule, clip) not in cache:
            spec = tt.spec_of(opt, schedule, False, clip)
            cache[opt, schedule, clip] = spec, generate_numba(spec, workdir)
        return cache[opt, schedule, clip]

    return build


@pytest.mark.parametrize(("opt", "schedule", "clip"), UPDATE_CASES)
def test_the_update_kernels_follow_torch_optim(update_module, opt, schedule, clip):
    spec, module = update_module(opt, schedule, clip)
    step = Path(module.__file__).read_text().split("def _step(")[1]
    assert "for k in PARAM_NAMES:" not in step  # the update is the kernels'
    X, Y = tt.data()
    initial = tt.start(module)
    want, _, norms = tt.torch_trajectory(spec, initial, X, Y)
    if clip:
        assert min(norms) < tt.CLIP < max(norms)
    params = {k: v.copy() for k, v in initial.items()}
    state = module.init_state(params)
    for batch in tt.batches():
        module.step(params, state, X[batch], Y[batch])
    assert state["t"] == tt.STEPS
    tt.assert_close(params, want, initial, "numba step")


@pytest.mark.parametrize("opt", tt.OPTIMIZERS)
def test_float32_update_kernels_follow_torch_optim(update_module, opt) -> None:
    # float32 throughout, the kernels' numbers and scalars of the arrays' dtype:
    # within float32 rounding of torch's float64 loop (both modules measured 2-8e-7)
    spec, module = update_module(opt, "none", False)
    X, Y = tt.data()
    initial = tt.start(module)
    want, _, _ = tt.torch_trajectory(spec, initial, X, Y)
    params = {k: v.astype(np.float32) for k, v in initial.items()}
    state = module.init_state(params)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    for batch in tt.batches():
        module.step(params, state, X32[batch], Y32[batch])
    for k in want:
        assert params[k].dtype == np.float32
        assert harness.rel_err(params[k], want[k]) <= 1e-5, k


def test_same_spec_same_bytes_whatever_the_hash_seed(tmp_path) -> None:
    # the kernels' constants, scalars and update kernels in the order they are printed
    spec = {**BLOCKS, "name": "bytes_numba", "optimizer": OPTIMIZERS["adam"][0]}
    path = harness.write_spec({**spec, "l2": 0.01}, tmp_path)
    code = "import sys, symgrad; symgrad.generate(sys.argv[1], sys.argv[2], target='numba')"
    out = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "SYMGRAD_NO_CACHE": "1"}
        target = tmp_path / "out"
        subprocess.run(
            [sys.executable, "-c", code, str(path), str(target)], check=True, env=env
        )
        out.append((target / "bytes_numba_numba.py").read_bytes())
    assert out[0] == out[1]
    assert b".dtype.type(" in out[0]  # the typed constants are printed


def test_an_update_the_kernels_do_not_print_gets_the_numpy_lines(tmp_path) -> None:
    # a rule that calls tanh (left to NumPy's ufunc: TRANSCENDENTAL): no kernel for it
    import sympy as sp

    from symgrad import optimizers as opt

    lr = opt.Setting("learning_rate", 0.01, r"\eta", "η", low=0.0, high=None)
    entry = opt.OptimizerDef(
        "tanh_sgd",
        "SGD on tanh(g)",
        (lr,),
        rule=lambda s: [opt.Assign(opt.p, opt.p - s["learning_rate"] * sp.tanh(opt.g))],
    )
    opt.register(entry)
    try:
        spec = {**BLOCKS, "name": "tanh_sgd", "optimizer": {"name": "tanh_sgd"}}
        module = generate_numba(spec, tmp_path)
    finally:
        del opt.OPTIMIZERS[entry.name]
    step = Path(module.__file__).read_text().split("def _step(")[1]
    update = step.split("if CHECK_FINITE:")[1].split("\ndef ")[0]
    assert "np.tanh(" in update and not re.search(r"_k\d+\(", update)
    params, _, _ = problem(module, spec)
    ref = copy.deepcopy(params)
    state = module.init_state(params)
    rng = np.random.default_rng(8)
    for m in (7, 5):
        X = rng.standard_normal((m, spec["input"]))
        Y = harness.make_targets(spec, m, rng)
        _, grads, _ = tr.loss_and_grad(spec, ref, X, Y)
        module.step(params, state, X, Y)
        for k in ref:
            ref[k] = ref[k] - 0.01 * torch.tanh(torch.from_numpy(grads[k])).numpy()
        for k in params:
            assert harness.rel_err(params[k], ref[k]) <= RTOL, (k, m)


def test_the_update_kernels_take_parameters_of_any_layout(numba_module) -> None:
    # .flat walks a Fortran-ordered weight as NumPy's `p -= g` does: the same numbers
    name = next(n for n, sp_ in SPECS_ALL.items() if sp_["optimizer"]["name"] == "adam")
    spec, module = SPECS_ALL[name], numba_module(name)
    params, _, _ = problem(module, spec)
    other = {k: np.asfortranarray(v.copy()) for k, v in params.items()}
    assert not other["W1"].flags.c_contiguous
    states = module.init_state(params, seed=7), module.init_state(other, seed=7)
    rng = np.random.default_rng(8)
    for m in (7, 5):
        X = rng.standard_normal((m, spec["input"]))
        Y = harness.make_targets(spec, m, rng)
        for p, state in zip((params, other), states, strict=True):
            module.step(p, state, X, Y)
        for k in params:
            np.testing.assert_array_equal(other[k], params[k])
