"""Generating fast without changing a byte: the runtime appended unformatted is still
black's layout of the whole module, and the whole-result cache of `symgrad generate`
writes and prints what a run without any cache does.

(tests/test_generated.py compares every example's NumPy module with the committed one,
made by black on the whole text; tests/test_cache.py tests the rule cache.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import black
import pytest

import symgrad
from symgrad import cache, layout, render, render_xp, result_cache

# the modules' text is the subject here: black's layout included
pytestmark = pytest.mark.formatted

ROOT = Path(__file__).resolve().parent.parent
SPECS = [ROOT / "examples" / f"{n}.yaml" for n in ("xor", "digits_cnn")] + [
    ROOT / "examples" / "cancer_norm_drop.yaml",
    ROOT / "benchmarks" / "specs" / "layers.yaml",
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("module", [render, render_xp], ids=["numpy", "array-api"])
def test_the_module_is_black_s_layout_of_the_whole(spec: Path, module) -> None:
    text = module.render(symgrad.derive(spec))
    assert black.format_str(text, mode=black.Mode()) == text
    assert text.endswith("\n\n\n" + module.runtime_code() + "\n")


@pytest.mark.parametrize("module", [render, render_xp], ids=["numpy", "array-api"])
def test_the_runtime_is_black_clean(module) -> None:
    """What render appends unformatted: black, on its own, leaves it as it is; and the
    stand-in the derived part is formatted with has the runtime's syntax features."""
    runtime = module.runtime_code()
    assert black.format_str(runtime, mode=black.Mode()) == runtime + "\n"
    features = [
        black.get_features_used(black.lib2to3_parse(text))
        for text in (runtime, layout.RUNTIME_SYNTAX)
    ]
    assert features[0] == features[1], "update layout.RUNTIME_SYNTAX"


def test_black_lays_out_the_derived_part_as_in_the_whole_module() -> None:
    """A call split over lines gets a trailing comma after *args where the file's
    syntax allows it: as the runtime's f-strings do, whatever the derived part uses."""
    call = "y = f(" + ", ".join(f"argument_{i}" for i in range(12)) + ", *rest)\n"
    whole = black.format_str(call + "\n\n" + render.runtime_code(), mode=black.Mode())
    alone = black.format_str(call, mode=black.Mode())
    assert whole.startswith("y = f(\n") and "    *rest,\n)" in whole
    assert not alone.startswith(whole[: whole.index("\n\n")])  # black, on its own
    assert whole.startswith(render.formatted(call, "x.py", "a test"))


def run(cwd: Path, cache_dir: Path | None, *args: str) -> tuple[int, str, str]:
    """`symgrad generate ARGS` in a fresh process: (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("SYMGRAD_NO_CACHE", None)
    if cache_dir is None:
        env["SYMGRAD_NO_CACHE"] = "1"
    else:
        env["SYMGRAD_CACHE_DIR"] = str(cache_dir)
    done = subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def xor(tmp_path: Path) -> Path:
    (tmp_path / "xor.yaml").write_text((ROOT / "examples" / "xor.yaml").read_text())
    return tmp_path


@pytest.mark.parametrize("target", ["numpy", "array-api"])
def test_the_same_module_and_summary_without_the_cache_cold_and_warm(
    xor: Path, target: str
) -> None:
    name = {"numpy": "xor.py", "array-api": "xor_xp.py"}[target]
    outputs = []
    for cache_dir in (None, xor / "cache", xor / "cache", None):
        code, out, err = run(xor, cache_dir, "xor.yaml", "-o", "out", "-t", target)
        assert code == 0, err
        outputs.append((out, (xor / "out" / name).read_bytes()))
        (xor / "out" / name).unlink()
    assert outputs[0][0].startswith("xor: 2 → 8 (tanh) → 1 (sigmoid); 33 parameters")
    assert outputs.count(outputs[0]) == 4
    code, out, err = run(
        xor, xor / "cache", "xor.yaml", "-o", "out", "-t", target, "--no-cache"
    )
    assert code == 0 and (out, err) == (outputs[0][0], "")


def test_a_warm_run_loads_neither_sympy_nor_black(xor: Path) -> None:
    cache_dir = xor / "cache"
    assert run(xor, cache_dir, "xor.yaml", "-q")[0] == 0
    written = (xor / "generated" / "xor.py").read_bytes()
    (xor / "generated" / "xor.py").unlink()
    probe = (
        "import sys; from symgrad.cli import main; "
        "assert main(['generate', 'xor.yaml', '-q']) == 0; "
        "print(sorted({'sympy', 'black', 'jinja2', 'numpy'} & set(sys.modules)))"
    )
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache_dir))
    env.pop("SYMGRAD_NO_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=xor, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert (xor / "generated" / "xor.py").read_bytes() == written


def test_a_changed_spec_or_output_directory_is_generated_again(xor: Path) -> None:
    cache_dir = xor / "cache"
    assert run(xor, cache_dir, "xor.yaml", "-q")[0] == 0
    spec = xor / "xor.yaml"
    spec.write_text(
        spec.read_text().replace("learning_rate: 0.05", "learning_rate: 0.025")
    )
    assert run(xor, cache_dir, "xor.yaml", "-q", "-o", "other")[0] == 0
    module = (xor / "other" / "xor.py").read_text()
    assert "learning_rate=0.025" in module and "-o other" in module
    assert run(xor, None, "xor.yaml", "-q", "-o", "fresh")[0] == 0
    fresh = (xor / "fresh" / "xor.py").read_text()
    assert module == fresh.replace("-o fresh", "-o other")


def test_a_hit_still_checks_where_it_writes(xor: Path) -> None:
    cache_dir = xor / "cache"
    assert run(xor, cache_dir, "xor.yaml", "-q", "-o", "out")[0] == 0
    shutil.rmtree(xor / "out")
    (xor / "out").write_text("a file")
    code, out, err = run(xor, cache_dir, "xor.yaml", "-q", "-o", "out")
    assert (code, out) == (2, "")
    assert err == "symgrad: error: out: output directory is a file\n"


def test_the_key_names_the_code_the_libraries_and_the_command(
    xor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(xor)
    monkeypatch.setitem(cache._state, "enabled", True)
    data = result_cache.read("xor.yaml")
    assert data == (xor / "xor.yaml").read_bytes()

    def key(spec="xor.yaml", out="generated", target="numpy", text=data):
        return result_cache.key(spec, text, out, target)

    base = key()
    assert base is not None
    others = {
        key(out="other"),
        key(target="array-api"),
        key(spec=str(xor / "xor.yaml")),
        key(text=data + b"# a comment\n"),
    }
    monkeypatch.setattr(cache, "code_digest", lambda: "edited")
    others.add(key())
    monkeypatch.setattr(result_cache, "_versions", lambda: (("sympy", "0"),))
    others.add(key())
    assert len(others) == 6 and base not in others
    assert result_cache.read("/dev/null") is None  # not a regular file
    assert key(text=None) is None
    monkeypatch.setitem(cache._state, "enabled", False)
    assert key() is None and result_cache.read("xor.yaml") is None


CHUNKED = '''"""A docstring.

def not_a_definition(): a line of the docstring
"""

X = 1


def f(x):
    return x


# the comment above g goes with g
@staticmethod
def g(x):
    y = """
# not a comment"""
    return y
def h(x):  # no blank line before: stays with g
    return x
'''


def test_chunks_split_before_definitions_and_join_to_the_source() -> None:
    pieces = layout.chunks(CHUNKED)
    assert "".join(pieces) == CHUNKED
    assert [p.split("\n", 1)[0] for p in pieces] == [
        '"""A docstring.',
        "def f(x):",
        "# the comment above g goes with g",
    ]
    text = layout.formatted(CHUNKED)
    assert text == black.format_str(CHUNKED, mode=black.Mode())


def test_a_chunk_with_newer_syntax_than_the_runtime_s_is_formatted_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Parenthesized context managers (Python 3.9+) narrow the versions black allows,
    and with them its layouts: the derived part goes to black at once."""
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(cache._state, "enabled", True)
    newer = (
        "def f(a, b):\n    with (open(a) as x, open(b) as y):\n        return x, y\n"
    )
    source = CHUNKED + "\n\n" + newer
    assert layout._chunk(newer)[1] is False and layout._chunk(CHUNKED)[1] is True
    whole = black.format_str(source + "\n\n" + render.runtime_code(), mode=black.Mode())
    assert whole.startswith(layout.formatted(source) + "\n\n")
    assert layout.formatted(source) == layout._whole(source)
