"""Spec loading: a YAML file -> validated, frozen dataclasses that remember their lines.

The YAML is composed (never constructed into Python objects by tag) with a safe loader
that refuses aliases and deep nesting, so a hostile document cannot run code or expand
exponentially. Every problem in the file is collected and raised together as a SpecError.
"""

from __future__ import annotations

import difflib
import functools
import keyword
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import files, layer_registry, ops, optimizers
from .errors import ExpressionError, Problem, SpecError, echo, number
from .layer_registry import LayerAt, LayerKind

MAX_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_NODES = 20_000  # values after expanding aliases: an alias bomb stops here
MAX_LAYERS = 100  # generation time grows with depth (black): ~4 s here (README)
MAX_UNITS = 1_000_000
MAX_NAME = 64  # characters of a spec's name: NAME = "<name>" stays within a line


@dataclass(frozen=True)
class Loc:
    """Where a value sits in the spec file."""

    file: str
    line: int = 0
    col: int = 0
    path: str = ""

    def problem(self, message: str, hint: str = "") -> Problem:
        return Problem(self.file, self.line, self.col, self.path, message, hint)


@dataclass(frozen=True)
class OpSpec:
    """An activation or loss as the spec names it: built-in (expr None) or custom."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    expr: str | None = None
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    @property
    def custom(self) -> bool:
        return self.expr is not None

    def param(self, key: str) -> float:
        return dict(self.params)[key]


@dataclass(frozen=True)
class LayerSpec:
    """A dense layer: units and an activation; residual adds its input to its output."""

    units: int
    activation: OpSpec
    loc: Loc = field(default=Loc("<spec>"), compare=False)
    residual: bool = False

    kind = "dense"


@dataclass(frozen=True)
class NormSpec:
    """A normalization layer: a built-in norm (layernorm, rmsnorm, batchnorm) by name,
    or a custom one with its expression in x; params hold eps (and batchnorm's
    momentum), custom parameters included."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    expr: str | None = None
    affine: bool = True
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    kind = "norm"

    @property
    def custom(self) -> bool:
        return self.expr is not None

    def param(self, key: str) -> float:
        return dict(self.params)[key]


@dataclass(frozen=True)
class DropoutSpec:
    """Inverted dropout: in training, each value is kept with probability 1 − rate
    and scaled by 1/(1 − rate)."""

    rate: float
    loc: Loc = field(default=Loc("<spec>"), compare=False)

    kind = "dropout"


Layer = LayerSpec | NormSpec | DropoutSpec  # or a layer kind's own spec object


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    params: tuple[tuple[str, float | bool], ...]

    def param(self, key: str) -> float | bool:
        return dict(self.params)[key]


@dataclass(frozen=True)
class Spec:
    """A validated network spec (format v1, or v2 with layers beyond dense)."""

    name: str
    input: int
    layers: tuple[Layer, ...]  # the last is a dense layer: the output layer
    loss: OpSpec
    l2: float = 0.0
    optimizer: OptimizerSpec = OptimizerSpec("sgd", (("learning_rate", 0.01),))
    init: str = "auto"
    source: str = "<spec>"
    task: str | None = None  # what predict returns (ops.TASKS); None: derive decides
    task_loc: Loc = field(default=Loc("<spec>"), compare=False)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The input width, then each layer's output width (as its kind says: a norm
        or dropout keeps the width it is given)."""
        sizes = [self.input]
        for layer in self.layers:
            sizes.append(layer_registry.of(layer).width(layer, sizes[-1]))
        return tuple(sizes)

    @property
    def output(self) -> LayerSpec:
        """The output layer (validated to be of a kind that may end the network)."""
        return self.layers[-1]  # type: ignore[return-value]


# what names a spec in the API: the Spec, a path, YAML text or a dict (see as_spec)
SpecSource = Spec | str | os.PathLike[str] | Mapping[str, Any]


# ------------------------------------------------------------------ YAML layer


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
class _Node:
    """A YAML value with its location."""

    value: Any  # dict[str, _Node] | list[_Node] | scalar
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

    def read(self, node: yaml.Node, path: str) -> _Node:
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
            return _Node(None, loc)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, _Node] = {}
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
                            f"keys must be names, found {_kind(key)}"
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
            return _Node(out, loc, key_locs)
        if isinstance(node, yaml.SequenceNode):
            return _Node(
                [self.read(item, f"{path}[{i}]") for i, item in enumerate(node.value)],
                loc,
            )
        return _Node(self.scalar(node, path), loc)

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


def _read_text(path: Path) -> str:
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


def _compose(text: str, file: str) -> tuple[_Node | None, list[Problem]]:
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
                    "the spec is empty", "start from examples/xor.yaml or the README"
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


# ------------------------------------------------------------------ validation

TOP_KEYS = ("name", "input", "layers", "loss", "l2", "optimizer", "init", "task")


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


def _kind(value: object) -> str:
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


def _loss_fits(output: OpSpec, loss: str) -> bool:
    """Whether a built-in loss suits the output activation (see output_checks), for a
    suggestion: on a softmax, only a loss made for one."""
    opdef = ops.LOSSES.get(ops.canonical(loss))
    if opdef is None or output.custom:
        return opdef is not None
    softmax = output.name == ops.SOFTMAX
    if (opdef.output == "softmax") != softmax:
        return False
    return ops.output_gives(opdef.output, softmax, ops.unit_range(output.name))


class _Validator:
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
        self, node: _Node, allowed: tuple[str, ...], required: tuple[str, ...]
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

    def integer(self, node: _Node, low: int, high: int) -> int | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            hint = ""
            if isinstance(v, float) and v.is_integer():
                hint = f"write {int(v)}, without the decimal point"
            elif isinstance(v, float) and v == v and abs(v) < 1e15:
                hint = f"write {max(low, int(v // 1))} or {max(low, int(v // 1) + 1)}"
            self.err(
                node.loc,
                f"expected an integer from {low} to {high}, found {_kind(v)}",
                hint,
            )
            return None
        if not low <= v <= high:
            self.err(node.loc, f"expected an integer from {low} to {high}, found {v}")
            return None
        return v

    def real(self, node: _Node, low: float | None = None) -> float | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.err(node.loc, f"expected a number, found {_kind(v)}")
            return None
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            self.err(node.loc, f"expected a finite number, found {v}")
            return None
        if low is not None and v < low:
            self.err(node.loc, f"expected a number ≥ {low:g}, found {number(v)}")
            return None
        return v

    def parameter(self, node: _Node) -> float | None:
        """An activation or loss parameter: a number that generated code holds exactly
        (the bounds of a literal in a custom expression, expr.check_number)."""
        from .sym.parse import check_number  # no SymPy at import: the parser imports it

        value = self.real(node)
        if value is None:
            return None
        try:
            check_number(value)
        except ExpressionError as exc:
            self.err(node.loc, str(exc))
            return None
        return value

    def name(self, node: _Node) -> str | None:
        v = node.value
        if not isinstance(v, str):
            self.err(
                node.loc, f"name must be text, found {_kind(v)}", "e.g. name: my_net"
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

    def op(
        self,
        node: _Node,
        table: dict[str, ops.OpDef],
        kind: str,
        output: OpSpec | None = None,
    ) -> OpSpec | None:
        """An activation or loss: a name, {name, params...} or {name, expr, params...}.

        `output` is the output layer's activation, for a loss: a suggestion for a
        misspelt loss prefers one that suits it.
        """
        v = node.value
        if isinstance(v, str):
            name_node, params, expr_node = node, {}, None
        elif isinstance(v, dict):
            if "name" not in v:
                self.err(
                    node.loc,
                    f"a {kind} mapping needs a 'name'",
                    f"e.g. {{name: {kind}_name}}",
                )
                return None
            name_node = v["name"]
            expr_node = v.get("expr")
            params = {k: n for k, n in v.items() if k not in ("name", "expr")}
        else:
            self.err(
                node.loc,
                f"{kind} must be a name or a mapping, found {_kind(v)}",
                f"known: {', '.join(sorted(table))}",
            )
            return None
        name = name_node.value
        if not isinstance(name, str) or not name:
            self.err(name_node.loc, f"{kind} name must be text, found {_kind(name)}")
            return None
        if expr_node is not None:
            return self.custom_op(node, name, expr_node, params, kind)
        canon = ops.canonical(name)
        if canon not in table:
            choices = sorted(
                [*table, *(k for k, c in ops.ALIASES.items() if c in table)]
            )
            fits = functools.partial(_loss_fits, output) if output else lambda _: True
            hint = _suggest(name, choices, fits) or f"known: {', '.join(choices)}"
            self.err(name_node.loc, f"unknown {kind} {echo(name)}", hint)
            return None
        opdef = table[canon]
        values: dict[str, float] = dict(opdef.params)
        ok = True
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if key not in opdef.params:
                allowed = list(opdef.params)
                hint = _suggest(key, allowed) or (
                    f"{canon} takes: {', '.join(allowed)}"
                    if allowed
                    else f"{canon} takes none"
                )
                self.err(ploc, f"unknown parameter {key!r} for {kind} {canon!r}", hint)
                ok = False
                continue
            value = self.parameter(pnode)
            if value is None:
                ok = False
            elif (
                key in ("alpha", "delta") and value < 0 or key == "delta" and value == 0
            ):
                self.err(pnode.loc, f"{key} must be positive, found {number(value)}")
                ok = False
            else:
                values[key] = value
        if not ok:
            return None
        return OpSpec(canon, tuple(values.items()), None, node.loc)

    def custom_op(
        self,
        node: _Node,
        name: str,
        expr_node: _Node,
        params: dict[str, _Node],
        kind: str,
    ) -> OpSpec | None:
        from .sym import parse  # SymPy is only needed for custom expressions

        if not name.isidentifier():
            self.err(
                node.value["name"].loc,
                f"custom {kind} name {echo(name)} is not an identifier",
            )
            return None
        canon = ops.canonical(name)
        table = ops.ACTIVATIONS if kind == "activation" else ops.LOSSES
        if canon in table:
            self.err(
                node.value["name"].loc,
                f"{name!r} is a built-in {kind}; a custom expression needs its own name",
                f"e.g. my_{name}",
            )
            return None
        variables = ("z",) if kind == "activation" else ("yhat", "y")
        values: dict[str, float] = {}
        ok = True
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if (
                not key.isidentifier()
                or key in variables
                or key in parse.FUNCTIONS
                or key in parse.CONSTANTS
            ):
                self.err(
                    ploc, f"parameter name {key!r} is not usable", "pick another name"
                )
                ok = False
                continue
            value = self.parameter(pnode)
            ok = ok and value is not None
            if value is not None:
                values[key] = value
        text = expr_node.value
        if not isinstance(text, str):
            self.err(
                expr_node.loc, f"expr must be text, found {_kind(text)}", "quote it"
            )
            return None
        if not ok:
            return None
        symbols = {v: getattr(ops, "a" if v == "yhat" else v) for v in variables}
        try:
            parse.parse(text, symbols, {k: parse.number(v) for k, v in values.items()})
        except ExpressionError as exc:
            self.err(expr_node.loc, f"expression rejected: {exc}")
            return None
        if not self.all_used(node, text, values):
            return None
        return OpSpec(name, tuple(values.items()), text, node.loc)

    def all_used(self, node: _Node, text: str, values: dict[str, float]) -> bool:
        """Whether expr reads every named parameter: one that it never reads is most
        likely a misspelling (`alpah: 0.1`) or a forgotten edit, and is refused."""
        from .sym import parse

        read = parse.names(text)
        unused = [k for k in values if k not in read]
        for key in unused:
            self.err(
                node.key_locs.get(key, node.loc),
                f"parameter {key!r} is not used in expr {echo(text)}",
                f"use {key} in expr, or remove the key",
            )
        return not unused

    def optimizer(self, node: _Node | None) -> OptimizerSpec | None:
        if node is None:
            return OptimizerSpec(
                "sgd", tuple(optimizers.OPTIMIZERS["sgd"].defaults().items())
            )
        v = node.value
        if isinstance(v, str):
            name_node, params = node, {}
        elif isinstance(v, dict) and "name" in v:
            name_node = v["name"]
            params = {k: n for k, n in v.items() if k != "name"}
        else:
            self.err(
                node.loc,
                f"optimizer must be a name or a mapping with a name, found {_kind(v)}",
                "e.g. optimizer: {name: adam, learning_rate: 0.001}",
            )
            return None
        name = name_node.value
        if not isinstance(name, str) or name not in optimizers.OPTIMIZERS:
            hint = _suggest(name, list(optimizers.OPTIMIZERS)) or "known: " + ", ".join(
                optimizers.OPTIMIZERS
            )
            self.err(name_node.loc, f"unknown optimizer {echo(name)}", hint)
            return None
        definition = optimizers.OPTIMIZERS[name]
        values = definition.defaults()
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if key not in values:
                hint = (
                    _suggest(key, list(values)) or f"{name} takes: {', '.join(values)}"
                )
                self.err(
                    ploc, f"unknown parameter {key!r} for optimizer {name!r}", hint
                )
                continue
            if isinstance(values[key], bool):
                if not isinstance(pnode.value, bool):
                    self.err(
                        pnode.loc,
                        f"{key} must be true or false, found {_kind(pnode.value)}",
                    )
                else:
                    values[key] = pnode.value
                continue
            value = self.real(pnode, 0.0)
            if value is None:
                continue
            problem = definition.setting(key).problem(value)
            if problem:
                self.err(pnode.loc, f"{problem}, found {number(value)}")
            else:
                values[key] = value
        return OptimizerSpec(name, tuple(values.items()))

    def spec(self, root: _Node) -> Spec | None:
        if not isinstance(root.value, dict):
            self.err(
                root.loc,
                "a spec must be a mapping of keys (name, input, layers, loss),"
                f" found {_kind(root.value)}",
            )
            return None
        self.keys(root, TOP_KEYS, ("name", "input", "layers", "loss"))
        top = root.value
        name = self.name(top["name"]) if "name" in top else None
        n_in = self.integer(top["input"], 1, MAX_UNITS) if "input" in top else None
        self.width = n_in
        layers = self.layers(top["layers"]) if "layers" in top else None
        output = layers[-1].activation if layers else None  # type: ignore[union-attr]
        loss = (
            self.op(top["loss"], ops.LOSSES, "loss", output) if "loss" in top else None
        )
        l2 = self.real(top["l2"], 0.0) if "l2" in top else 0.0
        optimizer = self.optimizer(top.get("optimizer"))
        init = "auto"
        if "init" in top:
            v = top["init"].value
            if v not in ops.INITS:
                hint = _suggest(v, ops.INITS) or "known: " + ", ".join(ops.INITS)
                self.err(top["init"].loc, f"unknown init {echo(v)}", hint)
            else:
                init = v
        task_node = top.get("task")
        task = self.task(task_node) if task_node is not None else None
        if layers and loss:
            self.output_checks(layers, loss, task_node)
        if self.problems or None in (name, n_in, layers, loss, l2, optimizer):
            return None
        return Spec(  # type: ignore[arg-type] - none of them is None here
            name,
            n_in,
            layers,
            loss,
            l2,
            optimizer,
            init,
            self.file,
            task,
            task_node.loc if task_node is not None else Loc(self.file),
        )

    def layers(self, node: _Node) -> tuple[LayerSpec, ...] | None:
        if not isinstance(node.value, list):
            self.err(
                node.loc,
                f"layers must be a list, found {_kind(node.value)}",
                "each item: {units: N, activation: NAME}",
            )
            return None
        if not node.value:
            self.err(node.loc, "layers is empty; a network needs at least one layer")
            return None
        if len(node.value) > MAX_LAYERS:
            self.err(
                node.loc,
                f"at most {MAX_LAYERS} layers are supported, found {len(node.value)}",
                "generation time grows with depth: about 4 s for 100 layers",
            )
            return None
        out: list[Layer] = []
        width = self.width
        last = len(node.value) - 1
        for i, item in enumerate(node.value):
            if not isinstance(item.value, dict):
                self.err(
                    item.loc,
                    f"a layer must be a mapping, found {_kind(item.value)}",
                    "e.g. {units: 8, activation: relu}",
                )
                continue
            kind = self.layer_kind(item)
            if kind is None:
                continue
            if not kind.output and i == last:
                self.err(
                    item.loc,
                    "the last layer is the output layer: it must be dense, found"
                    f" {item.value['type'].value}",
                    "end with {units: N, activation: NAME}",
                )
                continue
            layer = kind.validate(self, item, LayerAt(i + 1, i == last, width))
            if layer is not None:
                out.append(layer)
            width = kind.item_width(item, width)  # the next layer's input, even if
            # this one failed
        return tuple(out) if len(out) == len(node.value) else None

    def layer_kind(self, item: _Node) -> LayerKind | None:
        """The layer's kind: the one its `type` names, or dense without one."""
        tnode = item.value.get("type")
        if tnode is None:
            return layer_registry.LAYER_KINDS[layer_registry.DENSE]
        name = tnode.value
        kind = layer_registry.for_type(name) if isinstance(name, str) else None
        if kind is None:
            types = layer_registry.types()
            hint = _suggest(name, types) or "known: " + ", ".join(types)
            self.err(tnode.loc, f"unknown layer type {echo(name)}", hint)
        return kind

    def flag(self, node: _Node) -> bool | None:
        if not isinstance(node.value, bool):
            self.err(node.loc, f"expected true or false, found {_kind(node.value)}")
            return None
        return node.value

    @staticmethod
    def kind(value: object) -> str:
        """What a value is, in words: 'the text \'abc\'', 'a list', ..."""
        return _kind(value)

    def output_checks(
        self, layers: tuple[Layer, ...], loss: OpSpec, task: _Node | None
    ) -> None:
        """What the loss's traits and the spec's task need of the output layer; a
        custom output's range is sampled in derive (derive._check_output_range)."""
        out = layers[-1].activation  # type: ignore[union-attr] - the last is dense
        softmax = out.name == ops.SOFTMAX and not out.custom
        unit = out.custom or ops.unit_range(out.name)
        need = "any" if loss.custom else ops.LOSSES[loss.name].output
        if not ops.output_gives(need, softmax, unit):
            self.err(loss.loc, *OUTPUT_NEEDS[need](loss.name, out.name))
        if task is not None and task.value in ops.TASKS:
            need = ops.TASK_NEEDS[task.value]
            if not ops.output_gives(need, softmax, unit):
                message, hint = OUTPUT_NEEDS[need](f"task {task.value!r}", out.name)
                self.err(task.loc, message, hint + ", or task: values")

    def task(self, node: _Node) -> str | None:
        """The spec's `task:` (what predict returns), overriding derive's decision."""
        v = node.value
        if v in ops.TASKS:
            return v
        hint = _suggest(v, ops.TASKS) or (
            "classes: predict gives class indices; binary: 0/1 per output;"
            " values: Ŷ itself"
        )
        self.err(
            node.loc,
            f"task must be one of {', '.join(ops.TASKS)}, found {_kind(v)}",
            hint,
        )
        return None


# what a loss or a task ("task 'classes'") needs of the output layer, as a message and a fix
OUTPUT_NEEDS: dict[str, Callable[[str, str], tuple[str, str]]] = {
    "softmax": lambda who, out: (
        f"{who} needs a softmax output layer, found {out!r}",
        "set the last layer's activation to softmax",
    ),
    "unit_interval": lambda who, out: (
        f"{who} needs predictions in (0, 1), found output activation {out!r}",
        "use a sigmoid output layer",
    ),
}


def load_spec(source: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file.

    Raises:
        SpecError: with every problem found, each with file:line:col and key path.
    """
    path = Path(source)
    return parse_spec(_read_text(path), str(source))


def parse_spec(text: str, file: str = "<spec>") -> Spec:
    """Validate spec text (YAML); `file` is only used in messages.

    Raises:
        SpecError: with every problem found, each with file:line:col and key path.
    """
    tree, problems = _compose(text, file)
    return _validated(tree, problems, file)


def as_spec(source: SpecSource) -> Spec:
    """A Spec from whatever names one: a Spec, a path, YAML text or a dict.

    A str is a path unless it contains a newline or a mapping's ':' (followed by a space
    or the end) and is not an existing file; then it is YAML text (``<string>`` in
    messages). So ``"spec:v2.yaml"`` is a path, ``"{name: x, ...}"`` is text. A dict
    (any Mapping) is validated like a file, with key paths in the messages and
    ``<dict>`` as the file.

    Raises:
        SpecError: with every problem found.
        TypeError: source is none of these.
    """
    if isinstance(source, Spec):
        return source
    if isinstance(source, Mapping):
        return parse_mapping(source)
    if isinstance(source, str) and _YAML_COLON.search(source) and not _is_file(source):
        return parse_spec(source, "<string>")
    if isinstance(source, str | os.PathLike):
        return load_spec(source)
    raise TypeError(
        "expected a Spec, a path, YAML text or a dict, found "
        f"{type(source).__name__}"
    )


def parse_mapping(data: Mapping[str, Any], file: str = "<dict>") -> Spec:
    """Validate a spec given as a dict (as YAML would read it); `file` names it in
    messages.

    Raises:
        SpecError: with every problem found, each with its key path.
    """
    reader = _PythonReader(file)
    try:
        tree = reader.read(data, "", 1)
    except _TooBig:
        return _validated(
            None,
            [Loc(file).problem(f"the spec has more than {MAX_NODES} values")],
            file,
        )
    return _validated(tree, reader.problems, file)


def _validated(tree: _Node | None, problems: list[Problem], file: str) -> Spec:
    if tree is None:
        raise SpecError(problems)
    validator = _Validator(file)
    validator.problems.extend(problems)
    spec = validator.spec(tree)
    if validator.problems or spec is None:
        raise SpecError(sorted(validator.problems, key=lambda p: (p.line, p.col)))
    return spec


_YAML_COLON = re.compile(r"\n|:(?:\s|$)")


def _is_file(text: str) -> bool:
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):  # too long for a path, or a NUL in it
        return False


class _PythonReader:
    """Python values -> _Nodes (no line numbers: locations are key paths)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.width: int | None = None  # the input width, for residual layers
        self.count = 0

    def read(self, value: object, path: str, depth: int) -> _Node:
        loc = Loc(self.file, 0, 0, path)
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(loc)
        if depth > MAX_DEPTH:
            self.problems.append(
                loc.problem(f"the spec is nested deeper than {MAX_DEPTH} levels")
            )
            return _Node(None, loc)
        if isinstance(value, Mapping):
            out: dict[str, _Node] = {}
            key_locs: dict[str, Loc] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    self.problems.append(
                        loc.problem(f"keys must be names, found {_kind(key)}")
                    )
                    continue
                child = f"{path}.{key}" if path else key
                key_locs[key] = Loc(self.file, 0, 0, child)
                out[key] = self.read(item, child, depth + 1)
            return _Node(out, loc, key_locs)
        if isinstance(value, list | tuple):
            return _Node(
                [
                    self.read(item, f"{path}[{i}]", depth + 1)
                    for i, item in enumerate(value)
                ],
                loc,
            )
        if value is None or isinstance(value, bool | str):
            return _Node(value, loc)
        if isinstance(value, numbers.Integral):
            return _Node(int(value), loc)
        if isinstance(value, numbers.Real):
            return _Node(float(value), loc)
        self.problems.append(
            loc.problem(
                f"unsupported value of type {type(value).__name__}",
                "use names, numbers, lists and dicts",
            )
        )
        return _Node(None, loc)
