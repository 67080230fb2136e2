"""Work without a bound (issue 19): each hostile expression ends in seconds, in bounded memory.

Towers of variable exponents, nested exp, huge powers under exp and nested reductions in a
norm each ran for minutes or GiBs. Each case here runs as the command line does, in a
subprocess under a 1.5 GiB address-space cap, with a hang guard (not a performance
assertion): it must end with a module (exit 0) or with exactly one located message
(exit 2), never a traceback. The refused cases are cheap (they stop at the parser), so they
share one subprocess that calls the command line once per case; the derived ones run as
`python -m symgrad generate` and `python -m symgrad latex` each.

The bounds themselves are checked as facts about expressions: the height of a tower, the
depth of nested reductions, and the bounded mpmath evaluation that answers "too large"
instead of computing an exponent of 2^1443 bits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sympy as sp

from symgrad import stability
from symgrad.sym import parse

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 3 * 2**29  # 1.5 GiB of address space
HANG_GUARD = 60  # seconds: each case took minutes or GiBs before it was bounded


def _activation(text: str) -> str:
    return (
        "name: h\ninput: 2\nlayers:\n"
        f'  - {{units: 2, activation: {{name: c, expr: "{text}"}}}}\n'
        "  - {units: 1, activation: identity}\nloss: mse\n"
    )


def _norm(text: str) -> str:
    return (
        "name: h\ninput: 3\nlayers:\n  - {units: 4, activation: tanh}\n"
        f'  - {{type: norm, name: n1, expr: "{text}"}}\n'
        "  - {units: 1, activation: identity}\nloss: mse\n"
    )


def _nested(depth: int) -> str:
    """x/sqrt(mean(x*x/sqrt(mean(x*x)+1))+1) at depth 2: each level one reduction deeper."""
    return "x/sqrt(mean(x*" * depth + "x" + ")+1)" * depth


# name -> (spec, None for a module or what the one message must say)
REFUSED = {
    "tower_9": (_activation("9**9**9**z"), "stacked 3 high"),
    "tower_norm": (_norm("9**9**9**(x - mean(x))"), "stacked 3 high"),
    "exp_4": (_activation("exp(exp(exp(exp(z))))"), "stacked 4 high"),
    "exp_6": (_activation("exp(" * 6 + "z" + ")" * 6), "stacked 6 high"),
    "exp_norm": (_norm("x - mean(exp(exp(exp(exp(x)))))"), "stacked 4 high"),
    "near_tower_2": (_activation("2**2**2**2**2**z"), "stacked 5 high"),
    "near_exp_3": (_activation("exp(exp(exp(z)))"), "stacked 3 high"),
    "reductions_4": (_norm(_nested(4)), "reductions are nested 4 deep"),
    "reductions_5": (_norm(_nested(5)), "reductions are nested 5 deep"),
}
DERIVED = {
    "tower_poly": _activation("(1+z*z)**(1+z*z)**(1+z*z)"),
    "exp_z64": _activation("exp(exp(z**64))"),
    "exp_pow64": _activation("exp(exp(z*z)*exp(z*z))**64"),
    "near_zzz": _activation("z**z**z"),
    "reductions_3": _norm(_nested(3)),
}


# the cap is set by the child itself, before it imports anything: a preexec_fn would fork
# this process, whose JAX (imported by other tests) warns that a fork may deadlock
CAPPED = f"""
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
flag, what, *rest = sys.argv[1:]
if flag == "-c":
    sys.argv = ["-c", *rest]
    exec(compile(what, "<string>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = [what, *rest]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """python ARGS (-c CODE ... or -m MODULE ...) under the memory cap."""
    return subprocess.run(
        [sys.executable, "-c", CAPPED, *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        cwd=cwd,
        # the derivation itself, every time: no rule from the derivation cache
        env={**os.environ, "PYTHONPATH": str(ROOT), "SYMGRAD_NO_CACHE": "1"},
    )


def _one_located_message(stderr: str, path: Path, says: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1, stderr
    # FILE:LINE:COL: key.path: message
    assert re.match(
        rf"symgrad: error: {re.escape(str(path))}:\d+:\d+: layers\[\d\]\S*: ", stderr
    ), stderr
    assert says in stderr, stderr


# the command line once per spec and command, in one process: exit code and stderr
RUNNER = """
import contextlib, io, json, sys, traceback
from symgrad.cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except BaseException:
            traceback.print_exc()
            code = None
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def test_hostile_expressions_are_refused_with_one_located_message(tmp_path):
    calls, expected = [], []
    for name, (text, says) in sorted(REFUSED.items()):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        for command in ("generate", "latex"):
            extra = ["-o", str(tmp_path / name)] if command == "generate" else []
            calls.append([command, str(path), *extra])
            expected.append((name, path, says))
    started = time.monotonic()
    proc = _run(["-c", RUNNER, json.dumps(calls)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for (name, path, says), (code, stderr) in zip(expected, results, strict=True):
        assert code == 2, (name, stderr)
        _one_located_message(stderr, path, says)
        assert not (tmp_path / name).exists()
    # refused by the parser, before any derivation: the whole batch takes seconds
    assert time.monotonic() - started < HANG_GUARD


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_bounded_expressions_derive_within_the_cap(tmp_path, name):
    path = tmp_path / "h.yaml"
    path.write_text(DERIVED[name])
    proc = _run(["-m", "symgrad", "generate", str(path), "-o", str(tmp_path)], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "h.py").is_file()
    proc = _run(["-m", "symgrad", "latex", str(path), "-f", "text"], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.strip()


# ------------------------------------------------------------------ the measures

z = sp.Symbol("z", real=True)


@pytest.mark.parametrize(
    "text, height",
    [
        ("z**3 + exp(z)", 1),
        ("exp(-exp(-z))", 2),
        ("z**z**z", 2),
        ("9**9**9**z", 3),
        ("tanh(exp(exp(exp(z))))", 3),  # a bounded function still evaluates the tower
        ("sinh(cosh(z))*exp(z)", 2),
        ("(z*z + 1)**64", 0),
    ],
)
def test_tower_counts_stacked_exponentials(text, height):
    built = sp.sympify(text, locals={"z": z})  # trusted test text
    assert parse.tower(built) == height


def test_towers_beyond_the_limit_are_refused_by_the_parser():
    assert parse.parse("exp(exp(z))", {"z": z}) == sp.exp(sp.exp(z))
    with pytest.raises(parse.ExpressionError, match="stacked 3 high"):
        parse.parse("sinh(exp(exp(z)))", {"z": z})


def test_reduction_depth_and_written_size():
    layernorm = parse.parse_norm(
        "(x - mean(x))/sqrt(mean((x - mean(x))**2) + eps)", {"eps": 1e-5}
    )
    assert parse.reduction_depth(layernorm) == 2
    assert parse.reduction_depth(parse.parse_norm(_nested(3))) == 3
    # x + (-1)·mean(x): the sum, x, the product, -1, the mean and three copies of x
    assert parse.written_size(parse.parse_norm("x - mean(x)")) == 1 + 1 + 1 + 1 + (
        1 + 3
    )
    with pytest.raises(parse.ExpressionError, match="written out over a group"):
        parse.parse_norm(
            "x - mean(x*sum(x*x - mean(x*x*x + x*x + x + 1)*(x + 1)"
            " + x*x*x + 2*x*x + 3*x + 4))*(x*x + x + 1)"
        )


def test_magnitudes_too_large_to_compute_are_undefined_not_computed():
    points = [{z: v} for v in (6.3, 1000.0)]
    started = time.process_time()
    # e^(e^(e^1000)): an exponent of 2^1443 bits; 9^(9^(9^6.3)) one of 2^3000000
    assert stability.exact(sp.exp(sp.exp(sp.exp(z))), points) == [None, None]
    assert stability.exact(9**9**9**z, points) == [None, None]
    assert stability.exact(sp.sin(sp.exp(sp.exp(sp.exp(z)))), points) == [None, None]
    assert time.process_time() - started < 5  # a guard: unbounded, these take minutes
    # within the bound nothing changes: e^(-e^1000) is 0 to any tolerance, e^(e^6.3) finite
    assert stability.exact(sp.exp(-sp.exp(z)), points)[1] == 0.0
    assert stability.exact(sp.exp(sp.exp(z)), points)[0] == pytest.approx(
        float(sp.exp(sp.exp(sp.Rational("6.3")).evalf(30)).evalf(30)), rel=1e-12
    )
    # a variable power far beyond float64 is too large, not an error
    assert stability.exact(z**z, [{z: 1000.0}]) == [None]
    assert stability.exact(z**z, [{z: 3.0}]) == [27.0]
