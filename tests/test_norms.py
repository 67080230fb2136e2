"""Norms: the derived forward and backward statements against PyTorch autograd.

The statements of each NormRule are evaluated here with a small NumPy evaluator of our
own (group reductions over the group's axis with keepdims, batch sums over axis 0) and
compared with torch.nn.functional's layer_norm, rms_norm and batch_norm (training mode,
running statistics included), and for custom norms with torch autograd of the same
formula written in torch. The structure tests (that SymPy found the textbook form) are
separate: agreement with torch is what says the rule is right.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F  # noqa: N812

from symgrad import norms
from symgrad.errors import ExpressionError
from symgrad.norm_rules import (
    BETA,
    DBETA,
    DGAMMA,
    DX,
    GAMMA,
    XHAT,
    G,
    H,
    N,
    X,
    _derive,
    norm_rule,
)
from symgrad.sym.arrays import ColSum, GroupMax, GroupMean, GroupSum, on_axis


@pytest.fixture(autouse=True)
def _float64_torch():
    """PyTorch's default dtype float64 for this file's tests only (set at import, it
    leaked into every later test of the process: torch.ones(4) became float64)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


SIGMA = sp.Symbol("sigma", positive=True)


# ------------------------------------------------------------------ evaluator


def _sigmoid(u):
    with np.errstate(over="ignore"):  # e^{-u} = inf: σ(u) = 0 exactly
        return 1 / (1 + np.exp(-u))


def evaluate(rule, statements, env, axis: int, dtype=np.float64) -> dict:
    """Run statements in order over arrays (m, n); the group is `axis` (1: each row's
    features, 0: each column's batch), placed by arrays.on_axis as the Plan will."""
    env = {k: np.asarray(v, dtype=dtype) for k, v in env.items()}
    size = env[X].shape[axis]
    shape = env[X].shape

    def reduce(fn, over, keepdims):
        return lambda a: fn(np.broadcast_to(a, shape), axis=over, keepdims=keepdims)

    modules = [
        {
            "RowSum": reduce(np.sum, 1, True),
            "RowMean": reduce(np.mean, 1, True),
            "RowMax": reduce(np.max, 1, True),
            "ColSum": reduce(np.sum, 0, False),
            "ColMean": reduce(np.mean, 0, False),
            "ColMax": reduce(np.max, 0, False),
            "sigmoid": _sigmoid,
        },
        "numpy",
    ]
    values = {s: float(v) for s, v in rule.params}
    for stmt in statements:
        e = on_axis(stmt.expr, axis).xreplace(values).xreplace({N: size})
        symbols = sorted(e.free_symbols, key=str)
        fn = sp.lambdify(symbols, e, modules=modules)
        with np.errstate(all="raise", under="ignore"):
            env[stmt.target] = np.asarray(fn(*(env[s] for s in symbols)), dtype=dtype)
    return env


def derived(rule, x, g, gamma=None, beta=None, axis=1, dtype=np.float64) -> dict:
    """Forward then backward statements of a rule on x and the upstream gradient g."""
    n = x.shape[1]
    env = {X: x, G: g}
    if rule.gain:
        env[GAMMA] = np.ones(n) if gamma is None else gamma
    if rule.shift:
        env[BETA] = np.zeros(n) if beta is None else beta
    env = evaluate(rule, rule.forward, env, axis, dtype)
    return evaluate(rule, rule.backward, env, axis, dtype)


def close(got, want, rtol: float = 1e-9) -> None:
    """Equal to rtol, relative to the largest reference entry (cancellation: a small
    entry of a large dx is as exact as the large ones)."""
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def data(shape: tuple[int, int], kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if kind == "large":
        x *= 1e3
    elif kind == "offset":
        x += 1e3
    elif kind == "constant_rows":
        x[::2] = 3.0
    elif kind == "constant_columns":
        x[:, ::2] = -2.0
    return x


def torch_grads(fn, x, g, *params):
    """(y, dx, dparams...) of y = fn(x, *params) for the upstream gradient g."""
    xt = torch.tensor(x, requires_grad=True)
    pt = [torch.tensor(p, requires_grad=True) for p in params]
    y = fn(xt, *pt)
    y.backward(torch.tensor(g))
    return (
        y.detach().numpy(),
        xt.grad.numpy(),
        *(p.grad.numpy() for p in pt),
    )


SHAPES = [(1, 5), (4, 7), (16, 3), (2, 1), (8, 64)]
KINDS = ["normal", "large", "offset", "constant_rows"]


# ------------------------------------------------------------------ built-in norms


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_layernorm_matches_torch(shape, kind) -> None:
    rule = norm_rule(norms.NORMS["layernorm"])
    rng = np.random.default_rng(1)
    x, g = data(shape, kind), rng.normal(size=shape)
    gamma, beta = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    y, dx, dgamma, dbeta = torch_grads(
        lambda t, w, b: F.layer_norm(t, (shape[1],), w, b, eps=1e-5),
        x,
        g,
        gamma,
        beta,
    )
    env = derived(rule, x, g, gamma, beta)
    close(env[rule.output], y)
    close(env[DX], dx)
    close(env[DGAMMA], dgamma)
    close(env[DBETA], dbeta)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_rmsnorm_matches_torch(shape, kind) -> None:
    rule = norm_rule(norms.NORMS["rmsnorm"])
    rng = np.random.default_rng(2)
    x, g = data(shape, kind), rng.normal(size=shape)
    gamma = rng.normal(size=shape[1])
    y, dx, dgamma = torch_grads(
        lambda t, w: F.rms_norm(t, (shape[1],), w, eps=1e-6), x, g, gamma
    )
    env = derived(rule, x, g, gamma)
    assert DBETA not in env and BETA not in env  # rmsnorm has no shift
    close(env[rule.output], y)
    close(env[DX], dx)
    close(env[DGAMMA], dgamma)


@pytest.mark.parametrize("shape", [(2, 5), (4, 7), (16, 3), (64, 8)])
@pytest.mark.parametrize("kind", ["normal", "large", "offset", "constant_columns"])
def test_batchnorm_training_matches_torch(shape, kind) -> None:
    rule = norm_rule(norms.NORMS["batchnorm"])
    rng = np.random.default_rng(3)
    x, g = data(shape, kind), rng.normal(size=shape)
    gamma, beta = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    running_mean = torch.tensor(rng.normal(size=shape[1]))
    running_var = torch.tensor(rng.uniform(0.5, 2.0, size=shape[1]))
    start = {"mean": running_mean.numpy().copy(), "var": running_var.numpy().copy()}
    y, dx, dgamma, dbeta = torch_grads(
        lambda t, w, b: F.batch_norm(
            t, running_mean, running_var, w, b, training=True, momentum=0.1, eps=1e-5
        ),
        x,
        g,
        gamma,
        beta,
    )
    env = derived(rule, x, g, gamma, beta, axis=0)
    close(env[rule.output], y)
    close(env[DX], dx)
    close(env[DGAMMA], dgamma)
    close(env[DBETA], dbeta)

    # running statistics: PyTorch's momentum update, unbiased variance
    for update in rule.running:
        env[update.buffer] = start[update.buffer.name.removeprefix("running_")]
    stats = {u.buffer: u for u in rule.running}
    for buf, u in stats.items():
        e = u.update.xreplace({s: float(v) for s, v in rule.params})
        e = e.xreplace({N: shape[0]})
        fn = sp.lambdify(sorted(e.free_symbols, key=str), e)
        got = fn(*(env[s] for s in sorted(e.free_symbols, key=str)))
        want = running_mean if buf.name == "running_mean" else running_var
        close(got, want.numpy())
        env[buf] = got
    # inference: the running statistics stand in for the batch ones (torch eval)
    x2 = data((5, shape[1]), "normal", seed=9)
    want = F.batch_norm(
        torch.tensor(x2),
        running_mean,
        running_var,
        torch.tensor(gamma),
        torch.tensor(beta),
        training=False,
        eps=1e-5,
    ).numpy()
    inference_env = {k: env[k] for k in (GAMMA, BETA, *stats)}
    inference_env[X] = x2
    got = evaluate(rule, rule.inference, inference_env, axis=0)[rule.output]
    close(got, want)


def test_parameters_override_the_defaults() -> None:
    rule = norm_rule(norms.NORMS["layernorm"], {"eps": 1e-2})
    assert dict((s.name, v) for s, v in rule.params) == {"eps": sp.Rational(1, 100)}
    x = data((3, 4), "constant_rows")
    g = np.random.default_rng(4).normal(size=x.shape)
    _, dx = torch_grads(lambda t: F.layer_norm(t, (4,), eps=1e-2), x, g)
    close(derived(rule, x, g)[DX], dx)


def test_constant_groups_are_finite_with_sigma_sqrt_eps() -> None:
    for name, eps in (("layernorm", 1e-5), ("rmsnorm", 1e-6), ("batchnorm", 1e-5)):
        rule = norm_rule(norms.NORMS[name])
        axis = 0 if rule.group == "batch" else 1
        x = np.zeros((4, 6)) if name == "rmsnorm" else np.full((4, 6), 7.0)
        g = np.random.default_rng(5).normal(size=x.shape)
        env = derived(rule, x, g, axis=axis)
        np.testing.assert_allclose(env[SIGMA], np.sqrt(eps), rtol=1e-12)
        assert np.all(env[XHAT] == 0)
        assert np.all(np.isfinite(env[DX]))
        assert rule.notes == ()


def test_float32_statements_stay_close() -> None:
    """The same statements in float32 (as a float32 module would run them)."""
    rule = norm_rule(norms.NORMS["layernorm"])
    rng = np.random.default_rng(6)
    x, g = data((8, 16), "offset"), rng.normal(size=(8, 16))
    _, dx = torch_grads(lambda t: F.layer_norm(t, (16,), eps=1e-5), x, g)
    got = derived(rule, x.astype(np.float32), g.astype(np.float32), dtype=np.float32)
    assert got[DX].dtype == np.float32
    close(got[DX], dx, rtol=2e-3)


# ------------------------------------------------------------------ custom norms


def _mean_abs(t):
    c = t - t.mean(-1, keepdim=True)
    return c / (c.abs().mean(-1, keepdim=True) + 1e-5)


CUSTOM = [
    ("(x - mean(x)) / (mean(abs(x - mean(x))) + eps)", _mean_abs),
    (
        "x / sqrt(mean(x**2) + eps)",
        lambda t: t / torch.sqrt((t**2).mean(-1, True) + 1e-5),
    ),
    ("x - max(x)", lambda t: t - torch.amax(t, -1, keepdim=True)),
    (
        "exp(x - max(x)) / sum(exp(x - max(x)))",
        lambda t: torch.exp(t - torch.amax(t, -1, True))
        / torch.exp(t - torch.amax(t, -1, True)).sum(-1, True),
    ),
    ("x - max(x) - log(sum(exp(x - max(x))))", lambda t: torch.log_softmax(t, -1)),
    ("x / max(abs(x))", lambda t: t / torch.amax(t.abs(), -1, keepdim=True)),
    (
        "(x - mean(x)) * sum(x**2) / 10",
        lambda t: (t - t.mean(-1, True)) * (t**2).sum(-1, True) / 10,
    ),
    (
        "sigmoid(x) - mean(sigmoid(x))",
        lambda t: torch.sigmoid(t) - torch.sigmoid(t).mean(-1, True),
    ),
    ("tanh(x)", torch.tanh),
]


@pytest.mark.parametrize(("text", "reference"), CUSTOM, ids=[c[0] for c in CUSTOM])
@pytest.mark.parametrize("kind", ["normal", "large", "ties"])
def test_custom_norms_match_torch(text, reference, kind) -> None:
    norm = norms.custom("mine", text, {"eps": 1e-5}, affine=False)
    rule = norm_rule(norm)
    rng = np.random.default_rng(7)
    x = data((6, 5), "large" if kind == "large" else "normal")
    if kind == "large" and "sum(x**2)" in text:
        x /= 1e2  # keeps the cube of the values finite in magnitude for a test
    if kind == "ties":  # the maximum attained twice, three times, everywhere
        x[0, [1, 3]] = 2.5
        x[1, [0, 2, 4]] = 4.0
        x[2] = -1.0
        x[3, [0, 1]] = -np.abs(x[3]).max() - 1  # |x| ties at a negative and a positive
        x[3, 1] *= -1
    g = rng.normal(size=x.shape)
    y, dx = torch_grads(reference, x, g)
    env = derived(rule, x, g)
    assert GAMMA not in rule.forward[-1].expr.free_symbols
    close(env[rule.output], y)
    close(env[DX], dx)


def test_custom_norm_with_affine_sums_gain_and_shift_over_the_batch() -> None:
    norm = norms.custom("mabs", CUSTOM[0][0], {"eps": 1e-5})
    rule = norm_rule(norm)
    rng = np.random.default_rng(8)
    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    y, dx, dgamma, dbeta = torch_grads(
        lambda t, w, b: _mean_abs(t) * w + b, x, g, gamma, beta
    )
    env = derived(rule, x, g, gamma, beta)
    for got, want in ((env[rule.output], y), (env[DX], dx), (env[DGAMMA], dgamma)):
        close(got, want)
    close(env[DBETA], dbeta)


def test_unstable_definitions_are_noted_not_rewritten() -> None:
    stable = norm_rule(norms.custom("sm", CUSTOM[3][0]))
    naive = norm_rule(norms.custom("naive", "exp(x) / sum(exp(x))"))
    assert stable.notes == ()
    assert any("forward" in n for n in naive.notes)
    assert any(n.startswith("dx:") for n in naive.notes)


def test_custom_norm_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="x appears only inside"):
        norms.custom("bad", "mean(x) + sum(x)")


# ------------------------------------------------------------------ structure


def test_layernorm_is_found_in_textbook_form() -> None:
    """SymPy reached (1/σ)(h − mean(h) − x̂ ⊙ mean(h ⊙ x̂)), in x̂ and σ from the
    forward, exact with eps inside σ."""
    for name in ("layernorm", "batchnorm"):
        rule = norm_rule(norms.NORMS[name])
        textbook = (H - GroupMean(H) - XHAT * GroupMean(H * XHAT)) / SIGMA
        assert rule.dx == textbook
        assert rule.basis == "xhat"
        assert rule.saved == (SIGMA, XHAT)
        assert str(rule.backward[1].equation) == "dx = (h − mean(h) − x̂·mean(h·x̂))/σ"
        forward = [s.equation for s in rule.forward]
        assert forward == [
            "μ = mean(x)",
            "var = mean((x − μ)²)",
            "σ = √(ε + var)",
            "x̂ = (x − μ)/σ",
            "y = β + γ·x̂",
        ]


def test_rmsnorm_and_softmax_compact_forms() -> None:
    rms = norm_rule(norms.NORMS["rmsnorm"])
    assert rms.dx == (H - XHAT * GroupMean(H * XHAT)) / SIGMA
    softmax = norm_rule(norms.custom("sm", CUSTOM[3][0], affine=False))
    assert softmax.dx == XHAT * (G - GroupSum(G * XHAT))
    assert softmax.saved == (XHAT,)
    shift = norm_rule(norms.custom("shift", "x - max(x)", affine=False))
    m = shift.reductions[0].symbol
    tie = sp.Piecewise((1, sp.Eq(X, m)), (0, True))
    assert shift.dx.atoms(GroupMax) == set()
    assert tie in shift.dx.atoms(sp.Piecewise)  # compares the forward's own x and max


def test_parameter_gradients_sum_over_the_batch() -> None:
    rule = norm_rule(norms.NORMS["layernorm"])
    grads = {s.target: s.expr for s in rule.backward}
    assert grads[DGAMMA] == ColSum(G * XHAT)
    assert grads[DBETA] == ColSum(G)
    assert grads[H] == GAMMA * G


def test_steps_show_each_reduction() -> None:
    rule = norm_rule(norms.NORMS["layernorm"])
    labels = [s.label for s in rule.steps]
    assert labels[0] == "elementwise part"
    for r in ("mu", "var"):
        assert f"adjoint of {r}" in labels and f"term of {r}" in labels
    assert labels[-1] == "simplified" and rule.steps[-1].rhs == rule.dx
    assert "by the definition of mu: mean(x̂) = 0" in [str(s) for s in rule.steps]


def test_same_rule_in_a_thread(monkeypatch) -> None:
    from symgrad import cache

    norm = norms.custom("mabs", CUSTOM[0][0], {"eps": 1e-5})
    first = norm_rule(norm)
    _derive.cache_clear()
    monkeypatch.setitem(cache._state, "enabled", False)  # derived again, not read back
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        again = pool.submit(norm_rule, norm).result()
    assert sp.srepr(first.dx) == sp.srepr(again.dx)
    assert [s.equation for s in first.forward] == [s.equation for s in again.forward]
    assert [str(s) for s in first.steps] == [str(s) for s in again.steps]


def test_parameters_named_like_derived_values_stay_apart() -> None:
    norm = norms.custom(
        "named",
        "(x - mean(x)) / (mean(abs(x - mean(x))) + sigma) * r1",
        {"sigma": 1e-3, "r1": 2.0},
    )
    rule = norm_rule(norm)
    names = [s.target.name for s in rule.forward]
    assert names[:3] == ["r1_2", "r2", "sigma_2"]
    rng = np.random.default_rng(10)
    x, g = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))

    def reference(t):
        c = t - t.mean(-1, keepdim=True)
        return c / (c.abs().mean(-1, keepdim=True) + 1e-3) * 2.0

    _, dx = torch_grads(lambda t: reference(t), x, g)
    env = derived(rule, x, g)
    close(env[DX], dx)
