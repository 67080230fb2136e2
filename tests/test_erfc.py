"""erfc in spec expressions, and a bare log(erf u) (issue 23's trust edges).

erfc is allowed where erf is; the modules compute it as erfcx(x)·e^{−x²} for x ≥ 0
(1 − erf x is 0 from x ≈ 6) and log erf(x) as log1p(−erfc x) where erf x rounds to 1
(sym/special.py). The references are independent of the derivation: each loss and its
derivative written again here in mpmath (60 digits) and checked point by point, relative
to the value (a loss of 1e-40 is checked to its digits, not against 1), in float64 and
float32 from u = 1e-30 to 1000; PyTorch float64 autograd (torch.erf, torch.erfc) on a
network at ordinary inputs; the array-API module against the NumPy module at extreme
inputs. Last, derive's stability checks: they run the module's own special functions
(_erf included), so a wrong helper fails them. NumPy warnings are errors in this suite
(pytest's configuration).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
import xp_backends as xb
from harness import generate_module

import symgrad
from symgrad import stability
from symgrad.activations import z
from symgrad.sym import special
from symgrad.sym.functions import stabilize

DIGITS = 60
EPS = {np.float64: 2.3e-16, np.float32: 1.2e-7}
# log erf(ŷ) for y = 1 and log erfc(ŷ) for y = 0: ŷ > 0 (log erf is undefined below)
ERF_LOSS = {
    "name": "erf_bce",
    "expr": "-y*log(erf(yhat)) - (1 - y)*log(erfc(yhat))",
}
POSITIVE = (1e-30, 1e-3, 0.3, 0.5, 0.7, 1.0, 3.0, 6.0, 10.0, 26.0, 30.0, 100.0, 1000.0)
SIGNED = (-1000.0, -30.0, -1.0, 0.0, 0.5, 1.0, 3.0, 6.0, 10.0, 15.0, 26.0, 30.0, 1000.0)


def _spec(name: str, activation: object, loss: object) -> dict:
    return {
        "name": name,
        "input": 1,
        "layers": [{"units": 1, "activation": activation}],
        "loss": loss,
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
    }


def _mp(fn, u: float, t: float) -> tuple[float, float]:
    with mpmath.workdps(DIGITS):
        value, slope = fn(mpmath.mpf(u), mpmath.mpf(t))
        return float(value), float(slope)


def _log_erf(u):
    """log erf u to the working precision: erf u itself near 0, 1 − erf u = erfc u
    beyond (erf 26 is 1 to 60 digits; log erf 26 = −5.7e−296)."""
    return mpmath.log(mpmath.erf(u)) if u < 1 else mpmath.log1p(-mpmath.erfc(u))


def _erf_bce(u, t):
    """ℓ = −t log erf u − (1 − t) log erfc u and dℓ/du, by hand."""
    g = 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-(u**2))
    value = -t * _log_erf(u) - (1 - t) * mpmath.log(mpmath.erfc(u))
    return value, -t * g / mpmath.erf(u) + (1 - t) * g / mpmath.erfc(u)


def _erfc_mse(u, t):
    """ℓ = (erfc u − t)²/2 and dℓ/du, by hand."""
    g = -2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-(u**2))
    return (mpmath.erfc(u) - t) ** 2 / 2, (mpmath.erfc(u) - t) * g


def _close(got: float, want: float, bound: float, dtype) -> bool:
    """got within bound relative to want; where want is below the dtype's smallest
    normal number, within that number (subnormals carry fewer digits)."""
    tiny = float(np.finfo(dtype).tiny)
    return np.isfinite(got) and abs(got - want) <= bound * abs(want) + tiny


def _check_points(module, reference, us, targets, dtype) -> None:
    """Each u alone (m = 1): the loss, ∂L/∂W = ℓ'(u)·u and ∂L/∂b = ℓ'(u) at W = 1,
    b = 0, within eps·(16 + u²) relative: e^{−u²} from the rounded u² is that close."""
    params = {"W1": np.ones((1, 1), dtype), "b1": np.zeros(1, dtype)}
    for u in us:
        X = np.array([[u]], dtype=dtype)
        x = float(X[0, 0])  # the reference at the dtype's own x
        bound = EPS[dtype] * (16 + min(x * x, 1e4))
        for t in targets:
            Y = np.full_like(X, t)
            got, grads = module.loss_and_grad(params, X, Y)
            want, slope = _mp(reference, x, t)
            assert _close(got, want, bound, dtype), (u, t, got, want)
            for key, ref in (("W1", slope * x), ("b1", slope)):
                g = float(np.ravel(grads[key])[0])
                assert grads[key].dtype == dtype
                assert _close(g, ref, bound, dtype), (u, t, key, g, ref)


@pytest.fixture(scope="module")
def erf_bce(tmp_path_factory):
    spec = _spec("erf_bce", "identity", ERF_LOSS)
    return generate_module(spec, tmp_path_factory.mktemp("erf_bce"))


@pytest.fixture(scope="module")
def erfc_mse(tmp_path_factory):
    spec = _spec("erfc_mse", {"name": "erfc_act", "expr": "erfc(z)"}, "mse")
    return generate_module(spec, tmp_path_factory.mktemp("erfc_mse"))


def test_log_erf_and_log_erfc_are_derived_without_a_warning() -> None:
    # on an output above 0 (on an identity output, y·log erf ŷ is NaN at ŷ < 0 and
    # y = 0, and the summary says so)
    lift = {"name": "lift", "expr": "sqrt(z*z + 1)"}
    d = symgrad.derive(_spec("erf_bce", lift, ERF_LOSS))
    assert not d.notes, d.notes
    functions = symgrad.sym.functions
    assert d.output.forward.has(functions.log_erf, functions.log_erfc)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_log_erf_loss_and_gradient_against_mpmath(erf_bce, dtype) -> None:
    """u from 1e-30 (log erf u ≈ −69, its slope 1e30) to 1000 (log erf u = −erfc u,
    about −1e−434298: 0 in both dtypes); at u = 6, log erf u is −2.2e−17, which
    log(erf u) would give as 0."""
    _check_points(erf_bce, _erf_bce, POSITIVE, (1.0, 0.0, 0.25), dtype)


def test_a_bare_log_erf_keeps_its_digits(tmp_path) -> None:
    """log(erf(ŷ)) with no 1 ± and no erfc in the spec: log1p(−erfc ŷ) where erf ŷ
    rounds to 1 (at ŷ = 6 the loss is 2.2e−17, not 0)."""
    loss = {"name": "neg_log_erf", "expr": "-log(erf(yhat))"}
    module = generate_module(_spec("neg_log_erf", "identity", loss), tmp_path)
    for dtype in (np.float64, np.float32):
        _check_points(module, _erf_bce, POSITIVE, (1.0,), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_erfc_activation_against_mpmath(erfc_mse, dtype) -> None:
    """erfc(z) as an output: (erfc z)²/2 at z = 10 is 2.1e−89, to its digits (targets
    below erfc's range: ŷ − y does not cancel, so the check is of erfc's digits)."""
    _check_points(erfc_mse, _erfc_mse, SIGNED, (0.0, -1.0), dtype)


def test_the_helpers_against_mpmath(erf_bce) -> None:
    """The module's _erfc and _log_erf over the real line, float64 and float32."""
    xs = np.concatenate([np.linspace(0, 12, 1201), np.geomspace(12, 1e4, 100)])
    signed = np.concatenate([-xs[::-1], xs, np.geomspace(1e-300, 1e-3, 50)])
    for dtype in (np.float64, np.float32):
        x = signed.astype(dtype)
        with mpmath.workdps(40):
            points = [mpmath.mpf(float(v)) for v in x]
            erfc = np.array([float(mpmath.erfc(v)) for v in points])
            log_erf = np.array([float(_log_erf(v)) for v in points if v > 0])
        got = erf_bce._erfc(x)
        assert got.dtype == dtype
        bound = EPS[dtype] * (4 + x.astype(np.float64) ** 2)
        tiny = np.finfo(dtype).tiny
        assert np.all(np.abs(got - erfc) <= bound * erfc + tiny)
        positive = x > 0
        got = erf_bce._log_erf(x[positive])
        want = log_erf
        assert got.dtype == dtype
        bound = EPS[dtype] * (8 + x[positive].astype(np.float64) ** 2)
        assert np.all(np.abs(got - want) <= bound * np.abs(want) + tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = erf_bce._log_erf(np.array([0.0, -1.0, np.nan]))
    assert edge[0] == -np.inf and np.isnan(edge[1]) and np.isnan(edge[2])


# ------------------------------------------------------------------ PyTorch

NET = {
    "name": "erfc_net",
    "input": 3,
    "layers": [
        {"units": 4, "activation": {"name": "erfc_act", "expr": "erfc(z)"}},
        {"units": 2, "activation": {"name": "lift", "expr": "sqrt(z*z + 1)"}},
    ],
    "loss": ERF_LOSS,
    "optimizer": {"name": "sgd", "learning_rate": 0.1},
}


def _torch_network(params, X, Y):
    """NET in PyTorch, written from the spec by hand: erfc hidden layer, ŷ = √(z² + 1),
    the loss through torch.erf and torch.erfc."""
    import torch

    t = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    h = torch.erfc(torch.tensor(X) @ t["W1"] + t["b1"])
    yhat = torch.sqrt((h @ t["W2"] + t["b2"]) ** 2 + 1)
    y = torch.tensor(Y)
    loss = -(y * torch.log(torch.erf(yhat)) + (1 - y) * torch.log(torch.erfc(yhat)))
    loss = loss.sum(1).mean()
    loss.backward()
    return float(loss.detach()), {k: v.grad.numpy() for k, v in t.items()}


def test_erfc_network_against_pytorch(tmp_path) -> None:
    pytest.importorskip("torch")
    module = generate_module(NET, tmp_path)
    rng = np.random.default_rng(23)
    X = rng.standard_normal((16, 3))
    Y = rng.uniform(0, 1, (16, 2))
    params = {
        "W1": rng.standard_normal((3, 4)),
        "b1": rng.standard_normal(4) * 0.1,
        "W2": rng.standard_normal((4, 2)) * 2,
        "b2": rng.standard_normal(2) * 0.1,
    }
    got, grads = module.loss_and_grad(params, X, Y)
    want, want_grads = _torch_network(params, X, Y)
    assert abs(got - want) <= 1e-12 * max(1.0, abs(want))
    for key, g in grads.items():
        np.testing.assert_allclose(g, want_grads[key], rtol=1e-10, atol=1e-13)
    # the in-place step takes the same gradient
    stepped = {k: v.copy() for k, v in params.items()}
    module.step(stepped, module.init_state(stepped), X, Y)
    for key in params:
        np.testing.assert_allclose(
            (params[key] - stepped[key]) / 0.1, grads[key], rtol=1e-10, atol=1e-13
        )


def test_the_report_writes_erfc_and_log_erf() -> None:
    spec = _spec("erf_bce", {"name": "erfc_act", "expr": "erfc(z)"}, ERF_LOSS)
    latex = symgrad.render_report(spec, "latex")
    assert r"\operatorname{erfc}{\left(z \right)}" in latex  # the activation
    # the loss as the module computes it: log erf and log erfc, each one function
    assert r"\log\operatorname{erf}\left(\hat{y}_{k}\right)" in latex
    text = symgrad.render_report(spec, "text")
    assert "log erf(ŷₖ)" in text and "log erfc(ŷₖ)" in text


# ------------------------------------------------------------------ array-API module

BACKENDS = xb.pytest_params(
    lambda b: b.name in ("numpy", "array-api-strict", "torch-cpu", "jax-jit")
)


@pytest.fixture(scope="module")
def erfc_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("erfc_xp")
    path = symgrad.generate(NET, out, target="array-api")
    return xb.load_module(path, "_erfc_net_xp"), generate_module(NET, out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_api_module_at_extreme_inputs(backend, erfc_pair) -> None:
    """The array-API module's loss and gradients equal the NumPy module's (checked
    against mpmath and PyTorch above) with pre-activations up to about ±1000."""
    xp_module, np_module = erfc_pair
    X = np.array([[-1000.0, 0.5, 30.0], [3.0, -6.0, 0.0], [100.0, 26.0, -1.0]])
    Y = np.array([[0.0, 1.0], [1.0, 0.25], [0.5, 0.0]])
    xb.check_gradients(xp_module, np_module, backend, X, Y, rtol=1e-12)


# ------------------------------------------------------------------ the checks' helpers


def _erf_off() -> list[str]:
    """The modules' erf series with its first coefficient 1% off."""
    right = _RIGHT["erf_series"]()
    return [repr(float(right[0]) * 1.01), *right[1:]]


def _erfcx_off() -> tuple[tuple[str, ...], ...]:
    """erfcx's Taylor polynomials with each constant term 1% off."""
    rows = _RIGHT["erfcx_taylor"]()
    return tuple((repr(float(row[0]) * 1.01), *row[1:]) for row in rows)


_RIGHT = {"erf_series": special.erf_series, "erfcx_taylor": special.erfcx_taylor}
CHECKED = [  # (a form's expression, a wrong helper it computes with)
    (sp.erf(z), "erf_series", _erf_off),
    (sp.erfc(z), "erf_series", _erf_off),  # 1 + erf(−z) below 0
    (sp.erfc(z), "erfcx_taylor", _erfcx_off),
    (sp.log(sp.erf(sp.Abs(z) + sp.Rational(1, 10))), "erf_series", _erf_off),
    (sp.log(sp.erf(sp.Abs(z) + sp.Rational(1, 10))), "erfcx_taylor", _erfcx_off),
    (sp.log((1 + sp.erf(z)) / 2), "erf_series", _erf_off),
    (sp.log((1 + sp.erf(z)) / 2), "erfcx_taylor", _erfcx_off),
]


@pytest.mark.parametrize("expr, name, wrong", CHECKED)
def test_the_derivations_checks_run_the_modules_own_helpers(
    expr, name, wrong, monkeypatch
) -> None:
    """derive's stability checks evaluate a form with the module's own special
    functions, run from the source a module gets (sym/special.py), _erf included: a
    slip in a helper's template or coefficients fails the checks of every form that
    computes with it, before a module carries it."""
    form = stabilize(expr)
    points = [{z: v} for v in (-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 5.0)]
    special.numpy_helpers.cache_clear()
    assert not stability.failures(form, expr, points), form  # the right helpers
    monkeypatch.setattr(special, name, wrong)
    special.numpy_helpers.cache_clear()
    try:
        assert stability.failures(form, expr, points), (form, name)
    finally:
        monkeypatch.undo()
        special.numpy_helpers.cache_clear()
