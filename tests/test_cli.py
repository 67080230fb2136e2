"""The command line: help, generation, one-line errors with exit code 2, nothing overwritten."""

from __future__ import annotations

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
