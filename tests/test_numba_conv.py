"""The numba module's direct convolution kernels against PyTorch.

For a 3×3 convolution at stride 1 the numba module computes the forward pass, ∂L/∂W
and the input gradient (the window-entry gradient and its col2im scatter, printed as
one `_conv_scatter` call) from the image in one kernel pass each, without im2col
(templates/windows_numba.py.jinja); other windows go through im2col and BLAS as
before. Checked here against torch autograd (`F.conv2d`, tests/test_conv.py's
network) and torch.optim, float64 to 1e-9 and float32 to 2e-5: multi-channel input,
odd filter and channel counts (the kernels' pairs), no padding, a stride-2 and a 5×5
convolution beside the direct ones; the transposed convolution alone against
`F.conv_transpose2d`; which path each convolution takes; NaN and inf as in the NumPy
module; no allocation after the first step; a batch cut in two halves (a large
kernel: one on a worker thread) against torch, the same numbers on one core and two.
"""

from __future__ import annotations

import inspect
import re

import harness
import numpy as np
import pytest
import torch
from test_numba_target import (
    assert_a_big_batch_allocates_nothing,
    assert_non_finite_as_in_numpy,
    assert_steps_match_torch,
    compiled_kernels,
    module_store,
)

pytest.importorskip("numba")
pytestmark = pytest.mark.xdist_group("numba_target")

CONV, CCE = "conv2d", "categorical_crossentropy"
SPECS = {
    "direct": {  # every convolution 3×3 stride 1: forward, ∂L/∂W, input gradient
        "input": [3, 8, 7],
        "layers": [
            {"type": CONV, "filters": 5, "kernel": 3, "padding": 1, "activation": "relu"},
            {"type": CONV, "filters": 3, "kernel": 3, "activation": "tanh"},
            {"type": "maxpool2d", "size": 2},
            {"type": CONV, "filters": 4, "kernel": 3, "padding": 1, "activation": "relu"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
        "optimizer": {"name": "momentum", "learning_rate": 0.01, "momentum": 0.8},
    },
    "mixed": {  # a 5×5 and a stride-2 convolution (im2col) around a direct one
        "input": [2, 11, 9],
        "layers": [
            {"type": CONV, "filters": 3, "kernel": 5, "padding": 2, "activation": "relu"},
            {"type": CONV, "filters": 4, "kernel": 3, "padding": 1, "activation": "tanh"},
            {"type": CONV, "filters": 2, "kernel": 3, "stride": 2, "activation": "relu"},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
    },
}  # fmt: skip


@pytest.fixture(scope="session")
def module(tmp_path_factory):
    return module_store(tmp_path_factory, SPECS, "numba_conv")


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("direct", np.float64), ("mixed", np.float64), ("direct", np.float32)],
)
def test_steps_match_torch(module, name: str, dtype) -> None:
    spec = {"name": name, **SPECS[name]}
    assert_steps_match_torch(module(name), spec, dtype, (5, 2, 5, 3), seed=7)


@pytest.mark.parametrize(
    ("cores", "dtype"), [(2, np.float64), (1, np.float64), (2, np.float32)]
)
def test_halves_of_the_batch_match_torch(module, monkeypatch, cores, dtype) -> None:
    # every direct kernel cut in two halves of the batch (_halves; a LeNet's are past
    # _SPLIT_AT, these small ones are not unless it is 0): odd and even batches, the
    # second half on the worker thread (2 cores) or after the first (1); float32's
    # input gradient only (its forward pass and ∂L/∂W are BLAS products)
    mod = module("direct")
    monkeypatch.setattr(mod, "_SPLIT_AT", 0)
    monkeypatch.setattr(mod, "_CORES", cores)
    monkeypatch.setattr(mod, "_WORKERS", {})
    spec = {"name": "direct", **SPECS["direct"]}
    assert_steps_match_torch(mod, spec, dtype, (5, 2, 1, 4), seed=11)
    assert bool(mod._WORKERS) == (cores == 2)  # the worker thread ran the halves


def test_the_halves_give_the_same_numbers_on_one_core_and_two(module, monkeypatch):
    # ∂L/∂W adds its halves' sums in one order however many cores run them, so a
    # step's numbers are the same bytes on every machine
    mod = module("direct")
    monkeypatch.setattr(mod, "_SPLIT_AT", 0)
    X = np.linspace(-2, 2, 7 * 3 * 8 * 7).reshape(7, 3, 8, 7)
    Y = np.eye(3)[[0, 1, 2, 0, 1, 2, 0]]
    results = []
    for cores in (2, 1):
        monkeypatch.setattr(mod, "_CORES", cores)
        params = mod.init_params(0)
        state = mod.init_state(params)
        losses = [mod.step(params, state, X, Y) for _ in range(3)]
        results.append((losses, params))
    assert results[0][0] == results[1][0]
    for k, v in results[0][1].items():
        np.testing.assert_array_equal(v, results[1][1][k])


def _compiled(mod) -> set[str]:
    """The window kernels and others of mod compiled (or loaded) for float64."""
    return set(compiled_kernels(mod, "float64", kinds=True))


def test_each_convolution_takes_its_path(module) -> None:
    # float64 steps; direct: the three 3×3 stride-1 convolutions compute from the
    # image, their input gradients as one _conv_scatter call each (the second and
    # third; the first has none), no window copied; mixed: the 5×5 and stride-2 ones
    # copy their windows and scatter them back, the 3×3 between them is direct
    direct, mixed = module("direct"), module("mixed")
    for mod, name in ((direct, "direct"), (mixed, "mixed")):
        spec = SPECS[name]
        params = mod.init_params(0)
        X = np.linspace(-1, 1, 4 * int(np.prod(spec["input"]))).reshape(4, -1)
        mod.step(params, mod.init_state(params), X, np.eye(3)[[0, 1, 2, 0]])
    step = inspect.getsource(direct._step)
    assert step.count("_conv_scatter(") == 2
    # the third's padding: its gradient is the scatter's crop, computed in the call
    assert re.findall(r"crop=\(\d+, \d+\)", step) == ["crop=(1, 1)"]
    # and its input, the pooling's maxima, written inside its padded array
    assert re.findall(r"pad=\(\d+, \d+\)", step) == ["pad=(1, 1)"]
    assert step.count("_pad(") == 1  # the first's input
    scatters = re.findall(r"_scatter_windows\((.*)\)", step)
    assert [c for c in scatters if "by=" not in c] == []  # the pooling's alone
    assert {
        "_conv_kernel",
        "_conv_weights_kernel",
        "_conv_scatter_kernel",
    } <= _compiled(direct)
    assert "_window_copy_kernel" not in _compiled(direct)
    step = inspect.getsource(mixed._step)
    assert step.count("_conv_scatter(") == 1
    assert {"_conv_kernel", "_window_copy_kernel", "_scatter_kernel"} <= _compiled(
        mixed
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_transposed_convolution_is_torchs(module, dtype) -> None:
    # _conv_scatter alone, the letters in other orders, odd and even counts, and
    # cropped
    mod = module("direct")
    rng = np.random.default_rng(3)
    for m, f, c, ho, wo in ((2, 3, 5, 4, 6), (3, 4, 2, 7, 3), (1, 1, 1, 1, 1)):
        d = rng.standard_normal((m, f, ho, wo))
        w = rng.standard_normal((f, c, 3, 3))
        ref = torch.nn.functional.conv_transpose2d(torch.tensor(d), torch.tensor(w))
        h, wd = ho + 2, wo + 2
        out = mod._conv_scatter(
            "nfij,fcpq->ncijpq", d.astype(dtype), w.astype(dtype), h, wd, 3, 3, 1, 1
        )
        tol = 1e-12 if dtype == np.float64 else 2e-6
        assert harness.rel_err(out, ref.numpy()) <= tol
        swapped = mod._conv_scatter(
            "cfqp,ijfn->ncijpq",
            w.transpose(1, 0, 3, 2).astype(dtype),
            d.transpose(2, 3, 1, 0).astype(dtype),
            h,
            wd,
            3,
            3,
            1,
            1,
        )
        np.testing.assert_array_equal(swapped, out)
        # with a crop (a padding's gradient): only the entries kept, as torch's
        # transposed convolution with that padding
        for ph, pw in ((1, 1), (1, 0), (0, 1)):
            ref = torch.nn.functional.conv_transpose2d(
                torch.tensor(d), torch.tensor(w), padding=(ph, pw)
            )
            out = np.full(ref.shape, np.nan, dtype)
            mod._conv_scatter(
                "nfij,fcpq->ncijpq",
                d.astype(dtype),
                w.astype(dtype),
                h,
                wd,
                3,
                3,
                1,
                1,
                out=out,
                work={},
                crop=(ph, pw),
            )
            assert harness.rel_err(out, ref.numpy()) <= tol


def test_nan_and_inf_propagate_as_in_numpy(module, generate, monkeypatch) -> None:
    from test_conv import problem as conv_problem

    spec = {"name": "direct", **SPECS["direct"]}
    fused, plain = module("direct"), generate(spec)
    params, X, Y = conv_problem(fused, spec, m=4)
    X[0, 0, 2, 3] = np.nan
    X[1, 1, 4, 4] = np.inf
    X[2, 2, 0, 0] = -np.inf
    assert_non_finite_as_in_numpy(fused, plain, params, X, Y, monkeypatch)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_step_allocates_nothing_after_the_first(module, dtype) -> None:
    # (at a batch of 512 the larger direct kernels are cut in halves: the worker's calls
    # are measured too)
    assert_a_big_batch_allocates_nothing(
        module("direct"), SPECS["direct"], dtype, (4, 3, 2)
    )


def test_the_module_keeps_no_arrays_of_its_own(module) -> None:
    # every array a step writes is its state's (work arrays, per params and batch
    # size): none in the module, where two states stepping in two threads would
    # share it (the kernels' scratch was once a module-level cache)
    mod = module("direct")
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        params = mod.init_params(0, dtype=dtype)
        X = rng.standard_normal((4, 3 * 8 * 7)).astype(dtype)
        Y = np.eye(3, dtype=dtype)[[0, 1, 2, 0]]
        mod.step(params, mod.init_state(params), X, Y)

    def arrays(x, depth=0) -> bool:
        if isinstance(x, np.ndarray):
            return True
        if depth < 3 and isinstance(x, dict):
            return any(arrays(v, depth + 1) for v in (*x.keys(), *x.values()))
        if depth < 3 and isinstance(x, (list, tuple, set)):
            return any(arrays(v, depth + 1) for v in x)
        return False

    held = [k for k, v in vars(mod).items() if not k.startswith("__") and arrays(v)]
    assert held == []
