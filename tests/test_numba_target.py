"""The numba target (`symgrad generate --target numba`) against PyTorch.

The numba module is the NumPy module with its step's runs of elementwise statements
fused into numba kernels (symgrad/printers/fused.py). Its steps are checked here
against PyTorch: autograd's gradients of tests/torch_reference.py's network (built
independently from the spec dict) and torch.optim's updates, over every layer kind,
activation and loss of tests/test_layers.py and tests/test_step.py, several steps with
batch sizes that change, float64 to 1e-9. Also: the NumPy module never imports numba,
the numba module is black- and ruff-clean and allocates nothing after its first step,
and its compiled kernels load from the cache under another module name.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import harness
import numpy as np
import pytest
import torch
import torch_reference as tr
from test_layers import CUSTOM, OPTIMIZERS, SPECS, problem, torch_optimizer

pytest.importorskip("numba")

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
    for act in HIDDEN:
        name = act if isinstance(act, str) else act["name"]
        specs[f"hidden_{name}"] = {
            "name": f"hidden_{name}",
            "input": 4,
            "layers": [
                _dense(act),
                _dense("tanh"),
                {"units": 3, "activation": "softmax"},
            ],
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


@pytest.fixture(scope="module")
def numba_module(tmp_path_factory):
    cache: dict[str, object] = {}
    workdir = tmp_path_factory.mktemp("numba")

    def build(name: str):
        if name not in cache:
            cache[name] = generate_numba(SPECS_ALL[name], workdir)
        return cache[name]

    return build


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
def test_the_numba_module_is_black_and_ruff_clean(tmp_path) -> None:
    import symgrad

    spec = harness.write_spec(BLOCKS, tmp_path)
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
    peak, buffer = harness.step_peak_bytes(module, params, X, Y, bufsize=1024)
    allowance = 2 * buffer * np.dtype(dtype).itemsize + 16 * 1024
    assert allowance < m * np.dtype(dtype).itemsize
    assert peak < allowance, f"a step allocated up to {peak} bytes"


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


def test_the_kernels_load_from_the_cache_under_another_name(tmp_path) -> None:
    # numba keys its cache by file; the module is imported under a name of the
    # user's choosing, which may differ from the one the cache was written under
    import symgrad

    spec = harness.write_spec(BLOCKS, tmp_path)
    path = Path(symgrad.generate(spec, tmp_path / "out", target="numba"))
    script = textwrap.dedent("""
        import importlib.util, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location(sys.argv[2], sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys.argv[2]] = module
        spec.loader.exec_module(module)
        params = module.init_params(0)
        X = np.ones((4, 6))
        Y = np.eye(3)[[0, 1, 2, 0]]
        print(module.step(params, module.init_state(params), X, Y))
        """)
    values = []
    for name in ("first_name", "second_name"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(path), name],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        values.append(float(done.stdout))
    assert list((path.parent / "__pycache__").glob("*.nbi"))  # the cache's index
    assert values[0] == values[1]


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
