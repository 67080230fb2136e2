"""Every example's derivation, read as the PDF a reader gets: it compiles, no prose is set
as math italics, no straight quotes stand in prose, and identical layers are not repeated.

The checks read the LaTeX source, so they run wherever the tests do; the compile needs
pdflatex (skipped without it, as in tests/test_report.py, unless CI requires it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_report import compile_tex

import symgrad
from symgrad.report.latex import PREAMBLE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MATH = re.compile(r"\\begin\{(align\*|aligned)\}(.*?)\\end\{\1\}|\$(.+?)\$", re.S)
UPRIGHT = re.compile(
    r"\\(text|operatorname|mathrm|texttt|mathtt|mathsf|mathbf)\{[^{}]*\}"
)
WORD = 4  # letters: a run this long in math mode is a word, not a product of symbols
OPENING_QUOTE = re.compile(r"(?:^|[\s(])'[A-Za-z][^'\n]*'|\"[^\"\n]*\"")


def typesetting_problems(latex: str) -> list[str]:
    """Words set in math italics, and straight quotes in prose, in a LaTeX report."""
    found = []
    for match in MATH.finditer(latex):
        math = match.group(2) or match.group(3)
        upright = None
        while upright != math:  # \text{...} and the like, innermost first
            upright, math = math, UPRIGHT.sub(" ", math)
        math = re.sub(r"\\(begin|end)\{[^{}]*\}", " ", math)
        math = re.sub(r"_\{[A-Za-z]+\}", " ", math)  # indices: w_{fcpq}, x_{ncij}
        math = re.sub(r"\\[A-Za-z]+", " ", math)  # commands: \frac, \delta, ...
        found += [
            f"math italics: {w}" for w in re.findall(rf"[A-Za-z]{{{WORD},}}", math)
        ]
    prose = MATH.sub("X", latex)  # "layer $l$'s" keeps its apostrophe after a formula
    found += [f"straight quotes: {q.strip()}" for q in OPENING_QUOTE.findall(prose)]
    return found


@pytest.fixture(scope="module")
def reports() -> dict[str, str]:
    """Each example's LaTeX fragment, by file name."""
    return {path.name: symgrad.render_report(str(path)) for path in EXAMPLES}


def test_the_checks_find_what_they_look_for() -> None:
    assert typesetting_problems(r"$x, kept for later)$") == [
        "math italics: kept",
        "math italics: later",
    ]
    assert typesetting_problems(r"$x\text{, kept for later)}$") == []
    assert typesetting_problems(r"$z_{nfij} = \sum_{c} w_{fcpq} x_{ncij}$") == []
    assert (
        typesetting_problems(r"\begin{align*} a &= \operatorname{relu}(z) \end{align*}")
        == []
    )
    assert typesetting_problems("see 'Many examples' below") == [
        "straight quotes: 'Many examples'"
    ]
    assert typesetting_problems("layer $l$'s output, the layer's output") == []


def test_no_example_sets_prose_as_math_or_straight_quotes(reports) -> None:
    found = {n: typesetting_problems(t) for n, t in reports.items()}
    assert {n: p for n, p in found.items() if p} == {}


def test_every_example_compiles(tmp_path: Path, reports) -> None:
    """One document holds every example's derivation (one pdflatex run)."""
    body = "\n\n".join(
        "\\section*{examples/" + name.replace("_", "\\_") + "}\n" + report
        for name, report in reports.items()
    )
    log = compile_tex(
        tmp_path, PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n"
    )
    assert "Undefined control sequence" not in log


def test_identical_layers_are_derived_once(reports) -> None:
    """deep_sigmoid_res: hidden layers 2-7 are alike residual sigmoid layers; 3-6 also
    have alike neighbours (2 follows a plain layer, 7 feeds the output layer), so 3-5
    refer to layer 6, derived in full above them."""
    text = symgrad.render_report(
        str(ROOT / "examples" / "deep_sigmoid_res.yaml"), "text"
    )
    titles = re.findall(r"^\d+\. (.*)$", text, flags=re.M)
    layers = [t for t in titles if t.startswith(("Hidden", "Layers", "Output"))]
    assert layers == [
        "Output layer (layer 8)",
        "Hidden layer 7 (residual)",
        "Hidden layer 6 (residual)",
        "Layers 3\u20135",
        "Hidden layer 2 (residual)",
        "Hidden layer 1",
    ]
    assert "Layers 3\u20135 are derived exactly as layer 6 above" in " ".join(
        text.split()
    )
