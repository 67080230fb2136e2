"""Finite wherever the mathematics is (issue 19): losses on outputs that round to 0 or 1,
and gradients at seams where the function is differentiable.

References are independent of symgrad's derivation: the loss and its gradient in
mpmath at 60 digits, and, at a seam, central finite differences of the module's own
loss. NumPy warnings are errors in this suite (pytest's configuration).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from harness import generate_module

GAPS = (37.0, 100.0, 1000.0)  # logit gaps of a softmax output
ZS = (-1000.0, -100.0, -30.0, -9.0, 9.0, 30.0, 100.0, 1000.0)
DIGITS = 60


def _fd(module, params, X, Y, key: str, h: float = 1e-6) -> np.ndarray:
    """Central differences of module.loss in each entry of params[key]."""
    p = {k: v.copy() for k, v in params.items()}
    out = np.zeros_like(p[key])
    for i in np.ndindex(p[key].shape):
        keep = p[key][i]
        p[key][i] = keep + h
        up = module.loss(p, X, Y)
        p[key][i] = keep - h
        down = module.loss(p, X, Y)
        p[key][i] = keep
        out[i] = (up - down) / (2 * h)
    return out


# ------------------------------------------------------------------ seams

SEAM_LOSSES = {
    # smooth at ŷ = y with slope 1 (and slope y): diff() gives sign(0)² = 0 there
    "signed_log": "sign(yhat - y)*log(1 + abs(yhat - y))",
    "signed_exp": "y*sign(yhat - y)*(exp(abs(yhat - y)) - 1)",
    # max + min = ŷ + y: two Heavisides, each 0 at the seam
    "max_min": "max(yhat, y) + min(yhat, y)",
}


@pytest.mark.parametrize("name", sorted(SEAM_LOSSES))
def test_gradient_at_a_removable_seam_of_the_loss(tmp_path, name) -> None:
    spec = {
        "name": name,
        "input": 1,
        "layers": [{"units": 2, "activation": "identity"}],
        "loss": {"name": name, "expr": SEAM_LOSSES[name]},
        "optimizer": {"name": "sgd", "learning_rate": 0.5},
    }
    module = generate_module(spec, tmp_path)
    # every example sits on the seam ŷ = y (X = 0, b = y), one example off it
    X = np.array([[0.0], [0.0], [0.7]])
    Y = np.array([[0.5, 1.5], [0.5, 1.5], [0.1, -0.3]])
    params = {"W1": np.array([[0.3, -0.2]]), "b1": np.array([0.5, 1.5])}
    _, grads = module.loss_and_grad(params, X, Y)
    for key in params:
        want = _fd(module, params, X, Y, key)
        # one-sided curvatures differ at the seam: central differences are O(h) there
        np.testing.assert_allclose(grads[key], want, rtol=1e-4, atol=1e-6, err_msg=key)
    # the in-place step takes the same gradient
    stepped = {k: v.copy() for k, v in params.items()}
    module.step(stepped, module.init_state(stepped), X, Y)
    for key in params:
        np.testing.assert_allclose(
            (params[key] - stepped[key]) / 0.5, grads[key], rtol=1e-12, atol=1e-15
        )


# ------------------------------------------------------------------ elementwise outputs

TOL = {np.float64: 1e-9, np.float32: 2e-4}


def _xlogy(u, v):
    """u·log v, 0 where u = 0 (the limit of u·log u)."""
    return mpmath.mpf(0) if u == 0 else u * mpmath.log(v)


# an output activation as (ŷ, 1 − ŷ): 1 − ŷ written so that it keeps its digits
def _mp_sigmoid(u):
    return 1 / (1 + mpmath.exp(-u)), 1 / (1 + mpmath.exp(u))


def _kl(yhat, t):
    p, q = yhat
    return _xlogy(t, t / p) + _xlogy(1 - t, (1 - t) / q)


def _bce(yhat, t):
    p, q = yhat
    return -(_xlogy(t, p) + _xlogy(1 - t, q))


def _reference(loss, act, X, Y):
    """Mean loss and its gradient in W1 (1×n) and b1 of a one-layer net, in mpmath:
    z = x·w + b per unit, ℓ summed over units, averaged over examples."""
    m, n = Y.shape
    with mpmath.workdps(DIGITS):
        total, dw, db = mpmath.mpf(0), [mpmath.mpf(0)] * n, [mpmath.mpf(0)] * n
        for i in range(m):
            for k in range(n):
                t, zk = mpmath.mpf(float(Y[i, k])), mpmath.mpf(float(X[i, 0]))
                total += loss(act(zk), t)
                d = mpmath.diff(lambda u, t=t: loss(act(u), t), zk)
                dw[k] += d * zk
                db[k] += d
        return (
            float(total / m),
            {
                "W1": np.array([[float(v / m) for v in dw]]),
                "b1": np.array([float(v / m) for v in db]),
            },
        )


def _compare(module, loss, act, X, Y, dtype, tol: float | None = None) -> None:
    tol = TOL[dtype] if tol is None else tol
    n = Y.shape[1]
    params = {"W1": np.ones((1, n), dtype), "b1": np.zeros(n, dtype)}
    got, grads = module.loss_and_grad(params, X.astype(dtype), Y.astype(dtype))
    want, want_grads = _reference(loss, act, X.astype(dtype), Y.astype(dtype))
    assert np.isfinite(got), got
    assert abs(got - want) <= tol * max(1.0, abs(want)), (got, want)
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), (key, g)
        ref = want_grads[key]
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(g, ref, rtol=0, atol=tol * scale, err_msg=key)


def _column(values) -> np.ndarray:
    return np.array(values, dtype=np.float64)[:, None]


KL = "y*log(y/yhat) + (1 - y)*log((1 - y)/(1 - yhat))"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("target", [0.0, 0.25, 1.0])
def test_kl_divergence_on_a_sigmoid_at_extreme_logits(tmp_path, target, dtype) -> None:
    spec = {
        "name": "kl_sigmoid",
        "input": 1,
        "layers": [{"units": 1, "activation": "sigmoid"}],
        "loss": {"name": "kl", "expr": KL},
    }
    module = generate_module(spec, tmp_path)
    X = _column(ZS)
    Y = np.full((len(ZS), 1), target)
    _compare(module, _kl, _mp_sigmoid, X, Y, dtype)


# ------------------------------------------------------------------ softmax outputs


def _softmax_reference(loss, Z, Y):
    """Mean loss and δ = ∂L/∂Z (m×K) of Σ_k loss((ŷ_k, 1 − ŷ_k), y_k) on a softmax,
    in mpmath; 1 − ŷ_k as the sum of the other classes (no cancellation)."""
    m, n = Z.shape
    with mpmath.workdps(DIGITS):

        def row_loss(zs, ys):
            e = [mpmath.exp(v - max(zs)) for v in zs]
            total = mpmath.fsum(e)
            return mpmath.fsum(
                loss((e[k] / total, mpmath.fsum(e[:k] + e[k + 1 :]) / total), ys[k])
                for k in range(n)
            )

        value, delta = mpmath.mpf(0), np.zeros((m, n))
        for i in range(m):
            zs = [mpmath.mpf(float(v)) for v in Z[i]]
            ys = [mpmath.mpf(float(v)) for v in Y[i]]
            value += row_loss(zs, ys)
            for j in range(n):

                def moved(u, j=j, zs=zs, ys=ys):
                    return row_loss(zs[:j] + [u] + zs[j + 1 :], ys)

                delta[i, j] = float(mpmath.diff(moved, zs[j]) / m)
        return float(value / m), delta


def _softmax_rows(gap: float) -> tuple[np.ndarray, np.ndarray]:
    Z = np.array(
        [
            [gap, 0.0, 0.0],  # right, sure
            [gap, 0.0, 0.0],  # wrong, sure: loss ≈ gap
            [0.0, gap, -gap / 2],
            [-gap, 0.0, 3.0],
            [gap, gap, 0.0],  # a tie at the max
            [0.5, -0.2, 0.1],
        ]
    )
    Y = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 0.25, 0.75],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    return Z, Y


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("loss", ["binary_crossentropy", "kl"])
def test_log_one_minus_softmax_at_large_logit_gaps(tmp_path, loss, gap, dtype) -> None:
    """Binary cross-entropy (or KL) on a softmax: log(1 − ŷ) as a log-sum-exp over
    the other classes; NaN from a gap of 37 before."""
    spec = {
        "name": "bce_softmax",
        "input": 3,
        "layers": [{"units": 3, "activation": "softmax"}],
        "loss": loss if loss != "kl" else {"name": "kl", "expr": KL},
    }
    module = generate_module(spec, tmp_path)
    Z, Y = _softmax_rows(gap)
    want, delta = _softmax_reference(_bce if loss != "kl" else _kl, Z.astype(dtype), Y)
    params = {"W1": np.eye(3, dtype=dtype), "b1": np.zeros(3, dtype)}
    got, grads = module.loss_and_grad(params, Z.astype(dtype), Y.astype(dtype))
    assert np.isfinite(got) and abs(got - want) <= TOL[dtype] * max(1.0, abs(want))
    Zr = Z.astype(dtype).astype(np.float64)
    expected = {"W1": Zr.T @ delta, "b1": delta.sum(axis=0)}
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), (key, g)
        scale = max(1.0, float(np.abs(expected[key]).max()))
        np.testing.assert_allclose(
            g, expected[key], rtol=0, atol=TOL[dtype] * scale, err_msg=key
        )
    # the in-place step computes the same
    stepped = {k: v.copy() for k, v in params.items()}
    before = module.step(
        stepped, module.init_state(stepped), Z.astype(dtype), Y.astype(dtype)
    )
    assert np.isfinite(before) and np.all(np.isfinite(stepped["W1"]))
