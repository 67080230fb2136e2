"""When should a small network train on one BLAS thread? `fit` with NumPy's default
threads against one thread, on a quiet machine and on one whose cores are all busy.

    python benchmarks/threads.py [--rounds 7] [--epochs 3]

For each config (benchmarks/specs/tiny.yaml, a digits-sized MLP, benchmarks/specs/mnist.yaml)
the generated module's `fit` runs a few epochs on random data, in rounds that alternate
the default BLAS threads and `threadpoolctl.threadpool_limits(1)`, so that a slow spell
hits both alike; the table shows medians of the wall time of one `fit` and their ratio.
"Loaded" starts one busy-looping process per core for its rows (other work on a shared
machine, as a test run or a second training job would be). Prints the CPU and BLAS.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import impls  # noqa: E402
from run import blas, cpu_model  # noqa: E402

DIGITS = """name: digits_mlp
input: 64
layers:
  - {units: 32, activation: relu}
  - {units: 10, activation: softmax}
loss: categorical_crossentropy
optimizer: {name: adam, learning_rate: 0.001}
"""
# config: (spec file, examples, batch size)
CONFIGS = {
    "tiny": (HERE / "specs" / "tiny.yaml", 1024, 32),
    "digits": (None, 1437, 32),
    "mnist": (HERE / "specs" / "mnist.yaml", 4096, 128),
}


def load(spec: Path, out: Path):
    subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", str(spec), "-o", str(out), "-q"],
        check=True,
    )
    path = next(out.glob("*.py"))
    return impls.load_module(path, f"threads_{path.stem}")


def data(module, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, module.LAYER_SIZES[0]))
    k = module.LAYER_SIZES[-1]
    Y = rng.integers(0, k, n) if k > 1 else rng.integers(0, 2, (n, 1)).astype(float)
    return X, Y


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy(cores: int) -> Iterator[None]:
    """One busy-looping process per core while the block runs."""
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(cores)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.2)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def time_fit(module, X, Y, batch: int, epochs: int, one_thread: bool) -> float:
    params = module.init_params(seed=0)
    limit = threadpool_limits(1) if one_thread else nullcontext()
    with limit:
        start = time.perf_counter()
        module.fit(params, X, Y, epochs=epochs, batch_size=batch, seed=0)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"{cpu_model()}, {cores} cores; NumPy {np.__version__} ({blas()})")
    print(f"fit, {args.epochs} epochs; medians of {args.rounds} rounds")
    print()
    print("| config | machine | default threads | 1 thread | 1 thread / default |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, n, batch) in CONFIGS.items():
            if spec is None:
                spec = Path(tmp) / f"{name}.yaml"
                spec.write_text(DIGITS)
            module = load(spec, Path(tmp) / name)
            X, Y = data(module, n)
            time_fit(module, X, Y, batch, 1, False)  # warm: work arrays, caches
            for loaded in (False, True):
                times: dict[bool, list[float]] = {False: [], True: []}
                with busy(cores) if loaded else nullcontext():
                    for _ in range(args.rounds):
                        for one in (False, True):
                            times[one].append(
                                time_fit(module, X, Y, batch, args.epochs, one)
                            )
                default, single = (statistics.median(times[k]) for k in (False, True))
                print(
                    f"| {name} (batch {batch}) | {'loaded' if loaded else 'quiet'} | "
                    f"{default:.3f} s | {single:.3f} s | {single / default:.2f}× |"
                )


if __name__ == "__main__":
    main()
