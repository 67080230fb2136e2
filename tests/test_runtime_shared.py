"""The shared runtime (symgrad/runtime_shared.py): one source in both generated modules.

For a NumPy module and its array-API twin, generated from the same example spec, every
function and constant the shared runtime defines is the same text in both, defined
once, and what the shared runtime asks of a target's runtime is defined by both target
runtimes. The shared functions' behaviour is tested through each target's configured
copies (tests/test_runtime.py, tests/test_runtime_xp.py) and the generated modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import symgrad
from symgrad import render

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "symgrad" / "runtime_shared.py"
EXAMPLES = ["xor", "iris", "cancer_norm_drop", "deep_sigmoid_ln", "diabetes_huber"]


def _defined(body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
    """name -> the top-level statements that bind it (functions and assignments)."""
    names: dict[str, list[ast.stmt]] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef):
            names.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names.setdefault(name.id, []).append(node)
    return names


def _shared_names() -> set[str]:
    """The names the shared runtime defines after its configuration block."""
    return set(_defined(ast.parse(render.copied_runtime(render.RUNTIME_SHARED)).body))


def _configuration_functions(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    block = ast.parse(text[: text.index(render.CONFIG_END)]).body
    return {n.name for n in block if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("name", EXAMPLES)
def test_shared_functions_are_the_same_text_in_both_modules(name, tmp_path):
    spec = ROOT / "examples" / f"{name}.yaml"
    texts = {
        target: symgrad.generate(spec, tmp_path, target=target).read_text("utf-8")
        for target in ("numpy", "array-api")
    }
    shared = _shared_names()
    assert {"predict", "_initial_values", "_train", "_whole", "_accuracy"} <= shared
    sources = {}
    for target, text in texts.items():
        defined = _defined(ast.parse(text).body)
        # each shared name is bound once: a later definition would silently replace it
        for k in shared:
            assert len(defined.get(k, [])) == 1, (target, k)
        sources[target] = {
            k: ast.get_source_segment(text, defined[k][0]) for k in shared
        }
    for k in sorted(shared):
        assert sources["numpy"][k] == sources["array-api"][k], k


def test_both_target_runtimes_define_what_the_shared_runtime_reads():
    """The shared runtime's placeholder functions are what a target's runtime provides
    (both runtime.py and runtime_xp.py define each, with the same arguments), and
    learning_rate, which each module's derived part prints from its schedule."""
    wanted = _configuration_functions(render.RUNTIME_SHARED) - {"learning_rate"}
    assert wanted == {
        "forward",
        "_namespace",
        "_output",
        "_inference_loss",
        "_as_index",
    }
    shared = ast.parse(render.RUNTIME_SHARED.read_text(encoding="utf-8")).body
    for path in (render.RUNTIME, ROOT / "symgrad" / "runtime_xp.py"):
        own = _defined(ast.parse(render.copied_runtime(path)).body)
        for k in wanted:
            assert len(own.get(k, [])) == 1, (path.name, k)
            expected = next(n for n in shared if getattr(n, "name", None) == k)
            positional = [a.arg for a in own[k][0].args.args]
            assert positional == [a.arg for a in expected.args.args], (path.name, k)
        # and none redefines what the shared runtime defines
        assert not set(own) & _shared_names(), path.name


def test_the_shared_runtime_imports_and_lints_on_its_own():
    module = subprocess.run(
        [sys.executable, "-c", "import symgrad.runtime_shared as m; print(m._KEYS)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert module.returncode == 0 and module.stdout.strip() == "('W1', 'b1')"
    for config in (["--isolated"], []):
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--quiet", *config, str(SHARED)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout
