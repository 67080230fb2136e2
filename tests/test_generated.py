"""generated/ is fresh, and every generated module is clean, deterministic and numpy-only."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import symgrad

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
REGENERATE = 'for f in examples/*.yaml; do symgrad generate "$f"; done'


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_generated_module_is_fresh(spec: Path, tmp_path: Path) -> None:
    fresh = symgrad.generate(spec, tmp_path)
    committed = ROOT / "generated" / fresh.name
    assert committed.is_file(), f"{committed} is missing; run: {REGENERATE}"
    assert (
        committed.read_text() == fresh.read_text()
    ), f"{committed} is stale; run: {REGENERATE}"


def test_every_generated_module_has_an_example() -> None:
    names = {p.stem for p in (ROOT / "generated").glob("*.py")} - {"__init__"}
    assert names <= {symgrad.load_spec(p).name for p in EXAMPLES}


def test_generated_code_passes_black_and_ruff() -> None:
    files = [str(p) for p in (ROOT / "generated").glob("*.py")]
    for tool in (["black", "--check", "--quiet"], ["ruff", "check", "--quiet"]):
        result = subprocess.run(
            [sys.executable, "-m", *tool, *files],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "path", sorted((ROOT / "generated").glob("*.py")), ids=lambda p: p.stem
)
def test_generated_module_imports_numpy_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"numpy"}


def test_docstring_names_the_spec_and_the_equations() -> None:
    text = (ROOT / "generated" / "xor.py").read_text()
    doc = ast.get_docstring(ast.parse(text))
    assert "from xor.yaml" in doc and f"symgrad {symgrad.__version__}" in doc
    assert "δ2 = (Ŷ - Y) / m   (collapsed)" in doc
    assert "tanh'(z) = 1 - a²" in doc


def test_same_spec_same_bytes_across_hash_seeds(tmp_path: Path) -> None:
    outputs = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "symgrad",
                "generate",
                str(ROOT / "examples" / "iris_mlp.yaml"),
                "-o",
                str(out),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        outputs.append((out / "iris_mlp.py").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
