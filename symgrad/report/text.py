"""The report as unicode text for a terminal: formulas in their text form (δ2 = (Ŷ - Y) / m),
paragraphs wrapped at TEXT_WIDTH, equations indented and never broken inside a formula.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from .document import Block, Code, Display, Inline, Math, Para, Report
from .latex import one_line

TEXT_WIDTH = 88
NBSP = "\u00a0"  # textwrap breaks at ASCII whitespace only: formulas stay whole


def inline(part: Inline) -> str:
    if isinstance(part, Math | Code):
        return part.text.replace(" ", NBSP)
    return part if isinstance(part, str) else part.text


def display(disp: Display) -> list[str]:
    rows = []
    for eq in disp.eqs:
        note = eq.note.text if isinstance(eq.note, Math) else eq.note
        note = f"   {note}" if note else ""
        if not eq.steps:
            rows.append(f"    {eq.lhs.text}{note}")
            continue
        rel = f" {eq.rel.text} "
        if one_line(eq):
            rows.append(
                "    " + eq.lhs.text + rel + rel.join(s.text for s in eq.steps) + note
            )
            continue
        rows.append(f"    {eq.lhs.text}{rel}{eq.steps[0].text}")
        pad = " " * (4 + len(eq.lhs.text))
        rows += [f"{pad}{rel}{s.text}" for s in eq.steps[1:]]
        rows[-1] += note
    return rows


def plain_text(report: Report) -> str:
    out = [report.title, "=" * len(report.title), ""]

    def blocks(items: Sequence[Block]) -> None:
        for block in items:
            if isinstance(block, Para):
                para = "".join(inline(p) for p in block.parts)
                wrapped = textwrap.wrap(para, TEXT_WIDTH, break_on_hyphens=False)
                out.extend(line.replace(NBSP, " ") for line in wrapped)
            else:
                out.extend(display(block))
            out.append("")

    blocks(report.intro)
    for i, section in enumerate(report.sections, 1):
        title = f"{i}. {section.title}"
        out += [title, "-" * len(title), ""]
        blocks(section.blocks)
    return "\n".join(out).rstrip() + "\n"
