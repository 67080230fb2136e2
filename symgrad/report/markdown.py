"""The report as Markdown with MathJax: `$...$` inline, `$$` blocks (GitHub, Jupyter).

Formulas are LaTeX, as in the LaTeX format; text (prose, and names from the spec in any
script) is written as it is, with the characters Markdown or MathJax would act on escaped.
"""

from __future__ import annotations

from .document import Code, Inline, Math, Report
from .latex import body, display


def inline(part: Inline) -> str:
    if isinstance(part, Math):
        return f"${part.tex_inline}$"
    if isinstance(part, Code):
        return f"`{part.text}`"
    text = part if isinstance(part, str) else part.text
    return text.replace("$", r"\$").replace("*", r"\*")


def markdown(report: Report) -> str:
    return f"# {report.title}\n\n" + body(
        report,
        inline,
        lambda disp: "$$\n" + "\n".join(display(disp)) + "\n$$",
        lambda i, title: f"## {i}. {title}",
    )
