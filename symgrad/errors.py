"""The error hierarchy: every user-facing failure of symgrad is a SymgradError.

Spec problems are data (`Problem`: file, line, column, key path, message, hint) so that
all of them can be collected and reported at once; the CLI prints each on one line.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

MAX_ECHO = 40  # characters of user input echoed back in a message


def printable(text: str) -> str:
    """text with every character a terminal could act on (ESC, CR, bidi overrides, ...)
    written as a Python escape, so a message shows user input and cannot drive the
    terminal."""
    if text.isprintable():
        return text
    return "".join(_escape(c) if _is_control(c) else c for c in text)


def _is_control(c: str) -> bool:
    # control, format (bidi overrides), unassigned, private use, line/para separators;
    # not spaces such as NBSP, which show as spaces
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def echo(value: object) -> str:
    """Repr of user input, escaped and cut so that a message never echoes raw or
    unbounded text."""
    text = printable(repr(value))
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def number(value: float) -> str:
    """A number as a message shows it: short (%g) where that is exact, else every
    digit, so that a value just out of range is never shown as the bound it broke
    (momentum 1.0000001 is not "found 1")."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where."""

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    path: str  # key path, e.g. "layers[1].activation"
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}" if self.col else f":{self.line}"
        text = (
            f"{where}: {self.path}: {self.message}"
            if self.path
            else f"{where}: {self.message}"
        )
        return printable(f"{text} ({self.hint})" if self.hint else text)


class SymgradError(Exception):
    """Base class of errors that are the user's to fix; the CLI prints them, no traceback."""


class SpecError(SymgradError):
    """A spec that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ExpressionError(SymgradError):
    """A custom expression that the safe parser rejects (no location: the caller adds it)."""


class DerivationError(SymgradError):
    """A spec that parses but cannot be derived (e.g. a non-differentiable expression)."""
