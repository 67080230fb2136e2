"""The array backends an array-API module is tested on, and the comparisons it must pass.

A plain helper module (no tests): given a generated array-API module (``<name>_xp.py``)
and its NumPy counterpart (``<name>.py``), the tests run both on the same numbers and
compare. What this module offers:

- ``backends()``: every backend the tests know, each a ``Backend`` with a ``skip`` reason
  when this machine lacks it (CuPy and CUDA tensors without a GPU, a missing package);
  ``pytest_params()`` the same as ``pytest.param`` objects with skip marks.
  A Backend converts NumPy arrays in (``to`` for parameters, ``data`` for X and Y: Dask
  chunks them by rows) and out (``back``), gives ``xp``/``device``/``dtype()`` for
  ``init_params(xp=, device=, dtype=)``, a ``context()`` to run in (array-api-strict's
  flags, Dask's scheduler), ``call(f)`` (``jax.jit`` for "jax-jit") and ``settle(tree)``
  (Dask: persist, so that step t's graph does not hold steps 1..t-1).
- ``check_gradients`` (float64, 1e-12 relative to the NumPy module's, inputs untouched),
  ``check_float32`` (float32 params keep every result float32), ``check_init`` (a seed
  gives the NumPy module's parameters), ``check_training`` (the same batches through
  ``train_step`` and the NumPy module's in-place ``step``: equal parameters to 1e-10)
  and ``check_fit``. Each raises AssertionError with the numbers when it fails.
- The Dask cluster: ``start_local_cluster`` (loopback only, dashboard off, bounded
  start; ``ClusterUnavailable`` with the reason when the sandbox refuses),
  ``close_local_cluster``, ``cluster_backend(client)``, and ``ship_module`` /
  ``map_reduce_loss_and_grad`` (each worker runs the module's loss_and_grad on its own
  chunk; the module travels by value, as workers cannot import a file in a temp dir).

Dropout: the NumPy module draws its keep-masks from a NumPy Generator (``rng=``, and in
``step`` from ``state["rng"]``); the array-API module takes the same uniform numbers as
``noise`` (``host_noise`` draws them in the NumPy module's order). With ``noise_seed``,
``check_gradients`` compares the two with dropout on; ``check_training`` and
``check_fit`` feed dropout networks the draws of the NumPy module's generator.

Relative errors are ‖a − b‖ / ‖b‖ over each array (as harness.rel_err), never
entry-wise: entries that cancel to near 0 carry no meaning of their own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

TINY = np.finfo(np.float64).tiny
GRAD_RTOL = 1e-12  # float64 gradients of the array-API module vs the NumPy module's
TRAIN_RTOL = 1e-10  # float64 parameters after training on the same batches
FLOAT32_RTOL = 1e-4  # float32 gradients vs the NumPy module's float32 gradients
CLUSTER_TIMEOUT = 60.0  # seconds: start, every computation, close

# the strictest settings of array-api-strict this module's contract supports: the oldest
# standard the modules target (2023.12: maximum, clip, __array_namespace_info__, sums
# keep float32), no linalg/fft, no data-dependent shapes, no boolean indexing
STRICT_FLAGS = {
    "api_version": "2023.12",
    "boolean_indexing": False,
    "data_dependent_shapes": False,
    "enabled_extensions": (),
}


def _identity(x: Any) -> Any:
    return x


def _tree_map(f: Callable[[Any], Any], obj: Any) -> Any:
    """f applied to the leaves of nested dicts, tuples and lists."""
    if isinstance(obj, dict):
        return {k: _tree_map(f, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_tree_map(f, v) for v in obj)
    return f(obj)


def _leaves(obj: Any) -> list[Any]:
    found: list[Any] = []
    _tree_map(found.append, obj)
    return found


def _rebuild(obj: Any, leaves: list[Any]) -> Any:
    it = iter(leaves)
    return _tree_map(lambda _: next(it), obj)


@dataclass(frozen=True)
class Backend:
    """One array library (and device) a module is run on; see the module docstring."""

    name: str
    skip: str | None = None  # why the tests cannot run here; None when they can
    xp: Any = None  # the namespace for init_params(xp=)
    device: Any = None  # the device for init_params(device=)
    lazy: bool = False  # values not at hand (jax.jit tracers, Dask): no value checks
    convert: Callable[[np.ndarray], Any] = _identity  # parameters, labels, anything
    convert_data: Callable[[np.ndarray], Any] | None = (
        None  # X and Y (Dask: row chunks)
    )
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    make_context: Callable[[], contextlib.AbstractContextManager] = (
        contextlib.nullcontext
    )
    jit: Callable[[Callable], Callable] = _identity
    persist: Callable[[Any], Any] = _identity  # a tree in, the same tree settled out
    gather: Callable[[list], list] | None = (
        None  # many arrays to NumPy in one go (Dask)
    )
    extra: dict = field(default_factory=dict, compare=False)

    def to(self, obj: Any) -> Any:
        """NumPy arrays (or dicts/tuples of them) as this backend's arrays."""
        return _tree_map(lambda a: self.convert(np.asarray(a)), obj)

    def data(self, a: np.ndarray) -> Any:
        """X or Y as this backend's array (Dask: chunked by rows)."""
        convert = self.convert_data or self.convert
        return convert(np.asarray(a))

    def back(self, obj: Any) -> Any:
        """This backend's arrays (or trees of them) as NumPy arrays.

        Dask computes all of them as one graph: one at a time would run the shared part
        (the forward pass of a loss_and_grad) once per array.
        """
        if self.gather is not None:
            return _rebuild(obj, [np.asarray(a) for a in self.gather(_leaves(obj))])
        return _tree_map(self.to_numpy, obj)

    def context(self) -> contextlib.AbstractContextManager:
        """The settings calls must run under (strict flags, Dask scheduler)."""
        return self.make_context()

    def call(self, f: Callable) -> Callable:
        """f as this backend runs it: compiled whole for "jax-jit", else f itself."""
        return self.jit(f)

    def settle(self, tree: Any) -> Any:
        """Dask: the tree's arrays computed into memory (one graph); others: as given."""
        return self.persist(tree)

    def dtype(self, name: str) -> Any:
        """The backend's dtype called ``name`` ("float32", "float64")."""
        return getattr(self.xp, name)

    def __repr__(self) -> str:  # the pytest id and the failure messages
        return f"Backend({self.name}{', skip: ' + self.skip if self.skip else ''})"


# --- the backends ----------------------------------------------------------------------


def _missing(package: str) -> str | None:
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed"
    return None


def _numpy() -> Backend:
    return Backend("numpy", xp=np, device="cpu", convert=np.array)


def _strict(name: str, flags: Mapping[str, Any]) -> Backend:
    skip = _missing("array_api_strict")
    if skip:
        return Backend(name, skip=skip)
    import array_api_strict as strict

    # a device other than the default one: any array the module makes without
    # device= (or without taking it from an input) meets the inputs' device and raises
    device = strict.Device("device1")
    cpu = strict.Device("CPU_DEVICE")
    return Backend(
        name,
        xp=strict,
        device=device,
        convert=lambda a: strict.asarray(a, device=device),
        to_numpy=lambda x: np.asarray(strict.asarray(x, device=cpu)),
        make_context=lambda: strict.ArrayAPIStrictFlags(**flags),
    )


def _torch(device_name: str) -> Backend:
    name = f"torch-{device_name}"
    skip = _missing("torch") or _missing("array_api_compat")
    if skip:
        return Backend(name, skip=skip)
    import array_api_compat
    import torch

    if device_name == "cuda" and not torch.cuda.is_available():
        return Backend(
            name, skip="torch.cuda.is_available() is False: no CUDA device here"
        )
    device = torch.device(device_name)
    return Backend(
        name,
        xp=array_api_compat.array_namespace(torch.zeros(0)),
        device=device,
        convert=lambda a: torch.asarray(np.array(a), device=device),
        to_numpy=lambda t: t.detach().cpu().numpy(),
    )


def _cupy() -> Backend:
    skip = _missing("cupy")
    if skip:
        return Backend("cupy", skip=f"{skip} (it needs a CUDA GPU)")
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device: CUDA errors of many kinds
        return Backend(
            "cupy", skip=f"no CUDA device for CuPy ({type(exc).__name__}: {exc})"
        )
    if count == 0:
        return Backend("cupy", skip="no CUDA device for CuPy")
    return Backend(
        "cupy",
        xp=cupy,
        device=cupy.cuda.Device(0),
        convert=cupy.asarray,
        to_numpy=cupy.asnumpy,
    )


def _jax(jit: bool) -> Backend:
    name = "jax-jit" if jit else "jax"
    skip = _missing("jax")
    if skip:
        return Backend(name, skip=skip)
    import jax
    import jax.numpy as jnp

    # float64 needs x64, process-wide (as tests/jax_reference.py sets it)
    jax.config.update("jax_enable_x64", True)
    device = jax.devices("cpu")[0]
    return Backend(
        name,
        xp=jnp,
        device=device,
        lazy=jit,
        convert=lambda a: jax.device_put(jnp.asarray(a), device),
        jit=jax.jit if jit else _identity,
    )


def _dask_persist(tree: Any) -> Any:
    import dask

    leaves = _leaves(tree)
    return _rebuild(tree, list(dask.persist(*leaves)))


def _dask(row_chunks: int = 3) -> Backend:
    skip = _missing("dask") or _missing("array_api_compat")
    if skip:
        return Backend("dask", skip=skip)
    import array_api_compat
    import dask
    import dask.array as da

    def data(a: np.ndarray) -> Any:
        if a.ndim == 0:
            return da.from_array(a)
        rows = max(1, math.ceil(a.shape[0] / row_chunks))
        return da.from_array(a, chunks=(rows,) + a.shape[1:])

    return Backend(
        "dask",
        xp=array_api_compat.array_namespace(da.zeros(0)),
        device="cpu",
        lazy=True,
        convert=lambda a: da.from_array(np.array(a)),
        convert_data=data,
        to_numpy=lambda x: np.asarray(x.compute()),
        gather=lambda leaves: list(dask.compute(*leaves)),
        # one thread, no pool: deterministic, and no clash with a distributed client
        make_context=lambda: dask.config.set(scheduler="synchronous"),
        persist=_dask_persist,
    )


def _latest() -> str | None:
    """The newest final standard array-api-strict knows (None: it is not installed)."""
    try:
        from array_api_strict._flags import supported_versions
    except ImportError:
        return None
    return max(supported_versions)


def backends() -> list[Backend]:
    """Every backend the tests know, in a fixed order; unavailable ones carry a reason."""
    return [
        _numpy(),
        _strict("array-api-strict", STRICT_FLAGS),
        _strict("array-api-strict-latest", {**STRICT_FLAGS, "api_version": _latest()}),
        _torch("cpu"),
        _torch("cuda"),
        _cupy(),
        _jax(jit=False),
        _jax(jit=True),
        _dask(),
    ]


def backend(name: str) -> Backend:
    """The backend called ``name`` (a KeyError lists the names)."""
    found = {b.name: b for b in backends()}
    if name not in found:
        raise KeyError(f"no backend {name!r}; known: {list(found)}")
    return found[name]


def available_backends() -> list[Backend]:
    return [b for b in backends() if b.skip is None]


def pytest_params(only: Callable[[Backend], bool] = lambda b: True) -> list:
    """The backends as pytest.param objects (id = name; skip mark with the reason)."""
    import pytest

    return [
        pytest.param(
            b, id=b.name, marks=[pytest.mark.skip(reason=b.skip)] if b.skip else []
        )
        for b in backends()
        if only(b)
    ]


# --- comparisons --------------------------------------------------------------------------


def relative_error(got: Any, want: Any) -> float:
    """‖got − want‖ / max(‖want‖, tiny) in float64; ``want`` is the reference."""
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), TINY))


def load_module(path: str | Path, name: str) -> ModuleType:
    """Import the file at ``path`` as module ``name`` (registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def perturbed_params(
    np_module: ModuleType, seed: int = 0, dtype: Any = np.float64
) -> dict:
    """The NumPy module's init_params(seed) with every entry perturbed (biases start at
    zero, which would hide a wrong bias gradient)."""
    params = np_module.init_params(seed, dtype=dtype)
    rng = np.random.default_rng([seed, 1])
    return {
        k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
        for k, v in params.items()
    }


def host_noise(
    xp_module: ModuleType, rng: np.random.Generator, m: int, dtype: Any = np.float64
) -> dict:
    """Dropout's uniform numbers for a batch of m, as NumPy arrays: the draws the NumPy
    module's masks take from ``rng`` (one per dropout layer, in order)."""
    return {
        name: rng.random((m, width), dtype=dtype)
        for name, width in xp_module.NOISE.items()
    }


def _floating(a: np.ndarray) -> bool:
    return np.asarray(a).dtype.kind == "f"


def check_gradients(
    xp_module: ModuleType,
    np_module: ModuleType,
    backend: Backend,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    seed: int = 0,
    rtol: float = GRAD_RTOL,
    noise_seed: int | None = None,
) -> float:
    """The largest relative error of loss_and_grad against the NumPy module's (float64).

    Also checks: the keys, shapes and float64 dtype of the gradients, and that the call
    changed none of its inputs (the module is functional). Returns the largest error.
    With ``noise_seed``, dropout is on: the NumPy module draws its masks from
    default_rng(noise_seed), the array-API module gets the same draws as ``noise``.
    """
    params = perturbed_params(np_module, seed)
    extra, noise = {}, {}
    if noise_seed is not None:
        extra = {"rng": np.random.default_rng(noise_seed)}
        noise = host_noise(xp_module, np.random.default_rng(noise_seed), len(X))
    want_loss, want = np_module.loss_and_grad(
        {k: v.copy() for k, v in params.items()}, X, Y, **extra
    )
    with backend.context():
        p, Xb, Yb = backend.to(params), backend.data(X), backend.data(Y)
        kwargs = {"noise": {k: backend.data(v) for k, v in noise.items()}}
        if noise_seed is None:
            kwargs = {}
        f = xp_module.loss_and_grad
        if noise_seed is None and xp_module.DROPOUT:  # as the NumPy module without rng
            f = functools.partial(f, dropout=False)
        got_loss, got = backend.call(f)(p, Xb, Yb, **kwargs)
        got_loss, got = backend.back((got_loss, got))
        inputs = backend.back((p, Xb, Yb))
    assert set(got) == set(
        want
    ), f"{backend.name}: grads keys {sorted(got)} != {sorted(want)}"
    errors = {"loss": relative_error(got_loss, want_loss)}
    for k, w in want.items():
        g = np.asarray(got[k])
        assert (
            g.shape == w.shape
        ), f"{backend.name}: grads[{k!r}] shape {g.shape} != {w.shape}"
        assert (
            g.dtype == np.float64
        ), f"{backend.name}: grads[{k!r}] is {g.dtype}, not float64"
        errors[k] = relative_error(g, w)
    worst = max(errors.values())
    assert worst <= rtol, f"{backend.name}: relative errors above {rtol}: {errors}"
    for got_input, want_input, what in zip(
        inputs, (params, X, Y), ("params", "X", "Y"), strict=True
    ):
        for a, b in zip(_leaves(got_input), _leaves(want_input), strict=True):
            assert np.array_equal(a, b), f"{backend.name}: loss_and_grad changed {what}"
    return worst


def _assert_float32(backend: Backend, results: dict) -> dict:
    """results (name -> array or tree) as NumPy, after checking all are float32 (the
    backend's own dtype, read before the conversion, is in the message)."""
    found = {
        what: sorted({str(a.dtype) for a in _leaves(r)}) for what, r in results.items()
    }
    results = backend.back(results)
    for what, r in results.items():
        for a in _leaves(r):
            assert np.asarray(a).dtype == np.float32, (
                f"{backend.name}: {what} is {np.asarray(a).dtype}, not float32 "
                f"(on the backend: {found[what]})"
            )
    return results


def without_masks(xp_module: ModuleType, name: str) -> Callable:
    """xp_module.<name>, with dropout=False where the network has dropout: the NumPy
    module without an rng trains without masks, the array-API module only when told."""
    f = getattr(xp_module, name)
    return functools.partial(f, dropout=False) if xp_module.DROPOUT else f


def check_float32(
    xp_module: ModuleType,
    np_module: ModuleType,
    backend: Backend,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    seed: int = 0,
    rtol: float = FLOAT32_RTOL,
) -> None:
    """float32 params keep everything float32: forward, loss, grads, then the update and
    the optimizer state, also when X comes in float64; the grads agree with the NumPy
    module's float32 grads to ``rtol``."""
    params32 = perturbed_params(np_module, seed, np.float32)
    _, want = np_module.loss_and_grad({k: v.copy() for k, v in params32.items()}, X, Y)
    with backend.context():
        params = backend.to(params32)
        Xb, Yb = backend.data(X.astype(np.float64)), backend.data(Y)
        loss, grads = backend.call(without_masks(xp_module, "loss_and_grad"))(
            params, Xb, Yb
        )
        results = {
            "forward": backend.call(xp_module.forward)(params, Xb),
            "loss": backend.call(xp_module.loss)(params, Xb, Yb),
            "loss_and_grad loss": loss,
            "grads": grads,
        }
        got = _assert_float32(backend, results)  # before update, which checks dtypes
        state = xp_module.init_state(params)
        new_params, new_state = backend.call(xp_module.update)(params, grads, state)
        _, _, step_loss = backend.call(without_masks(xp_module, "train_step"))(
            params, state, Xb, Yb
        )
        results = {
            "updated params": new_params,
            "state": {k: v for k, v in new_state.items() if k != "t"},
            "train_step loss": step_loss,
        }
        _assert_float32(backend, results)
    errors = {k: relative_error(got["grads"][k], want[k]) for k in want}
    assert max(errors.values()) <= rtol, f"{backend.name}: float32 grads off: {errors}"


def check_init(
    xp_module: ModuleType,
    np_module: ModuleType,
    backend: Backend,
    *,
    seed: int = 0,
) -> None:
    """init_params(seed, xp=, device=, dtype=) gives the NumPy module's parameters,
    bit for bit, in float64 and float32, on the backend's device."""
    for name in ("float64", "float32"):
        want = np_module.init_params(seed, dtype=np.dtype(name))
        with backend.context():
            got = xp_module.init_params(
                seed, xp=backend.xp, device=backend.device, dtype=backend.dtype(name)
            )
            got = backend.back(got)
        assert list(got) == list(want), f"{backend.name}: keys {list(got)}"
        for k in want:
            assert (
                got[k].dtype == want[k].dtype
            ), f"{backend.name}: {k} is {got[k].dtype}"
            assert np.array_equal(got[k], want[k]), f"{backend.name}: init {k} ({name})"


def _batches(n: int, batch_size: int, epochs: int) -> Iterator[slice]:
    for _ in range(epochs):
        for start in range(0, n, batch_size):
            yield slice(start, min(start + batch_size, n))


def check_training(
    xp_module: ModuleType,
    np_module: ModuleType,
    backend: Backend,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    batch_size: int,
    epochs: int = 1,
    seed: int = 0,
    rtol: float = TRAIN_RTOL,
) -> float:
    """Train on the same contiguous batches with train_step on the backend and with the
    NumPy module's in-place step; the float64 parameters agree to ``rtol`` (relative).

    X and Y are moved to the backend once; the batches are basic slices of them (on
    Dask they keep their row chunks). With dropout, train_step gets as noise the draws
    of the NumPy module's state["rng"] (default_rng(seed)). Returns the largest
    relative error.
    """
    p_np = np_module.init_params(seed)
    s_np = np_module.init_state(p_np, seed)
    losses_np = [
        np_module.step(p_np, s_np, X[b], Y[b])
        for b in _batches(len(X), batch_size, epochs)
    ]
    draws = np.random.default_rng(seed)
    with backend.context():
        params = xp_module.init_params(
            seed, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64")
        )
        state = xp_module.init_state(params)
        Xb, Yb = backend.data(X), backend.data(Y)
        step = backend.call(xp_module.train_step)
        losses = []
        for b in _batches(len(X), batch_size, epochs):
            kwargs = {}
            if xp_module.DROPOUT:
                noise = host_noise(xp_module, draws, b.stop - b.start)
                kwargs["noise"] = {k: backend.data(v) for k, v in noise.items()}
            params, state, loss = backend.settle(
                step(params, state, Xb[b, ...], Yb[b, ...], **kwargs)
            )
            losses.append(loss)
        params, losses = backend.back((params, losses))
    errors = {k: relative_error(params[k], p_np[k]) for k in p_np}
    errors["losses"] = relative_error(np.asarray(losses, dtype=np.float64), losses_np)
    worst = max(errors.values())
    assert worst <= rtol, f"{backend.name}: after training, relative errors {errors}"
    return worst


def check_fit(
    xp_module: ModuleType,
    np_module: ModuleType,
    backend: Backend,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    batch_size: int,
    epochs: int = 2,
    seed: int = 0,
    rtol: float = TRAIN_RTOL,
) -> float:
    """fit on the backend against the NumPy module's fit (same shuffles): parameters and
    the loss history agree to ``rtol``. "jax-jit" passes step=jax.jit(train_step)."""
    p_np = np_module.init_params(seed)
    h_np = np_module.fit(p_np, X, Y, epochs=epochs, batch_size=batch_size, seed=seed)
    with backend.context():
        params = xp_module.init_params(
            seed, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64")
        )
        extra = (
            {"step": backend.call(xp_module.train_step)}
            if backend.jit is not _identity
            else {}
        )
        params, _, history = xp_module.fit(
            params,
            backend.data(X),
            backend.data(Y),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            **extra,
        )
        params = backend.back(params)
    errors = {k: relative_error(params[k], p_np[k]) for k in p_np}
    errors["loss history"] = relative_error(history["loss"], h_np["loss"])
    worst = max(errors.values())
    assert (
        worst <= rtol
    ), f"{backend.name}: fit differs from the NumPy module's: {errors}"
    return worst


# --- Dask on a LocalCluster ------------------------------------------------------------------


class ClusterUnavailable(RuntimeError):
    """The LocalCluster could not start here; the message says why (a skip reason)."""


def start_local_cluster(
    n_workers: int = 2,
    *,
    timeout: float = CLUSTER_TIMEOUT,
    local_directory: str | Path | None = None,
) -> tuple[Any, Any]:
    """(cluster, client): ``n_workers`` worker processes of one thread each, every
    socket on 127.0.0.1, no dashboard. The client is not made the default scheduler (run
    under ``cluster_backend(client).context()``).

    Starting is bounded: it runs in a thread joined with ``timeout``, and the workers
    give up when they cannot reach the scheduler within it. Anything that stops it —
    no sockets, no processes, a timeout — raises ClusterUnavailable with the reason.
    """
    skip = _missing("distributed")
    if skip:
        raise ClusterUnavailable(skip)
    from dask.distributed import Client, LocalCluster

    box: dict[str, Any] = {}
    lock = threading.Lock()  # box["late"]: the caller gave up; the thread cleans up

    def start() -> None:
        cluster = client = error = None
        try:
            cluster = LocalCluster(
                n_workers=n_workers,
                processes=True,
                threads_per_worker=1,
                host="127.0.0.1",
                # dashboard_address=None does not stop the scheduler's HTTP server: it
                # binds 127.0.0.1:8787, and a second cluster (another test session on
                # this machine) meets "Port 8787 is already in use" (a UserWarning,
                # and a leaked socket); an ephemeral loopback port, no dashboard pages
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": False},
                death_timeout=timeout,
                local_directory=(
                    None if local_directory is None else str(local_directory)
                ),
            )
            client = Client(cluster, timeout=timeout, set_as_default=False)
        except BaseException as exc:  # noqa: B036 - the reason, for the caller
            error = exc
        with lock:
            late = box.get("late", False)
            box.update(cluster=cluster, client=client, error=error)
        if late or error is not None:  # nobody will close what did start
            if cluster is not None:
                close_local_cluster(cluster, client, timeout=timeout)

    thread = threading.Thread(target=start, name="start-local-cluster", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if "error" not in box:  # still starting
            box["late"] = True
            raise ClusterUnavailable(f"LocalCluster did not start within {timeout:g} s")
    if box["error"] is not None:
        exc = box["error"]
        raise ClusterUnavailable(
            f"LocalCluster did not start: {type(exc).__name__}: {exc}"
        )
    client = box["client"]
    try:
        client.wait_for_workers(n_workers, timeout=timeout)
    except Exception as exc:
        close_local_cluster(box["cluster"], client, timeout=timeout)
        raise ClusterUnavailable(
            f"the {n_workers} workers did not come up: {exc}"
        ) from None
    return box["cluster"], client


def close_local_cluster(
    cluster: Any, client: Any, *, timeout: float = CLUSTER_TIMEOUT
) -> None:
    """Close the client, then the cluster (its worker processes), each within timeout."""
    try:
        if client is not None:
            client.close(timeout=timeout)
    finally:
        cluster.close(timeout=timeout)


@contextlib.contextmanager
def local_cluster(
    n_workers: int = 2, *, timeout: float = CLUSTER_TIMEOUT, **kwargs: Any
):
    """``with local_cluster() as client:`` start_local_cluster ... close_local_cluster."""
    cluster, client = start_local_cluster(n_workers, timeout=timeout, **kwargs)
    try:
        yield client
    finally:
        close_local_cluster(cluster, client, timeout=timeout)


def cluster_backend(client: Any, *, timeout: float = CLUSTER_TIMEOUT) -> Backend:
    """The "dask-distributed" backend: Dask arrays chunked by rows over the client's
    workers (one chunk per worker), computed there; every wait is bounded by timeout."""
    import array_api_compat
    import dask
    import dask.array as da
    from dask.distributed import wait

    n_workers = max(1, len(client.scheduler_info()["workers"]))

    def data(a: np.ndarray) -> Any:
        rows = max(1, math.ceil(a.shape[0] / n_workers))
        x = client.persist(da.from_array(a, chunks=(rows,) + a.shape[1:]))
        with client.as_current():  # wait() asks for the default client
            wait(x, timeout=timeout)
        return x

    def persist(tree: Any) -> Any:
        leaves = client.persist(_leaves(tree))
        with client.as_current():
            wait(leaves, timeout=timeout)
        return _rebuild(tree, leaves)

    def to_numpy(x: Any) -> np.ndarray:
        return gather([x])[0]

    def gather(leaves: list) -> list:
        futures = client.compute(leaves)
        return [f.result(timeout=timeout) for f in futures]

    return Backend(
        "dask-distributed",
        xp=array_api_compat.array_namespace(da.zeros(0)),
        device="cpu",
        lazy=True,
        convert=lambda a: da.from_array(np.array(a)),
        convert_data=data,
        to_numpy=to_numpy,
        gather=gather,
        make_context=lambda: dask.config.set(scheduler=client),
        persist=persist,
        extra={"client": client},
    )


def ship_module(module: ModuleType) -> None:
    """Let tasks that call ``module``'s functions run on workers that cannot import it
    (a generated file in a temp dir): cloudpickle sends the module's functions by value.

    Without this a task naming the module fails to deserialize on the worker, and the
    computation waits forever (seen: no KilledWorker, no error at the client).
    """
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    # and this helper module, whose functions the map-reduce tasks call (tests/ need
    # not be on the workers' path either)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _weighted_loss_and_grad(module: ModuleType, params: dict, X: Any, Y: Any) -> tuple:
    loss, grads = module.loss_and_grad(params, X, Y)
    m = X.shape[0]
    return m, float(loss) * m, {k: v * m for k, v in grads.items()}


def _add(a: tuple, b: tuple) -> tuple:
    return a[0] + b[0], a[1] + b[1], {k: a[2][k] + b[2][k] for k in a[2]}


def map_reduce_loss_and_grad(
    client: Any,
    module: ModuleType,
    params: dict,
    X: Any,
    Y: Any,
    *,
    timeout: float = CLUSTER_TIMEOUT,
) -> tuple[float, dict]:
    """(loss, grads) of ``module`` over Dask arrays X, Y chunked by rows, as one task
    per chunk: each worker runs ``module.loss_and_grad`` on its NumPy chunk, the
    results are weighted by m_c / m and summed by a tree of ``_add`` tasks.

    ``params`` are NumPy arrays (sent with the tasks); call ``ship_module`` first.
    """
    import dask

    xs, ys = X.to_delayed().ravel(), Y.to_delayed().ravel()
    if Y.ndim == 2:
        assert Y.numblocks[1] == 1, "Y must be chunked by rows only"
    parts = [
        dask.delayed(_weighted_loss_and_grad)(module, params, x, y)
        for x, y in zip(xs, ys, strict=True)
    ]
    while len(parts) > 1:
        parts = [
            dask.delayed(_add)(*parts[i : i + 2]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    m, loss, grads = client.compute(parts[0]).result(timeout=timeout)
    return loss / m, {k: v / m for k, v in grads.items()}
