"""The one walker of a plan's statements and blocks, shared by the module printers.

A printer of a target subclasses `Walker`: it names the plan's conditions in its
target's words (`CONDITIONS`) and prints each statement class with a `_print_<Class>`
method returning one line (Assign, Accumulate, Draw, Renew; a class without its own
method falls back to its base's, as sympy's printers do). The walker prints the items
as the plan gives them: a block as `if <conditions>:` its body, `else:` its otherwise
(`pass` where a branch is empty), with the block's notes beside; it regroups nothing.
Which blocks a function resolves is the caller's (plan.resolve) and which statements it
needs the plan's dead-code pass (plan.live).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..plan import Block, Condition, Item, Stmt

INDENT = "    "
COMMENT_WIDTH = 80


@dataclass
class Lines:
    """Code lines with comments; a comment already written is not written again."""

    lines: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def comment(self, text: str, indent: str = "") -> None:
        if not text or text in self.seen:
            return
        self.seen.add(text)
        for line in textwrap.wrap(text, COMMENT_WIDTH, subsequent_indent="  "):
            self.lines.append(f"{indent}# {line}")

    def add(self, *code: str) -> None:
        self.lines += code

    def body(self, indent: int = 1) -> str:
        pad = INDENT * indent
        return "\n".join(pad + line if line else "" for line in self.lines)


def equation_comment(s: Stmt) -> str:
    """A statement's equation, and its note when it has one."""
    return f"{s.equation}; {s.note}" if s.note else s.equation


def note_comment(s: Stmt) -> str:
    return s.note


class Walker:
    """Prints a plan's items into `lines`: statements through `_print_<Class>`, blocks as
    switches. `comment(s)` is what goes above a statement outside a block (the module's
    policy per function: the equation, or only the note)."""

    CONDITIONS: dict[Condition, str] = {}  # each condition in the target's words

    def __init__(
        self, lines: Lines, comment: Callable[[Stmt], str] = equation_comment
    ) -> None:
        self.lines = lines
        self.comment = comment

    def walk(self, items: Iterable[Item]) -> None:
        for it in items:
            if isinstance(it, Block):
                self.block(it)
            else:
                self.lines.comment(self.comment(it))
                self.lines.add(self.statement(it))

    def block(self, b: Block) -> None:
        """`if ...: body else: otherwise`, the notes of its statements above it."""
        for s in b.statements:
            self.lines.comment(s.note)
        cond = " and ".join(self.CONDITIONS[c] for c in b.when)
        self.lines.add(f"if {cond}:" + (f"  # {b.note}" if b.note else ""))
        self.lines.add(*self._branch(b.body))
        self.lines.add(
            "else:" + (f"  # {b.otherwise_note}" if b.otherwise_note else "")
        )
        self.lines.add(*self._branch(b.otherwise))

    def _branch(self, stmts: tuple[Stmt, ...]) -> list[str]:
        return [INDENT + self.statement(s) for s in stmts] or [INDENT + "pass"]

    def statement(self, s: Stmt) -> str:
        """The line of one statement, by its class's `_print_<Class>` method."""
        for cls in type(s).__mro__:
            method = getattr(self, f"_print_{cls.__name__}", None)
            if method is not None:
                return method(s)
        raise TypeError(f"symgrad bug: no printer for the statement {s!r}")

    def _print_Stmt(self, s: Stmt) -> str:  # noqa: N802
        raise NotImplementedError
