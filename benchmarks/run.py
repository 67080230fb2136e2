"""All benchmarks, printed as the Markdown tables of docs/performance.md.

    python benchmarks/run.py [--rounds 15] [--quick] [--configs lenet ...]

Runs train_step.py (one process, all implementations interleaved), peak_rss.py (a process
per implementation) and generate_time.py (a fresh process per run), then prints the
tables. --quick: a few rounds, to check that everything runs. --configs: only the train
step table, for those configs (benchmarks/impls.py's CONFIGS: tiny, mnist, wide, layers,
lenet).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_time  # noqa: E402
import peak_rss  # noqa: E402
import train_step  # noqa: E402

COLUMNS = ["generated", "generated+check", "numba", "numpy", "torch", "jax", "floor"]
HEADERS = {
    "generated": "generated",
    "generated+check": "generated, CHECK_FINITE on",
    "numba": "generated, --target numba",
    "numpy": "hand NumPy",
    "torch": "PyTorch eager",
    "jax": "JAX jit",
    "floor": "GEMM floor",
}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def blas() -> str:
    """NumPy's BLAS, with the kernels and threads it runs (threadpoolctl, where installed):
    'OpenBLAS 0.3.31, SkylakeX kernels, 2 threads'."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (no threadpoolctl)"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(
                pool.get("internal_api", ""), pool.get("internal_api", "BLAS")
            )
            arch = pool.get("architecture")
            kernels = f", {arch} kernels" if arch else ""
            return (
                f"{name} {pool.get('version')}{kernels}, {pool['num_threads']} threads"
            )
    return "BLAS unknown"


def machine() -> str:
    import jax
    import torch

    return (
        f"{cpu_model()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, NumPy {np.__version__} ({blas()}), "
        f"PyTorch {torch.__version__}, JAX {jax.__version__}"
    )


def step_table(rows) -> str:
    head = "| config | dtype | " + " | ".join(HEADERS[c] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for cfg, dtype, med in rows:
        gen = med["generated"]
        cells = []
        for c in COLUMNS:
            if c not in med:
                cells.append("—")
                continue
            text = train_step.fmt(med[c])
            if c != "generated":
                text += f" ({gen / med[c]:.2f}×)"
            cells.append(text)
        lines.append(f"| {cfg} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--configs", nargs="+", help="only the step table, of these")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    extra = ["--block", "0.02", "--warmup", "0.02"] if args.quick else []
    if args.configs:
        extra += ["--configs", *args.configs]
    rows = train_step.main(["--rounds", str(rounds), *extra])
    if args.configs:
        print()
        print(f"Machine: {machine()}")
        print()
        print(step_table(rows))
        return
    steps = 20 if args.quick else 100
    rss = {c: peak_rss.run_in_own_process(steps, c) for c in ("mnist", "layers")}
    gen = generate_time.measure(repeat=1 if args.quick else 3)

    print()
    print(f"Machine: {machine()}")
    print()
    print("Train step (forward, loss, backward, sgd update), median time per step;")
    print("in parentheses the generated step's time divided by that column's:")
    print()
    print(step_table(rows))
    print()
    names = list(rss["mnist"])
    print(f"| peak RSS, {steps} steps (float32), MiB | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for config, row in rss.items():
        cells = ["—" if row[n] != row[n] else f"{row[n]:.0f}" for n in names]
        print(f"| {config} | " + " | ".join(cells) + " |")
    print()
    print(
        "| `symgrad generate`, fresh process | cache cold | learning rate edited "
        "(rules cached) | cache warm (same command) |"
    )
    print("|---|---|---|---|")
    for name, (cold, changed, warm) in gen.items():
        label = (
            "examples/xor.yaml" if name == "xor" else name.replace("x", " layers × ")
        )
        print(f"| {label} | {cold:.2f} s | {changed:.2f} s | {warm:.2f} s |")


if __name__ == "__main__":
    main()
