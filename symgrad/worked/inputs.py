"""What `symgrad explain` is given, read and checked: parameters, examples, targets.

Parameters come from an `.npz` written by `save_params` (read by the generated module's
own bounded `load_params`) or from a YAML or JSON mapping of each parameter's name to
nested lists of its shape, so that a textbook's weights can be typed in. The mapping is
read by the spec's reader (bounded in bytes, depth and values; line numbers kept) and
every problem is reported at once, each with its file, line and key. Examples are
`--x 0.05,0.1;0.3,0.2` (examples separated by `;`), or the rows of a CSV file.
"""

from __future__ import annotations

import difflib
import math
import types
from pathlib import Path

import numpy as np

from .. import files
from ..errors import Problem, SpecError, SymgradError, echo
from ..spec.model import Loc
from ..spec.read import Node, compose, read_text  # the spec's bounded reader

MAX_EXAMPLES = 1000  # examples a worked example takes (it prints every one)
MAX_TEXT = 64 * 1024  # characters of --x / --y
MAX_CSV_BYTES = 4 * 1024 * 1024
MAX_PROBLEMS = 20  # problems reported for one parameter file


def params_from(path: Path, module: types.ModuleType) -> dict[str, np.ndarray]:
    """The parameters in `path` (.npz, .yaml, .yml or .json), checked against the
    network's names and shapes."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            return module.load_params(path)
        except FileNotFoundError:
            raise SymgradError(f"{path}: no such file (--params)") from None
        except (ValueError, OSError) as exc:
            raise SymgradError(f"{path}: {exc}") from None
    if suffix not in (".yaml", ".yml", ".json"):
        raise SymgradError(
            f"{path}: --params takes an .npz written by save_params, or a .yaml or"
            f" .json mapping of parameter names to nested lists; found {echo(suffix)}"
        )
    shown = str(path)
    text = read_text(path)
    tree, problems = compose(text, shown)
    if problems:
        raise SpecError(problems)
    assert tree is not None
    return params_from_tree(tree, module, shown)


def params_from_tree(
    tree: Node, module: types.ModuleType, shown: str
) -> dict[str, np.ndarray]:
    """The parameters of a read mapping, every problem reported at once."""
    shapes = {**module.PARAM_SHAPES, **module.BUFFER_SHAPES}
    if not isinstance(tree.value, dict):
        raise SpecError(
            [
                tree.loc.problem(
                    "expected a mapping of parameter names to nested lists",
                    f"write {', '.join(shapes)} as keys",
                )
            ]
        )
    problems: list[Problem] = []
    out: dict[str, np.ndarray] = {}
    for key, node in tree.value.items():
        if key not in shapes:
            close = difflib.get_close_matches(key, list(shapes), n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            problems.append(
                tree.key_locs.get(key, node.loc).problem(
                    f"{echo(key)} is not a parameter of this network (its parameters:"
                    f" {', '.join(shapes)})",
                    hint,
                )
            )
            continue
        value = _array(node, tuple(shapes[key]), problems)
        if value is not None:
            out[key] = value
    missing = [k for k in shapes if k not in tree.value]
    if missing:
        problems.append(
            Loc(shown, tree.loc.line).problem(
                f"missing {', '.join(missing)}",
                "give every parameter, with the shape the spec implies: "
                + ", ".join(f"{k} {_shape(shapes[k])}" for k in missing),
            )
        )
    if problems:
        raise SpecError(problems[:MAX_PROBLEMS])
    return {k: out[k] for k in shapes}


def _array(
    node: Node, shape: tuple[int, ...], problems: list[Problem]
) -> np.ndarray | None:
    """A nested list of numbers of the given shape, or None (its problems added)."""
    before = len(problems)
    values: list[float] = []

    def visit(n: Node, depth: int) -> None:
        if len(problems) - before >= 3:
            return
        if depth == len(shape):
            v = n.value
            if isinstance(v, bool) or not isinstance(v, int | float):
                problems.append(n.loc.problem(f"expected a number, found {echo(v)}"))
            elif not math.isfinite(v):
                problems.append(n.loc.problem(f"expected a finite number, found {v}"))
            else:
                values.append(float(v))
            return
        if not isinstance(n.value, list) or len(n.value) != shape[depth]:
            found = (
                f"a list of {len(n.value)}"
                if isinstance(n.value, list)
                else echo(n.value)
            )
            problems.append(
                n.loc.problem(
                    f"expected shape {_shape(shape)}: a list of {shape[depth]} here,"
                    f" found {found}",
                    _nesting_hint(shape),
                )
            )
            return
        for item in n.value:
            visit(item, depth + 1)

    visit(node, 0)
    if len(problems) > before:
        return None
    return np.array(values, dtype=np.float64).reshape(shape)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _nesting_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return (
            f"{shape[0]} rows of {shape[1]}: row i holds the weights from input i to"
            " each unit"
        )
    if len(shape) == 1:
        return f"one number per unit: {shape[0]} numbers"
    return ""


# ------------------------------------------------------------------ examples


def rows(text: str, option: str) -> list[list[float]]:
    """`0.05,0.1;0.3,0.2` -> [[0.05, 0.1], [0.3, 0.2]]: examples separated by `;`."""
    if len(text) > MAX_TEXT:
        raise SymgradError(f"{option}: longer than {MAX_TEXT} characters")
    out = []
    examples = [part for part in text.split(";")]
    if len(examples) > MAX_EXAMPLES:
        raise SymgradError(
            f"{option}: {len(examples)} examples; a worked example takes at most"
            f" {MAX_EXAMPLES}"
        )
    for n, example in enumerate(examples, 1):
        row = []
        for k, item in enumerate(example.split(","), 1):
            row.append(_number(item, f"{option}: example {n}, value {k}"))
        out.append(row)
    return out


def _number(item: str, where: str) -> float:
    try:
        v = float(item.strip())
    except ValueError:
        raise SymgradError(
            f"{where}: expected a number, found {echo(item.strip())}"
            " (separate values with ',' and examples with ';')"
        ) from None
    if not math.isfinite(v):
        raise SymgradError(f"{where}: expected a finite number, found {item.strip()}")
    return v


def examples(
    x: str | None,
    y: str | None,
    data: Path | None,
    n_in: int,
    n_out: int,
    labels: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """X (m, n_in) and Y (m, n_out), or class labels (m,) where the network takes
    them (`labels`), from --x/--y or --data."""
    if data is not None:
        if x is not None or y is not None:
            raise SymgradError("give the examples either as --x/--y or as --data")
        return _csv(data, n_in, n_out, labels)
    if x is None or y is None:
        raise SymgradError(
            "give the example: --x with its inputs and --y with its targets"
            " (or --data FILE.csv)"
        )
    xs, ys = rows(x, "--x"), rows(y, "--y")
    for n, row in enumerate(xs, 1):
        if len(row) != n_in:
            raise SymgradError(
                f"--x: example {n} has {len(row)} values; the network takes {n_in}"
            )
    if len(xs) != len(ys):
        raise SymgradError(
            f"--x gives {len(xs)} examples and --y {len(ys)}: give one target per"
            " example"
        )
    return np.array(xs), _targets(ys, n_out, labels, "--y")


def _targets(ys: list[list[float]], n_out: int, labels: bool, where: str) -> np.ndarray:
    if labels and all(len(r) == 1 for r in ys):  # class labels
        return np.array([r[0] for r in ys])
    for n, row in enumerate(ys, 1):
        if len(row) != n_out:
            raise SymgradError(
                f"{where}: example {n} has {len(row)} targets; the network has"
                f" {n_out} outputs"
            )
    return np.array(ys)


def _csv(
    path: Path, n_in: int, n_out: int, labels: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A CSV file's rows: the inputs, then the targets (or one class label)."""
    try:
        data = files.read_bounded(path, MAX_CSV_BYTES)
    except OSError as exc:
        raise SymgradError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CSV_BYTES:
        raise SymgradError(f"{path}: larger than {MAX_CSV_BYTES} bytes")
    try:
        lines = [ln for ln in data.decode("utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise SymgradError(f"{path}: not UTF-8 text") from None
    if lines and not _numeric(lines[0]):
        lines = lines[1:]  # a header
    if not lines:
        raise SymgradError(f"{path}: no rows of numbers")
    if len(lines) > MAX_EXAMPLES:
        raise SymgradError(
            f"{path}: {len(lines)} rows; a worked example takes at most {MAX_EXAMPLES}"
        )
    xs, ys = [], []
    for n, line in enumerate(lines, 1):
        cells = line.split(",")
        if len(cells) not in (n_in + n_out, n_in + 1 if labels else n_in + n_out):
            raise SymgradError(
                f"{path}: row {n} has {len(cells)} columns; expected {n_in} inputs"
                f" then {n_out} targets" + (" (or one class label)" if labels else "")
            )
        row = [
            _number(c, f"{path}: row {n}, column {k}") for k, c in enumerate(cells, 1)
        ]
        xs.append(row[:n_in])
        ys.append(row[n_in:])
    return np.array(xs), _targets(ys, n_out, labels, str(path))


def _numeric(line: str) -> bool:
    try:
        [float(c) for c in line.split(",")]
    except ValueError:
        return False
    return True
