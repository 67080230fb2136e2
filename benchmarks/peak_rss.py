"""Peak RSS of a process that trains a config for 100 steps, per implementation.

    python benchmarks/peak_rss.py [--config mnist|layers] [--steps 100]

Each implementation runs in a fresh process (python benchmarks/peak_rss.py --worker NAME
MODULE) that imports only what it needs, trains from the same start on the same 1280
examples (10 batches of 128, float32) for 100 sgd steps, and reports
resource.getrusage(RUSAGE_SELF).ru_maxrss. The generated module is written beforehand
by the parent, so the worker for it imports NumPy and the module, not symgrad or SymPy;
the numba target's module (column numba) runs from its kernels' cache, which a first
process fills.

Linux carries ru_maxrss over fork and exec: a worker started by a big process reports
at least that process's RSS. So the parent here imports nothing heavy, and other scripts
run this one as a process of its own (see run.py); the worker checks its ru_maxrss
against VmHWM, the peak of its own address space, and reports the smaller.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ["generated", "numba", "numpy", "torch", "jax"]


def worker(name: str, module_path: str, steps: int, config: str) -> None:
    import numpy as np

    sys.path.insert(0, str(HERE))
    import impls

    cfg = impls.CONFIGS[config]
    module = impls.load_module(Path(module_path), f"bench_{config}")
    make = impls.MAKERS["generated" if name == "numba" else name]
    run = make(cfg, module, np.dtype(np.float32), data_batches=10)
    if run is None:  # not written for this config
        print("nan")
        return
    for _ in range(steps):
        run()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss_kib = min(rss_kib, int(line.split()[1]))
    print(rss_kib / 1024)


def measure(steps: int = 100, config: str = "mnist") -> dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = HERE / "specs" / f"{config}.yaml"
        subprocess.run(
            [sys.executable, "-m", "symgrad", "generate", "-q", str(spec), "-o", tmp],
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "symgrad", "generate", "-q", str(spec), "-o", tmp]
            + ["--target", "numba"],
            check=True,
        )
        module = Path(tmp) / f"bench_{config}.py"
        fused = Path(tmp) / f"bench_{config}_numba.py"
        # a first process compiles the numba kernels into the module's cache: the
        # worker measured loads them, as every run after a user's first does
        warm = [sys.executable, __file__, "--worker", "numba", str(fused)]
        subprocess.run(
            warm + ["--steps", "1", "--config", config],
            capture_output=True,
            check=True,
        )
        for name in IMPLS:
            path = fused if name == "numba" else module
            result = subprocess.run(
                [sys.executable, __file__, "--worker", name, str(path)]
                + ["--steps", str(steps), "--config", config],
                capture_output=True,
                text=True,
                check=True,
            )
            out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--config", default="mnist", choices=("mnist", "layers"))
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "MODULE"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.steps, args.config)
        return {}
    rss = measure(args.steps, args.config)
    if args.json:
        print(json.dumps(rss))
    else:
        for name, mib in rss.items():
            print(f"{name:10s} {mib:6.1f} MiB")
    return rss


def run_in_own_process(steps: int = 100, config: str = "mnist") -> dict[str, float]:
    """measure() from a fresh, small process (ru_maxrss is inherited from the parent)."""
    result = subprocess.run(
        [sys.executable, __file__, "--json", "--steps", str(steps), "--config", config],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
