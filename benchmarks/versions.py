"""The generated step of two symgrad checkouts, timed in one process.

    python benchmarks/versions.py OLD_TREE [NEW_TREE] [--configs ...] [--optimizers ...]

A change to the generator must not make the step it writes slower. Each checkout
generates each benchmark config's module (benchmarks/specs/, with the optimizer swapped
where --optimizers asks), and both modules run in this process, interleaved round by
round as train_step.py interleaves implementations, so a slow spell of a shared machine
hits both alike. NEW_TREE defaults to this checkout. Prints the machine line, then per
config and dtype the median time per step of each and their ratio (new / old).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import impls  # noqa: E402
import run as tables  # noqa: E402
import train_step  # noqa: E402

HERE = Path(__file__).resolve().parent


def generate(tree: Path, cfg: impls.Config, optimizer: str, out: Path) -> Path:
    """The config's module as `tree`'s symgrad writes it, with `optimizer` (its
    learning rate kept)."""
    spec = yaml.safe_load(cfg.spec.read_text())
    spec["optimizer"] = {**spec["optimizer"], "name": optimizer}
    out.mkdir(parents=True)
    path = out / f"{cfg.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "symgrad", "generate", "-q", str(path)]
    subprocess.run([*command, "-o", str(out)], check=True, env=env, cwd=tree)
    return out / f"{spec['name']}.py"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=HERE.parent)
    parser.add_argument("--configs", nargs="+", default=list(impls.CONFIGS))
    parser.add_argument("--optimizers", nargs="+", default=["sgd"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.3)
    args = parser.parse_args(argv)
    print(tables.machine(), flush=True)
    print(f"old: {args.old.resolve()}\nnew: {args.new.resolve()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            cfg = impls.CONFIGS[name]
            for optimizer in args.optimizers:
                paths = {
                    which: generate(
                        tree, cfg, optimizer, Path(tmp) / f"{which}_{name}_{optimizer}"
                    )
                    for which, tree in (("old", args.old), ("new", args.new))
                }
                for dtype_name in args.dtypes:
                    dtype = np.dtype(dtype_name)
                    runs = {
                        which: impls.make_generated(
                            cfg,
                            impls.load_module(
                                p, f"{which}_{name}_{optimizer}_{dtype_name}"
                            ),
                            dtype,
                        )
                        for which, p in paths.items()
                    }
                    med = train_step.measure(runs, args.rounds, args.block, args.warmup)
                    old, new = med["old"], med["new"]
                    print(
                        f"{name:6s} {optimizer:8s} {dtype_name}: "
                        f"old {train_step.fmt(old)}  new {train_step.fmt(new)}  "
                        f"new/old {new / old:.3f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
