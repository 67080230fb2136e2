"""A probit output with binary cross-entropy (issue 19, "a loss on an output that rounds to
0 or 1"): log Φ(z) = log(erfc(−z/√2)/2) is finite for every z, and so is its gradient
φ(z)/Φ(z). symgrad rewrites a log of c·(1 ± erf u) or c·erfc u through log erfc, which
the modules compute from erfcx(x) = e^{x²} erfc(x) (sym/special.py, no SciPy).

References are independent of the derivation: the module's special functions and the
loss and gradient in mpmath (60 digits) at z up to ±1000, PyTorch float64 autograd
(torch.special.log_ndtr) at |z| up to about 12, and central differences of the module's own loss.
NumPy warnings are errors in this suite (pytest's configuration).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import xp_backends as xb
from harness import generate_module

import symgrad

PROBIT = "(1 + erf(z/sqrt(2)))/2"
ZS = tuple(s * v for v in (0.0, 1.0, 5.0, 10.0, 30.0, 100.0, 1000.0) for s in (1, -1))
TARGETS = (0.0, 1.0, 0.25)
DIGITS = 60
TOL = {np.float64: 1e-12, np.float32: 2e-5}


def _spec(name: str, activation: str, loss: object = "binary_crossentropy") -> dict:
    return {
        "name": name,
        "input": 1,
        "layers": [{"units": 1, "activation": {"name": "probit", "expr": activation}}],
        "loss": loss,
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
    }


def _xlogy(u, v):
    return mpmath.mpf(0) if u == 0 else u * mpmath.log(v)


def _bce(p, q, t):
    """−(t log p + (1 − t) log q) with q = 1 − p held to full precision."""
    return -(_xlogy(t, p) + _xlogy(1 - t, q))


def _kl(p, q, t):
    return _xlogy(t, t / p) + _xlogy(1 - t, (1 - t) / q)


def _phi(scale):
    """Φ(scale·u) and 1 − Φ(scale·u) = Φ(−scale·u), each to full precision."""
    return lambda u: (mpmath.ncdf(scale * u), mpmath.ncdf(-scale * u))


def _reference(loss, act, zs, t):
    """Mean loss over the rows z, and ∂L/∂w, ∂L/∂b of z = x·w + b at w = 1, b = 0."""
    with mpmath.workdps(DIGITS):
        total, dw, db = mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
        tt = mpmath.mpf(t)
        for v in zs:
            u = mpmath.mpf(float(v))
            total += loss(*act(u), tt)
            d = mpmath.diff(lambda s: loss(*act(s), tt), u)
            dw += d * u
            db += d
        m = len(zs)
        return float(total / m), float(dw / m), float(db / m)


def _check(module, loss, act, dtype, zs=ZS) -> None:
    X = np.array(zs, dtype=dtype)[:, None]
    params = {"W1": np.ones((1, 1), dtype), "b1": np.zeros(1, dtype)}
    for t in TARGETS:
        Y = np.full_like(X, t)
        got, grads = module.loss_and_grad(params, X, Y)
        want, dw, db = _reference(loss, act, X[:, 0].astype(np.float64), t)
        tol = TOL[dtype]
        assert np.isfinite(got) and abs(got - want) <= tol * max(1.0, abs(want)), (
            t,
            got,
            want,
        )
        for key, ref in (("W1", dw), ("b1", db)):
            g = float(np.ravel(grads[key])[0])
            assert np.isfinite(g) and abs(g - ref) <= tol * max(1.0, abs(ref)), (
                t,
                key,
                g,
                ref,
            )
            assert grads[key].dtype == dtype
        # the in-place step takes the same gradient, finite
        stepped = {k: v.copy() for k, v in params.items()}
        module.step(stepped, module.init_state(stepped), X, Y)
        np.testing.assert_allclose(
            (params["b1"] - stepped["b1"]) / dtype(0.1),
            grads["b1"],
            rtol=1e-5 if dtype == np.float32 else 1e-12,
        )


@pytest.fixture(scope="module")
def probit(tmp_path_factory):
    return generate_module(
        _spec("probit_bce", PROBIT), tmp_path_factory.mktemp("probit")
    )


def test_probit_bce_is_derived_without_a_warning() -> None:
    """Before: "no stable form found ... exact for |z| <= 6 in float64"."""
    d = symgrad.derive(_spec("probit_bce", PROBIT))
    assert not [n for n in d.notes if "probit" in n], d.notes
    assert d.output.forward.has(symgrad.sym.functions.log_erfc)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_probit_bce_loss_and_gradient_against_mpmath(probit, dtype) -> None:
    """z in ±{0, 1, 5, 10, 30, 100, 1000}: Φ(10) rounds to 1 in both dtypes, the loss
    at z = −1000 with y = 1 is 500 006.9, its gradient −1000.0001."""
    _check(probit, _bce, _phi(1), dtype)


def test_other_members_of_the_class(tmp_path) -> None:
    """The rewrite is not probit-by-name: Φ(√2 z) written another way, a KL loss whose
    logs of ratios split into log ŷ and log(1 − ŷ), and erf inside a custom loss."""
    written = generate_module(_spec("erf_bce", "0.5 - 0.5*erf(-z)"), tmp_path)
    _check(written, _bce, _phi(mpmath.sqrt(2)), np.float64)
    kl = {"name": "kl", "expr": "y*log(y/yhat) + (1 - y)*log((1 - y)/(1 - yhat))"}
    spec = _spec("probit_kl", PROBIT, kl)
    assert not symgrad.derive(spec).notes
    _check(generate_module(spec, tmp_path), _kl, _phi(1), np.float64)
    # the erf in a custom loss on an identity output
    loss = {
        "name": "neg_log_phi",
        "expr": "-y*log((1 + erf(yhat))/2) - (1 - y)*log((1 - erf(yhat))/2)",
    }
    spec = {**_spec("erf_loss", "z", loss)}
    spec["layers"] = [{"units": 1, "activation": "identity"}]
    assert not symgrad.derive(spec).notes
    _check(generate_module(spec, tmp_path), _bce, _phi(mpmath.sqrt(2)), np.float64)


# ------------------------------------------------------------------ the helpers


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want).astype(got.dtype))


def _mp_table(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """erfcx, log erfc and e^{−x²}/erfc at each x, in 40 digits."""
    with mpmath.workdps(40):
        x = [mpmath.mpf(float(v)) for v in xs]
        return (
            np.array([float(mpmath.exp(v**2) * mpmath.erfc(v)) for v in x]),
            np.array([float(mpmath.log(mpmath.erfc(v))) for v in x]),
            np.array([float(mpmath.exp(-(v**2)) / mpmath.erfc(v)) for v in x]),
        )


def test_erfcx_and_log_erfc_against_mpmath(probit) -> None:
    """The module's own helpers over the real line, in float64 and float32."""
    xs = np.concatenate([np.linspace(0, 12, 2401), np.geomspace(12, 1e8, 400)])
    signed = np.concatenate([-xs[::-1], xs])
    erfcx, _, _ = _mp_table(xs)
    _, log_erfc, inv = _mp_table(signed)
    assert _ulps(probit._erfcx(xs), erfcx).max() <= 4
    # log erfc(x) = log erfcx(x) − x²: the error of erfcx, absolute, plus x²'s rounding
    np.testing.assert_allclose(
        probit._log_erfc(signed), log_erfc, rtol=4e-16, atol=1e-15
    )
    # e^{−x²}/erfc(x) below 0 is at most e^{−x²}: x² rounded to eps·x² relative
    # error moves it by that much (for x ≥ 0 it is 1/erfcx: erfcx's few ulp)
    for dtype, eps in ((np.float64, 2.3e-16), (np.float32, 1.2e-7)):
        x = signed.astype(dtype)
        if dtype == np.float32:  # float32 stays float32: against its own x
            erfcx, log_erfc, inv = _mp_table(x)
            assert _ulps(probit._erfcx(x[x >= 0]), erfcx[x >= 0]).max() <= 4
        got = probit._inv_erfcx(x)
        assert got.dtype == dtype
        normal = inv > np.finfo(dtype).tiny
        bound = eps * (4 + np.where(x < 0, x.astype(np.float64) ** 2, 0)) * inv
        assert np.all((np.abs(got - inv) <= bound)[normal])
        assert np.all(np.abs(got[~normal]) <= np.finfo(dtype).tiny)
        if dtype == np.float32:
            np.testing.assert_allclose(
                probit._log_erfc(x), log_erfc, rtol=3e-7, atol=1.2e-7
            )


def test_helpers_carry_nan(probit) -> None:
    x = np.array([np.nan, 1.0, -1.0])
    for name in ("_erfcx", "_log_erfc", "_inv_erfcx"):
        got = getattr(probit, name)(x)
        assert np.isnan(got[0]) and np.all(np.isfinite(got[1:])), name


# ------------------------------------------------------------------ PyTorch, FD


def _torch_network(params, X, Y):
    """The spec below in PyTorch: tanh hidden layer, probit outputs, mean BCE
    (through torch.special.log_ndtr, PyTorch's own stable log Φ)."""
    import torch

    t = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    h = torch.tanh(torch.tensor(X) @ t["W1"] + t["b1"])
    z = h @ t["W2"] + t["b2"]
    y = torch.tensor(Y)
    # log Φ(z) and log(1 − Φ(z)) = log Φ(−z), as PyTorch computes them
    log_p, log_q = torch.special.log_ndtr(z), torch.special.log_ndtr(-z)
    loss = -(y * log_p + (1 - y) * log_q).sum(1).mean()
    loss.backward()
    return float(loss.detach()), {k: v.grad.numpy() for k, v in t.items()}


def test_probit_network_against_pytorch_and_finite_differences(tmp_path) -> None:
    pytest.importorskip("torch")
    spec = {
        "name": "probit_net",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": {"name": "probit", "expr": PROBIT}},
        ],
        "loss": "binary_crossentropy",
    }
    module = generate_module(spec, tmp_path)
    rng = np.random.default_rng(19)
    X = rng.standard_normal((16, 3))
    Y = rng.integers(0, 2, (16, 2)).astype(np.float64)
    params = {
        "W1": rng.standard_normal((3, 4)),
        "b1": rng.standard_normal(4) * 0.1,
        "W2": rng.standard_normal((4, 2)) * 4,  # |z| up to about 12
        "b2": rng.standard_normal(2) * 0.1,
    }
    got, grads = module.loss_and_grad(params, X, Y)
    want, want_grads = _torch_network(params, X, Y)
    assert abs(got - want) <= 1e-12 * max(1.0, abs(want))
    for key, g in grads.items():
        np.testing.assert_allclose(g, want_grads[key], rtol=1e-10, atol=1e-13)
    # central differences of the module's own loss
    h = 1e-6
    for key in params:
        fd = np.zeros_like(params[key])
        for i in np.ndindex(params[key].shape):
            p = {k: v.copy() for k, v in params.items()}
            p[key][i] += h
            up = module.loss(p, X, Y)
            p[key][i] -= 2 * h
            fd[i] = (up - module.loss(p, X, Y)) / (2 * h)
        np.testing.assert_allclose(grads[key], fd, rtol=1e-6, atol=1e-8, err_msg=key)


# ------------------------------------------------------------------ array-API module

BACKENDS = xb.pytest_params(
    lambda b: b.name in ("numpy", "array-api-strict", "torch-cpu", "jax-jit")
)


@pytest.fixture(scope="module")
def probit_pair(tmp_path_factory, probit):
    out = tmp_path_factory.mktemp("probit_xp")
    path = symgrad.generate(_spec("probit_bce", PROBIT), out, target="array-api")
    return xb.load_module(path, "_probit_bce_xp"), probit


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_api_module_at_extreme_z(backend, probit_pair) -> None:
    """The array-API module's loss and gradients equal the NumPy module's (checked
    against mpmath above) at z up to ±1000, every target."""
    xp_module, np_module = probit_pair
    X = np.array(ZS)[:, None] * 1.0
    for t in TARGETS:
        Y = np.full_like(X, t)
        xb.check_gradients(xp_module, np_module, backend, X, Y, rtol=1e-12)
