"""Time one training step: the generated module against NumPy, PyTorch, JAX and the GEMM floor.

    python benchmarks/train_step.py [--configs tiny mnist wide] [--dtypes float32 float64]

All implementations of a config run in one process, timed in rounds, round-robin, so
that a slow spell of the machine hits all of them alike; each round runs every
implementation untimed for `--warmup` seconds (the thread pools of the one before go
quiet, its own wake up, as in a training loop) and then times a block of steps lasting
about `--block` seconds. The table shows the median over rounds of the time per step,
and the generated step's time divided by each of the others'. Each config gets a fresh
process: on this 2-core VM, one config's run (PyTorch and JAX thread pools both used)
was seen to leave the next one's GEMMs ~1.4× slower for a while. The generated module
is written to a temporary directory from benchmarks/specs/<config>.yaml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import impls  # noqa: E402

ORDER = ["generated", "generated+check", "numba", "numpy", "torch", "jax", "floor"]


def generate(cfg: impls.Config, out: Path, target: str = "numpy") -> Path:
    """The generated module of a config (target numba: <name>_numba.py)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "symgrad",
            "generate",
            "-q",
            str(cfg.spec),
            "-o",
            str(out),
            "--target",
            target,
        ],
        check=True,
    )
    return out / f"bench_{cfg.name}{'_numba' if target == 'numba' else ''}.py"


def makers(cfg, path: Path, dtype, only):
    # two copies of the module: CHECK_FINITE is a module global
    module = impls.load_module(path, f"{path.stem}_unchecked")
    checked = impls.load_module(path, f"{path.stem}_checked")
    out = {}
    for name in only:
        if name == "generated+check":
            out[name] = impls.make_generated(cfg, checked, dtype, check_finite=True)
        elif name == "numba":  # the numba target's module, beside the NumPy one
            fused = impls.load_module(
                generate(cfg, path.parent, "numba"), f"{path.stem}_numba"
            )
            out[name] = impls.make_generated(cfg, fused, dtype)
        else:
            run = impls.MAKERS[name](cfg, module, dtype)
            if run is not None:  # None: not written for this config
                out[name] = run
    return out


def calibrate(run, seconds: float) -> int:
    """Steps per block: about `seconds` long, at least 1."""
    run()
    n, t0 = 1, time.perf_counter()
    while True:
        for _ in range(n):
            run()
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 10 or n > 1e6:
            return max(1, int(n * seconds / max(elapsed, 1e-9)))
        n *= 4
        t0 = time.perf_counter()


def measure(runs: dict, rounds: int, block: float, warmup: float) -> dict[str, float]:
    sizes = {name: calibrate(run, block) for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            n = sizes[name]
            # untimed steps first: the thread pools of the implementation timed before
            # stop spinning, and this one's are awake, as in a training loop
            for _ in range(max(1, int(n * warmup / block))):
                run()
            t0 = time.perf_counter()
            for _ in range(n):
                run()
            times[name].append((time.perf_counter() - t0) / n)
    return {name: float(np.median(t)) for name, t in times.items()}


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def run_config(cfg_name: str, dtypes, names, rounds, block, warmup) -> list[tuple]:
    """All implementations of one config, interleaved in this process."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = impls.CONFIGS[cfg_name]
        path = generate(cfg, Path(tmp))
        for dtype_name in dtypes:
            runs = makers(cfg, path, np.dtype(dtype_name), names)
            rows.append((cfg_name, dtype_name, measure(runs, rounds, block, warmup)))
    return rows


def show(row: tuple) -> None:
    cfg_name, dtype_name, med = row
    gen = med.get("generated")
    line = "  ".join(
        f"{k} {fmt(v)}" + (f" ({gen / v:.2f}×)" if gen and k != "generated" else "")
        for k, v in med.items()
    )
    print(f"{cfg_name:5s} {dtype_name}: {line}", flush=True)


def main(argv=None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(impls.CONFIGS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--impls", nargs="+", default=ORDER)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=float, default=0.05, help="seconds per block")
    parser.add_argument(
        "--warmup", type=float, default=0.3, help="untimed seconds before each block"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = [args.dtypes, args.impls, args.rounds, args.block, args.warmup]
    if args.json:  # a worker: one config, in this process
        (cfg_name,) = args.configs
        print(json.dumps(run_config(cfg_name, *settings)))
        return []
    rows = []
    for cfg_name in args.configs:  # each config in a fresh process (see the docstring)
        worker = [sys.executable, __file__, "--json", "--configs", cfg_name]
        worker += ["--dtypes", *args.dtypes, "--impls", *args.impls]
        worker += ["--rounds", str(args.rounds), "--block", str(args.block)]
        worker += ["--warmup", str(args.warmup)]
        out = subprocess.run(worker, capture_output=True, text=True, check=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            rows.append(tuple(row))
            show(rows[-1])
    return rows


if __name__ == "__main__":
    main()
