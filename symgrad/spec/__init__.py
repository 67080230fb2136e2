"""The spec: a YAML file (or text, or a mapping) -> a validated `Spec`, every problem in
it at once, each with file:line:col and key path.

- model.py: the frozen dataclasses a validated spec is made of (no SymPy);
- read.py: YAML and Python values -> nodes that remember where they were;
- checks.py: the checks every part is read with, and their messages;
- validate.py: what a spec must hold (layers through their kinds, losses, optimizer).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .checks import MAX_LAYERS, MAX_NAME, MAX_UNITS
from .model import (
    DropoutSpec,
    Layer,
    LayerSpec,
    Loc,
    NormSpec,
    OpSpec,
    OptimizerSpec,
    ScheduleSpec,
    Spec,
    SpecSource,
)
from .read import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    _PythonReader,
    _TooBig,
    compose,
    read_text,
)
from .validate import TOP_KEYS, _validated


def load_spec(source: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file.

    Raises:
        SpecError: with every problem found, each with file:line:col and key path.
    """
    path = Path(source)
    return parse_spec(read_text(path), str(source))


def parse_spec(text: str, file: str = "<spec>") -> Spec:
    """Validate spec text (YAML); `file` is only used in messages.

    Raises:
        SpecError: with every problem found, each with file:line:col and key path.
    """
    tree, problems = compose(text, file)
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


_YAML_COLON = re.compile(r"\n|:(?:\s|$)")


def _is_file(text: str) -> bool:
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):  # too long for a path, or a NUL in it
        return False


__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_LAYERS",
    "MAX_NAME",
    "MAX_NODES",
    "MAX_UNITS",
    "TOP_KEYS",
    "DropoutSpec",
    "Layer",
    "LayerSpec",
    "Loc",
    "NormSpec",
    "OpSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "Spec",
    "SpecError",
    "SpecSource",
    "as_spec",
    "load_spec",
    "parse_mapping",
    "parse_spec",
]
