"""The report's document model: sections of paragraphs and displayed equations.

A paragraph mixes three kinds of parts, kept apart so that each format prints each its
own way:

- prose (`str`): words written here, in ASCII (and the typographic dashes and ellipsis
  of `TYPOGRAPHY`); `P` refuses anything else, so no formula hides in a sentence;
- `Math`: a formula in both notations, LaTeX and unicode text;
- `Name` and `Code`: text that comes from the spec or a registry (an activation's title, a
  custom name, an expression, a file name), printed as given, in roman or monospace type;
  each format escapes it (the LaTeX one into ASCII).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPOGRAPHY = frozenset("—–…")  # allowed in prose besides printable ASCII


@dataclass(frozen=True)
class Math:
    """One formula in both notations: LaTeX, and unicode text for the terminal."""

    tex: str
    text: str
    inline: str = ""  # LaTeX for use inside a sentence, when it differs (no \\frac)

    @property
    def tex_inline(self) -> str:
        return self.inline or self.tex


@dataclass(frozen=True)
class Code:
    """A name or expression as written in the spec or the code (monospace)."""

    text: str


@dataclass(frozen=True)
class Name:
    """Text from the spec or a registry, in roman type: a title such as 'leaky ReLU
    (alpha=0.1)' or 'my_act (custom)'; it may hold any character."""

    text: str


Inline = str | Math | Code | Name


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Eq:
    """lhs rel steps[0] rel steps[1] ...; a note (ASCII prose or a formula) may follow."""

    lhs: Math
    steps: tuple[Math, ...] = ()
    note: str | Math = ""
    rel: Math = Math("=", "=")

    def __post_init__(self) -> None:
        if isinstance(self.note, str):
            check_prose(self.note)


@dataclass(frozen=True)
class Display:
    eqs: tuple[Eq, ...]


Block = Para | Display


@dataclass(frozen=True)
class Section:
    """A numbered section; its title is text (it may name the spec's loss), no math."""

    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Report:
    title: str
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]


def check_prose(text: str) -> str:
    """text, when it is prose: printable ASCII or TYPOGRAPHY only (else a bug here)."""
    bad = sorted({c for c in text if not (" " <= c <= "~" or c in TYPOGRAPHY)})
    if bad:
        raise ValueError(
            f"symgrad bug: prose {text!r} holds {''.join(bad)!r}; write a formula as"
            " Math and text from the spec as Name or Code"
        )
    return text


def P(*parts: Inline) -> Para:  # noqa: N802 - reads like a paragraph tag
    """A paragraph; adjacent formulas merge (in Markdown, $x$$y$ would open a block)."""
    merged: list[Inline] = []
    for part in parts:
        if isinstance(part, str):
            check_prose(part)
        if isinstance(part, Math) and merged and isinstance(merged[-1], Math):
            merged[-1] = cat(merged[-1], part)
        elif part != "":
            merged.append(part)
    return Para(tuple(merged))


def D(*eqs: Eq) -> Display:  # noqa: N802
    return Display(tuple(eqs))


def _math_or_text(part: str) -> str:
    """A str as cat sets it in LaTeX: as it is, or as \\text{} when it holds a word."""
    return rf"\text{{{part}}}" if re.search(r"[A-Za-z]{2,}", part) else part


def M(tex: str, txt: str | None = None) -> Math:  # noqa: N802
    return Math(tex, tex if txt is None else txt)


def cat(*parts: Math | str) -> Math:
    """Concatenate formulas; a str is the same in both notations (spaces, =, parentheses),
    and one with a word in it is prose, set upright in LaTeX (\\text{...}): a run of
    letters in math mode would read as a product of italic variables."""
    for p in parts:
        if isinstance(p, str) and not p.isascii():
            raise ValueError(f"symgrad bug: {p!r} is not the same in LaTeX and text")
    ms = [p if isinstance(p, Math) else Math(_math_or_text(p), p) for p in parts]
    inline = "".join(m.tex_inline for m in ms)
    tex = "".join(m.tex for m in ms)
    return Math(tex, "".join(m.text for m in ms), inline if inline != tex else "")
