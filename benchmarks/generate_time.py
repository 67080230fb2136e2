"""Wall time of `symgrad generate` in a fresh process, for deep specs.

    python benchmarks/generate_time.py [--layers 50 100] [--widths 8 8192] [--repeat 3]

Each spec has `layers` layers in all: `layers` − 1 hidden layers of `width` units
(alternating tanh and relu, so two activation rules are derived and then reused from the
cache) and a 10-unit softmax output with categorical cross-entropy (100 layers is the
spec's limit), and examples/xor.yaml. The time is that of the whole command, interpreter
start and imports included, in a new process; the best of `--repeat` runs is shown (the
others measure the machine's noise), in three cases:

- cold: a new, empty cache directory for each run (every rule derived, black run);
- edited: the spec with its learning rate halved, against the directory a first run
  of the original filled (the rules come from the cache; the module is made again);
- warm: the same command again (the whole result comes from the cache).

Python writes and reads bytecode in the children, as an installed package has it
(PYTHONDONTWRITEBYTECODE is removed from their environment; a first untimed run
compiles symgrad). `--profile` prints where the time goes in one run; `--phases` splits
a cold `symgrad generate examples/xor.yaml` into its parts (the medians of `--repeat`
fresh processes, each with an empty cache): Python's start, the imports, reading the
spec, the derivation, the plan and the template, black, and writing the module.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def spec(layers: int, width: int) -> dict:
    """`layers` layers in all (the spec's limit counts the output layer too)."""
    hidden = [
        {"units": width, "activation": "tanh" if i % 2 == 0 else "relu"}
        for i in range(layers - 1)
    ]
    return {
        "name": f"deep_{layers}x{width}",
        "input": width,
        "layers": hidden + [{"units": 10, "activation": "softmax"}],
        "loss": "categorical_crossentropy",
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
    }


XOR = Path(__file__).resolve().parent.parent / "examples" / "xor.yaml"


def time_generate(path: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "SYMGRAD_CACHE_DIR": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("SYMGRAD_NO_CACHE", None)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", "-q", str(path), "-o", str(out)],
        check=True,
        env=env,
    )
    return time.perf_counter() - t0


def edited(path: Path) -> Path:
    """A copy of the spec with its learning rate halved: the same rules, another
    module."""
    data = yaml.safe_load(path.read_text())
    data["optimizer"]["learning_rate"] /= 2
    copy = path.with_name(f"{path.stem}_edited.yaml")
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def cold_edited_warm(path: Path, tmp: Path, repeat: int) -> tuple[float, float, float]:
    """Best of `repeat` runs: with an empty cache; on the edited spec with the cache
    a run of the original filled; the same command with a filled cache."""
    cold = min(
        time_generate(path, tmp, Path(tempfile.mkdtemp(dir=tmp))) for _ in range(repeat)
    )
    other = edited(path)
    changed = []
    for _ in range(repeat):
        filled = Path(tempfile.mkdtemp(dir=tmp))
        time_generate(path, tmp, filled)
        changed.append(time_generate(other, tmp, filled))
    warm = min(time_generate(path, tmp, filled) for _ in range(repeat))
    return cold, min(changed), warm


def measure(
    layers=(50, 100), widths=(8, 8192), repeat=3
) -> dict[str, tuple[float, float, float]]:
    """(cold, edited, warm) seconds by spec: 'xor', '50x8', ..."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        time_generate(XOR, Path(tmp), Path(tmp) / "compile")  # bytecode written
        xor = Path(tmp) / XOR.name
        xor.write_text(XOR.read_text())
        out["xor"] = cold_edited_warm(xor, Path(tmp), repeat)
        for n in layers:
            for width in widths:
                path = Path(tmp) / f"deep_{n}x{width}.yaml"
                path.write_text(yaml.safe_dump(spec(n, width), sort_keys=False))
                out[f"{n}x{width}"] = cold_edited_warm(path, Path(tmp), repeat)
    return out


def profile(layers: int, width: int) -> None:
    import symgrad

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deep.yaml"
        path.write_text(yaml.safe_dump(spec(layers, width), sort_keys=False))
        profiler = cProfile.Profile()
        profiler.enable()
        symgrad.generate(path, tmp)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


# run in the child: symgrad's modules imported first (black with them, though the command
# imports it only on a miss of black's layout cache), then the stages timed by wrapping
# the functions the command calls, the command itself, and its end (cli._exit)
PHASES = """
import importlib, json, sys, time
started = time.time()
t0 = time.perf_counter()
names = ["symgrad.cli", "symgrad.spec", "symgrad.derive", "symgrad.render", "symgrad.files"]
m = {n: importlib.import_module(n) for n in names}
imported = time.perf_counter()
import black
spent = {"imports": imported - t0, "import black": time.perf_counter() - imported}

def timed(module, name, label):
    function = getattr(module, name)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
    setattr(module, name, wrapper)

timed(m["symgrad.spec"], "parse_spec", "read the spec")
timed(m["symgrad.derive"], "derive", "derive")
timed(m["symgrad.render"], "render", "plan, template, black")
timed(m["symgrad.render"], "formatted", "black")
timed(m["symgrad.files"], "write_text", "write")
t = time.perf_counter()
code = m["symgrad.cli"].main(sys.argv[1:])
spent["command"] = time.perf_counter() - t
spent["plan, template"] = spent.pop("plan, template, black") - spent["black"]
spent["started"] = started
print(json.dumps(spent))
m["symgrad.cli"]._exit(code)  # as the command ends
"""


def phases(repeat: int) -> None:
    """A cold run of xor, split into its parts (medians of `repeat` processes)."""
    import json
    import statistics

    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat + 1):  # the first compiles symgrad's bytecode
            env = {**os.environ, "SYMGRAD_CACHE_DIR": str(Path(tmp) / f"cache{i}")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env.pop("SYMGRAD_NO_CACHE", None)
            command = ["generate", "-q", str(XOR), "-o", tmp]
            t0, w0 = time.perf_counter(), time.time()
            done = subprocess.run(
                [sys.executable, "-c", PHASES, *command],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            spent = json.loads(done.stdout)
            if i == 0:
                continue
            spent["Python's start"] = spent.pop("started") - w0
            accounted = sum(v for k, v in spent.items() if k != "command")
            spent["the rest of the command"] = (
                spent["command"]
                - accounted
                + spent["Python's start"]
                + spent["imports"]
                + spent["import black"]
            )
            spent["Python's exit"] = wall - accounted - spent["the rest of the command"]
            spent["wall"] = wall
            for key, value in spent.items():
                rows.setdefault(key, []).append(value)
    order = [
        "Python's start",
        "imports",
        "import black",
        "read the spec",
        "derive",
        "plan, template",
        "black",
        "write",
        "the rest of the command",
        "Python's exit",
        "wall",
    ]
    for key in order:
        print(f"{key:>24}: {statistics.median(rows[key]):.3f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", nargs="+", type=int, default=[50, 100])
    parser.add_argument("--widths", nargs="+", type=int, default=[8, 8192])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args(argv)
    if args.phases:
        phases(args.repeat)
        return {}
    if args.profile:
        profile(args.layers[0], args.widths[0])
        return {}
    times = measure(args.layers, args.widths, args.repeat)
    for name, (cold, changed, warm) in times.items():
        print(
            f"{name:>10}: {cold:.2f} s cold, {changed:.2f} s edited, {warm:.2f} s warm"
        )
    return times


if __name__ == "__main__":
    main()
