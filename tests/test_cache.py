"""The derivation cache (symgrad/cache.py): the same bytes with it, without it and with a
damaged one; a warm run derives nothing the cache holds; entries are trusted only under
their exact key, only from a directory the user alone can write; concurrent runs agree.
"""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from symgrad import cache, render_report
from symgrad.render import render

# the module (symgrad.derive, the attribute, is the function of the same name)
derive = importlib.import_module("symgrad.derive")
norm_rules = importlib.import_module("symgrad.norm_rules")
window_rules = importlib.import_module("symgrad.window_rules")
# every rule cached on disk, by its in-memory cache
RULES = (
    derive.activation_rule,
    derive.output_rule,
    norm_rules._derive,
    window_rules.window_rules,
)

ROOT = Path(__file__).resolve().parent.parent
# a built-in, a custom activation and a custom loss: every cached kind of rule
SPEC = """name: cached
input: 3
layers:
  - {units: 4, activation: {name: soft, expr: "z / (1 + abs(z))"}}
  - {units: 2, activation: sigmoid}
loss: {name: bce, expr: "-(y*log(yhat) + (1 - y)*log(1 - yhat))"}
"""


def generate(tmp_path: Path, cache_dir: Path | None, *flags: str) -> bytes:
    """The module `symgrad generate` writes in a fresh process (so that only the disk
    cache, not the process's memory, can carry derived rules from run to run)."""
    spec = tmp_path / "cached.yaml"
    spec.write_text(SPEC)
    env = dict(os.environ, SYMGRAD_SHIPPED_RULES="0")  # the disk cache alone
    env.pop("SYMGRAD_NO_CACHE", None)
    if cache_dir is None:
        env["SYMGRAD_NO_CACHE"] = "1"
    else:
        env["SYMGRAD_CACHE_DIR"] = str(cache_dir)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", "cached.yaml", "-o", "out", "-q"]
        + list(flags),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return (out / "cached.py").read_bytes()


def entries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.pickle"))


def kinds(directory: Path) -> dict[str, int]:
    """How many entries of each kind: a rule's function, black's layout, generate."""
    import ast
    import pickle

    found: dict[str, int] = {}
    for path in entries(directory):
        key = pickle.loads(path.read_bytes())[0]
        if key.startswith("('generate'"):
            kind = "generate"
        else:
            function = ast.literal_eval(key)[1]
            kind = "layout" if "layout" in function else function.rpartition(".")[2]
        found[kind] = found.get(kind, 0) + 1
    return found


@pytest.fixture
def fresh(monkeypatch, tmp_path: Path) -> Path:
    """This process's cache in an empty directory, with the memory caches emptied, and
    no shipped rules (tests/test_shipped_rules.py tests those)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(directory))
    monkeypatch.setitem(cache._state, "enabled", True)
    monkeypatch.setitem(cache._state, "shipped", False)
    for rule in RULES:
        rule.cache_clear()
    yield directory
    for rule in RULES:
        rule.cache_clear()


def derive_nothing(monkeypatch) -> None:
    """From here on, any derivation of an activation or a loss fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("derived again: the cache was not used")

    monkeypatch.setattr(derive, "_activation_rule", refuse)
    monkeypatch.setattr(derive, "_softmax_delta", refuse)
    monkeypatch.setattr(derive, "seam_derivative", refuse)


def test_same_bytes_without_the_cache_cold_and_warm(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    without = generate(tmp_path, None)
    assert not directory.exists()
    cold = generate(tmp_path, directory)
    # soft, sigmoid, the loss on the sigmoid; black's layout of each chunk of the
    # derived part; the command's whole result
    made = sorted(kinds(directory).items())
    assert made[:3] == [("activation_rule", 2), ("generate", 1), ("layout", made[2][1])]
    assert made[3:] == [("output_rule", 1)] and made[2][1] > 1
    warm = generate(tmp_path, directory)
    assert without == cold == warm
    assert generate(tmp_path, directory, "--no-cache") == without


def test_a_warm_run_derives_nothing_the_cache_holds(fresh, monkeypatch) -> None:
    first = derive.derive(SPEC)
    printed = [render_report(first, f) for f in ("text", "latex")] + [render(first)]
    for rule in (derive.activation_rule, derive.output_rule):
        rule.cache_clear()
    derive_nothing(monkeypatch)
    again = derive.derive(SPEC)  # the report's facts too (ReLU's rule, for comparison)
    assert again.layers == first.layers and again.output == first.output
    # the report prints the rules' unsimplified forms too, as they were built
    assert [render_report(again, f) for f in ("text", "latex")] + [render(again)] == (
        printed
    )


def test_damaged_or_foreign_entries_are_derived_again_and_rewritten(
    fresh, monkeypatch
) -> None:
    first = derive.derive(SPEC)
    found = entries(fresh)
    a, b, c = (p.read_bytes() for p in found)
    found[0].write_bytes(b"not a pickle")  # corrupt
    found[1].write_bytes(c)  # another rule's entry, under this rule's name
    found[2].write_bytes(c[: len(c) // 2])  # truncated
    for rule in (derive.activation_rule, derive.output_rule):
        rule.cache_clear()
    again = derive.derive(SPEC)
    assert again.layers == first.layers and again.output == first.output
    assert [p.read_bytes() for p in found] == [a, b, c]  # rewritten


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners to check")
def test_a_directory_others_can_write_is_not_read(fresh, monkeypatch) -> None:
    derive.derive(SPEC)
    for rule in (derive.activation_rule, derive.output_rule):
        rule.cache_clear()
    os.chmod(fresh, os.stat(fresh).st_mode | stat.S_IWOTH)
    derive_nothing(monkeypatch)
    with pytest.raises(AssertionError, match="derived again"):
        derive.derive(SPEC)


def test_no_cache_reads_and_writes_nothing(fresh, monkeypatch) -> None:
    monkeypatch.setitem(cache._state, "enabled", False)
    derive.derive(SPEC)
    assert not fresh.exists()


def test_the_key_names_what_the_rule_is_derived_from() -> None:
    """A registered activation's definition is in the key: a test (or a plugin) that
    registers another function under a known name does not get the old rule."""
    from symgrad.spec.model import OpSpec

    tanh = derive._activation_key(OpSpec("tanh"))
    assert "tanh" in repr(tanh) and tanh != derive._activation_key(OpSpec("sigmoid"))
    scaled = OpSpec("s", (("k", 2.0),), "tanh(k*z)")
    assert derive._activation_key(scaled) != derive._activation_key(
        OpSpec("s", (("k", 3.0),), "tanh(k*z)")
    )


def test_concurrent_runs_write_the_same_module(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    spec = tmp_path / "cached.yaml"
    spec.write_text(SPEC)
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(directory), SYMGRAD_SHIPPED_RULES="0")
    env.pop("SYMGRAD_NO_CACHE", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "symgrad", "generate", "cached.yaml"]
            + ["-o", f"out{i}", "-q"],
            cwd=tmp_path,
            env=env,
        )
        for i in range(2)
    ]
    assert [run.wait() for run in runs] == [0, 0]
    first, second = ((tmp_path / f"out{i}" / "cached.py").read_text() for i in range(2))
    assert first.replace("out0", "out1") == second
    assert not list(directory.rglob("*.tmp"))


# a norm of each kind (layernorm and batchnorm share a definition; rmsnorm, a custom norm
# with its own eps) and every window layer
NORMS = """name: normed
input: 4
layers:
  - {units: 5, activation: tanh}
  - {type: layernorm}
  - {units: 5, activation: tanh}
  - {type: batchnorm, momentum: 0.2}
  - {units: 5, activation: tanh}
  - {type: rmsnorm}
  - {type: norm, name: centred, expr: "(x - mean(x)) / sqrt(mean(x**2) + eps)", eps: 0.01}
  - {units: 2, activation: sigmoid}
loss: binary_crossentropy
"""
CONV = """name: convolved
input: [2, 6, 6]
layers:
  - {type: conv2d, filters: 3, kernel: 3, padding: 1, activation: relu}
  - {type: maxpool2d, size: 2}
  - {type: conv2d, filters: 2, kernel: 2, activation: tanh}
  - {type: avgpool2d, size: 2}
  - {type: flatten}
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
"""


def api_generate(tmp_path: Path, text: str, cache_dir: Path | None) -> bytes:
    """symgrad.generate in a fresh process (the Python API: no whole-result cache, so a
    warm run reads the rules from the disk cache)."""
    (tmp_path / "spec.yaml").write_text(text)
    env = dict(os.environ, SYMGRAD_SHIPPED_RULES="0")  # the disk cache alone
    env.pop("SYMGRAD_NO_CACHE", None)
    if cache_dir is None:
        env["SYMGRAD_NO_CACHE"] = "1"
    else:
        env["SYMGRAD_CACHE_DIR"] = str(cache_dir)
    code = "import sys, symgrad; print(symgrad.generate('spec.yaml', 'out'))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return (tmp_path / done.stdout.strip()).read_bytes()


@pytest.mark.parametrize("text", [NORMS, CONV], ids=["norms", "conv"])
def test_norm_and_window_rules_same_bytes_without_the_cache_cold_and_warm(
    tmp_path: Path, text: str
) -> None:
    directory = tmp_path / "cache"
    without = api_generate(tmp_path, text, None)
    assert not directory.exists()
    cold = api_generate(tmp_path, text, directory)
    assert entries(directory)
    warm = api_generate(tmp_path, text, directory)
    assert without == cold == warm


def refuse_norms_and_windows(monkeypatch) -> None:
    """From here on, deriving a norm's core or a window layer fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("derived again: the cache was not used")

    monkeypatch.setattr(norm_rules, "chain_rule", refuse)
    monkeypatch.setattr(window_rules, "_forward", refuse)


@pytest.mark.parametrize("text", [NORMS, CONV], ids=["norms", "conv"])
def test_a_warm_run_derives_no_norm_and_no_window_layer(
    fresh, monkeypatch, text
) -> None:
    first = derive.derive(text)
    printed = [render_report(first, f) for f in ("text", "latex")] + [render(first)]
    cores = len(entries(fresh))
    for rule in RULES:
        rule.cache_clear()
    refuse_norms_and_windows(monkeypatch)
    again = derive.derive(text)
    assert [render_report(again, f) for f in ("text", "latex")] + [render(again)] == (
        printed
    )
    assert len(entries(fresh)) == cores  # nothing new derived, nothing new written
    for rule in RULES:
        rule.cache_clear()
    monkeypatch.setitem(cache._state, "enabled", False)  # and without it: derived
    with pytest.raises(AssertionError, match="derived again"):
        derive.derive(text)


def test_a_norm_s_key_names_its_definition_parameters_and_names() -> None:
    import sympy as sp

    from symgrad.norms import NORMS as BUILT_IN

    layer = BUILT_IN["layernorm"]
    definition = layer.expression(layer.values({}))
    keys = {
        norm_rules._core_key(definition, (("eps", 1e-5),), layer.names),
        norm_rules._core_key(definition, (("eps", 1e-3),), layer.names),
        norm_rules._core_key(definition, (("eps", 1e-5),), ("m", "v")),
        norm_rules._core_key(
            definition.xreplace(
                {s: sp.Symbol(s.name) for s in definition.free_symbols}
            ),
            (("eps", 1e-5),),
            layer.names,
        ),  # the same names without assumptions: another expression
    }
    assert len(keys) == 4


def test_installed_versions_are_importlib_metadata_s(
    tmp_path: Path, monkeypatch
) -> None:
    """The versions in the keys, read from .dist-info folder names, are what
    importlib.metadata reports; a folder's name is read as the wheel layout has it,
    and a name found twice in one folder, or nowhere, is left to importlib.metadata."""
    from importlib import metadata

    for name in ("sympy", "black", "jinja2", "PyYAML", "numpy", "pytest"):
        assert cache.installed_version(name) == metadata.version(name)
    assert cache.installed_version("no-such-distribution-here") == ""
    (tmp_path / "My.Pkg-1.2rc1.dist-info").mkdir()
    (tmp_path / "twice-1.0.dist-info").mkdir()
    (tmp_path / "twice-2.0.dist-info").mkdir()
    assert cache._dist_infos(str(tmp_path)) == {"my_pkg": "1.2rc1"}
