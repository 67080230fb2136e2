"""An activation added by its registry entry alone: Mish, z·tanh(softplus(z)).

Registered by a fixture of this file (an expression, a title; nothing about its
derivative) and removed after it. Then a spec names it, the derivation finds its
derivative, both module targets compute the loss and gradients PyTorch's `F.mish`
gives through autograd, and the report prints it. docs/extending.md shows this entry.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

from harness import import_path  # noqa: E402

import symgrad  # noqa: E402
from symgrad import activations  # noqa: E402
from symgrad.sym.functions import softplus  # noqa: E402

SPEC = {
    "name": "mishnet",
    "input": 3,
    "layers": [
        {"units": 5, "activation": "mish"},
        {"units": 2, "activation": "identity"},
    ],
    "loss": "mse",
}


@pytest.fixture
def mish():
    z = activations.z

    @activations.activation("mish", title="Mish")
    def _mish() -> sp.Expr:
        return z * sp.tanh(softplus(z))

    yield
    del activations.ACTIVATIONS["mish"]


def test_both_modules_match_torch_mish(mish, tmp_path) -> None:
    numpy_module = import_path(symgrad.generate(SPEC, tmp_path), "_mish_np")
    xp_module = import_path(
        symgrad.generate(SPEC, tmp_path, target="array-api"), "_mish_xp"
    )
    params = numpy_module.init_params(seed=3)
    rng = np.random.default_rng(4)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    X, Y = 3 * rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = torch.nn.functional.mish(torch.tensor(X) @ tp["W1"] + tp["b1"])
    yhat = h @ tp["W2"] + tp["b2"]
    ref = (0.5 * (yhat - torch.tensor(Y)) ** 2).sum(dim=1).mean()
    ref.backward()
    for module in (numpy_module, xp_module):
        loss, grads = module.loss_and_grad(params, X, Y)
        assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
        for k, v in tp.items():
            np.testing.assert_allclose(np.asarray(grads[k]), v.grad.numpy(), rtol=1e-9)


def test_the_report_names_it(mish) -> None:
    report = symgrad.render_report(SPEC, "text")
    assert "Mish" in report
    assert "5 (Mish)" in report
