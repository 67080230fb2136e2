"""The error hierarchy: every user-facing failure of symgrad is a SymgradError.

Spec problems are data (`Problem`: file, line, column, key path, message, hint) so that
all of them can be collected and reported at once; the CLI prints each on one line.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ECHO = 40  # characters of user input echoed back in a message


def echo(value: object) -> str:
    """Repr of user input, cut so that a message never echoes unbounded text."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


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
        return f"{text} ({self.hint})" if self.hint else text


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
