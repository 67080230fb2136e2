"""The command line: help, generation, one-line errors with exit code 2, nothing overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from symgrad.cli import main

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "examples" / "xor.yaml"


def test_help_explains_itself(capsys) -> None:
    for argv in (["--help"], ["generate", "--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "symgrad generate examples/xor.yaml" in out
    assert "-o DIR" in out or "--out-dir" in out


def test_generate_writes_and_reports(tmp_path, capsys) -> None:
    assert main(["generate", str(XOR), "-o", str(tmp_path)]) == 0
    assert (tmp_path / "xor.py").is_file()
    assert f"wrote {tmp_path / 'xor.py'}" in capsys.readouterr().out


def test_python_dash_m_from_another_directory(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", str(XOR), "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "xor.py").is_file()


def test_spec_error_is_one_line_per_problem_no_traceback(tmp_path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(XOR.read_text().replace("activation: tanh", "activation: tahn"))
    assert main(["generate", str(spec), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "bad.yaml:6:17: layers[0].activation: unknown activation 'tahn'" in lines[0]
    assert "did you mean 'tanh'?" in lines[0]


def test_failed_run_leaves_existing_file_untouched(tmp_path) -> None:
    target = tmp_path / "xor.py"
    target.write_text("# precious\n")
    spec = tmp_path / "xor.yaml"
    spec.write_text(XOR.read_text().replace("units: 8", "units: eight"))
    assert main(["generate", str(spec), "-o", str(tmp_path)]) == 2
    assert target.read_text() == "# precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.py", "xor.yaml"]


def test_debug_shows_traceback(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "symgrad",
            "--debug",
            "generate",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_of_every_command_has_examples(capsys) -> None:
    for argv in (["latex", "--help"], ["check", "--help"], ["--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "symgrad latex examples/xor.yaml --format text" in out
    assert "--standalone" in out and "markdown" in out
    assert "symgrad check examples/xor.yaml" in out
    assert "Exit status 0 when all match, 1 on a mismatch" in out


def test_generate_prints_a_summary_unless_quiet(tmp_path, capsys) -> None:
    assert main(["generate", str(XOR), "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "xor: 2 → 8 (tanh) → 1 (sigmoid); 33 parameters",
        "loss: binary cross-entropy; output delta δ = ŷ - y (collapsed)",
        f"wrote {tmp_path / 'xor.py'}",
    ]
    assert main(["generate", str(XOR), "-o", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_generate_summarises_an_image_network_by_its_shapes(tmp_path, capsys) -> None:
    spec = ROOT / "examples" / "digits_cnn.yaml"
    assert main(["generate", str(spec), "-o", str(tmp_path), "--no-cache"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    # by hand from the spec: 8×8 padded by 1 under 3×3 stays 8×8; pooled by 2, 4×4;
    # `same` keeps 4×4; pooled by 2, 2×2; 16·2·2 = 64 values; weights 8·1·9 + 8,
    # 16·8·9 + 16 and 64·10 + 10
    assert first == (
        "digits_cnn: 1×8×8 → 8×8×8 (conv 3×3, ReLU) → 8×4×4 (maxpool 2×2) → 16×4×4"
        " (conv 3×3, ReLU) → 16×2×2 (avgpool 2×2) → 64 (flatten) → 10 (softmax);"
        " 1,898 parameters"
    )


def test_latex_prints_or_writes_each_format(tmp_path, capsys) -> None:
    assert main(["latex", str(XOR), "--format", "text"]) == 0
    assert "          = a·(1 - a)\n" in capsys.readouterr().out
    target = tmp_path / "notes" / "xor.md"
    assert main(["latex", str(XOR), "-f", "markdown", "-o", str(target)]) == 0
    assert capsys.readouterr().out == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8").startswith("# The derivation of xor")
    assert main(["latex", str(XOR), "--standalone", "-o", str(tmp_path / "x.tex")]) == 0
    assert (tmp_path / "x.tex").read_text().startswith(r"\documentclass")


def test_latex_user_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["latex", str(XOR), "--format", "text", "--standalone"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "symgrad: error: --standalone makes a LaTeX document; it does not apply to "
        "--format text"
    ]
    spec = tmp_path / "bad.yaml"
    spec.write_text(XOR.read_text().replace("activation: tanh", "activation: tahn"))
    assert main(["latex", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml:6:17: layers[0].activation" in err[0]
    assert main(["latex", str(XOR), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_debug_keeps_the_exit_code_of_a_user_error(tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(XOR.read_text().replace("activation: tanh", "activation: tahn"))
    for argv in (["--debug", "generate", str(spec)], ["check", str(spec), "--debug"]):
        result = subprocess.run(
            [sys.executable, "-m", "symgrad", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's symgrad
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" in result.stderr and "SpecError" in result.stderr
        assert result.stderr.rstrip().endswith("(did you mean 'tanh'?)")


def test_errors_print_control_characters_escaped(tmp_path, capsys) -> None:
    spec = tmp_path / "x\x1b[2J.yaml"
    assert main(["generate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "x\\x1b[2J.yaml: no such file" in err


def test_spec_argument_is_always_a_path(tmp_path, capsys) -> None:
    assert main(["latex", "name: xor\ninput: 2"]) == 2
    assert "no such file" in capsys.readouterr().err


# Ctrl-C while the command loads SymPy: the child sends itself SIGINT at the moment SymPy
# is first imported, wherever that happens (it used to be `import symgrad`, before the
# command line could catch it, and printed a KeyboardInterrupt traceback). The child sets
# Python's own SIGINT handler first: a shell starts background jobs with SIGINT ignored.
INTERRUPTED = """
import builtins, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (see below)
real = builtins.__import__
def interrupting(name, *args, **kwargs):
    if name == "sympy" and "sympy" not in sys.modules:
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = interrupting
from symgrad.cli import main
sys.exit(main(["generate", sys.argv[1], "-o", sys.argv[2]]))
"""


def test_ctrl_c_while_loading_exits_130_without_a_traceback(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parent.parent / "examples" / "xor.yaml"
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, str(spec), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr, done.stdout) == (130, "", "")
    assert not (tmp_path / "out").exists()


def test_the_command_line_starts_without_sympy() -> None:
    code = "import sys, symgrad, symgrad.cli; print('sympy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout == "False\n", done.stderr


# a module global whose __del__ runs only when Python tears the modules down
TEARDOWN = """
import atexit, sys
class Torn:
    def __del__(self):
        print("torn down", flush=True)
torn = Torn()
atexit.register(lambda: print("atexit ran", flush=True))
from symgrad.cli import run
run()
"""


def test_the_command_ends_without_python_s_teardown(tmp_path: Path) -> None:
    """`symgrad` (cli.run) flushes its output, runs the atexit handlers and ends the
    process without tearing down every module (~0.1 s after SymPy): the summary is
    whole through a pipe and the exit codes stay; under a profiler it ends as usual,
    so that cProfile writes its data."""

    def command(*args: str, code: str = TEARDOWN) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    done = command("generate", str(XOR), "-o", "out")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("xor: 2 → 8 (tanh) → 1 (sigmoid)")
    assert lines[-2:] == [f"wrote {Path('out') / 'xor.py'}", "atexit ran"]
    assert "torn down" not in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(XOR.read_text().replace("tanh", "tahn"))
    done = command("generate", "bad.yaml", "-o", "out")
    assert done.returncode == 2 and "unknown activation 'tahn'" in done.stderr
    assert done.stdout == "atexit ran\n"
    # the usual end: with a profiler on, and where argparse exits (--version)
    profiled = "import cProfile; cProfile.run(" + repr(TEARDOWN) + ", 'profile.out')"
    done = command("generate", str(XOR), "-o", "out", "-q", code=profiled)
    assert done.returncode == 0, done.stderr
    assert "torn down" in done.stdout and (tmp_path / "profile.out").stat().st_size
    done = command("--version")
    assert done.returncode == 0 and "torn down" in done.stdout
