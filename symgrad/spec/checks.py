"""The checks every part of a spec is read with: keys, integers, numbers, switches,
names, each problem one located message with a fix where one is likely ('did you mean
...?'). The spec's validator (validate.py) and every layer kind's `validate`
(layer_registry) build on these.
"""

from __future__ import annotations

import difflib
import keyword
import sys
from collections.abc import Callable

from ..errors import ExpressionError, Problem, echo, number
from .model import Loc
from .read import Node, kind_of

MAX_LAYERS = (
    100  # generation time grows with depth (black): ~4 s here (docs/command-line.md)
)
MAX_UNITS = 1_000_000
MAX_NAME = 64  # characters of a spec's name: NAME = "<name>" stays within a line


# module names that mean something beside the generated file: run on startup (site),
# collected by pytest, read by setuptools or the import system
RESERVED_MODULES = frozenset(("conftest", "sitecustomize", "usercustomize", "setup"))


def _test_module(name: str) -> bool:
    """pytest collects test_*.py and *_test.py as test files."""
    return name.startswith("test_") or name.endswith("_test") or name == "test"


# names other libraries use for a choice here, and the one they mean
SYNONYMS = {
    "xavier": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
    "glorot": "glorot_uniform",
    "he": "he_normal",
    "kaiming": "he_normal",
    "kaiming_normal": "he_normal",
    "crossentropy": "categorical_crossentropy",
    "cross_entropy": "categorical_crossentropy",
    "ce": "categorical_crossentropy",
    "bce": "binary_crossentropy",
    "l2": "mse",
    "l1": "mae",
}


def _suggest(
    word: object,
    choices: list[str] | tuple[str, ...],
    fits: Callable[[str], bool] = lambda _: True,
) -> str:
    """'did you mean X?' for a close or synonymous choice, preferring one that fits."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=5, cutoff=0.6)
    synonym = SYNONYMS.get(word.lower().replace("-", "_"))
    if synonym in choices:
        close = [synonym, *(c for c in close if c != synonym)]
    same = [c for c in choices if c.lower() == word.lower()]  # Relu: relu, not elu
    if same:
        close = [*same, *(c for c in close if c not in same)]
    if not close:
        return ""
    best = next((c for c in close if fits(c)), close[0])
    return f"did you mean {best!r}?"


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class Checker:
    """Checks a spec's tree, collecting every problem; a layer kind's `validate`
    (layer_registry) checks its layer's keys with these methods."""

    max_units = MAX_UNITS

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.width: int | None = None  # the input width, for residual layers

    def err(self, loc: Loc, message: str, hint: str = "") -> None:
        self.problems.append(loc.problem(message, hint))

    def keys(
        self, node: Node, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> None:
        for key, loc in node.key_locs.items():
            if key not in allowed:
                hint = _suggest(key, allowed) or "allowed keys: " + ", ".join(allowed)
                self.err(loc, f"unknown key {key!r}", hint)
        for key in required:
            if key not in node.value:
                self.err(
                    Loc(
                        self.file,
                        node.loc.line,
                        node.loc.col,
                        node.loc.path or "(top level)",
                    ),
                    f"missing required key {key!r}",
                )

    def integer(self, node: Node, low: int, high: int) -> int | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            hint = ""
            if isinstance(v, float) and v.is_integer():
                hint = f"write {int(v)}, without the decimal point"
            elif isinstance(v, float) and v == v and abs(v) < 1e15:
                hint = f"write {max(low, int(v // 1))} or {max(low, int(v // 1) + 1)}"
            self.err(
                node.loc,
                f"expected an integer from {low} to {high}, found {kind_of(v)}",
                hint,
            )
            return None
        if not low <= v <= high:
            self.err(node.loc, f"expected an integer from {low} to {high}, found {v}")
            return None
        return v

    def real(self, node: Node, low: float | None = None) -> float | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.err(node.loc, f"expected a number, found {kind_of(v)}")
            return None
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            self.err(node.loc, f"expected a finite number, found {v}")
            return None
        if low is not None and v < low:
            self.err(node.loc, f"expected a number ≥ {low:g}, found {number(v)}")
            return None
        return v

    def parameter(self, node: Node) -> float | None:
        """An activation or loss parameter: a number that generated code holds exactly
        (the bounds of a literal in a custom expression, expr.check_number)."""
        from ..sym.parse import (
            check_number,  # no SymPy at import: the parser imports it
        )

        value = self.real(node)
        if value is None:
            return None
        try:
            check_number(value)
        except ExpressionError as exc:
            self.err(node.loc, str(exc))
            return None
        return value

    def name(self, node: Node) -> str | None:
        v = node.value
        if not isinstance(v, str):
            self.err(
                node.loc, f"name must be text, found {kind_of(v)}", "e.g. name: my_net"
            )
            return None
        if not v.isidentifier() or not v.isascii():
            self.err(
                node.loc,
                f"name {echo(v)} is not a Python identifier (it names the module file)",
                "use letters, digits and underscores, not starting with a digit",
            )
            return None
        if keyword.iskeyword(v) or keyword.issoftkeyword(v):
            self.err(node.loc, f"name {v!r} is a Python keyword", f"e.g. {v}_net")
            return None
        if v.startswith("__") or v in RESERVED_MODULES or _test_module(v):
            self.err(
                node.loc,
                f"name {v!r} is reserved: Python, pytest or setuptools treat a module "
                f"{v}.py specially",
                f"e.g. {v.strip('_').removeprefix('test_').removesuffix('_test')}_net",
            )
            return None
        if v in sys.stdlib_module_names or v in ("numpy", "symgrad"):
            self.err(
                node.loc,
                f"name {v!r} would shadow the module {v!r} where the generated file is imported",
                f"e.g. {v}_net",
            )
            return None
        if len(v) > MAX_NAME:
            self.err(
                node.loc,
                f"name is longer than {MAX_NAME} characters, found {len(v)}",
                "the module's constants and file name repeat it: pick a shorter one",
            )
            return None
        return v

    def flag(self, node: Node) -> bool | None:
        if not isinstance(node.value, bool):
            self.err(node.loc, f"expected true or false, found {kind_of(node.value)}")
            return None
        return node.value

    @staticmethod
    def kind(value: object) -> str:
        """What a value is, in words: 'the text \'abc\'', 'a list', ..."""
        return kind_of(value)
