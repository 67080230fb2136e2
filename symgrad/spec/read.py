"""Reading a spec: YAML text or a Python mapping -> a tree of nodes that remember their
file, line, column and key path.

The YAML is composed (never constructed into Python objects by tag) with a safe loader
that refuses deep nesting, bounds what aliases expand to, reads numbers as YAML 1.2 does,
and refuses control characters; a file is read up to its limit and no further. Nothing
here knows what a spec means: validate.py does.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import files
from ..errors import Problem, SpecError, echo
from .model import Loc

MAX_BYTES = files.SPEC_MAX_BYTES
MAX_DEPTH = 20
MAX_NODES = 20_000  # values after expanding aliases: an alias bomb stops here


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses deep nesting (aliases are bounded by _Reader)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    None,
                    None,
                    f"the document is nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.2 core schema numbers instead of PyYAML's YAML 1.1 ones: 1e-3 is a number (1.1
# wants 1.0e-3), 1:30 is text (1.1 reads 90, base 60), 010 is ten (1.1: eight)
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_CORE_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_CORE_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, _CORE_INT, list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT, _CORE_FLOAT, list("-+.0123456789"))


def _core_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    if not _CORE_INT.match(text):  # an explicit !!int on other text
        raise yaml.constructor.ConstructorError(
            None, None, f"{echo(text)} is not an integer", node.start_mark
        )
    return int(text, 10)


_Loader.add_constructor(_INT, _core_int)


@dataclass
class Node:
    """A YAML value with its location."""

    value: Any  # dict[str, Node] | list[Node] | scalar
    loc: Loc
    key_locs: dict[str, Loc] = field(default_factory=dict)


_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq")
}


class _Reader:
    """Turns a composed YAML node tree into _Nodes, collecting problems."""

    def __init__(self, file: str, loader: _Loader) -> None:
        self.file = file
        self.loader = loader
        self.problems: list[Problem] = []
        self.count = 0

    def loc(self, node: yaml.Node, path: str) -> Loc:
        mark = node.start_mark
        return Loc(self.file, mark.line + 1, mark.column + 1, path)

    def read(self, node: yaml.Node, path: str) -> Node:
        loc = self.loc(node, path)
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(loc)
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(
                loc.problem(
                    f"YAML tag {echo(node.tag)} is not allowed in a spec",
                    "write plain values: names, numbers, lists and mappings",
                )
            )
            return Node(None, loc)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Node] = {}
            key_locs: dict[str, Loc] = {}
            explicit, merged = self.pairs(node, path)
            for key_node, value_node in explicit + merged:
                if not isinstance(key_node, yaml.ScalarNode):
                    kind = (
                        "a list"
                        if isinstance(key_node, yaml.SequenceNode)
                        else ("a mapping")
                    )
                    self.problems.append(
                        self.loc(key_node, path).problem(
                            f"keys must be names, found {kind}"
                        )
                    )
                    continue
                key = self.scalar(key_node, path)
                if not isinstance(key, str):
                    self.problems.append(
                        self.loc(key_node, path).problem(
                            f"keys must be names, found {kind_of(key)}"
                        )
                    )
                    continue
                child = f"{path}.{key}" if path else key
                if key in out and (key_node, value_node) in merged:
                    continue  # a merged key (<<) that the mapping sets itself
                if key in out:
                    self.problems.append(
                        self.loc(key_node, child).problem(
                            f"duplicate key {key!r}", "keep one of them"
                        )
                    )
                    continue
                key_locs[key] = self.loc(key_node, child)
                out[key] = self.read(value_node, child)
            return Node(out, loc, key_locs)
        if isinstance(node, yaml.SequenceNode):
            return Node(
                [self.read(item, f"{path}[{i}]") for i, item in enumerate(node.value)],
                loc,
            )
        return Node(self.scalar(node, path), loc)

    def pairs(
        self, node: yaml.MappingNode, path: str
    ) -> tuple[list[tuple[yaml.Node, yaml.Node]], list[tuple[yaml.Node, yaml.Node]]]:
        """The mapping's own (key, value) pairs, and those its merge keys (<<: *anchor,
        <<: [*a, *b]) bring in, earlier sources first (YAML's merge rule)."""
        explicit, merged = [], []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = (
                value_node.value
                if isinstance(value_node, yaml.SequenceNode)
                else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.problems.append(
                        self.loc(source, path).problem(
                            "a merge key (<<) takes a mapping or a list of mappings",
                            "e.g. <<: *first_layer",
                        )
                    )
                    continue
                own, inherited = self.pairs(source, path)
                merged += own + inherited
        return explicit, merged

    def scalar(self, node: yaml.Node, path: str) -> Any:  # noqa: ANN401
        if not isinstance(node, yaml.ScalarNode):
            return node  # a mapping or list used as a key: reported by the caller
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(
                self.loc(node, path).problem(
                    f"unsupported value ({str(exc.problem or exc).strip()[:80]})"
                )
            )
            return None


class _TooBig(Exception):
    def __init__(self, loc: Loc) -> None:
        self.loc = loc


def read_text(path: Path) -> str:
    """The UTF-8 text of a file of at most MAX_BYTES; SpecError (located) otherwise."""
    shown = str(path)
    where = Loc(shown)
    if not path.exists():
        raise SpecError([where.problem("no such file", "check the path")])
    if path.is_dir():
        raise SpecError(
            [where.problem("is a directory, not a spec file", "name a .yaml file")]
        )
    try:
        # at most MAX_BYTES + 1: pipes and devices report size 0, /dev/zero never ends
        data = files.read_bounded(path, MAX_BYTES)
    except OSError as exc:
        raise SpecError(
            [where.problem(f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    if len(data) > MAX_BYTES:
        raise SpecError(
            [
                where.problem(
                    f"the file is larger than {MAX_BYTES} bytes, a spec's limit"
                )
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            [
                Loc(shown, line).problem(
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


# what the YAML reader refuses (its NON_PRINTABLE), found first so that the message has a
# line and column instead of a ReaderError; BOM aside, none belongs in a spec
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _control_character(text: str, file: str) -> Problem | None:
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return None
    start = found.start()
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    code = ord(found.group())
    name = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}.get(code, "control character")
    return Loc(file, line, col).problem(
        f"{name} (U+{code:04X}) is not allowed in a spec, even in a comment",
        "remove it; in a quoted string write it as an escape",
    )


def compose(text: str, file: str) -> tuple[Node | None, list[Problem]]:
    """YAML text as a tree of located Nodes (bounded in size, depth and node count),
    with the problems found; None for the tree when the text is not YAML at all."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [Loc(file).problem(f"spec is larger than {MAX_BYTES} bytes")]
    bad = _control_character(text, file)
    if bad is not None:
        return None, [bad]
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [
                Loc(file, 1, 1).problem(
                    "the spec is empty", "start from examples/xor.yaml or docs/spec.md"
                )
            ]
        reader = _Reader(file, loader)
        tree = reader.read(root, "")
        return tree, reader.problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = (exc.problem or "malformed YAML").strip()
        if exc.context:
            message = f"{exc.context.strip()}: {message}"
        hint = (
            "indent with spaces: YAML allows no tabs there" if "\\t" in message else ""
        )
        return None, [Loc(file, line, col).problem(f"malformed YAML: {message}", hint)]
    except yaml.YAMLError as exc:
        return None, [Loc(file).problem(f"malformed YAML: {str(exc)[:120]}")]
    except _TooBig as exc:
        return None, [
            Loc(file, exc.loc.line, exc.loc.col).problem(
                f"the document expands to more than {MAX_NODES} values (aliases?)",
                "a spec is small: write it out without nested aliases",
            )
        ]
    except RecursionError:
        return None, [Loc(file).problem("the document is nested too deeply")]
    finally:
        loader.dispose()


class _PythonReader:
    """Python values -> _Nodes (no line numbers: locations are key paths)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.width: int | None = None  # the input width, for residual layers
        self.count = 0

    def read(self, value: object, path: str, depth: int) -> Node:
        loc = Loc(self.file, 0, 0, path)
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(loc)
        if depth > MAX_DEPTH:
            self.problems.append(
                loc.problem(f"the spec is nested deeper than {MAX_DEPTH} levels")
            )
            return Node(None, loc)
        if isinstance(value, Mapping):
            out: dict[str, Node] = {}
            key_locs: dict[str, Loc] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    self.problems.append(
                        loc.problem(f"keys must be names, found {kind_of(key)}")
                    )
                    continue
                child = f"{path}.{key}" if path else key
                key_locs[key] = Loc(self.file, 0, 0, child)
                out[key] = self.read(item, child, depth + 1)
            return Node(out, loc, key_locs)
        if isinstance(value, list | tuple):
            return Node(
                [
                    self.read(item, f"{path}[{i}]", depth + 1)
                    for i, item in enumerate(value)
                ],
                loc,
            )
        if value is None or isinstance(value, bool | str):
            return Node(value, loc)
        if isinstance(value, numbers.Integral):
            return Node(int(value), loc)
        if isinstance(value, numbers.Real):
            return Node(float(value), loc)
        self.problems.append(
            loc.problem(
                f"unsupported value of type {type(value).__name__}",
                "use names, numbers, lists and dicts",
            )
        )
        return Node(None, loc)


def kind_of(value: object) -> str:
    """What a value read from YAML is, as a message says it was found."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {echo(value)}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, int):
        return f"the integer {value}"
    return f"a {type(value).__name__}"
