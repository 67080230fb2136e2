"""The array-API module (`symgrad generate --target array-api`), timed.

    python benchmarks/xp.py [--configs tiny mnist wide] [--dtypes float32 float64]
                            [--rounds 15] [--dask-batches 1000 10000 100000] [--quick]

Three tables, one process, printed as Markdown with the machine's CPU model:

1. The price of portability on one CPU: one training step (sgd) of the array-API module
   on NumPy arrays (`train_step`, functional: every value a new array) against the NumPy
   module's in-place `step` (the default target), both with CHECK_FINITE off; also
   `loss_and_grad` of each.
2. JAX: the array-API module's whole `train_step` under `jax.jit` (params and state
   donated) against the hand-written JAX step of benchmarks/impls.py (value_and_grad
   and the sgd update under one jax.jit, params donated).
3. Dask: data-parallel training on a LocalCluster of 1 and 2 worker processes (one
   thread each, loopback) at each batch size: the seconds per step of `train_step` on
   Dask arrays (X chunked by rows, two chunks per worker; params and state persisted on
   the workers, each step waited for), the examples per second, the same step in one
   NumPy process (the array-API module on NumPy arrays), and the overhead per step:
   the Dask step's time less that NumPy time divided by the workers (what a perfect
   split of the work would take).

Tables 1 and 2 time the candidates in interleaved rounds (train_step.py's `measure`):
a slow spell of the machine hits all alike; the medians over rounds are shown, with
ratios. Run it on a quiet machine; --quick runs a few rounds of the small cases only,
to check that everything works.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import impls  # noqa: E402
import train_step  # noqa: E402

fmt = train_step.fmt


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import dask
    import jax

    return (
        f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, JAX {jax.__version__}, Dask {dask.__version__}"
    )


def generate(cfg: impls.Config, out: Path) -> tuple[Path, Path]:
    """The NumPy module and the array-API module of a config's spec."""
    for target in ("numpy", "array-api"):
        subprocess.run(
            [sys.executable, "-m", "symgrad", "generate", "-q", str(cfg.spec)]
            + ["-o", str(out), "--target", target],
            check=True,
        )
    return out / f"bench_{cfg.name}.py", out / f"bench_{cfg.name}_xp.py"


def load(cfg: impls.Config, out: Path):
    np_path, xp_path = generate(cfg, out)
    np_module = impls.load_module(np_path, f"{np_path.stem}_np")
    xp_module = impls.load_module(xp_path, xp_path.stem)
    np_module.CHECK_FINITE = xp_module.CHECK_FINITE = False
    return np_module, xp_module


# --- 1. on NumPy --------------------------------------------------------------------------


def numpy_runs(cfg, np_module, xp_module, dtype) -> dict:
    params, data = impls.problem(cfg, np_module, dtype, batches=2)
    runs = {"NumPy module step": impls.make_generated(cfg, np_module, dtype, 2)}
    xp_params = [{k: v.copy() for k, v in params.items()}]
    xp_state = [xp_module.init_state(xp_params[0])]
    batches = itertools.cycle(data)

    def xp_step():
        X, Y = next(batches)
        xp_params[0], xp_state[0], loss = xp_module.train_step(
            xp_params[0], xp_state[0], X, Y
        )
        return float(loss)

    runs["array-API train_step"] = xp_step
    fixed = {k: v.copy() for k, v in params.items()}
    X, Y = data[0]
    runs["NumPy module loss_and_grad"] = lambda: np_module.loss_and_grad(fixed, X, Y)
    runs["array-API loss_and_grad"] = lambda: xp_module.loss_and_grad(fixed, X, Y)
    return runs


# --- 2. JAX ---------------------------------------------------------------------------------


def jax_runs(cfg, np_module, xp_module, dtype) -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    params, data = impls.problem(cfg, np_module, dtype, batches=2)
    batches = itertools.cycle([(jnp.asarray(X), jnp.asarray(Y)) for X, Y in data])
    step = jax.jit(xp_module.train_step, donate_argnums=(0, 1))
    p = {k: jnp.asarray(v) for k, v in params.items()}
    box = [p, xp_module.init_state(p)]

    def run():
        X, Y = next(batches)
        box[0], box[1], loss = step(box[0], box[1], X, Y)
        return float(loss)

    return {
        "array-API train_step, jax.jit": run,
        "hand JAX step, jax.jit": impls.make_jax(cfg, np_module, dtype, 2),
    }


def table(title: str, rows: list[tuple], base: str) -> str:
    names = list(rows[0][2])
    head = f"| config | dtype | {' | '.join(names)} |"
    lines = [f"**{title}** (ratios: time / {base})", "", head]
    lines.append("|" + "---|" * (len(names) + 2))
    for cfg_name, dtype_name, med in rows:
        ref = med[base]
        cells = [
            fmt(med[n]) + ("" if n == base else f" ({med[n] / ref:.2f}×)")
            for n in names
        ]
        lines.append(f"| {cfg_name} | {dtype_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- 3. Dask --------------------------------------------------------------------------------


def dask_rows(cfg, xp_module, dtype, workers_list, batches, steps) -> list[tuple]:
    from dask.distributed import Client, LocalCluster

    rows = []
    for workers in workers_list:
        cluster = LocalCluster(
            n_workers=workers,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
        )
        client = Client(cluster, set_as_default=False)
        try:
            for batch in batches:
                rows.append(
                    dask_case(cfg, xp_module, dtype, client, workers, batch, steps)
                )
                workers_, batch_, step, local = rows[-1]
                print(
                    f"  dask: {workers_} worker(s), batch {batch_}: {fmt(step)} a step",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            client.close()
            cluster.close()
    return rows


def dask_case(cfg, xp_module, dtype, client, workers, batch, steps) -> tuple:
    import dask
    import dask.array as da
    from dask.distributed import wait

    n_in, n_out = cfg.sizes[0], cfg.sizes[-1]
    chunk = max(1, batch // (2 * workers))
    rng = da.random.default_rng(0)
    X = rng.standard_normal((2 * batch, n_in), chunks=(chunk, -1)).astype(dtype)
    Y = rng.integers(0, n_out, 2 * batch, chunks=chunk)
    X, Y = client.persist([X, Y])
    with client.as_current():
        wait([X, Y])
    with dask.config.set(scheduler=client):
        (params,) = dask.persist(xp_module.init_params(0, xp=da, dtype=dtype))
        (state,) = dask.persist(xp_module.init_state(params))
        times = []
        for i in range(steps + 1):
            rows = slice((i % 2) * batch, (i % 2 + 1) * batch)
            start = time.perf_counter()
            out = xp_module.train_step(params, state, X[rows], Y[rows])
            params, state, loss = dask.persist(*out)  # one graph, on the workers
            with client.as_current():
                wait([loss, *params.values()])
            if i:  # the first step: warm-up
                times.append(time.perf_counter() - start)
        host_X, host_Y = dask.compute(X[:batch], Y[:batch])
    # the same step in this process, on NumPy arrays
    p = xp_module.init_params(0, dtype=dtype)
    s = xp_module.init_state(p)
    local = []
    for _ in range(max(3, steps)):
        start = time.perf_counter()
        p, s, loss = xp_module.train_step(p, s, host_X, host_Y)
        float(loss)
        local.append(time.perf_counter() - start)
    return (workers, batch, statistics.median(times), statistics.median(local))


def dask_table(cfg_name: str, dtype_name: str, rows: list[tuple]) -> str:
    lines = [
        f"**Dask, {cfg_name} {dtype_name}, sgd** (train_step on Dask arrays, X in two "
        "row chunks per worker, params persisted on the workers)",
        "",
        "| workers | batch | s per step | examples/s | one NumPy process | "
        "overhead per step |",
        "|---|---|---|---|---|---|",
    ]
    for workers, batch, step, local in rows:
        overhead = step - local / workers
        lines.append(
            f"| {workers} | {batch:,} | {fmt(step)} | {batch / step:,.0f} | "
            f"{fmt(local)} | {fmt(overhead)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    dense = [name for name, cfg in impls.CONFIGS.items() if cfg.image is None]
    parser.add_argument("--configs", nargs="+", default=dense)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=float, default=0.05, help="seconds per block")
    parser.add_argument("--warmup", type=float, default=0.02)
    parser.add_argument("--dask-config", default="mnist")
    parser.add_argument("--dask-dtype", default="float32")
    parser.add_argument(
        "--dask-batches", nargs="+", type=int, default=[1_000, 10_000, 100_000]
    )
    parser.add_argument("--dask-workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dask-steps", type=int, default=7)
    parser.add_argument(
        "--quick", action="store_true", help="a few rounds of small cases: a check"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.dtypes, args.rounds = ["tiny"], ["float32"], 2
        args.block, args.warmup = 0.01, 0.0
        args.dask_config, args.dask_batches, args.dask_steps = "tiny", [1000], 2
    print(f"Machine: {machine()}\n", flush=True)
    numpy_rows, jax_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg_name in args.configs:
            cfg = impls.CONFIGS[cfg_name]
            np_module, xp_module = load(cfg, Path(tmp) / cfg_name)
            for dtype_name in args.dtypes:
                dtype = np.dtype(dtype_name)
                med = train_step.measure(
                    numpy_runs(cfg, np_module, xp_module, dtype),
                    args.rounds,
                    args.block,
                    args.warmup,
                )
                numpy_rows.append((cfg_name, dtype_name, med))
                med = train_step.measure(
                    jax_runs(cfg, np_module, xp_module, dtype),
                    args.rounds,
                    args.block,
                    args.warmup,
                )
                jax_rows.append((cfg_name, dtype_name, med))
        print(table("On NumPy", numpy_rows, "NumPy module step") + "\n", flush=True)
        print(table("JAX", jax_rows, "hand JAX step, jax.jit") + "\n", flush=True)
        cfg = impls.CONFIGS[args.dask_config]
        _, xp_module = load(cfg, Path(tmp) / f"dask-{cfg.name}")
        rows = dask_rows(
            cfg,
            xp_module,
            np.dtype(args.dask_dtype),
            args.dask_workers,
            args.dask_batches,
            args.dask_steps,
        )
        print(dask_table(args.dask_config, args.dask_dtype, rows))


if __name__ == "__main__":
    main()
