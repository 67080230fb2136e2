"""generated/ is fresh, and every generated module is clean, deterministic and numpy-only."""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import symgrad

# the modules' text is the subject here: black's layout included
pytestmark = pytest.mark.formatted

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
REGENERATE = 'for f in examples/*.yaml; do symgrad generate "$f"; done'


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_generated_module_is_fresh(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the README's command, run in a copy of the checkout's layout: the docstring names
    # the command, so the module must be written as the command writes it
    (tmp_path / "examples").mkdir()
    shutil.copy(spec, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    fresh = symgrad.generate(f"examples/{spec.name}")
    assert fresh == Path("generated", f"{spec.stem}.py")
    committed = ROOT / "generated" / fresh.name
    assert committed.is_file(), f"{committed} is missing; run: {REGENERATE}"
    assert (
        committed.read_text() == fresh.read_text()
    ), f"{committed} is stale; run: {REGENERATE}"


def test_every_generated_module_has_an_example() -> None:
    names = {p.stem for p in (ROOT / "generated").glob("*.py")} - {"__init__"}
    assert names <= {symgrad.load_spec(p).name for p in EXAMPLES}


def test_generated_code_passes_black_and_ruff() -> None:
    # ruff with the project's rules, and with ruff's defaults (--isolated: no config)
    files = [str(p) for p in (ROOT / "generated").glob("*.py")]
    tools = (
        ["black", "--check", "--quiet"],
        ["ruff", "check", "--quiet"],
        ["ruff", "check", "--quiet", "--isolated"],
    )
    for tool in tools:
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
    # the standard library aside (load_params reads archives with zipfile)
    assert {name for name in imported if name not in sys.stdlib_module_names} == {
        "numpy"
    }


def test_docstring_names_the_spec_and_the_equations() -> None:
    text = (ROOT / "generated" / "xor.py").read_text()
    doc = ast.get_docstring(ast.parse(text))
    assert "from xor.yaml" in doc and f"symgrad {symgrad.__version__}" in doc
    assert "δ2 = (Ŷ - Y) / m   (collapsed)" in doc
    assert "tanh'(z) = 1 - a²" in doc


def test_same_spec_same_bytes_across_hash_seeds(tmp_path: Path) -> None:
    outputs = []
    for seed in ("0", "1", "12345"):
        cwd = tmp_path / seed  # the same command in each: `-o models`, relative
        cwd.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        env["SYMGRAD_NO_CACHE"] = "1"  # each derives: no rule from another seed's run
        subprocess.run(
            [
                sys.executable,
                "-m",
                "symgrad",
                "generate",
                str(ROOT / "examples" / "iris_mlp.yaml"),
                "-o",
                "models",
            ],
            check=True,
            env=env,
            capture_output=True,
            cwd=cwd,
        )
        outputs.append((cwd / "models" / "iris_mlp.py").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_docstring_names_the_command_that_was_run(tmp_path: Path, monkeypatch) -> None:
    def command(path: Path) -> str:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        return doc.splitlines()[-1]

    xor = ROOT / "examples" / "xor.yaml"
    assert command(ROOT / "generated" / "xor.py") == (
        "Regenerate with: symgrad generate examples/xor.yaml"
    )
    (tmp_path / "specs").mkdir()
    shutil.copy(xor, tmp_path / "specs" / "my net.yaml")
    monkeypatch.chdir(tmp_path)
    runs = [  # (spec, out_dir) as given -> the command, quoted for the shell
        ("specs/my net.yaml", "build/models", "'specs/my net.yaml' -o build/models"),
        (tmp_path / "specs" / "my net.yaml", "./generated", "'specs/my net.yaml'"),
        (
            "specs/../specs/my net.yaml",
            tmp_path / "out",
            "'specs/../specs/my net.yaml' -o out",
        ),
        (xor, None, str(xor)),  # outside the working directory: as given
    ]
    for spec, out_dir, expected in runs:
        path = symgrad.generate(spec, out_dir)
        assert command(path) == f"Regenerate with: symgrad generate {expected}"
    path = symgrad.generate(yaml.safe_load(xor.read_text()), "from_dict")
    assert command(path) == (
        "Regenerate with: symgrad.generate(spec) with the same spec (given as <dict>, "
        "not a file)"
    )


def test_the_longest_name_and_a_long_path_keep_the_module_within_the_line_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the docstring's title and regenerate lines are wrapped (a long path gets a line
    # of its own); NAME = "..." of the longest name the spec allows fits in a line
    name = "deep_sigmoid_layernorm_" + "x" * (64 - 23)
    deep = tmp_path / "examples" / ("very_long_directory_name_" * 3) / "nested"
    deep.mkdir(parents=True)
    (deep / f"{name}.yaml").write_text(
        f"name: {name}\ninput: 2\nlayers:\n"
        "  - {units: 1, activation: sigmoid}\nloss: binary_crossentropy\n"
    )
    monkeypatch.chdir(tmp_path)  # as the README's command writes generated/
    module = symgrad.generate(deep.relative_to(tmp_path) / f"{name}.yaml")
    for config in (["--isolated"], ["--config", str(ROOT / "pyproject.toml")]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--quiet", *config, str(module)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    # the command, a word a line, still reads as one command in a shell
    doc = ast.get_docstring(ast.parse(Path(module).read_text()))
    command = doc[doc.index("Regenerate with:") + len("Regenerate with:") :]
    assert "\\\n" in command
    words = shlex.split(command.replace("\\\n", ""))  # backslash-newline: continued
    spec_path = str(deep.relative_to(tmp_path) / f"{name}.yaml")
    assert words == ["symgrad", "generate", spec_path]
