"""A layer kind that is not a norm, registered from this file alone: issue 18's criterion.

A gated layer, a = x ⊙ g(x W + b) (g a gate activation, σ by default; W square, so the
width is kept), is one `LayerKind` entry below: its spec keys and checks, its derivation
(the gate's rule, derived by symgrad like any activation's), its plan op and its report
section with its matrix-form rows. No symgrad source knows it. With it registered, a spec
names it; both module targets are generated; the report prints in every format;
`symgrad check` passes; and the loss, every gradient and 50 optimizer steps match PyTorch
autograd and torch.optim in float64.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

from harness import import_path  # noqa: E402

import symgrad  # noqa: E402
from symgrad import activations, layer_registry  # noqa: E402
from symgrad.activations import a, z  # noqa: E402
from symgrad.derive import ActivationRule, activation_rule, guarded  # noqa: E402
from symgrad.layer_registry import LayerKind, MatrixRows, Rule  # noqa: E402
from symgrad.plan import Back, Param, section  # noqa: E402
from symgrad.report import render_report  # noqa: E402
from symgrad.report.document import D, Eq, M, P, Section  # noqa: E402
from symgrad.spec import Loc, OpSpec  # noqa: E402
from symgrad.sym.arrays import ColSum, MatProduct, Transposed  # noqa: E402

NAME = "gated"


# ---------------------------------------------------------------- the kind, whole


@dataclasses.dataclass(frozen=True)
class GatedSpec:
    gate: OpSpec
    loc: Loc
    kind = NAME


@dataclasses.dataclass(frozen=True)
class GatedRule(Rule):
    index: int
    units: int
    gate: ActivationRule
    kind = NAME

    @property
    def trainable(self) -> int:
        return (self.units + 1) * self.units

    @property
    def activations(self) -> tuple[ActivationRule, ...]:
        return (self.gate,)

    @property
    def title(self) -> str:
        return f"gated by {self.gate.title}"


class GatedOp:
    """Z = X W + b, S = g(Z), A = X ⊙ S; backward: δ = G ⊙ X ⊙ g'(Z),
    ∂L/∂W = Xᵀ δ, ∂L/∂b = Σₙ δ, ∂L/∂X = G ⊙ S + δ Wᵀ."""

    def __init__(self, rule: GatedRule) -> None:
        self.rule = rule

    def forward(self, bd, x):
        l, n, g = self.rule.index, self.rule.units, self.rule.gate  # noqa: E741
        sec = section(self.rule)
        self.x = x
        self.W = bd.param(
            Param(f"W{l}", (n, n), ("glorot_uniform", n, n), l, weight=True)
        )
        self.b = bd.param(Param(f"b{l}", (n,), ("zeros",), l))
        self.z = bd.emit("forward", "z", l, MatProduct(x, self.W) + self.b, None, sec)
        self.s = bd.emit("forward", "f", l, g.forward.xreplace({z: self.z}), None, sec)
        return bd.emit("forward", "a", l, x * self.s, None, sec)

    def backward(self, bd, g, need_input):
        l, gate = self.rule.index, self.rule.gate  # noqa: E741
        sec = section(self.rule)
        slope = gate.df.xreplace({a: self.s, z: self.z})  # the derived g', in S or Z
        delta = bd.emit("backward", "delta", l, g * self.x * slope, None, sec)
        bd.gradient(f"W{l}", MatProduct(Transposed(self.x), delta), sec, "")
        bd.gradient(f"b{l}", ColSum(delta), sec, "")
        if not need_input:
            return None
        back = g * self.s + MatProduct(delta, Transposed(self.W))
        return Back(back, f"G{l} ⊙ S{l} + δ{l} W{l}ᵀ")


class Gated(LayerKind):
    name = NAME
    keys = ("gate",)

    def validate(self, check, item, at):
        check.keys(item, ("type", *self.keys), ())
        node = item.value.get("gate")
        gate = OpSpec("sigmoid", loc=item.loc)
        if node is not None:
            gate = check.op(node, activations.ACTIVATIONS, "activation")
        return None if gate is None else GatedSpec(gate, item.loc)

    def parameters(self, layer, width):
        return (width + 1) * width

    def derive(self, layer, index, fan_in):
        return GatedRule(index, fan_in, guarded(activation_rule, layer.gate))

    def op(self, rule, d):
        return GatedOp(rule)

    def sections(self, ctx, l):  # noqa: E741
        rule, view = ctx.d.layer(l), ctx.view
        return (
            Section(
                f"Gated layer {l}",
                (
                    P(
                        "Each unit passes its input through a gate, ",
                        M(r"a_j = x_j \, g(z_j)", "aⱼ = xⱼ g(zⱼ)"),
                        f", with g the {rule.gate.title} and z = x W + b. "
                        "The statements of the step:",
                    ),
                    D(*[view.eq(s) for s in view.forward(l) + view.backward(l)]),
                ),
            ),
        )

    def matrix_form(self, ctx, rule):
        l = rule.index  # noqa: E741
        return MatrixRows(
            forward=[
                Eq(
                    M(rf"a^{{[{l}]}}", f"a{l}"),
                    (
                        M(
                            rf"a^{{[{l - 1}]}} \odot g(z^{{[{l}]}})",
                            f"a{l - 1} ⊙ g(z{l})",
                        ),
                    ),
                )
            ],
        )


@pytest.fixture
def gated():
    layer_registry.register(Gated())
    yield
    layer_registry.unregister(NAME)


def spec(optimizer: dict, gate: str | None = None, l2: float = 0.0) -> dict:
    layer = {"type": NAME} if gate is None else {"type": NAME, "gate": gate}
    return {
        "name": "gatednet",
        "input": 4,
        "layers": [
            {"units": 6, "activation": "tanh"},
            layer,
            {"units": 5, "activation": "relu"},
            {"type": NAME, "gate": "tanh"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
        "optimizer": optimizer,
        "l2": l2,
    }


# ---------------------------------------------------------------- PyTorch, by hand


def torch_loss(params: dict, X, Y, gate: str, l2: float):
    """The same network written in PyTorch: the reference for loss and gradients."""
    gates = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "softsign": F_softsign}
    p = params
    h = torch.tanh(X @ p["W1"] + p["b1"])
    h = h * gates[gate](h @ p["W2"] + p["b2"])
    h = torch.relu(h @ p["W3"] + p["b3"])
    h = h * torch.tanh(h @ p["W4"] + p["b4"])
    z = h @ p["W5"] + p["b5"]
    loss = -(Y * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
    weights = [p[k] for k in ("W1", "W2", "W3", "W4", "W5")]
    return loss + l2 / 2 * sum((w**2).sum() for w in weights)


def F_softsign(x):  # noqa: N802 - torch's name
    return torch.nn.functional.softsign(x)


def batches(steps: int, m: int = 8, seed: int = 3):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield rng.standard_normal((m, 4)), np.eye(3)[rng.integers(0, 3, m)]


def as_torch(params: dict) -> dict:
    return {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("gate", [None, "softsign"])
def test_loss_and_gradients_match_torch_autograd(gated, tmp_path, gate):
    s = spec({"name": "sgd", "learning_rate": 0.1}, gate, l2=0.01)
    m = import_path(symgrad.generate(s, tmp_path), f"_gated_{tmp_path.name}")
    assert m.PARAM_NAMES == tuple(f"{k}{l}" for l in range(1, 6) for k in "Wb")
    params = m.init_params(seed=1)
    rng = np.random.default_rng(2)
    for k in m.PARAM_NAMES:  # biases away from zero
        params[k] = params[k] + 0.2 * rng.standard_normal(params[k].shape)
    X, Y = next(batches(1))
    loss, grads = m.loss_and_grad(params, X, Y)
    tp = as_torch(params)
    ref = torch_loss(tp, torch.tensor(X), torch.tensor(Y), gate or "sigmoid", 0.01)
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    for k in m.PARAM_NAMES:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-9, atol=1e-13)


def test_fifty_steps_match_torch_optim(gated, tmp_path):
    s = spec({"name": "momentum", "learning_rate": 0.05, "momentum": 0.9})
    m = import_path(symgrad.generate(s, tmp_path), f"_gated_steps_{tmp_path.name}")
    params = m.init_params(seed=4)
    tp = as_torch(params)
    opt = torch.optim.SGD(list(tp.values()), lr=0.05, momentum=0.9)
    state = m.init_state(params)
    for X, Y in batches(50):
        m.step(params, state, X, Y)
        opt.zero_grad()
        torch_loss(tp, torch.tensor(X), torch.tensor(Y), "sigmoid", 0.0).backward()
        opt.step()
    for k in m.PARAM_NAMES:
        np.testing.assert_allclose(
            params[k], tp[k].detach().numpy(), rtol=1e-9, atol=1e-12
        )


def test_the_array_api_module_computes_the_same(gated, tmp_path):
    s = spec({"name": "sgd", "learning_rate": 0.1})
    m = import_path(symgrad.generate(s, tmp_path), f"_gated_np_{tmp_path.name}")
    path = symgrad.generate(s, tmp_path, target="array-api")
    xp = import_path(path, f"_gated_xp_{tmp_path.name}")
    params = m.init_params(seed=5)
    X, Y = next(batches(1))
    loss, grads = m.loss_and_grad(params, X, Y)
    xloss, xgrads = xp.loss_and_grad(params, X, Y)
    assert float(xloss) == pytest.approx(loss, rel=1e-12)
    for k in m.PARAM_NAMES:
        np.testing.assert_allclose(np.asarray(xgrads[k]), grads[k], rtol=1e-12)


def test_the_report_and_the_check_handle_it(gated):
    s = spec({"name": "sgd", "learning_rate": 0.1})
    d = symgrad.derive(s)
    for fmt in ("latex", "markdown", "text"):
        report = render_report(d, fmt)
        assert "Gated layer 2" in report and "Gated layer 4" in report
    assert render_report(d, "latex", standalone=True).isascii()
    assert "gated by sigmoid" in repr(d)
    result = symgrad.check_gradients(s)
    assert result.ok, result.table()
    assert {p.name for p in result.params} >= {"W2", "b2", "W4", "b4"}


def test_the_spec_checks_its_keys(gated):
    bad = spec({"name": "sgd", "learning_rate": 0.1}, gate="sigmod")
    bad["layers"][3]["gates"] = "tanh"
    with pytest.raises(symgrad.SpecError) as info:
        symgrad.parse_spec(__import__("yaml").safe_dump(bad), "bad.yaml")
    text = str(info.value)
    assert "layers[1].gate: unknown activation 'sigmod' (did you mean 'sigmoid'?)" in (
        text
    )
    assert "unknown key 'gates'" in text and "(did you mean 'gate'?)" in text


def test_without_its_entry_the_type_is_unknown():
    with pytest.raises(symgrad.SpecError, match="unknown layer type 'gated'"):
        symgrad.as_spec(spec({"name": "sgd", "learning_rate": 0.1}))


def test_gate_derivative_is_derived_not_given(gated):
    """The op reads the gate's derivative from the derivation: σ' in terms of its
    output, a(1 − a), as SymPy found it."""
    rule = symgrad.derive(spec({"name": "sgd", "learning_rate": 0.1})).layer(2)
    assert sp.simplify(rule.gate.df - a * (1 - a)) == 0
