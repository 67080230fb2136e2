"""The generated step of two symgrad checkouts, timed in one process.

    python benchmarks/versions.py OLD_TREE [NEW_TREE] [--configs ...] [--optimizers ...]
        [--specs SPEC.yaml ... --batch M] [--check-finite]

A change to the generator must not make the step it writes slower. Each checkout
generates each benchmark config's module (benchmarks/specs/, with the optimizer swapped
where --optimizers asks), and both modules run in this process, interleaved round by
round as train_step.py interleaves implementations, so a slow spell of a shared machine
hits both alike. NEW_TREE defaults to this checkout. Prints the machine line, then per
config and dtype the median time per step of each and their ratio (new / old).

--specs times any spec's module as well (an example's: examples/cancer_norm_drop.yaml),
on random batches of --batch examples (one-hot targets for a softmax output, else 0/1),
with the spec's own optimizer unless --optimizers names others. The step is timed with
CHECK_FINITE off, as the frameworks compared do not scan either; --check-finite times
it on, as a module is imported (the default users get).
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


def generate(tree: Path, source: Path, optimizer: str | None, out: Path) -> Path:
    """The module of the spec at `source` as `tree`'s symgrad writes it, with
    `optimizer` (its learning rate kept; None: the spec's)."""
    spec = yaml.safe_load(source.read_text())
    if optimizer is not None:
        spec["optimizer"] = {**spec["optimizer"], "name": optimizer}
    out.mkdir(parents=True)
    path = out / source.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "symgrad", "generate", "-q", str(path)]
    subprocess.run([*command, "-o", str(out)], check=True, env=env, cwd=tree)
    return out / f"{spec['name']}.py"


def spec_config(module, name: str, batch: int) -> impls.Config:
    """A config for impls.problem from a generated module: its sizes, and targets
    one-hot for a softmax output (TARGETS "simplex"), else 0/1."""
    output = "softmax" if module.TARGETS == "simplex" else "sigmoid"
    return impls.Config(name, tuple(module.LAYER_SIZES), "", output, batch, 0.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=HERE.parent)
    parser.add_argument("--configs", nargs="*", default=list(impls.CONFIGS))
    parser.add_argument("--specs", nargs="+", type=Path, default=[])
    parser.add_argument("--batch", type=int, default=32, help="for --specs")
    parser.add_argument("--optimizers", nargs="+", default=None)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--check-finite", action="store_true")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.3)
    args = parser.parse_args(argv)
    print(tables.machine(), flush=True)
    print(f"old: {args.old.resolve()}\nnew: {args.new.resolve()}", flush=True)
    print(f"CHECK_FINITE {'on' if args.check_finite else 'off'}", flush=True)
    jobs = [
        (name, impls.CONFIGS[name].spec, impls.CONFIGS[name]) for name in args.configs
    ]
    jobs += [(path.stem, path, None) for path in args.specs]
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, cfg in jobs:
            optimizers = args.optimizers or (["sgd"] if cfg is not None else [None])
            for optimizer in optimizers:
                label = optimizer or "spec's"
                paths = {
                    which: generate(
                        tree, source, optimizer, Path(tmp) / f"{which}_{name}_{label}"
                    )
                    for which, tree in (("old", args.old), ("new", args.new))
                }
                for dtype_name in args.dtypes:
                    dtype = np.dtype(dtype_name)
                    modules = {
                        which: impls.load_module(
                            p, f"{which}_{name}_{label}_{dtype_name}".replace("'", "")
                        )
                        for which, p in paths.items()
                    }
                    config = cfg or spec_config(modules["new"], name, args.batch)
                    runs = {
                        which: impls.make_generated(
                            config, module, dtype, check_finite=args.check_finite
                        )
                        for which, module in modules.items()
                    }
                    med = train_step.measure(runs, args.rounds, args.block, args.warmup)
                    old, new = med["old"], med["new"]
                    print(
                        f"{name:16s} {label:8s} {dtype_name}: "
                        f"old {train_step.fmt(old)}  new {train_step.fmt(new)}  "
                        f"new/old {new / old:.3f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
