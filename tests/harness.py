"""Shared helpers for the tests: generate+import, data, error measures, FD.

JAX is imported only by the helpers that compare with the JAX reference (kink_distance,
check_against_reference), when first called: conftest.py imports this module for every
test, and the spec and parser tests run without JAX installed.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import os
import sys
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

TINY = np.finfo(np.float64).tiny


def _importable(name: str) -> bool:
    """name can be imported (without importing it: JAX takes a second)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # sys.modules[name] is None: made unimportable on purpose
        return False


# for the tests in otherwise JAX-free files that compare with the JAX reference
needs_jax = pytest.mark.skipif(
    not _importable("jax"), reason="needs JAX, the reference: pip install '.[test]'"
)
KINKED = ("relu", "leaky_relu", "elu")  # activations whose derivative jumps at z = 0
_counter = itertools.count()


# --- generate and import ---------------------------------------------------------------


def write_spec(spec: Mapping[str, Any], directory: os.PathLike | str) -> Path:
    """Write ``spec`` as ``<name>.yaml`` in ``directory`` and return its path."""
    path = Path(directory) / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    return path


def import_path(path: os.PathLike | str, module_name: str) -> ModuleType:
    """Import the Python file at ``path`` as ``module_name`` (registered in sys.modules)."""
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None, path
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    return module


def generate_module(spec: Mapping[str, Any], workdir: os.PathLike | str) -> ModuleType:
    """Write ``spec`` as YAML, run ``symgrad.generate`` and import the result.

    Each call uses a fresh subdirectory of ``workdir`` and a unique module name, so
    modules generated from specs with the same ``name`` never clash.
    """
    import symgrad  # late: the reference tests must run without symgrad

    n = next(_counter)
    directory = Path(workdir) / f"spec{n}"
    directory.mkdir(parents=True)
    out = symgrad.generate(write_spec(spec, directory), directory / "out")
    out = Path(out)
    assert out.name == f"{spec['name']}.py", out
    assert out.is_file(), out
    return import_path(out, f"_symgrad_generated_{spec['name']}_{n}")


# --- memory: what the test processes hold ----------------------------------------------

# How far a test process's resident memory may grow past what it held after the caches
# were last emptied before they are emptied again; the suite's measured peak is in
# docs/development.md ("The suite's memory").
MEMORY_GROWTH_MIB = 256
_floor = {"mib": 0}  # resident memory after the last emptying (0: not measured yet)


def resident_mib() -> int:
    """This process's resident set in MiB (0 where /proc is not there to read)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _glibc() -> Any:
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def empty_caches() -> None:
    """Empty the caches that only grow — JAX's compiled programs (each spec's reference
    network compiles its own), SymPy's expression cache and symgrad's memo of free
    symbols, which keeps expressions alive — and give the freed memory back: glibc's
    malloc keeps freed pages for reuse (one worker held 1.8 GiB of which 0.5 GiB was
    free), malloc_trim returns them to the system. The tests reuse nothing of these
    that they cannot make again."""
    import gc

    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()
    sympy_cache = sys.modules.get("sympy.core.cache")
    if sympy_cache is not None:
        sympy_cache.clear_cache()
    functions = sys.modules.get("symgrad.sym.functions")
    if functions is not None:
        functions.variables.cache_clear()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    _floor["mib"] = resident_mib()


def keep_within_budget() -> None:
    """empty_caches() when this process has grown more than MEMORY_GROWTH_MIB since it
    last ran (the first call only measures). Called after every test (conftest.py) and
    by tests that run many examples in one (the hypothesis tests of test_fuzz_spec.py).
    """
    now = resident_mib()
    if not _floor["mib"]:
        _floor["mib"] = now
    elif now > _floor["mib"] + MEMORY_GROWTH_MIB:
        empty_caches()


# --- specs and data ----------------------------------------------------------------------


def spec(
    name: str, n_in: int, layers: list[tuple[int, Any]], loss: Any, **extra: Any
) -> dict[str, Any]:
    """Build a spec dict: ``layers`` as (units, activation) pairs."""
    d: dict[str, Any] = {"name": name, "input": n_in}
    d["layers"] = [{"units": u, "activation": a} for u, a in layers]
    d["loss"] = loss
    d.update(extra)
    return d


def act_name(activation: Any) -> str:
    return activation if isinstance(activation, str) else activation["name"]


def loss_name(spec: Mapping[str, Any]) -> str:
    loss = spec["loss"]
    return loss if isinstance(loss, str) else loss["name"]


def make_targets(spec: Mapping[str, Any], m: int, rng: np.random.Generator):
    """Random targets valid for the spec's loss and output activation, float64."""
    n_out = spec["layers"][-1]["units"]
    name = loss_name(spec)
    if name == "categorical_crossentropy":
        return np.eye(n_out)[rng.integers(0, n_out, size=m)]
    if name == "binary_crossentropy":
        return rng.integers(0, 2, size=(m, n_out)).astype(np.float64)
    out_act = act_name(spec["layers"][-1]["activation"])
    if out_act in ("sigmoid", "softmax"):
        return rng.uniform(0.0, 1.0, size=(m, n_out))
    return rng.standard_normal((m, n_out))


def batches(n: int, size: int, epochs: int):
    """Shuffled mini-batches of n examples, as index arrays; the last of each epoch
    partial when size does not divide n (20 = 8 + 8 + 4). Epoch e shuffles with
    default_rng(e)."""
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(n)
        for start in range(0, n, size):
            yield order[start : start + size]


def perturb_biases(params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Give biases non-zero values in place (init_params may zero them, hiding bugs)."""
    for key, value in params.items():
        if key.startswith("b"):
            value += (0.3 * rng.standard_normal(value.shape)).astype(value.dtype)


def _reference() -> ModuleType:
    """tests/jax_reference.py, imported on first use: it imports JAX."""
    import jax_reference

    return jax_reference


def kink_distance(spec: Mapping[str, Any], params, X, Y) -> float:
    """Smallest distance of a pre-activation (or an mae residual) to its kink at 0."""
    ref = _reference()
    zs = ref.pre_activations(spec, params, X)
    dist = np.inf
    for layer, z in zip(spec["layers"], zs, strict=True):
        if act_name(layer["activation"]) in KINKED:
            dist = min(dist, float(np.min(np.abs(z))))
    if loss_name(spec) == "mae":
        residual = ref.forward(spec, params, X) - Y
        dist = min(dist, float(np.min(np.abs(residual))))
    return dist


def make_problem(
    module: ModuleType,
    spec: Mapping[str, Any],
    *,
    m: int = 7,
    seed: int = 0,
    margin: float = 1e-3,
    dtype=np.float64,
):
    """Params (init_params + perturbed biases), X and Y for a generated module.

    X is resampled until no kinked pre-activation (relu, leaky_relu, elu) and no mae
    residual lies within ``margin`` of 0, so finite differences never straddle a kink.
    """
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        params = module.init_params(seed, dtype=dtype)
        perturb_biases(params, rng)
        X = rng.standard_normal((m, spec["input"])).astype(dtype)
        Y = make_targets(spec, m, rng).astype(dtype)
        if kink_distance(spec, params, X, Y) > margin:
            return params, X, Y
    raise AssertionError(f"no data found with all kinks farther than {margin} from 0")


# --- error measures and finite differences ----------------------------------------------


def rel_err(a, b) -> float:
    """||a - b|| / max(||b||, tiny): ``b`` is the reference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), TINY))


def grad_errors(grads: Mapping[str, Any], ref_grads: Mapping[str, Any]) -> dict:
    """Relative error per parameter array."""
    return {k: rel_err(grads[k], ref_grads[k]) for k in ref_grads}


def central_differences(
    loss: Callable[[dict], float],
    params: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    *,
    h: float = 1e-6,
    per_array: int = 6,
) -> dict[str, tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Central differences of ``loss`` on up to ``per_array`` random entries per array.

    Returns, per key, the sampled (flat) indices and the estimated derivatives.
    """
    out = {}
    for key, value in params.items():
        count = min(per_array, value.size)
        flat = rng.choice(value.size, size=count, replace=False)
        estimates = np.empty(count)
        for j, i in enumerate(flat):
            index = np.unravel_index(i, value.shape)
            shifted = copy.deepcopy(dict(params))
            shifted[key][index] = value[index] + h
            up = loss(shifted)
            shifted[key][index] = value[index] - h
            down = loss(shifted)
            estimates[j] = (up - down) / (2 * h)
        out[key] = (np.unravel_index(flat, value.shape), estimates)
    return out


# --- the two gradient checks ------------------------------------------------------------

REF_RTOL = 1e-9  # generated module vs JAX reference, float64
FD_RTOL = 1e-6  # generated gradients vs central differences of the generated loss
FD_FLOOR = 1e-3  # FD denominator floor: rounding error of (L(+h) - L(-h)) / 2h is ~1e-9


def check_against_reference(module: ModuleType, spec: Mapping[str, Any], seed=0):
    """forward, loss and loss_and_grad of ``module`` equal the JAX reference."""
    ref = _reference()
    params, X, Y = make_problem(module, spec, seed=seed)
    before = copy.deepcopy(params)

    Yhat = module.forward(params, X)
    value = module.loss(params, X, Y)
    value2, grads = module.loss_and_grad(params, X, Y)
    ref_value, ref_grads = ref.loss_and_grad(spec, params, X, Y)

    for key in params:
        np.testing.assert_array_equal(
            params[key], before[key], err_msg=f"{key} mutated"
        )
    assert np.shape(Yhat) == (X.shape[0], spec["layers"][-1]["units"])
    assert rel_err(Yhat, ref.forward(spec, params, X)) <= REF_RTOL, "forward"
    assert np.isscalar(value) or np.ndim(value) == 0, f"loss is {type(value)}"
    assert rel_err(value, ref_value) <= REF_RTOL, f"loss {value!r} != ref {ref_value!r}"
    assert rel_err(value2, ref_value) <= REF_RTOL, f"loss_and_grad loss {value2!r}"

    assert sorted(grads) == sorted(params)
    for key in params:
        assert grads[key].shape == params[key].shape, key
        assert grads[key].dtype == params[key].dtype, key
    errors = grad_errors(grads, ref_grads)
    bad = {k: e for k, e in errors.items() if not e <= REF_RTOL}
    assert not bad, f"gradient relative errors above {REF_RTOL}: {bad}"


def check_finite_differences(module: ModuleType, spec: Mapping[str, Any], seed=0):
    """loss_and_grad of ``module`` agrees with central differences of its own loss."""
    params, X, Y = make_problem(module, spec, seed=seed)
    _, grads = module.loss_and_grad(params, X, Y)
    rng = np.random.default_rng(seed + 1000)

    def loss(p):
        return float(module.loss(p, X, Y))

    bad = {}
    for key, (index, fd) in central_differences(loss, params, rng).items():
        g = grads[key][index]
        err = np.linalg.norm(fd - g) / max(np.linalg.norm(g), FD_FLOOR)
        if not err <= FD_RTOL:
            bad[key] = (err, g.tolist(), fd.tolist())
    assert not bad, f"FD mismatch (rel err, analytic, central differences): {bad}"


def step_peak_bytes(
    module: ModuleType,
    params,
    X,
    Y,
    bufsize: int | None = None,
    check_finite: bool = False,
) -> tuple[int, int]:
    """(peak, buffer): the most memory three in-place steps allocate after the first
    (which makes the work arrays), and NumPy's buffer size while they ran (its buffered
    iterator takes one buffer of that many elements per call that broadcasts or casts:
    Z += b, a comparison into a float mask). CHECK_FINITE is off unless check_finite:
    its scans of X and Y and the step's check before the update allocate nothing either
    (np.vdot, reductions), but for targets found outside their range."""
    state = module.init_state(params)
    module.step(params, state, X, Y)  # makes the work arrays
    module.CHECK_FINITE = check_finite
    size = np.getbufsize()
    try:
        if bufsize is not None:
            np.setbufsize(bufsize)
        tracemalloc.start()
        for _ in range(3):
            module.step(params, state, X, Y)
        _, peak = tracemalloc.get_traced_memory()
        return peak, np.getbufsize()
    finally:
        tracemalloc.stop()
        np.setbufsize(size)
        module.CHECK_FINITE = True


def assert_step_allocates_nothing(
    module: ModuleType,
    params,
    X,
    Y,
    smallest: int,
    bufsize: int | None = 1024,
    check_finite: bool = False,
) -> None:
    """Three in-place steps after the first allocate no array of the batch's size:
    their peak stays under three of NumPy's iterator buffers (one per operand of a
    ufunc that buffers: a strided or broadcast a += b takes two or three) and 16 KiB of
    Python objects (the views and tuples a step makes). smallest is the bytes of the
    step's smallest array that grows with the batch; it must be larger than that
    allowance, or the test could not tell."""
    peak, buffer = step_peak_bytes(module, params, X, Y, bufsize, check_finite)
    allowance = 3 * buffer * X.dtype.itemsize + 16 * 1024
    assert allowance < smallest, "a batch too small for the test to tell"
    assert peak < allowance, f"a step allocated up to {peak} bytes"
