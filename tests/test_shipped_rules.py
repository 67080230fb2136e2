"""The built-in rules shipped derived with the package (symgrad/builtin_rules.pickle, made
by scripts/build_rules.py, read by symgrad/cache.py): the file is today's (its keys
name this code, and a fresh derivation gives the same table); an entry is used only
under its exact key and only from a file as trusted as the code, a damaged one means
deriving; every example's modules are the same bytes with the file and without it; and
a wheel carries it.
"""

from __future__ import annotations

import ast
import importlib
import os
import pickle
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_cache import RULES, derive

from symgrad import cache, render_xp
from symgrad.render import render

ROOT = Path(__file__).resolve().parent.parent
STALE = "symgrad/builtin_rules.pickle is stale: run python scripts/build_rules.py"
XOR = ROOT / "examples" / "xor.yaml"


def forget() -> None:
    """Empty the rules' memory caches and the shipped table's."""
    for rule in RULES:
        rule.cache_clear()
    cache.shipped_table.cache_clear()


@pytest.fixture
def fresh(monkeypatch, tmp_path: Path):
    """An empty disk cache, the cache on, the memory caches emptied before and after."""
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(cache._state, "enabled", True)
    monkeypatch.setitem(cache._state, "shipped", True)
    forget()
    yield tmp_path / "cache"
    forget()


def test_the_shipped_rules_are_keyed_by_this_code() -> None:
    """Every key names today's symgrad (its code digest), SymPy and Python: a change to
    symgrad's code without rebuilding the file fails here (the rules would be derived
    at run time, correctly but slowly)."""
    table = pickle.loads(cache.SHIPPED.read_bytes())
    assert len(table) > 40, STALE
    versions = {ast.literal_eval(key)[0] for key in table}
    assert versions == {cache._versions()}, STALE
    for key, data in table.items():
        assert cache._checked(key, data)[0], key[:200]


@pytest.mark.slow  # derives every built-in rule (~10 s)
def test_the_shipped_rules_are_what_a_fresh_derivation_gives() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_rules.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_entry_is_written_the_same_whether_its_parts_are_one_object_or_not() -> None:
    """build_rules.canonical writes every subexpression where it occurs: which equal
    subexpressions SymPy's caches made one object varies with the hash seed, and the
    file's bytes must not."""
    import sympy as sp

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        build_rules = importlib.import_module("build_rules")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    x = sp.Symbol("x")
    shared = sp.exp(x) + 1
    one = sp.Mul(shared, shared, evaluate=False)
    sp.core.cache.clear_cache()  # a new exp(x) + 1, equal, not the same object
    two = sp.Mul(shared, sp.exp(sp.Symbol("x")) + 1, evaluate=False)
    assert one.args[0] is one.args[1] and two.args[0] is not two.args[1]
    assert build_rules.canonical("k", one) == build_rules.canonical("k", two)
    assert cache._checked("k", build_rules.canonical("k", one)) == (True, one)


def refuse(monkeypatch) -> None:
    """From here on, deriving an activation or an output rule fails the test."""

    def refused(*args, **kwargs):
        raise AssertionError("derived again: the shipped rule was not used")

    monkeypatch.setattr(derive, "_activation_rule", refused)
    monkeypatch.setattr(derive, "seam_derivative", refused)


def ship(monkeypatch, path: Path, table: dict[str, bytes]) -> None:
    """A shipped file with this table, in place of the package's."""
    path.write_bytes(pickle.dumps(table))
    monkeypatch.setattr(cache, "SHIPPED", path)
    forget()


def derived_table(directory: Path) -> dict[str, bytes]:
    """The entries a derivation stored in the disk cache, by key."""
    found = {}
    for path in directory.rglob("*.pickle"):
        data = path.read_bytes()
        found[pickle.loads(data)[0]] = data
    return found


def test_a_shipped_rule_is_used_under_its_exact_key_only(
    fresh, monkeypatch, tmp_path
) -> None:
    monkeypatch.setitem(cache._state, "shipped", False)
    first = derive.derive(XOR)  # tanh, sigmoid, the loss on the sigmoid
    table = derived_table(fresh)
    assert len(table) == 3
    monkeypatch.setitem(cache._state, "shipped", True)
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path / "empty"))
    shipped = tmp_path / "rules.pickle"
    ship(monkeypatch, shipped, table)
    with monkeypatch.context() as inner:
        refuse(inner)
        again = derive.derive(XOR)
    assert again.layers == first.layers and again.output == first.output
    assert not (tmp_path / "empty").exists()  # read, not copied into the disk cache

    def derives() -> bool:
        forget()
        with monkeypatch.context() as inner:
            refuse(inner)
            try:
                derive.derive(XOR)
            except AssertionError:
                return True
        return False

    keys = sorted(table)
    # each entry under another rule's key; an entry cut short; a corrupt file; none
    others = [table[k] for k in keys[1:] + keys[:1]]
    ship(monkeypatch, shipped, dict(zip(keys, others, strict=True)))
    assert derives()
    ship(monkeypatch, shipped, {k: v[: len(v) // 2] for k, v in table.items()})
    assert derives()
    shipped.write_bytes(pickle.dumps(table)[:-20])
    assert derives()
    shipped.unlink()
    assert derives()
    # as it was: used; turned off with the cache, or alone
    ship(monkeypatch, shipped, table)
    assert not derives()
    monkeypatch.setitem(cache._state, "shipped", False)
    assert derives()
    monkeypatch.setitem(cache._state, "shipped", True)
    monkeypatch.setitem(cache._state, "enabled", False)
    assert derives()
    monkeypatch.setitem(cache._state, "enabled", True)
    if hasattr(os, "getuid"):  # a file others may write is not as trusted as the code
        os.chmod(shipped, os.stat(shipped).st_mode | stat.S_IWOTH)
        assert derives()


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.slow  # every example derived twice (~30 s)
@pytest.mark.parametrize("spec", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_the_same_with_the_shipped_rules_and_without(
    fresh, monkeypatch, spec: Path
) -> None:
    """The derived part of every target's module (black is the same function of it:
    conftest) and the summary's rules, from the shipped file and derived with no cache
    at all."""
    derived = []
    with monkeypatch.context() as inner:  # from the file: no built-in derived
        real = derive._activation_rule

        def counted(name, *args):
            derived.append(name)
            return real(name, *args)

        inner.setattr(derive, "_activation_rule", counted)
        shipped = derive.derive(spec)
        texts = [render(shipped), render(shipped, numba=True)]
        texts.append(render_xp.render(shipped))
    assert not set(derived) & set(derive.activations.ACTIVATIONS), STALE
    forget()
    monkeypatch.setitem(cache._state, "enabled", False)
    without = derive.derive(spec)
    assert [
        render(without),
        render(without, numba=True),
        render_xp.render(without),
    ] == texts
    assert without.layers == shipped.layers and without.output == shipped.output


@pytest.mark.slow  # builds a wheel (~5 s)
def test_a_wheel_carries_the_shipped_rules(tmp_path: Path) -> None:
    """`pip install .` installs the file beside the modules that read it (the wheel
    built from a copy of the sources, so that the checkout gets no build/ folder)."""
    pytest.importorskip("setuptools", reason="building a wheel needs setuptools")
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("symgrad", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("symgrad-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("symgrad/builtin_rules.pickle")
        archive.extractall(tmp_path / "installed")
    assert shipped == cache.SHIPPED.read_bytes()
    # installed, its keys are the checkout's (the same code digest): a derivation of
    # xor with an empty cache reads its rules from the file and stores none
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]);"
        "from symgrad import cache; d = importlib.import_module('symgrad.derive');"
        "d.derive(sys.argv[2]); print(cache.__file__, cache.code_digest())"
    )
    env = {**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path / "cache")}
    for name in ("PYTHONPATH", "SYMGRAD_NO_CACHE", "SYMGRAD_SHIPPED_RULES"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "installed"), str(XOR)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    where, digest = done.stdout.split()
    assert Path(where).is_relative_to(tmp_path / "installed")
    assert digest == cache.code_digest()
    assert not list((tmp_path / "cache").rglob("*.pickle")), STALE


def test_the_command_writes_the_same_bytes_with_the_shipped_rules_and_without(
    tmp_path: Path,
) -> None:
    """`symgrad generate` with an empty cache (the rules from the file) and with
    --no-cache, under other hash seeds: the same module, the same summary."""
    outputs = []
    for seed, flags in (("1", []), ("2", ["--no-cache"])):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        env["SYMGRAD_CACHE_DIR"] = str(tmp_path / f"cache{seed}")
        env.pop("SYMGRAD_NO_CACHE", None)
        env.pop("SYMGRAD_SHIPPED_RULES", None)
        done = subprocess.run(
            [sys.executable, "-m", "symgrad", "generate", "examples/xor.yaml"]
            + ["-o", str(tmp_path / seed), *flags],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        summary = done.stdout.replace(str(tmp_path / seed), "OUT")
        outputs.append((summary, (tmp_path / seed / "xor.py").read_text()))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1].replace(str(tmp_path / "1"), "OUT") == outputs[1][1].replace(
        str(tmp_path / "2"), "OUT"
    )


def test_a_cold_run_of_built_ins_imports_no_numpy(tmp_path: Path) -> None:
    """With every rule from the file, nothing is evaluated: NumPy (~0.05–0.1 s of a cold
    run) is not imported (sym/lazy.py), for dense, norm and image layers alike."""
    code = (
        "import sys; from symgrad.cli import main;"
        "codes = [main(['generate', '-q', s, '-o', 'out']) for s in sys.argv[1:]];"
        "print(codes, 'numpy' in sys.modules)"
    )
    specs = [str(ROOT / "examples" / f"{n}.yaml") for n in ("xor", "cancer_norm_drop")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env["SYMGRAD_CACHE_DIR"] = str(tmp_path / "cache")
    for name in ("SYMGRAD_NO_CACHE", "SYMGRAD_SHIPPED_RULES"):
        env.pop(name, None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *specs,
            str(ROOT / "examples" / "digits_cnn.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[0,", "0,", "0]", "False"], STALE


def test_numpy_is_imported_on_first_use() -> None:
    from symgrad.sym.lazy import LazyModule

    lazy = LazyModule("json")
    assert "dumps" not in vars(lazy)
    assert lazy.dumps([1]) == "[1]" and "dumps" in vars(lazy)  # kept
    with pytest.raises(AttributeError):
        lazy.__deepcopy__  # noqa: B018 - probed by copy, pickle: not the module's
    with pytest.raises(AttributeError):
        lazy.no_such_function  # noqa: B018
