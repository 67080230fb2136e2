"""The printed derivation: exact rules in LaTeX and text, Markdown blocks, pdflatex compiles it."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import symgrad
from symgrad import layer_registry
from symgrad.derive import LayerRule
from symgrad.derive import derive as derive_alone
from symgrad.kinds.dense import Dense
from symgrad.report import build, render_report, tex
from symgrad.report.document import P, Section
from symgrad.sym.text import text

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
UNDERSCORES = """name: under_scores
input: 3
layers:
  - units: 4
    activation: {name: scaled_tanh, expr: "k_scale * tanh(z)", k_scale: 1.7159}
  - units: 2
    activation: {name: my_out_act, expr: "1 / (1 + exp(-z))"}
loss: {name: my_log_cosh, expr: "log(cosh(yhat - y))"}
optimizer: {name: momentum, learning_rate: 0.1, momentum: 0.8}
"""
LEAKY_L2 = """name: leaky_l2
input: 5
layers:
  - units: 6
    activation: {name: leaky_relu, alpha: 0.2}
  - {units: 6, activation: elu}
  - {units: 2, activation: tanh}
loss: {name: huber, delta: 0.5}
l2: 0.01
optimizer: {name: sgd, learning_rate: 0.01}
"""
ZOO = """name: zoo
input: 3
layers:
  - {units: 4, activation: softplus}
  - {units: 4, activation: silu}
  - {units: 4, activation: softsign}
  - {units: 2, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.001, beta1: 0.8}
"""
MAE = """name: mae_net
input: 2
layers:
  - {units: 3, activation: gelu}
  - {units: 1, activation: identity}
loss: mae
optimizer: {name: momentum, learning_rate: 0.01, momentum: 0.5, nesterov: true}
"""
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# every example, and specs for what examples do not show: custom names with underscores
# and in other scripts (also in the file name, with a '?'), softmax with mse (the
# Jacobian-vector path), the relu family, l2, each optimizer
SPECS = {
    **{p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.yaml"))},
    "xor_adam.yaml": XOR,
    "iris_nesterov_l2.yaml": IRIS,
    "custom_sgd.yaml": CUSTOM,
    "softmax_mse.yaml": MSE_SOFTMAX,
    "réseau_σ½?.yaml": UNICODE_NAMES,
    "under_scores.yaml": UNDERSCORES,
    "leaky_l2_sgd.yaml": LEAKY_L2,
    "zoo.yaml": ZOO,
    "mae_nesterov.yaml": MAE,
}


def derivation(
    tmp_path: Path, spec: str, name: str = "spec.yaml"
) -> symgrad.Derivation:
    path = tmp_path / name
    path.write_text(spec, encoding="utf-8")
    return symgrad.derive(str(path))


@pytest.fixture(scope="session")  # once: xdist interleaves files
def xor(tmp_path_factory) -> symgrad.Derivation:
    return derivation(tmp_path_factory.mktemp("xor"), XOR)


@pytest.fixture(scope="session")  # once: xdist interleaves files
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
    # one example: the derivative in the layer's output; a batch: the mask the
    # generated code keeps from the forward pass (the Plan's statements)
    assert "    δ2 = (δ3 W3ᵀ) ⊙ ({1/10 if a2 ≤ 0; else 1})\n" in out
    assert "    M2 = {1/10 if Z2 ≤ 0; else 1}   (leaky_relu'(Z2)," in out
    assert "    δ2 = (δ3 W3ᵀ) ⊙ M2\n" in out
    assert "    ∂L/∂W1 = Xᵀ δ1 + λ W1\n" in out
    assert "with λ = 0.0001 (biases are not decayed)." in out
    # the registry's rule as a textbook writes it (symgrad/optimizers.py's textbook)
    assert "    v ← μ·v + g   (the momentum buffer)\n" in out
    assert "    p ← p - η·(g + μ·v)   (Nesterov)\n" in out


def test_adam_update_as_torch(xor) -> None:
    out = render_report(xor, "text")
    # as the paper writes it: moments, bias corrections, then the step
    assert (
        "    m ← β₁·m + (1 - β₁)·g   (first moment)\n"
        "    v ← β₂·v + (1 - β₂)·g²   (second moment)\n"
        "    m̂ = m/(1 - β₁ᵗ)\n"
        "    v̂ = v/(1 - β₂ᵗ)\n"
        "    p ← p - η·m̂/(√v̂ + ε)\n"
    ) in out
    # then as torch.optim.Adam computes it: αₜ = η/(1 − β₁ᵗ), p ← p − αₜ m/(√v/cₜ + ε)
    assert "    αₜ = η/(1 - β₁ᵗ)\n    cₜ = √(1 - β₂ᵗ)\n" in out
    assert "    p ← p - m·αₜ/(ε + √(v)/cₜ)\n" in out
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


def test_a_layer_kind_brings_its_own_sections(iris) -> None:
    """Sections are found by the kind of layer: a new kind's entry names its builder
    and leaves the other layers' sections as they were."""

    @dataclasses.dataclass(frozen=True)
    class ProbeRule(LayerRule):
        kind: str = "probe"

    class Probe(Dense):
        name = "probe"

        def sections(self, ctx, l):  # noqa: E741
            return (Section(f"Probe layer {l} of {ctx.d.depth}", ()),)

    first = iris.layer(1)
    probe = ProbeRule(first.index, first.fan_in, first.units, first.activation)
    d = dataclasses.replace(iris, layers=(probe, *iris.layers[1:]))
    with pytest.raises(KeyError, match="no layer kind 'probe' is registered"):
        build(d)
    layer_registry.register(Probe())
    try:
        titles = [s.title for s in build(d).sections]
    finally:
        layer_registry.unregister("probe")
    assert titles[:4] == [
        "Output layer (layer 3)",
        "Bias",
        "Hidden layer 2",
        "Probe layer 1 of 3",
    ]
    assert titles[4:] == [s.title for s in build(iris).sections][4:]


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


# ------------------------------------------------------------------ math and prose apart


@pytest.fixture(scope="session")  # once: xdist interleaves files
def reports(tmp_path_factory) -> dict[str, tuple[str, dict[str, str]]]:
    """Each spec of SPECS: its input text (file and name) and its report in every format."""
    out = {}
    for name, spec in SPECS.items():
        d = derivation(tmp_path_factory.mktemp("spec"), spec, name)
        rendered = {fmt: render_report(d, fmt) for fmt in ("latex", "markdown", "text")}
        rendered["standalone"] = render_report(d, "latex", standalone=True)
        out[name] = (spec + name, rendered)
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_latex_is_ascii_and_loses_no_character(reports, name) -> None:
    source, out = reports[name]
    for fmt in ("latex", "standalone"):
        tex_out = out[fmt]
        assert tex_out.isascii(), sorted({c for c in tex_out if not c.isascii()})
        # a '?' only where the spec or its file name had one (an escaped character
        # used to become '?')
        assert tex_out.count("?") <= source.count("?")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_formulas_in_sentences_are_math(reports, name) -> None:
    """The first page's "reaches the loss through z2ⱼ and ŷⱼ only": unicode in the text
    report, MathJax in Markdown, LaTeX math in LaTeX (it was 'z2? and $\\hat{y}$?')."""
    source, out = reports[name]
    n = len(symgrad.parse_spec(SPECS[name]).layers)  # the output layer's position
    plain = " ".join(out["text"].split())
    if "softmax" in source:
        assert "through its pre-activation and then every output" in plain
        return
    assert (
        f"reaches the loss through z{n}ⱼ and ŷⱼ only (w{n}ᵢⱼ → z{n}ⱼ → ŷⱼ → ℓ)" in plain
    )
    math = rf"through $z^{{[{n}]}}_{{j}}$ and $\hat{{y}}_{{j}}$ only"
    assert math in out["markdown"] and math in out["latex"]
    # the text report is unicode: no LaTeX, the formulas in their unicode forms
    assert "\\" not in out["text"] and "$" not in out["text"]
    assert f"δ{n}ⱼ = ∂ℓ/∂ŷⱼ · ∂ŷⱼ/∂z{n}ⱼ" in out["text"]
    assert f"δ{n} = " in out["text"] and "⊙" in out["text"]


def test_names_from_the_spec_keep_their_script(reports) -> None:
    _, out = reports["réseau_σ½?.yaml"]
    for fmt in ("text", "markdown"):
        assert "σ_act" in out[fmt] and "l_ö" in out[fmt]
        assert "réseau_σ½?.yaml" in out[fmt]
    assert "The custom activation `σ_act` is" in out["markdown"]
    latex = out["latex"]
    assert r"The custom activation \texttt{\ensuremath{\sigma}\_act} is" in latex
    assert r"\operatorname{\sigma \_act}'\left(z\right)" in latex
    assert r"\texttt{l\_\"{o}}" in latex
    assert (
        r"\texttt{r\'{e}seau\_\ensuremath{\sigma}\ensuremath{\frac{1}{2}}?.yaml}"
        in latex
    )


def test_the_mse_title_formula_is_math(reports) -> None:
    """mse's registered title carries its formula in unicode: the report writes the
    name in prose and the formula, from the derived loss, as math."""
    _, out = reports["regression.yaml"]
    assert "Loss: mean squared error (ℓ = Σₖ (ŷₖ - yₖ)²/2)." in " ".join(
        out["text"].split()
    )
    assert re.search(r"^\d+\. The loss: mean squared error$", out["text"], re.M)
    assert (
        r"Loss: mean squared error ($\ell = \sum_{k} \frac{\left(\hat{y}_{k} - y_{k}"
        r"\right)^{2}}{2}$)." in out["latex"]
    )


def test_prose_refuses_formulas_in_unicode() -> None:
    with pytest.raises(ValueError, match="write a formula as Math"):
        P("reaches the loss through z2ⱼ and ŷⱼ only")
    assert P("prose — with a dash…").parts == ("prose — with a dash…",)


def test_tex_escapes_every_character_to_ascii() -> None:
    assert tex.text("a_b {50%} $x$ #1 & ~^\\") == (
        r"a\_b \{50\%\} \$x\$ \#1 \& \~{}\^{}\textbackslash{}"
    )
    assert tex.text("σ_ö Ω Α ß é ½ — 名") == (
        r"\ensuremath{\sigma}\_\"{o} \ensuremath{\Omega} A \ss{} \'{e} "
        r"\ensuremath{\frac{1}{2}} --- [U+540D]"
    )
    assert tex.identifier("σ_ö名") == r"\sigma \_\text{\"{o}}\text{[U+540D]}"


# ------------------------------------------------------------------ Python API


def test_derivation_renders_in_jupyter(xor) -> None:
    latex = xor._repr_latex_()
    assert latex.startswith("$$\n\\begin{aligned}") and latex.endswith("$$")
    assert r"\delta^{[2]} &= \frac{1}{m} \left(\hat{Y} - Y\right)" in latex
    assert xor._repr_markdown_() == render_report(xor, "markdown")


def test_the_jupyter_display_is_not_derives(xor) -> None:
    """derive.py's Derivation has no display hooks (they would import the report);
    symgrad.derive returns it with them, equal to it, with the same repr."""
    plain = derive_alone(xor.spec)
    assert not hasattr(plain, "_repr_latex_") and not hasattr(plain, "_repr_markdown_")
    assert isinstance(xor, symgrad.Derivation) and type(xor) is not type(plain)
    assert xor == plain and plain == xor and hash(xor) == hash(plain)
    assert repr(xor) == repr(plain)
    assert render_report(plain, "markdown") == xor._repr_markdown_()


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


def compile_tex(folder: Path, document: str) -> str:
    """pdflatex on a standalone document in folder (derivation.tex): asserts it compiles
    to a PDF, and returns pdflatex's log."""
    exe = pdflatex()
    tex = folder / "derivation.tex"
    tex.write_text(document, encoding="utf-8")
    result = subprocess.run(
        [exe, "-interaction=nonstopmode", "-halt-on-error", tex.name],
        cwd=folder,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=180,
        check=False,
    )
    errors = re.findall(r"^!.*$", result.stdout, flags=re.MULTILINE)
    assert result.returncode == 0, f"pdflatex failed: {errors or result.stdout[-2000:]}"
    pdf = folder / "derivation.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    return (folder / "derivation.log").read_text(errors="replace")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_standalone_document_compiles_with_pdflatex(tmp_path, name) -> None:
    d = derivation(tmp_path, SPECS[name], name)
    compile_tex(tmp_path, render_report(d, "latex", standalone=True))


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


def test_words_joined_into_a_formula_are_set_upright() -> None:
    """A word inside a formula is prose: in math mode its letters would be set as a
    product of italic variables (the report printed 'keptforthebackwardpass')."""
    from symgrad.report.document import M, cat

    joined = cat(M("x"), ", kept for later)")
    assert joined.tex == r"x\text{, kept for later)}"
    assert joined.text == "x, kept for later)"
    assert cat(M("a"), " = ", M("b")).tex == "a = b"  # no word: as it is
    latex = render_report(derive_alone("examples/iris.yaml"), "latex")
    assert r"\text{, kept for the backward pass)}" in latex
