"""A layer kind added by its definition alone: the generator's test of its own structure.

Issue 11's criterion: a maintainer adds a layer kind by writing its definition and its
derivation, and loss_and_grad, step, the report and `symgrad check` handle it with no
other change. Here a norm nobody wrote code for — normalization by the mean absolute
deviation — is registered in symgrad/norms.py the way the built-in norms are (an
expression with group reductions, nothing about its derivative); everything after that is
the generator's, and the module's gradients are checked against finite differences of its
own training loss (independent of the derivation).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad
from symgrad import norms
from symgrad.check import import_path
from symgrad.report import render_report
from symgrad.sym.arrays import GroupMean

NAME = "meanabsnorm"
SPEC = {
    "name": "madnet",
    "input": 4,
    "layers": [
        {"units": 6, "activation": "tanh"},
        {"type": NAME, "eps": 0.001},
        {"units": 5, "activation": "relu", "residual": False},
        {"type": NAME},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.1},
}


@pytest.fixture
def registered():
    """The new norm, registered like layernorm: a definition, nothing more."""
    x = norms.x

    @norms.norm(
        NAME,
        params={"eps": 1e-5},
        title="mean-absolute normalization",
        names=("mu", "mad"),
    )
    def _mean_absolute(eps: sp.Expr) -> sp.Expr:
        centred = x - GroupMean(x)
        return centred / (GroupMean(sp.Abs(centred)) + eps)

    yield
    del norms.NORMS[NAME]


def _batch(m: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 4)), np.eye(3)[rng.integers(0, 3, m)]


def test_the_spec_names_it_and_the_module_differentiates_it(registered, tmp_path):
    module = symgrad.generate(SPEC, tmp_path)
    m = import_path(module, f"_new_kind_{tmp_path.name}")
    assert m.PARAM_NAMES == (
        "W1", "b1", "gamma2", "beta2", "W3", "b3", "gamma4", "beta4", "W5", "b5"
    )  # fmt: skip
    params = m.init_params(seed=1)
    rng = np.random.default_rng(2)
    for k in ("gamma2", "beta2", "gamma4", "beta4"):  # away from ones and zeros
        params[k] = params[k] + 0.3 * rng.standard_normal(params[k].shape)
    X, Y = _batch()
    loss, grads = m.loss_and_grad(params, X, Y)
    h = 1e-6
    for key in m.PARAM_NAMES:
        value = params[key]
        for idx in list(np.ndindex(value.shape))[:6]:
            old = value[idx]
            value[idx] = old + h
            up = m.loss(params, X, Y, training=True)
            value[idx] = old - h
            down = m.loss(params, X, Y, training=True)
            value[idx] = old
            fd = (up - down) / (2 * h)
            assert abs(grads[key][idx] - fd) <= 1e-6 * max(1.0, abs(fd)), (key, idx)
    # the in-place step computes the same numbers, then the sgd update
    before = {k: v.copy() for k, v in params.items()}
    assert m.step(params, m.init_state(params), X, Y) == pytest.approx(loss, rel=1e-12)
    for key in m.PARAM_NAMES:
        np.testing.assert_allclose(
            params[key], before[key] - 0.1 * grads[key], rtol=1e-10, atol=1e-14
        )


def test_the_report_and_the_check_handle_it(registered):
    d = symgrad.derive(SPEC)
    for fmt in ("latex", "markdown", "text"):
        report = render_report(d, fmt)
        assert "mean-absolute normalization" in report
    assert render_report(d, "latex", standalone=True).isascii()
    result = symgrad.check_gradients(SPEC)
    assert result.ok, result.table()
    assert {p.name for p in result.params} >= {"gamma2", "beta2", "gamma4", "beta4"}
