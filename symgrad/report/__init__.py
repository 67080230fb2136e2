"""The derivation as a document: what `symgrad latex` prints, as LaTeX, Markdown or text.

The report only lays out: every formula that depends on the spec was derived in
derive.py (the rules, and `Derivation.facts` for what only the report shows) and is
printed here with `sympy.latex` or `printers.text` (printing.py: the report's printers
for norm rules and Plan statements, with the array nodes). The batch computation is the
Plan's statements (plan_view.py), in the order the generated code runs them.

- document.py: the document model (sections, paragraphs of prose, math and names,
  displayed equations);
- notation.py: how each quantity is written (names from naming.py);
- sections/: the section builders (dense.py, norm.py, dropout.py: a layer's, named by
  its kind's entry in layer_registry; network.py: the network's) and `build`;
- latex.py, markdown.py, text.py: the three formats (tex.py: TeX escaping, ASCII only);
- notebook.py: Jupyter's display of a derivation (`symgrad.derive` returns one).
"""

from __future__ import annotations

from ..derive import Derivation
from ..plan import Plan
from ..plan import build as build_plan
from .document import Report
from .latex import latex
from .markdown import markdown
from .notebook import NotebookDerivation, displayable, latex_summary
from .sections import batch_equations, build
from .text import plain_text

FORMATS = ("latex", "markdown", "text")


def render_report(
    d: Derivation,
    fmt: str = "latex",
    *,
    standalone: bool = False,
    plan: Plan | None = None,
) -> str:
    """The derivation of d as LaTeX, Markdown or unicode text.

    Args:
        d: a Derivation (`symgrad.derive(spec)`).
        fmt: "latex", "markdown" or "text".
        standalone: LaTeX only: a complete document for pdflatex, not a fragment.
        plan: the Plan of d (`symgrad.plan.build(d)`), built here when not given: the
            report lists its statements in the order the generated code runs them.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, found {fmt!r}")
    if standalone and fmt != "latex":
        raise ValueError("standalone applies to the latex format only")
    report = build(d, plan if plan is not None else build_plan(d))
    if fmt == "latex":
        return latex(report, standalone)
    if fmt == "markdown":
        return markdown(report)
    return plain_text(report)


__all__ = [
    "FORMATS",
    "NotebookDerivation",
    "Report",
    "batch_equations",
    "build",
    "displayable",
    "latex",
    "latex_summary",
    "markdown",
    "plain_text",
    "render_report",
]
