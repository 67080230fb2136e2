"""derive.py's facts for the report, checked against numbers computed without them.

The softmax Jacobian and the softmax output delta δ_j = h_j − ŷ_j Σ_k h_k against central
finite differences of a NumPy softmax network; sigmoid' and tanh' at 0 and far out against
the published values (1/4 and 1; both vanish) and mpmath; ReLU's rule at points.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad
from symgrad.activations import a, y, z
from symgrad.derive import ActivationRule, saturation, softmax_jacobian

H = 1e-6


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def central(f, v: np.ndarray, j: int) -> float:
    step = np.zeros_like(v)
    step[j] = H
    return (f(v + step) - f(v - step)) / (2 * H)


def test_softmax_jacobian_against_finite_differences() -> None:
    jac = softmax_jacobian()
    rng = np.random.default_rng(0)
    j, k = 0, 2
    for _ in range(5):
        v = rng.normal(size=4)
        s = softmax(v)
        total = float(np.exp(v).sum())
        fd_jj = central(lambda u: softmax(u)[j], v, j)
        fd_kj = central(lambda u: softmax(u)[k], v, j)
        raw = {jac.z_j: v[j], jac.z_k: v[k], jac.total: total}
        in_y = {jac.yhat_j: s[j], jac.yhat_k: s[k]}
        assert float(jac.diagonal_raw.subs(raw)) == pytest.approx(fd_jj, abs=1e-8)
        assert float(jac.diagonal.subs(in_y)) == pytest.approx(fd_jj, abs=1e-8)
        assert float(jac.off_diagonal_raw.subs(raw)) == pytest.approx(fd_kj, abs=1e-8)
        assert float(jac.off_diagonal.subs(in_y)) == pytest.approx(fd_kj, abs=1e-8)


MSE = (
    "name: n\ninput: 2\nlayers:\n  - {units: 3, activation: softmax}\nloss: mse\n",
    lambda s, t: 0.5 * np.sum((s - t) ** 2),
)
CE = (
    "name: n\ninput: 2\nlayers:\n  - {units: 3, activation: softmax}\n"
    "loss: categorical_crossentropy\n",
    lambda s, t: -np.sum(t * np.log(s)),
)


@pytest.mark.parametrize("case", [MSE, CE], ids=["mse", "crossentropy"])
def test_softmax_h_gives_the_delta(case) -> None:
    """δ_j = h_j − ŷ_j Σ_k h_k with the derived h (and summand) equals ∂ℓ/∂z_j."""
    spec, loss = case
    facts = symgrad.derive(spec).facts.softmax
    assert facts is not None
    h = sp.lambdify((a, y), facts.h)
    summand = sp.lambdify((a, y), facts.summand)
    rng = np.random.default_rng(1)
    v = rng.normal(size=3)
    t = np.array([0.2, 0.7, 0.1])
    s = softmax(v)
    hs = np.array([h(s[k], t[k]) for k in range(3)])
    sums = np.array([summand(s[k], t[k]) for k in range(3)])
    sign = -1 if facts.negated else 1
    for j in range(3):
        fd = central(lambda u: loss(softmax(u), t), v, j)
        assert hs[j] - s[j] * hs.sum() == pytest.approx(fd, abs=1e-7)
        assert hs[j] - sign * s[j] * sums.sum() == pytest.approx(fd, abs=1e-7)


def test_saturation_values_are_the_published_ones() -> None:
    d = symgrad.derive(
        "name: n\ninput: 2\nlayers:\n  - {units: 3, activation: tanh}\n"
        "  - {units: 3, activation: relu}\n  - {units: 1, activation: sigmoid}\n"
        "loss: binary_crossentropy\n"
    )
    found = {s.rule.name: s for s in d.facts.saturation}
    assert list(found) == ["tanh", "sigmoid"]  # in the order of first use
    # sigmoid'(0) = 1/4, tanh'(0) = 1 (e.g. Goodfellow et al., Deep Learning, 6.3.2)
    assert found["sigmoid"].at_zero == sp.Rational(1, 4)
    assert found["tanh"].at_zero == 1
    for sat, f in (
        (found["sigmoid"], lambda x: 1 / (1 + mpmath.exp(-x))),
        (found["tanh"], mpmath.tanh),
    ):
        assert mpmath.diff(f, 0) == pytest.approx(float(sat.at_zero))
        assert sat.at_plus_infinity == 0 and sat.at_minus_infinity == 0
        assert abs(mpmath.diff(f, 40)) < 1e-15 and abs(mpmath.diff(f, -40)) < 1e-15
    relu = d.facts.relu
    assert isinstance(relu, ActivationRule) and relu.name == "relu"
    rule = sp.lambdify(z, relu.dz)
    assert [rule(x) for x in (-2.0, -1e-9, 0.0, 1e-9, 3.0)] == [0, 0, 0, 1, 1]


def test_facts_only_where_the_report_uses_them() -> None:
    d = symgrad.derive(
        "name: n\ninput: 2\nlayers:\n  - {units: 3, activation: relu}\n"
        "  - {units: 1, activation: identity}\nloss: mse\n"
    )
    assert d.facts.softmax is None  # no softmax output
    assert d.facts.saturation == () and d.facts.relu is None  # no sigmoid or tanh
    custom = symgrad.derive(
        "name: n\ninput: 2\nlayers:\n  - units: 3\n    activation: {name: my_tanh, "
        'expr: "tanh(z)"}\n  - {units: 1, activation: identity}\nloss: mse\n'
    )
    assert custom.facts.saturation == ()  # limits are taken of the built-ins only
    with pytest.raises(ValueError, match="sigmoid, tanh only"):
        saturation(custom.layer(1).activation)
