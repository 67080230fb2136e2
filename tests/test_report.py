"""The printed derivation: exact rules in LaTeX and text, Markdown blocks, pdflatex compiles it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import symgrad
from symgrad.printers import text
from symgrad.report import build, render_report

XOR = """name: xor
input: 2
layers:
  - {units: 8, activation: tanh}
  - {units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.05}
"""
IRIS = """name: iris_mlp
input: 4
layers:
  - {units: 16, activation: relu}
  - units: 8
    activation: {name: leaky_relu, alpha: 0.1}
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
l2: 0.0001
optimizer: {name: momentum, learning_rate: 0.05, momentum: 0.9, nesterov: true}
"""
CUSTOM = """name: custom_net
input: 2
layers:
  - units: 4
    activation: {name: my_softsign, expr: "z / (1 + abs(z))"}
  - units: 1
    activation: sigmoid
loss: {name: my_bce, expr: "-(y*log(yhat) + (1 - y)*log(1 - yhat))"}
optimizer: {name: sgd, learning_rate: 0.1}
"""
MSE_SOFTMAX = """name: jvp_net
input: 3
layers:
  - {units: 4, activation: gelu}
  - {units: 3, activation: softmax}
loss: mse
"""

UNICODE_NAMES = """name: uni
input: 2
layers:
  - units: 3
    activation: {name: σ_act, expr: "z / (1 + z**2)"}
  - {units: 1, activation: identity}
loss: {name: l_ö, expr: "(yhat - y)**2"}
"""


def derivation(tmp_path: Path, spec: str) -> symgrad.Derivation:
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return symgrad.derive(str(path))


@pytest.fixture(scope="module")
def xor(tmp_path_factory) -> symgrad.Derivation:
    return derivation(tmp_path_factory.mktemp("xor"), XOR)


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> symgrad.Derivation:
    return derivation(tmp_path_factory.mktemp("iris"), IRIS)


# ------------------------------------------------------------------ printed rules


def test_sigmoid_derivative_from_its_definition_to_a_times_one_minus_a(xor) -> None:
    assert (
        "    σ'(z) = d/dz [1/(1 + exp(-z))]\n"
        "          = exp(-z)/(1 + exp(-z))²\n"
        "          = (1 - σ(z))·σ(z)\n"
        "          = a·(1 - a)\n"
    ) in render_report(xor, "text")
    assert (
        r"\sigma'\left(z\right) &= \frac{d}{dz}\left(\frac{1}{1 + e^{- z}}\right) \\"
        "\n"
        r"&= \frac{e^{- z}}{\left(1 + e^{- z}\right)^{2}} \\"
        "\n"
        r"&= \left(1 - \sigma\left(z\right)\right) \sigma\left(z\right) \\"
        "\n"
        r"&= a \left(1 - a\right)"
        "\n"
    ) in render_report(xor, "latex")


def test_tanh_derivative_is_one_minus_a_squared(xor) -> None:
    assert "    tanh'(z) = d/dz [tanh(z)] = 1 - tanh(z)² = 1 - a²\n" in render_report(
        xor, "text"
    )
    assert (
        r"\tanh'\left(z\right) &= \frac{d}{dz}\left(\tanh{\left(z \right)}\right) = "
        r"1 - \tanh^{2}{\left(z \right)} = 1 - a^{2}" in render_report(xor, "latex")
    )
    # the hidden layer's delta uses it, in the layer's own output
    assert "    δ1 = (δ2 W2ᵀ) ⊙ (1 - A1²)\n" in render_report(xor, "text")


def test_bce_on_sigmoid_collapses_to_yhat_minus_y(xor) -> None:
    out = render_report(xor, "text")
    assert (
        "    δ2ⱼ = ∂ℓ/∂ŷⱼ · ∂ŷⱼ/∂z2ⱼ\n"
        "        = ((1 - yⱼ)/(1 - ŷⱼ) - yⱼ/ŷⱼ) · ŷⱼ·(1 - ŷⱼ)\n"
        "        = ŷⱼ - yⱼ   (collapsed)\n"
    ) in out
    assert "    δ2 = (Ŷ - Y) / m\n" in out
    tex = render_report(xor, "latex")
    assert (
        r"&= \left(\frac{1 - y_{j}}{1 - \hat{y}_{j}} - \frac{y_{j}}{\hat{y}_{j}}\right)"
        r" \cdot \hat{y}_{j} \left(1 - \hat{y}_{j}\right) \\"
        "\n"
        r"&= \hat{y}_{j} - y_{j} \qquad \text{(collapsed)}"
    ) in tex


def test_softmax_with_cross_entropy_collapses_to_yhat_minus_y(iris) -> None:
    out = render_report(iris, "text")
    assert "    ∂ŷₖ/∂z3ⱼ = -exp(z3ₖ)·exp(z3ⱼ)/S² = -ŷₖ·ŷⱼ   (k ≠ j)\n" in out
    assert (
        "    δ3ⱼ = Σₖ ∂ℓ/∂ŷₖ · ∂ŷₖ/∂z3ⱼ\n"
        "        = Σₖ (-yₖ/ŷₖ) · ŷₖ · ([k = j] - ŷⱼ)\n"
        "        = -yⱼ + ŷⱼ Σₖ yₖ\n"
        "        = ŷⱼ - yⱼ   (collapsed)\n"
    ) in out
    tex = render_report(iris, "latex")
    assert (
        r"&= - y_{j} + \hat{y}_{j} \sum_{k} y_{k} \\"
        "\n"
        r"&= \hat{y}_{j} - y_{j} \qquad \text{(collapsed)}"
    ) in tex


def test_relu_family_and_l2_and_nesterov(iris) -> None:
    out = render_report(iris, "text")
    assert "    δ2 = (δ3 W3ᵀ) ⊙ ({1/10 if A2 ≤ 0; else 1})\n" in out
    assert "    ∂L/∂W1 = Xᵀ δ1 + λ W1\n" in out
    assert "with λ = 0.0001 (biases are not decayed)." in out
    assert "    v ← μ v + g\n    p ← p - η (g + μ v)   (Nesterov)\n" in out


def test_adam_update_as_torch(xor) -> None:
    out = render_report(xor, "text")
    assert (
        "    m̂ = m / (1 - β₁ᵗ)\n    v̂ = v / (1 - β₂ᵗ)\n    p ← p - η · m̂ / (√v̂ + ε)\n"
        in out
    )
    assert "with η = 0.05, β₁ = 0.9, β₂ = 0.999, ε = 1e-08;" in out
    assert r"\epsilon = 10^{-8}" in render_report(xor, "latex")


def test_custom_expressions_are_printed(tmp_path) -> None:
    d = derivation(tmp_path, CUSTOM)
    out = render_report(d, "text")
    assert "The custom activation my_softsign is" in out
    assert "    my_softsign(z) = z/(|z| + 1)\n" in out
    assert "= {(a + 1)² if a ≤ 0; else (a - 1)²}" in out  # the left piece owns 0
    assert "The custom loss my_bce is the spec's expression" in out
    assert "-(y*log(yhat) + (1 - y)*log(1 - yhat))" in out
    assert "        = ŷⱼ - yⱼ   (collapsed)\n" in out  # same path as the built-in BCE
    tex = render_report(d, "latex")
    assert r"\operatorname{my\_softsign}'\left(z\right)" in tex
    assert r"\texttt{my\_bce}" in tex


def test_a_delta_that_does_not_collapse_keeps_its_form(tmp_path) -> None:
    d = derivation(tmp_path, MSE_SOFTMAX)
    out = render_report(d, "text")
    assert "        = hⱼ - ŷⱼ·Σₖ hₖ\n" in out
    assert "with hₖ = ŷₖ · ∂ℓ/∂ŷₖ = ŷₖ·(ŷₖ - yₖ)" in out
    assert "(collapsed)" not in out
    # GELU's derivative stays in z: said so, and no saturation section without sigmoid/tanh
    prose = " ".join(out.split())
    assert "checked out at no extra cost, so the backward pass keeps z" in prose
    assert "Saturation" not in out


# ------------------------------------------------------------------ structure


def test_sections_follow_the_seed_notes(iris, xor) -> None:
    titles = [s.title for s in build(iris).sections]
    assert titles == [
        "Output layer (layer 3)",
        "Bias",
        "Hidden layer 2",
        "Hidden layer 1",
        "Matrix form",
        "Update rule",
        "The loss: categorical cross-entropy",
        "K output units",
        "Many examples",
    ]
    assert [s.title for s in build(xor).sections][-1] == (
        "Saturation: sigmoid and tanh versus ReLU"
    )
    out = render_report(xor, "text")
    assert "    σ'(0) = 1/4\n    lim_{z→±∞} σ'(z) = 0\n" in out
    assert "    relu'(z) = {0 if z ≤ 0; else 1}\n" in out


def test_markdown_uses_dollar_blocks(xor) -> None:
    md = render_report(xor, "markdown")
    assert md.startswith("# The derivation of xor\n")
    assert "## 1. Output layer (layer 2)\n" in md
    assert "$$\n\\begin{aligned}\n" in md and "\n\\end{aligned}\n$$" in md
    for line in md.splitlines():  # $$ only alone on a line: $x$$y$ would open a block
        assert "$$" not in line or line == "$$", line
    assert sum(line == "$$" for line in md.splitlines()) % 2 == 0


def test_text_is_plain_unicode(xor) -> None:
    out = render_report(xor, "text")
    assert "\\" not in out and "$" not in out
    assert (
        max(len(line) for line in out.splitlines() if not line.startswith("    ")) <= 88
    )


def test_latex_fragment_and_document(xor) -> None:
    fragment = render_report(xor, "latex")
    assert r"\documentclass" not in fragment and r"\subsection{Bias}" in fragment
    document = render_report(xor, "latex", standalone=True)
    assert document.startswith(r"\documentclass") and document.endswith(
        "\\end{document}\n"
    )
    with pytest.raises(ValueError, match="latex format only"):
        render_report(xor, "markdown", standalone=True)
    with pytest.raises(ValueError, match="format must be one of"):
        render_report(xor, "html")


def test_naming_agrees_with_the_generated_code(xor) -> None:
    tex = render_report(xor, "latex")
    assert r"\frac{\partial L}{\partial W^{[1]}} &= X^{\mathsf{T}} \delta^{[1]}" in tex
    assert (
        r"\frac{\partial L}{\partial W^{[2]}} &= A^{[1]\mathsf{T}} \delta^{[2]}" in tex
    )
    # the docstring of the generated module uses the same text names
    out = render_report(xor, "text")
    assert "    ∂L/∂W2 = A1ᵀ δ2\n" in out and "δˡ is D{l}" in out


# ------------------------------------------------------------------ Python API


def test_derivation_renders_in_jupyter(xor) -> None:
    latex = xor._repr_latex_()
    assert latex.startswith("$$\n\\begin{aligned}") and latex.endswith("$$")
    assert r"\delta^{[2]} &= \frac{1}{m} \left(\hat{Y} - Y\right)" in latex
    assert xor._repr_markdown_() == render_report(xor, "markdown")


def test_per_layer_access(xor) -> None:
    assert text(xor.layer(1).activation.df) == "1 - a²"
    assert text(xor.layer(2).activation.df) == "a·(1 - a)"
    assert xor.layer(2).units == 1
    with pytest.raises(IndexError, match="layers are 1 to 2"):
        xor.layer(3)


# ------------------------------------------------------------------ pdflatex


TEX_INSTALL = (
    "apt-get install -y --no-install-recommends texlive-latex-base "
    "texlive-latex-recommended texlive-fonts-recommended"
)


def pdflatex() -> str:
    """pdflatex's path; without it the test skips (TeX is optional), unless
    SYMGRAD_REQUIRE_TEX is set, as .ci/run sets it: CI must run the compile test."""
    exe = shutil.which("pdflatex")
    if exe is None:
        reason = (
            "pdflatex is not installed: the LaTeX compile test needs it. Install it "
            f"with `{TEX_INSTALL}` (as .ci/run does)."
        )
        if os.environ.get("SYMGRAD_REQUIRE_TEX"):
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


@pytest.mark.parametrize(
    "spec", [XOR, IRIS, CUSTOM, MSE_SOFTMAX, UNICODE_NAMES], ids=lambda s: s[6:16]
)
def test_standalone_document_compiles_with_pdflatex(tmp_path, spec) -> None:
    exe = pdflatex()
    d = derivation(tmp_path, spec)
    tex = tmp_path / "derivation.tex"
    tex.write_text(render_report(d, "latex", standalone=True), encoding="utf-8")
    result = subprocess.run(
        [exe, "-interaction=nonstopmode", "-halt-on-error", tex.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=180,
        check=False,
    )
    errors = re.findall(r"^!.*$", result.stdout, flags=re.MULTILINE)
    assert result.returncode == 0, f"pdflatex failed: {errors or result.stdout[-2000:]}"
    pdf = tmp_path / "derivation.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")


def test_without_pdflatex_the_compile_test_skips_unless_ci_requires_it(
    monkeypatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("SYMGRAD_REQUIRE_TEX", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install .*texlive"):
        pdflatex()
    monkeypatch.setenv("SYMGRAD_REQUIRE_TEX", "1")
    with pytest.raises(pytest.fail.Exception, match="pdflatex is not installed"):
        pdflatex()
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "SYMGRAD_REQUIRE_TEX=1 python -m pytest" in ci and "texlive" in ci
