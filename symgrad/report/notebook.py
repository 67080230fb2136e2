"""Jupyter's display of a derivation, kept out of derive.py (which imports no later stage).

`symgrad.derive` returns a `NotebookDerivation`: the Derivation that derive.py built, with
Jupyter's two display hooks added. Its fields, repr, equality and hash are the Derivation's.
"""

from __future__ import annotations

import dataclasses

from ..derive import Derivation
from .document import Display
from .latex import display
from .markdown import markdown
from .sections import batch_equations, build


class NotebookDerivation(Derivation):
    """A Derivation that Jupyter displays: the batch backward pass as LaTeX, or the
    whole derivation as Markdown (`symgrad latex --format markdown`)."""

    __slots__ = ()

    def _repr_latex_(self) -> str:
        """Jupyter: the batch backward pass as one LaTeX block."""
        return latex_summary(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the whole derivation, as `symgrad latex --format markdown` prints it."""
        return markdown(build(self))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Derivation):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = Derivation.__hash__


def _fields(d: Derivation) -> tuple:
    return tuple(getattr(d, f.name) for f in dataclasses.fields(Derivation))


def displayable(d: Derivation) -> NotebookDerivation:
    """d with Jupyter's display hooks (d itself when it has them)."""
    if isinstance(d, NotebookDerivation):
        return d
    return NotebookDerivation(
        **{f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    )


def latex_summary(d: Derivation) -> str:
    """The batch backward pass as one MathJax-ready `$$` block (Jupyter's LaTeX repr)."""
    return "$$\n" + "\n".join(display(Display(tuple(batch_equations(d))))) + "\n$$"
