"""The report of networks with layers beyond dense: norms, dropout, residual connections.

Each new layer kind is derived in its own section from the Derivation (a norm from its
NormRule: the forward statements, the steps of the chain rule through the reductions, the
simplified rule) and its batch computation is the Plan's statements, in the order the
generated code runs them. Checked here: every format renders and the standalone LaTeX
compiles; the printed rules are the derived ones (the text as reductions.text writes the
rule, the layernorm rule against the textbook formula built here); the batch section
follows the plan it is given; the Jupyter displays work for these networks.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from test_report import compile_tex

import symgrad
from symgrad import plan as plan_mod
from symgrad.derive import DropoutRule, NormLayerRule
from symgrad.norm_rules import GAMMA, XHAT, G, H
from symgrad.norm_rules import text as rule_text
from symgrad.report import build, plain_text, render_report
from symgrad.report.printing import Latex, Text
from symgrad.sym.arrays import (
    ColMean,
    ColSum,
    GroupMean,
    GroupSum,
    MatProduct,
    RowMax,
    RowMean,
    Total,
    Transposed,
)

V2 = """name: resnet
input: 8
layers:
  - {units: 16, activation: relu}
  - {type: layernorm}
  - {type: dropout, rate: 0.1}
  - {units: 16, activation: relu, residual: true}
  - {type: batchnorm, momentum: 0.1}
  - {type: rmsnorm}
  - type: norm
    name: mynorm
    expr: "(x - mean(x)) / sqrt(mean((x - mean(x))**2) + eps)"
    eps: 1e-5
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
"""
LAYERNORM = """name: ln_net
input: 4
layers:
  - {units: 6, activation: tanh}
  - {type: layernorm}
  - {units: 2, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.01}
"""
RMSNORM = """name: rms_net
input: 3
layers:
  - {units: 5, activation: gelu}
  - {type: rmsnorm, eps: 1e-4}
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
l2: 0.001
"""
BATCHNORM = """name: bn_net
input: 4
layers:
  - {type: batchnorm, momentum: 0.2}
  - {units: 5, activation: elu}
  - {units: 1, activation: identity}
loss: mse
optimizer: {name: momentum, learning_rate: 0.05, momentum: 0.9}
"""
MEAN_ABS = """name: mabs_net
input: 4
layers:
  - {units: 6, activation: {name: leaky_relu, alpha: 0.2}}
  - {type: norm, name: meanabs, expr: "(x - mean(x)) / (mean(abs(x - mean(x))) + eps)", eps: 1e-5}
  - {units: 2, activation: sigmoid}
loss: binary_crossentropy
"""
MAX_NO_AFFINE = """name: mx
input: 4
layers:
  - {type: norm, name: maxnörm, expr: "x / (max(abs(x)) + eps)", eps: 1e-5, affine: false}
  - {type: dropout, rate: 0.25}
  - {units: 4, activation: tanh, residual: true}
  - {units: 1, activation: sigmoid}
loss: binary_crossentropy
"""
DROPOUT = """name: drop_net
input: 3
layers:
  - {units: 8, activation: relu}
  - {type: dropout, rate: 0.3}
  - {units: 2, activation: sigmoid}
loss: binary_crossentropy
"""
RESIDUAL = """name: res_net
input: 5
layers:
  - {units: 5, activation: tanh}
  - {units: 5, activation: tanh, residual: true}
  - {units: 5, activation: sigmoid, residual: true}
  - {units: 1, activation: sigmoid}
loss: binary_crossentropy
"""
SPECS = {
    "v2_example.yaml": V2,
    "layernorm.yaml": LAYERNORM,
    "rmsnorm.yaml": RMSNORM,
    "batchnorm.yaml": BATCHNORM,
    "mean_abs.yaml": MEAN_ABS,
    "max_nörm?.yaml": MAX_NO_AFFINE,
    "dropout.yaml": DROPOUT,
    "residual.yaml": RESIDUAL,
}
SIGMA = sp.Symbol("sigma", positive=True)


def derivation(
    tmp_path: Path, spec: str, name: str = "spec.yaml"
) -> symgrad.Derivation:
    path = tmp_path / name
    path.write_text(spec, encoding="utf-8")
    return symgrad.derive(str(path))


@pytest.fixture(scope="session")  # once: xdist interleaves files
def derived(tmp_path_factory) -> dict[str, symgrad.Derivation]:
    return {
        name: derivation(tmp_path_factory.mktemp("spec"), spec, name)
        for name, spec in SPECS.items()
    }


@pytest.fixture(scope="session")  # once: xdist interleaves files
def reports(derived) -> dict[str, dict[str, str]]:
    out = {}
    for name, d in derived.items():
        rendered = {fmt: render_report(d, fmt) for fmt in ("latex", "markdown", "text")}
        rendered["standalone"] = render_report(d, "latex", standalone=True)
        out[name] = rendered
    return out


def section(text: str, title: str) -> str:
    """One numbered section of a text report, by its title."""
    match = re.search(
        rf"^\d+\. {re.escape(title)}\n-+\n(.*?)(?=^\d+\. [^\n]*\n-+\n|\Z)",
        text,
        re.M | re.S,
    )
    assert match, f"no section {title!r}"
    return match.group(1)


def flat(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------ every format


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_format_renders(reports, name) -> None:
    out = reports[name]
    source = SPECS[name] + name
    for fmt in ("latex", "standalone"):
        assert out[fmt].isascii(), sorted({c for c in out[fmt] if not c.isascii()})
        assert out[fmt].count("?") <= source.count("?")
    for line in out["markdown"].splitlines():
        assert "$$" not in line or line == "$$", line
    assert "\\" not in out["text"] and "$" not in out["text"]
    prose = [line for line in out["text"].splitlines() if not line.startswith("    ")]
    assert max(len(line) for line in prose) <= 88


@pytest.mark.parametrize("name", sorted(SPECS))
def test_standalone_document_compiles_with_pdflatex(tmp_path, reports, name) -> None:
    log = compile_tex(tmp_path, reports[name]["standalone"])
    assert "Overfull \\vbox" not in log  # no display runs off a page


def test_each_layer_has_its_section(derived) -> None:
    titles = [s.title for s in build(derived["v2_example.yaml"]).sections]
    assert titles[:9] == [
        "Output layer (layer 8)",
        "Bias",
        "Layer 7: mynorm (custom)",
        "Layer 6: RMS normalization",
        "Layer 5: batch normalization",
        "Hidden layer 4 (residual)",
        "Layer 3: dropout",
        "Layer 2: layer normalization",
        "Hidden layer 1",
    ]
    assert titles[9:] == [
        "Matrix form",
        "Update rule",
        "The loss: categorical cross-entropy",
        "K output units",
        "Many examples",
    ]


# ------------------------------------------------------------------ norms: the derived rule


def norm_layers(d: symgrad.Derivation) -> list[NormLayerRule]:
    return [r for r in d.layers if isinstance(r, NormLayerRule)]


@pytest.mark.parametrize(
    "name", ["v2_example.yaml", "layernorm.yaml", "rmsnorm.yaml", "batchnorm.yaml",
             "mean_abs.yaml", "max_nörm?.yaml"]
)  # fmt: skip
def test_norm_sections_print_the_derived_rule(derived, reports, name) -> None:
    """Every statement and step of each norm's rule is in its section, in the text form
    reductions.text gives the rule (an independent printer), and the simplified dx is
    the rule's own."""
    d = derived[name]
    text = reports[name]["text"]
    for layer in norm_layers(d):
        r = layer.rule
        body = flat(section(text, f"Layer {layer.index}: {r.title}"))
        for st in r.forward:
            assert f"{rule_text(st.target)} = {rule_text(st.expr)}" in body
        for step in r.steps:
            assert f"= {rule_text(step.rhs)}" in body, step
        assert f"∂L/∂x = {rule_text(r.steps[-1].rhs)} (simplified)" in body
        # the rule the code uses: dx in h (the gain's upstream), or in g without a gain
        assert f"∂L/∂x = {rule_text(r.dx)}" in body
        for st in r.backward:
            if st.role in ("upstream", "gain", "shift"):
                assert rule_text(st.expr) in body
        latex = reports[name]["latex"]
        assert Latex(tex_names(r.dx)).doprint(r.steps[-1].rhs) in latex


def tex_names(e: sp.Expr) -> dict[sp.Symbol, str]:
    from symgrad.report.plan_view import symbol_tex

    return {s: symbol_tex(s) for s in e.atoms(sp.Symbol)}


def test_layernorm_prints_the_textbook_rule(derived, reports) -> None:
    """The rule derived for layernorm is (1/σ)(h − mean(h) − x̂ ⊙ mean(h ⊙ x̂)) with
    h = γ ⊙ g (the formula built here; tests/test_norms.py checks it against torch), and
    that is what the layernorm section prints, in LaTeX and in text."""
    layer = norm_layers(derived["layernorm.yaml"])[0]
    textbook = (H - GroupMean(H) - XHAT * GroupMean(H * XHAT)) / SIGMA
    assert layer.rule.dx == textbook
    upstream = {s.role: s.expr for s in layer.rule.backward}["upstream"]
    assert upstream == GAMMA * G
    out = reports["layernorm.yaml"]
    body = flat(section(out["text"], "Layer 2: layer normalization"))
    assert "∂L/∂x = (h − mean(h) − x̂·mean(h·x̂))/σ (simplified)" in body
    assert "h = ∂L/∂x̂ = g·γ" in body
    assert (
        r"\frac{\partial L}{\partial x} &= \frac{h - \operatorname{mean}\left(h\right)"
        r" - \hat{x} \operatorname{mean}\left(h \hat{x}\right)}{\sigma}"
        r" \qquad \text{(simplified)}"
    ) in out["latex"]
    # the forward statements: μ, var, σ, x̂, y = γ x̂ + β
    for eq in ("μ = mean(x)", "var = mean((x − μ)²)", "σ = √(ε + var)",
               "x̂ = (x − μ)/σ", "y = β + γ·x̂"):  # fmt: skip
        assert f"    {eq}\n" in out["text"]
    # dγ and dβ sum over the batch
    assert "∂L/∂γ = Σ_batch(g·x̂)" in body and "∂L/∂β = Σ_batch(g)" in body
    # the matrix form for the batch: row means, the Plan's statements
    assert "Mu2 = meanⱼ A1" in body
    assert "G1 = (H2 - Mean2_1 - Mean2_2 ⊙ Xhat2)/Sigma2" in body


def test_each_reduction_contributes_a_term(derived, reports) -> None:
    """The chain rule through the reductions, one display per reduction: how x̂
    depends on it, its adjoint and its term, then the assembled dx."""
    layer = norm_layers(derived["layernorm.yaml"])[0]
    body = section(reports["layernorm.yaml"]["text"], "Layer 2: layer normalization")
    assert "    ∂x̂/∂x = 1/σ\n" in body
    for r in layer.rule.reductions:
        name = rule_text(r.symbol)
        assert f"Through {name} = {rule_text(r.node)}:" in flat(body)
        assert f"    ∂x̂/∂{name} = " in body
        assert f"    {name}̄ = " in body and f"    {name}̄·∂{name}/∂x = " in body
    assert "mean(x̂) = 0" in body  # the identity the definition of μ gives


def test_batchnorm_over_the_batch_with_running_statistics(reports) -> None:
    body = section(reports["batchnorm.yaml"]["text"], "Layer 1: batch normalization")
    prose = flat(body)
    assert "normalizes each of its 4 features over the m examples of a batch" in prose
    assert "the reductions are column means (meanₙ, over the m examples)" in prose
    # PyTorch's momentum update, as written, the variance tracked unbiased
    assert "running_mean ← (1 − momentum)·running_mean + momentum·μ" in prose
    assert (
        "running_var ← (1 − momentum)·running_var + momentum·(n/(n − 1))·var" in prose
    )
    assert "with n = m the batch size and momentum = 0.2" in prose
    assert "at the start running_mean = 0 and running_var = 1" in prose
    # inference with the running statistics
    assert "σ = √(ε + running_var)" in prose and "x̂ = (x − running_mean)/σ" in prose
    # and as the generated code computes them: the step's updates, eval's statements
    # in the momentum's symbol, its value from the spec after
    assert "mean1 ← (1 - momentum)·mean1 + momentum·Mu1" in prose
    assert "var1 ← (1 - momentum)·var1 + momentum·(m/(m - 1))·Var1" in prose
    assert "with momentum = 0.2 and m the batch size." in prose
    assert "Xhat1 = (X - mean1)/Sigma1" in prose
    latex = reports["batchnorm.yaml"]["latex"]
    assert r"\mu_{\mathrm{run}} &\leftarrow" in latex


def test_without_a_gain_h_is_g_and_max_ties_print_as_indicators(derived, reports):
    layer = norm_layers(derived["max_nörm?.yaml"])[0]
    assert not layer.rule.gain and not layer.rule.shift
    body = flat(section(reports["max_nörm?.yaml"]["text"], "Layer 1: maxnörm (custom)"))
    assert "The layer has no gain or shift: its output is x̂." in body
    assert "With no gain, the gradient at x̂ is h = g." in body
    assert f"∂L/∂x = {rule_text(layer.rule.dx)}" in body and "[r1 = |x|]" in body
    assert "its backward pass computes nothing" not in body
    assert (
        r"\left[r_{1} = \left|{x}\right|\right]" in reports["max_nörm?.yaml"]["latex"]
    )


def test_batchnorm_running_statistics_follow_the_spec_momentum(tmp_path) -> None:
    """The spec's momentum (0.2, not the default 0.1) reaches the rule, the plan and the
    generated step: the running statistics after steps equal torch's BatchNorm1d's."""
    torch = pytest.importorskip("torch")
    from harness import import_path

    path = tmp_path / "bn_net.yaml"
    path.write_text(BATCHNORM)  # the running statistics of the first layer: of X alone
    d = symgrad.derive(str(path))
    layer = d.layer(1)
    assert isinstance(layer, NormLayerRule)
    assert dict((s.name, float(v)) for s, v in layer.rule.params)["momentum"] == 0.2
    symgrad.generate(str(path), tmp_path)
    module = import_path(tmp_path / "bn_net.py", "bn_net_momentum")
    params = module.init_params(seed=1)
    state = module.init_state(params)
    reference = torch.nn.BatchNorm1d(4, momentum=0.2, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        X = rng.normal(2.0, 3.0, size=(7, 4))
        module.step(params, state, X, rng.normal(size=(7, 1)))
        reference.train()(torch.from_numpy(X))
    np.testing.assert_allclose(
        params["mean1"], reference.running_mean.numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        params["var1"], reference.running_var.numpy(), rtol=1e-12
    )


# ------------------------------------------------------------------ dropout, residual


def test_dropout_masks_forward_and_backward(derived, reports) -> None:
    d = derived["dropout.yaml"]
    layer = d.layer(2)
    assert isinstance(layer, DropoutRule) and layer.rate == 0.3
    body = section(reports["dropout.yaml"]["text"], "Layer 2: dropout")
    prose = flat(body)
    assert "inverted dropout, as PyTorch applies it, with the rate p = 0.3" in prose
    assert "    kⱼ = 1/(1 − p) with probability 1 − p, else 0\n" in body
    assert "    a2ⱼ = a1ⱼ kⱼ\n" in body
    assert "the layer is the identity, a2ⱼ = a1ⱼ" in prose
    assert "    g1ⱼ = ∂ℓ/∂a1ⱼ = ∂ℓ/∂a2ⱼ ∂a2ⱼ/∂a1ⱼ = g2ⱼ kⱼ\n" in body
    assert "    A2 = A1 ⊙ K2\n    G1 = G2 ⊙ K2\n" in body
    assert r"\begin{cases}" in reports["dropout.yaml"]["latex"]


def test_residual_layers_show_the_identity_term(reports) -> None:
    text = reports["residual.yaml"]["text"]
    body = section(text, "Hidden layer 3 (residual)")
    assert "    f3ⱼ = σ(z3ⱼ)\n    a3ⱼ = a2ⱼ + f3ⱼ\n" in body
    assert "        = Σⱼ δ3ⱼ w3ᵢⱼ + g3ᵢ\n" in body  # the identity term
    assert "    G2 = δ3 W3ᵀ + G3\n" in body
    # the derivative in f = σ(z), not in the layer's output a = a2 + f
    assert "    ∂a3ⱼ/∂z3ⱼ = σ'(z3ⱼ) = f3ⱼ·(1 - f3ⱼ)\n" in body
    batch = section(text, "Many examples")
    assert "    δ3 = F3 ⊙ G3 ⊙ (1 - F3)\n" in batch
    assert "    G1 = δ2 W2ᵀ + G2\n" in batch
    assert "    A3 = A2 + σ(Z3)\n" in batch


# ------------------------------------------------------------------ the report reads the Plan


def test_the_batch_backward_pass_is_the_plans(derived) -> None:
    """The 'Many examples' section lists the Plan's backward statements in order: each
    target once (a G^{[l]} = δ W^T read only by the dense delta after it shown inside
    that delta)."""
    for d in derived.values():
        plan = plan_mod.build(d)
        batch = section(plain_text(build(d, plan)), "Many examples")
        listing = re.split(r"generated\s+code\s+computes\s+them", batch)[1]
        lines = [ln.strip() for ln in listing.splitlines() if ln.startswith("    ")]
        shown = [ln.split(" = ")[0] for ln in lines]
        expected = []
        for i, s in enumerate(plan.backward):
            role = plan.roles.get(s.target, ("", 0))
            after = plan.backward[i + 1] if i + 1 < len(plan.backward) else None
            inlined = (
                role[0] == "back"
                and isinstance(s.expr, MatProduct)
                and after is not None
                and plan.roles.get(after.target) == ("delta", role[1])
                and sum(s.target in t.reads for t in plan.statements) == 1
            )
            if inlined:
                continue
            grads = {g: p for p, g in plan.grads.items()}
            if s.target in grads:
                expected.append(f"∂L/∂{grads[s.target]}")
            elif role[0] == "delta":
                expected.append(f"δ{role[1]}")
            else:
                expected.append(s.target.name)
        assert shown == expected, d.spec.name


def test_the_report_follows_the_plan_it_is_given(derived) -> None:
    d = derived["v2_example.yaml"]
    plan = plan_mod.build(d)
    full = plain_text(build(d, plan))
    cut = dataclasses.replace(plan, backward=plan.backward[:-3])  # no dW1, db1, D1
    shorter = plain_text(build(d, cut))
    assert "    ∂L/∂W1 = Xᵀ δ1\n" in full and "∂L/∂W1 = Xᵀ δ1" not in section(
        shorter, "Many examples"
    )
    assert render_report(d, "text", plan=plan) == full == render_report(d, "text")


def test_the_matrix_form_handles_every_layer_kind(reports) -> None:
    body = section(reports["v2_example.yaml"]["text"], "Matrix form")
    for row in (
        "a2 = layernorm(a1)",
        "a3 = a2 ⊙ k3",
        "a4 = a3 + relu(z4)",
        "a5 = batchnorm(a4)   (over the batch)",
        "g7 = δ8 W8ᵀ",
        "g6 = (h7 - mean(h7) - x̂7·mean(h7 ⊙ x̂7))/σ7",
        "g3 = δ4 W4ᵀ + g4",
        "g2 = g3 ⊙ k3",
        "∂ℓ/∂γ2 = g2 ⊙ x̂2",
    ):
        assert f"    {row}\n" in body, row


# ------------------------------------------------------------------ printing the array nodes


def test_array_nodes_print_as_the_math_does() -> None:
    a, w, d, h, xhat = (sp.Symbol(n, real=True) for n in ("A1", "W2", "D2", "H", "Xh"))
    tex = {a: "A^{[1]}", w: "W^{[2]}", d: r"\delta^{[2]}", h: "H", xhat: r"\hat{X}"}
    text = {a: "A1", w: "W2", d: "δ2", h: "H", xhat: "X̂"}
    arrays = set(tex)

    def both(e: sp.Expr) -> tuple[str, str]:
        return (
            Latex(tex, arrays, plan=True).doprint(e),
            Text(text, arrays, plan=True).doprint(e),
        )

    assert both(MatProduct(d, Transposed(w))) == (
        r"\delta^{[2]} W^{[2]\mathsf{T}}",
        "δ2 W2ᵀ",
    )
    assert both(MatProduct(Transposed(a), d)) == (
        r"A^{[1]\mathsf{T}} \delta^{[2]}",
        "A1ᵀ δ2",
    )
    assert both(RowMean(h * xhat)) == (
        r"\operatorname{mean}_{j} \left(H \odot \hat{X}\right)",
        "meanⱼ (H ⊙ X̂)",
    )
    assert both(ColSum(d)) == (r"\sum_{n} \delta^{[2]}", "Σₙ δ2")
    assert both(ColMean(h))[0] == r"\operatorname{mean}_{n} H"
    assert both(RowMax(a))[0] == r"\max_{j} A^{[1]}"
    assert both(Total(a**2)) == (r"\sum_{n,j} \left(A^{[1]}\right)^{2}", "Σ (A1²)")
    # a scalar times an array by juxtaposition, arrays elementwise with ⊙
    lam = sp.Symbol("lam", positive=True)
    assert both(lam * w) == (r"lam W^{[2]}", "lam W2")
    # group reductions of a rule (one value of the group): mean(...), no ⊙
    x = sp.Symbol("x", real=True)
    assert Latex().doprint(GroupSum(h * x)) == r"\sum\left(H x\right)"
    assert Text().doprint(GroupMean(x)) == "mean(x)"


# ------------------------------------------------------------------ Jupyter


def test_a_v2_derivation_renders_in_jupyter(derived) -> None:
    d = derived["v2_example.yaml"]
    latex = d._repr_latex_()
    assert latex.startswith("$$\n\\begin{aligned}") and latex.endswith("$$")
    assert r"G^{[3]} &= \delta^{[4]} W^{[4]\mathsf{T}} + G^{[4]}" in latex
    assert r"\frac{\partial L}{\partial \gamma^{[2]}}" in latex
    assert d._repr_markdown_() == render_report(d, "markdown")
