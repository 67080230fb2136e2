"""Derivation time of custom activations and losses: nested and coefficient-heavy ones.

    python benchmarks/derive_time.py [--repeat 3]

Each row derives one custom expression from scratch in a fresh process (so SymPy's caches
start empty, as in `symgrad generate`) and prints the best of --repeat wall times of the
derivation alone (spec parsing, the activation rule and the output rule; imports
excluded), with the form the derivation chose. The expressions are the ones issue 9 found
slow or hanging before the derivation was bounded: a refused expression shows its message
and the time to refuse it. Prints the CPU model first.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ACTIVATIONS = {
    "LeCun tanh 1.7159·tanh(0.6667 z)": ("A * tanh(B * z)", {"A": 1.7159, "B": 0.6667}),
    "mish z·tanh(log(1 + e^z))": ("z*tanh(log(1 + exp(z)))", {}),
    "swish z·σ(1.702 z)": ("z*sigmoid(b*z)", {"b": 1.702}),
    "(1 + tanh z)/2": ("0.5*(1 + tanh(z))", {}),
    "z³/(1 + z²)": ("z**3/(1 + z*z)", {}),
    "sign(z)·log(1 + |z|)": ("sign(z)*log(1 + abs(z))", {}),
    "max(z, 0.25 z)": ("max(z, 0.25*z)", {}),
    "3 nested sigmoids": ("sigmoid(" * 3 + "z" + ")" * 3, {}),
    "6 nested sigmoids": ("sigmoid(" * 6 + "z" + ")" * 6, {}),
    "30 nested sigmoids": ("sigmoid(" * 30 + "z" + ")" * 30, {}),
    "((z + 1)**64)**64": ("((z + 1)**64)**64", {}),
    "0.1234567·z + 2.7182818·tanh(1.4142136·z)": (
        "0.1234567*z + 2.7182818*tanh(1.4142136*z)",
        {},
    ),
}
LOSSES = {
    "logits BCE log(1 + e^ŷ) − yŷ": ("log(1 + exp(yhat)) - y*yhat", {}, "identity"),
    "focal, γ = 2": (
        "-y*(1 - yhat)**g*log(yhat) - (1 - y)*yhat**g*log(1 - yhat)",
        {"g": 2.0},
        "sigmoid",
    ),
    "focal, γ = 1.5, α = 0.25": (
        "-w*y*(1 - yhat)**g*log(yhat) - (1 - w)*(1 - y)*yhat**g*log(1 - yhat)",
        {"g": 1.5, "w": 0.25},
        "sigmoid",
    ),
    "log cosh³ + r⁶/(1 + r⁴) + atan(ŷy)²": (
        "log(cosh(yhat-y))**3 + (yhat-y)**6/(1+(yhat-y)**4) + atan(yhat*y)**2",
        {},
        "identity",
    ),
}

CHILD = r"""
import json, sys, time
from symgrad.derive import derive
from symgrad.errors import SymgradError
from symgrad.spec import parse_spec
spec = sys.argv[1]
start = time.perf_counter()
try:
    d = derive(parse_spec(spec, "bench.yaml"))
    rule = d.layers[0].activation
    shown = "δ = " + str(d.output.delta) if "loss" in sys.argv[2] else (
        ("in a: " if rule.in_a else "in z: ") + str(rule.df))
except SymgradError as exc:
    shown = "refused: " + str(exc).split(": ", 2)[-1]
print(json.dumps([time.perf_counter() - start, shown]))
"""


def activation_spec(expr: str, params: dict[str, float]) -> str:
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return (
        "name: bench\ninput: 2\nlayers:\n"
        f'  - {{units: 4, activation: {{name: custom, expr: "{expr}"{extra}}}}}\n'
        "  - {units: 1, activation: sigmoid}\nloss: binary_crossentropy\n"
    )


def loss_spec(expr: str, params: dict[str, float], out: str) -> str:
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return (
        "name: bench\ninput: 2\nlayers:\n"
        f"  - {{units: 4, activation: tanh}}\n  - {{units: 1, activation: {out}}}\n"
        f'loss: {{name: custom, expr: "{expr}"{extra}}}\n'
    )


def run(spec: str, kind: str, repeat: int) -> tuple[float, str]:
    best, shown = float("inf"), ""
    root = Path(__file__).resolve().parent.parent
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, spec, kind],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            timeout=600,
        )
        seconds, shown = json.loads(out.stdout.strip().splitlines()[-1])
        best = min(best, seconds)
    return best, shown


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; Python {platform.python_version()}")
    print(f"best of {args.repeat}, derivation only, fresh process each\n")
    print("| custom expression | derive | result |")
    print("|---|---|---|")
    rows = [
        (name, activation_spec(e, p), "activation")
        for name, (e, p) in ACTIVATIONS.items()
    ] + [(name, loss_spec(e, p, o), "loss") for name, (e, p, o) in LOSSES.items()]
    for name, spec, kind in rows:
        seconds, shown = run(spec, kind, args.repeat)
        shown = shown if len(shown) <= 70 else shown[:67] + "..."
        shown = shown.replace("|", "\\|")
        name = name.replace("|", "\\|")
        print(f"| {kind}: {name} | {seconds:.2f} s | `{shown}` |", flush=True)


if __name__ == "__main__":
    main()
