"""The pipeline runs one way: each stage imports only the stages before it.

Spec -> Derivation -> (Plan) -> report / render -> check -> cli. derive.py in particular
imports nothing of the report, render, check or the CLI (the Jupyter display lives in
report/notebook.py), and the report derives nothing: it prints what derive.py derived.
Imports are read two ways: from the source with `ast` (lazy imports inside functions
included), and by importing each module in a fresh interpreter and listing what it loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "symgrad"

# the stage of every module and subpackage of symgrad (the second part of its dotted name:
# symgrad.sym.parse is in "sym"); a module may import those of its own stage or earlier
# ones, and a module of no stage here fails test_every_module_has_a_stage
STAGES = {
    "version": 0,
    "errors": 0,
    "naming": 0,
    "files": 0,
    "cache": 0,  # the derivation cache: stores what derive.py derives, knows none of it
    "result_cache": 0,  # generate's whole results, in the cache: knows none of them
    "layout": 0,  # black's layout of a derived part, cached: knows no stage
    "layer_registry": 0,  # the table of layer kinds: below every stage
    "runtime_shared": 0,  # the runtimes are standalone: copied into generated modules
    "runtime": 0,
    "runtime_xp": 0,
    "sym": 1,  # the parser, stable functions, array nodes, code and text printers, cost
    "activations": 2,
    "losses": 2,
    "optimizers": 2,
    "schedules": 2,  # the learning-rate schedules, beside the optimizers
    "norms": 2,
    "spec": 3,
    "stability": 3,
    "norm_rules": 4,
    "window_rules": 4,  # the index sums of conv2d and the poolings, differentiated
    "derive": 5,
    "plan": 6,
    "printers": 7,
    "report": 7,
    "render": 8,
    "render_xp": 9,
    "kinds": 9,  # each built-in layer kind, whole: spec, derive, plan and report parts
    "check": 10,
    "plot": 10,
    "worked": 10,  # the worked example (symgrad explain): the plan evaluated, written out
    "cli": 11,
    "__main__": 12,
}
AFTER_DERIVE = {s for s, n in STAGES.items() if n > STAGES["derive"]}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (the facade `symgrad` left out)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name != "symgrad":
            found[name] = path
    return found


def stage(module: str) -> str:
    """symgrad.report.sections -> report."""
    return module.split(".")[1]


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that the module imports anywhere in its source (the facade
    `symgrad` left out: it re-exports, as `from .. import __version__` reads it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from . import tex` imports a module; `from .x import y`, module x
            targets = [f"{prefix}.{a.name}" for a in node.names]
            targets = [t if t in known else prefix for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]  # symgrad.derive.Derivation
            if target in known and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {n: imports(n, p, set(found)) for n, p in found.items()}


def test_every_module_has_a_stage() -> None:
    unknown = sorted({stage(m) for m in modules()} - set(STAGES))
    assert not unknown, f"give these a stage in STAGES: {unknown}"


def test_derive_imports_no_later_stage() -> None:
    deps = {stage(m) for m in graph()["symgrad.derive"]}
    assert not deps & AFTER_DERIVE, deps & AFTER_DERIVE


def test_each_stage_imports_only_earlier_stages() -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, deps in graph().items()
        for dep in deps
        if STAGES[stage(dep)] > STAGES[stage(name)]
    ]
    assert not wrong


def test_no_import_cycle() -> None:
    deps = graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(deps[node]):
            visit(dep, [*path, node])
        done.add(node)

    for node in sorted(deps):
        visit(node, [])


LOADED = """
import importlib, json, sys, types
root, names = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name in names:
    for key in [k for k in sys.modules if k == "symgrad" or k.startswith("symgrad.")]:
        del sys.modules[key]
    facade = types.ModuleType("symgrad")  # the package without its __init__'s imports
    facade.__path__ = [root]
    facade.__version__ = "0"
    sys.modules["symgrad"] = facade
    importlib.import_module(name)
    out[name] = sorted(k for k in sys.modules if k.startswith("symgrad."))
print(json.dumps(out))
"""


@pytest.fixture(scope="session")  # once: xdist interleaves files
def loaded() -> dict[str, list[str]]:
    """What importing each module loads, in a fresh interpreter (symgrad's modules are
    dropped from sys.modules before each, and the package's facade is not run)."""
    names = sorted(n for n in modules() if n != "symgrad.__main__")  # it runs the CLI
    result = subprocess.run(
        [sys.executable, "-c", LOADED, str(PACKAGE), json.dumps(names)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_importing_derive_loads_no_later_stage(loaded) -> None:
    stages = {stage(m) for m in loaded["symgrad.derive"]}
    assert "derive" in stages and not stages & AFTER_DERIVE, stages


def test_importing_a_module_loads_no_later_stage(loaded) -> None:
    wrong = [
        f"importing {name} loads {dep}"
        for name, deps in loaded.items()
        for dep in deps
        if STAGES[stage(dep)] > STAGES[stage(name)]
    ]
    assert not wrong


# ------------------------------------------------------------------ the report lays out

# SymPy routines and expression methods that compute a new expression
DERIVING = {
    "diff",
    "limit",
    "simplify",
    "subs",
    "xreplace",
    "doit",
    "together",
    "cancel",
    "factor",
    "expand",
    "expand_log",
    "rewrite",
    "series",
    "integrate",
    "solve",
    "nsimplify",
    "trigsimp",
    "powsimp",
    "apart",
    "evalf",
    "tidy",
}
SYMPY_PRINTING = {"latex", "Float"}  # sp.Float: a hyperparameter, to print it
# names the report imports from sympy itself: types it tests for, a symbol to print a
# name, and Mul, with which report/printing.py groups a product's factors to print them
SYMPY_IMPORTS = {"Derivative", "Mul", "Symbol"}
# what the report may take from norm_rules.py: the printer of a rule and
# the cost measure the printers order terms by; never norm_rule or the algebra
REDUCTIONS_PRINTING = {"text", "cost"}


def test_the_report_calls_nothing_that_derives() -> None:
    found = []
    files = sorted((PACKAGE / "report").rglob("*.py"))
    assert len(files) > 3  # the report package
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                attr, owner = node.func.attr, node.func.value
                if attr in DERIVING:
                    found.append(f"{where}: .{attr}()")
                if isinstance(owner, ast.Name) and owner.id in ("sp", "sympy"):
                    if attr not in SYMPY_PRINTING:
                        found.append(f"{where}: {owner.id}.{attr}()")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in DERIVING:
                    found.append(f"{where}: {node.func.id}()")
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                "derive"
            ):
                # types and constants only: no function of derive.py runs in the report
                calls = [a.name for a in node.names if not a.name[:1].isupper()]
                if calls:
                    found.append(f"{where}: imports {calls} from derive")
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                "norm_rules"
            ):
                calls = [
                    a.name
                    for a in node.names
                    if not a.name[:1].isupper() and a.name not in REDUCTIONS_PRINTING
                ]
                if calls:
                    found.append(f"{where}: imports {calls} from norm_rules")
            if isinstance(node, ast.ImportFrom) and node.module == "sympy":
                extra = [a.name for a in node.names if a.name not in SYMPY_IMPORTS]
                if extra:
                    found.append(f"{where}: imports {extra} from sympy")
    assert not found


# the calculus a plan or a printer must not do: folding, regrouping and rewriting are
# decided in the derivation (derive.py, norm_rules.py, optimizers.py) and handed on
CALCULUS = {
    "cancel",
    "expand",
    "collect",
    "simplify",
    "factor",
    "piecewise_fold",
    "equals",
    "together",
}


def calculus_calls(source: str) -> list[str]:
    """Where source calls one of CALCULUS, as a function or a method: 'line: name'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id if isinstance(func, ast.Name) else ""
        )
        if name in CALCULUS:
            found.append(f"{node.lineno}: {name}")
    return found


def test_calculus_calls_are_found() -> None:
    # the scan itself: each spelling is caught, and what only prints is not
    source = (
        "import sympy as sp\n"
        "from sympy import cancel\n"
        "a = sp.expand(x)\n"
        "b = cancel(x)\n"
        "c = x.equals(y)\n"
        "d = sp.collect(sp.piecewise_fold(x), y)\n"
        "e = x.xreplace({})\n"
        "f = sp.Mul(x, y, evaluate=False)\n"
    )
    assert calculus_calls(source) == [
        "3: expand",
        "4: cancel",
        "5: equals",
        "6: collect",
        "6: piecewise_fold",
    ]


def test_the_plan_printers_and_kinds_do_no_calculus() -> None:
    files = [PACKAGE / "plan.py"]
    files += sorted((PACKAGE / "printers").rglob("*.py"))
    files += sorted((PACKAGE / "kinds").rglob("*.py"))
    assert len(files) > 6
    found = [
        f"{path.relative_to(PACKAGE)}:{where}"
        for path in files
        for where in calculus_calls(path.read_text(encoding="utf-8"))
    ]
    assert not found, found


# what a printer must not do to the plan's expressions: it prints them as they are
# (issue 18). Forms (ReLU as max(Z, 0), leaky ReLU as Z times a piecewise constant) are
# decided where the statement is made and recorded in the plan. What printers do
# legitimately stays allowed: substituting the plan's bindings and the in-place homes
# (xreplace with a mapping the plan gives, or a dict of names), str.replace on text, and
# splitting a product or power into the operands of ufunc calls (sp.Mul, sp.Pow).
BUILT = {"Piecewise", "Max", "Min"}  # nodes a printer would make of the plan's own
REWRITING = {"subs", "rewrite", "as_coeff_Mul", "as_coeff_Add", "as_independent"}


def rewriting_calls(source: str) -> list[str]:
    """Where source builds a piecewise or max/min, rewrites an expression or a
    statement's expression: 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id if isinstance(func, ast.Name) else ""
        )
        where = f"{node.lineno}: {name}"
        if name in BUILT or name in REWRITING:
            found.append(where)
        elif name == "replace" and isinstance(func, ast.Attribute):
            first = node.args[0] if node.args else None
            text = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if not text:  # expr.replace(query, value), not str.replace("a", "b")
                found.append(where)
        elif name == "xreplace" and node.args:
            mapping = node.args[0]
            names = isinstance(mapping, ast.Name | ast.Attribute) or (
                isinstance(mapping, ast.Dict)
                and all(isinstance(v, ast.Name) for v in mapping.values)
            )
            if not names:  # a node of the expression put in the place of another
                found.append(where)
        if any(k.arg == "expr" for k in node.keywords):  # replace(s, expr=...)
            found.append(f"{node.lineno}: {name}(expr=)")
    return found


def test_rewriting_calls_are_found() -> None:
    # the scan itself: the two rewrites issue 18 moved into the plan are caught, and
    # what only prints is not
    source = (
        "import sympy as sp\n"
        "a = sp.Mul(u, sp.Piecewise(*pieces), evaluate=False)\n"  # _common_factor
        "b = value.as_coeff_Mul()\n"
        "s = replace(s, expr=sp.Max(z_, sp.S.Zero))\n"  # _relu_forms
        "c = e.replace(lambda n: n.is_Pow, lambda n: n.base)\n"
        "d = e.xreplace({m: sp.Max(z, 0)})\n"
        "e = e.subs(z, 0) + e.rewrite(sp.Piecewise)\n"
        "f = s.expr.xreplace(bind).xreplace({p: ps, g: gs})\n"
        "g = text(e).replace(' - ', ' − ')\n"
        "h = sp.Pow(f.base, -f.exp)\n"
    )
    assert sorted(rewriting_calls(source)) == [
        "2: Piecewise",
        "3: as_coeff_Mul",
        "4: Max",
        "4: replace(expr=)",
        "5: replace",
        "6: Max",
        "6: xreplace",
        "7: rewrite",
        "7: subs",
    ]


def test_the_printers_rewrite_nothing() -> None:
    files = sorted((PACKAGE / "printers").rglob("*.py"))
    assert len(files) > 3
    found = [
        f"{path.relative_to(PACKAGE)}:{where}"
        for path in files
        for where in rewriting_calls(path.read_text(encoding="utf-8"))
    ]
    assert not found, found
