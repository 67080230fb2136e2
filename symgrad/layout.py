"""Black's layout of a module's derived part, one top-level chunk at a time, cached.

The derived part (the docstring, the constants and the functions printed from the plan)
is formatted as black formats it inside the whole module, whose runtime follows it:

- Split at each top-level def or class (with the comments right above it) that follows a
  blank line; black lays out each such chunk on its own and puts two blank lines between
  top-level definitions, so the chunks' layouts, joined so, are the whole's.
- Black chooses some layouts (a trailing comma after *args in a call split over lines)
  by the Python versions the whole file's syntax allows. The runtime's syntax fixes them
  (RUNTIME_SYNTAX: a stand-in with its features, kept equal to them by
  tests/test_fast_generate.py); a chunk whose own syntax would narrow them further (a
  newer feature than the runtime's) sends the whole derived part to black at once, with
  the stand-in after it.
- Each chunk's layout is kept in the derivation cache (symgrad/cache.py: its trust rules,
  --no-cache) under the chunk's text and black's version: after a change of learning
  rate only the chunks that print it are formatted again, and where none changed black
  is not even imported.

tests/test_generated.py compares every example's module with the one black made of the
whole text; tests/test_fast_generate.py checks black(module) == module for both targets.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from . import cache

RUNTIME_SYNTAX_MARK = "# symgrad: the runtime's syntax features, for black"
RUNTIME_SYNTAX = f"""


{RUNTIME_SYNTAX_MARK}
_ = f"{{0}}"


def _(
    *args,
):
    pass
"""


def chunks(source: str) -> list[str]:
    """source split before each top-level def or class (and the comments right above
    it) that follows a blank line: the pieces, joined, are source."""
    lines = source.splitlines(keepends=True)
    body = ast.parse(source).body
    starts = []
    for before, node in zip(body, body[1:], strict=False):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        end = before.end_lineno or before.lineno  # the statement before, 1-based
        while start - 1 >= end and lines[start - 1].startswith("#"):
            start -= 1
        if start - 1 >= end and not lines[start - 1].strip():
            starts.append(start)
    bounds = [0, *starts, len(lines)]
    return ["".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def formatted(source: str) -> str:
    """source laid out as black lays it out followed by the runtime (see the module's
    docstring). Raises what black raises on invalid source."""
    pieces = chunks(source)
    keys = [
        cache.key_text("symgrad.layout.chunk", (_black_version(), c)) for c in pieces
    ]
    laid: list[Any] = []
    for key in keys:
        found, value = cache.load(key)
        laid.append(value if found and _valid(value) else None)
    for i, piece in enumerate(pieces):
        if laid[i] is None:
            laid[i] = _chunk(piece)
            cache.store(keys[i], laid[i])
    if not all(fits for _, fits in laid):
        return _whole(source)
    return "\n\n".join(text.rstrip("\n") + "\n" for text, _ in laid)


def _valid(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], bool)
    )


def _chunk(piece: str) -> tuple[str, bool]:
    """A chunk's layout with the runtime's versions, and whether its own syntax leaves
    them as they are (else the layout is not used)."""
    import black

    versions = _runtime_versions()
    own = black.detect_target_versions(black.lib2to3_parse(piece))
    text = black.format_str(piece, mode=black.Mode(target_versions=versions))
    compile(text, "<chunk>", "exec", dont_inherit=True)  # never keep a broken layout
    return text, versions <= own


def _whole(source: str) -> str:
    """source through black at once, the stand-in after it, cut off again."""
    import black

    text = black.format_str(source + RUNTIME_SYNTAX, mode=black.Mode())
    text, found, _ = text.rpartition(RUNTIME_SYNTAX_MARK)
    if not found:
        raise ValueError("black's output lost the runtime's stand-in")
    return text.rstrip("\n") + "\n"


@functools.cache
def _runtime_versions() -> set:
    """The Python versions black finds the runtime's syntax allows."""
    import black

    return black.detect_target_versions(black.lib2to3_parse(RUNTIME_SYNTAX))


@functools.cache
def _black_version() -> str:
    """black's version, from its metadata (importing black takes ~0.1 s)."""
    return cache.installed_version("black")
