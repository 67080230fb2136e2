"""A derivation to trust: custom expressions at extreme inputs, kinks, bounds, determinism.

The references are independent of SymPy and of the generated code: each function is
written again here with mpmath, and its derivative is mpmath's numerical differentiation
(`mpmath.diff`, 50 digits; one-sided at kinks). The generated module's gradient with
respect to a bias isolates one derivative: for a one-unit layer with W = 1 and b = 0, the
gradient of b is the output delta δ(z) at z = x; with a second, identity layer and mse,
it is f(z)·f'(z).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mpmath
import numpy as np
import pytest
from harness import generate_module

import symgrad
from symgrad.errors import SpecError

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

mp = mpmath.mp
ROOT = Path(__file__).resolve().parent.parent
EXTREMES = (-1000.0, -100.0, -30.0, -1.5, 0.0, 0.7, 30.0, 100.0, 1000.0)


def _sig(u):
    return 1 / (1 + mpmath.exp(-u))


def _softplus(u):
    return mpmath.log1p(mpmath.exp(u)) if u < 0 else u + mpmath.log1p(mpmath.exp(-u))


# name -> (expression for the spec, parameters, the same function in mpmath)
ACTIVATIONS = {
    "mish": ("z*tanh(log(1 + exp(z)))", {}, lambda z: z * mpmath.tanh(_softplus(z))),
    "swish_b": (
        "z*sigmoid(b*z)",
        {"b": 1.702},
        lambda z: z * _sig(mpmath.mpf("1.702") * z),
    ),
    "lecun_tanh": (
        "A * tanh(B * z)",
        {"A": 1.7159, "B": 0.6667},
        lambda z: mpmath.mpf("1.7159") * mpmath.tanh(mpmath.mpf("0.6667") * z),
    ),
    "half_tanh": ("0.5*(1 + tanh(z))", {}, lambda z: (1 + mpmath.tanh(z)) / 2),
    "softplus_custom": ("log(1 + exp(z))", {}, _softplus),
    "exp_sigmoid": ("exp(z)/(1 + exp(z))", {}, _sig),
    "signed_log": (
        "sign(z)*log(1 + abs(z))",
        {},
        lambda z: mpmath.sign(z) * mpmath.log1p(abs(z)),
    ),
    "leaky_max": ("max(z, 0.25*z)", {}, lambda z: max(z, z / 4)),
    # a condition that is not linear in z: min(0, a(e^z - 1)) <= 0 where z <= 0
    "selu": (
        "l*max(z, 0) + l*min(0, s*(exp(z) - 1))",
        {"l": 1.0507009873554805, "s": 1.6732632423543772},
        lambda z: mpmath.mpf("1.0507009873554805")
        * (z if z > 0 else mpmath.mpf("1.6732632423543772") * mpmath.expm1(z)),
    ),
    "hard_sigmoid": (
        "max(0, min(1, 0.2*z + 0.5))",
        {},
        lambda z: max(mpmath.mpf(0), min(mpmath.mpf(1), z / 5 + mpmath.mpf(1) / 2)),
    ),
    # branches that overflow outside their own interval: each is evaluated inside it
    "exp_abs": ("exp(-abs(z))", {}, lambda z: mpmath.exp(-abs(z))),
    "log_cosh": ("log(cosh(z))", {}, lambda z: mpmath.log(mpmath.cosh(z))),
    # multiplied out, its inverse's substitution once took minutes in expand()
    "tanh_squared": ("tanh(z)**2", {}, lambda z: mpmath.tanh(z) ** 2),
    # 0/0 at z = 0, which a zero input with a zero bias hits exactly: the limit there
    "sinc": ("sin(z)/z", {}, mpmath.sinc),
    "tanh_over_z": (
        "tanh(z)/z + z",
        {},
        lambda z: (mpmath.tanh(z) / z if z else mpmath.mpf(1)) + z,
    ),
    "expm1_ratio": (
        "z**2/(exp(z) - 1) + z",
        {},
        lambda z: (z**2 / mpmath.expm1(z) if z else mpmath.mpf(0)) + z,
    ),
}

# name -> (loss expression, parameters, output activation, loss in mpmath of (z, y))
LOSSES = {
    "logits_bce": (
        "log(1 + exp(yhat)) - y*yhat",
        {},
        "identity",
        lambda z, y: _softplus(z) - y * z,
    ),
    "focal": (
        "-y*(1 - yhat)**g*log(yhat) - (1 - y)*yhat**g*log(1 - yhat)",
        {"g": 2.0},
        "sigmoid",
        lambda z, y: -y * (1 - _sig(z)) ** 2 * -_softplus(-z)
        - (1 - y) * _sig(z) ** 2 * -_softplus(z),
    ),
    "bce_on_tanh_sigmoid": (
        None,
        {},
        {"name": "tanh_sigmoid", "expr": "0.5*(1 + tanh(z))"},
        lambda z, y: y * _softplus(-2 * z) + (1 - y) * _softplus(2 * z),
    ),
    "logcosh_scaled": (
        "log(cosh(s*(yhat - y)))/s",
        {"s": 2.0},
        "identity",
        lambda z, y: (
            abs(2 * (z - y)) + _softplus(-2 * abs(2 * (z - y))) - mpmath.log(2)
        )
        / 2,
    ),
}


def _one_unit(name, activation, loss, hidden=None):
    layers = [{"units": 1, "activation": activation}]
    if hidden is not None:
        layers = [
            {"units": 1, "activation": hidden},
            {"units": 1, "activation": "identity"},
        ]
    return {"name": name, "input": 1, "layers": layers, "loss": loss}


def _unit_params(module, dtype):
    params = module.init_params(seed=0, dtype=dtype)
    for key in params:
        params[key][...] = 1 if key.startswith("W") else 0
    return params


def _close(got, want, dtype):
    tol = 1e-9 if dtype == np.float64 else 2e-3
    return abs(got - want) <= tol * max(1.0, abs(want))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_custom_activation_derivative_at_extreme_inputs(tmp_path, name, dtype):
    expr, params, f = ACTIVATIONS[name]
    spec = _one_unit(name, None, "mse", hidden={"name": name, "expr": expr, **params})
    module = generate_module(spec, tmp_path)
    weights = _unit_params(module, dtype)
    with mp.workdps(50):
        for x in EXTREMES:
            if name in ("signed_log", "leaky_max", "selu", "exp_abs") and x == 0:
                continue  # the kink: tested one-sided below
            want = f(mpmath.mpf(x)) * mpmath.diff(f, mpmath.mpf(x))
            if abs(want) > 1e30:
                continue  # not finite in float32 (f itself is large)
            _, grads = module.loss_and_grad(
                weights, np.array([[x]], dtype), np.zeros((1, 1))
            )
            got = float(grads["b1"][0])
            assert np.isfinite(got), (name, x, dtype)
            assert _close(got, float(want), dtype), (name, x, got, float(want))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_custom_loss_delta_at_extreme_logits(tmp_path, name, dtype):
    expr, params, out, loss = LOSSES[name]
    spec_loss = (
        "binary_crossentropy"
        if expr is None
        else {"name": name, "expr": expr, **params}
    )
    module = generate_module(_one_unit(name, out, spec_loss), tmp_path)
    weights = _unit_params(module, dtype)
    with mp.workdps(50):
        for x in EXTREMES:
            for target in (0.0, 0.3, 1.0):
                X, Y = np.array([[x]], dtype), np.array([[target]], dtype)
                want_loss = loss(mpmath.mpf(x), mpmath.mpf(target))
                t = mpmath.mpf(target)
                want = mpmath.diff(lambda u, t=t: loss(u, t), mpmath.mpf(x))
                got_loss, grads = module.loss_and_grad(weights, X, Y)
                got = float(grads["b1"][0])
                assert np.isfinite(got) and np.isfinite(got_loss), (name, x, target)
                assert _close(got, float(want), dtype), (
                    name,
                    x,
                    target,
                    got,
                    float(want),
                )
                assert _close(got_loss, float(want_loss), dtype), (name, x, target)
                # step computes the same numbers in place
                state = module.init_state(weights)
                before = {k: v.copy() for k, v in weights.items()}
                assert _close(module.step(weights, state, X, Y), got_loss, dtype)
                weights.update(before)


@pytest.mark.parametrize(
    "expr, slope",
    [
        ("max(z, 0.25*z)", 0.25),  # the kink: the left derivative, like leaky_relu's α
        ("relu(z) - 0.5*relu(-z)", 0.5),
        ("abs(z)", -1.0),
        ("sign(z)*log(1 + abs(z))", 1.0),  # smooth at 0: slope 1, not sign(0)² = 0
        ("min(z, 0) + 3*max(z, 0)", 1.0),
        ("2*max(z, 0) + 2*min(0, 1.5*(exp(z) - 1))", 3.0),  # selu-like: 2·1.5·e⁰
    ],
)
def test_derivative_at_a_kink_is_the_left_one(tmp_path, expr, slope):
    spec = _one_unit("kink", None, "mse", hidden={"name": "k", "expr": expr})
    module = generate_module(spec, tmp_path)
    weights = _unit_params(module, np.float64)
    weights["b2"][...] = 1.0  # f(0) = 0, so δ2 = f(0) + 1 - 0 = 1 and db1 = f'(0)
    _, grads = module.loss_and_grad(weights, np.zeros((1, 1)), np.zeros((1, 1)))
    with mp.workdps(30):
        f = ACTIVATIONS["signed_log"][2] if "log" in expr else None
        if f is not None:  # and from mpmath, from the left
            assert abs(float(mpmath.diff(f, 0, direction=-1)) - slope) < 1e-12
    assert grads["b1"][0] == pytest.approx(slope, abs=1e-12)


def test_printed_piecewise_rules_have_no_unreachable_branch():
    rule = (
        symgrad.derive(
            "name: pw\ninput: 1\nlayers:\n"
            '  - {units: 1, activation: {name: k, expr: "max(z, 0.25*z) + abs(z) - abs(z)"}}\n'
            "loss: mse\n"
        )
        .layers[0]
        .activation
    )
    import sympy as sp

    assert isinstance(rule.df, sp.Piecewise)
    bounds = [cond.rhs for _, cond in rule.df.args[:-1]]
    assert bounds == sorted(set(bounds)), rule.df  # increasing: each branch reachable
    values = [v for v, _ in rule.df.args]
    assert all(u != v for u, v in zip(values, values[1:], strict=False)), rule.df


def test_collapse_up_to_a_constant_and_scaled_outputs_in_a(tmp_path):
    d = symgrad.derive(
        "name: ht\ninput: 1\nlayers:\n"
        '  - {units: 2, activation: {name: lecun, expr: "A * tanh(B * z)", A: 1.7159,'
        " B: 0.6667}}\n"
        '  - {units: 1, activation: {name: half_tanh, expr: "0.5*(1 + tanh(z))"}}\n'
        "loss: binary_crossentropy\n"
    )
    hidden, out = d.layers[0].activation, d.layers[1].activation
    assert hidden.in_a and out.in_a  # A·B − (B/A)·a² and 2a(1 − a): no tanh recomputed
    assert d.output.collapsed  # 2(ŷ − y), found by cancellation
    import sympy as sp

    from symgrad.activations import a, y
    from symgrad.sym.functions import numeric

    assert sp.expand(numeric(d.output.delta) - 2 * (a - y)) == 0
    assert sp.expand(numeric(out.df) - 2 * a * (1 - a)) == 0
    source = symgrad.render_module(d) if hasattr(symgrad, "render_module") else None
    if source is None:
        from symgrad.render import render

        source = render(d)
    # the coefficients are printed as the spec wrote them, not as long ratios
    assert "1.7159" in source and "0.6667" in source
    assert "17159" not in source and "6667/" not in source


HOSTILE = {
    # found slow or hanging before the derivation was bounded
    "lecun": (
        'activation: {name: t, expr: "A * tanh(B * z)", A: 1.7159, B: 0.6667}',
        None,
    ),
    "ugly_loss": (
        'loss: {name: u, expr: "log(cosh(yhat-y))**3 + (yhat-y)**6/(1+(yhat-y)**4)'
        ' + atan(yhat*y)**2"}',
        None,
    ),
    "six_sigmoids": (
        'activation: {name: s6, expr: "' + "sigmoid(" * 6 + "z" + ")" * 6 + '"}',
        None,
    ),
    "thirty_sigmoids": (
        'activation: {name: s30, expr: "' + "sigmoid(" * 30 + "z" + ")" * 30 + '"}',
        "nested",
    ),
    "power_tower": ('activation: {name: p, expr: "((z+1)**64)**64"}', "exponent"),
    "degree": ('activation: {name: p, expr: "(z**8 + 1)**16"}', "degree"),
    "kinks": (
        'activation: {name: k, expr: "'
        + " + ".join([f"abs(z - {i})" for i in range(9)])
        + '"}',
        "abs/sign/max/min",
    ),
    "cubic": ('activation: {name: c, expr: "z**3/(1+z*z)"}', None),
}


def _hostile_spec(item: str) -> str:
    if item.startswith("loss"):
        return (
            "name: h\ninput: 2\nlayers:\n  - {units: 2, activation: tanh}\n"
            + item
            + "\n"
        )
    return (
        "name: h\ninput: 2\nlayers:\n  - {units: 2, " + item + "}\n"
        "  - {units: 1, activation: identity}\nloss: mse\n"
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_expressions_derive_or_are_refused_cleanly(tmp_path, case):
    item, refused = HOSTILE[case]
    path = tmp_path / "h.yaml"
    path.write_text(_hostile_spec(item))
    # a hang guard, not a performance assertion: each of these took minutes before
    proc = _cli_generate(path, tmp_path, timeout=120)
    if refused is None:
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "h.py").is_file()
    else:
        assert proc.returncode == 2, proc.stderr
        assert refused in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line
        assert not (tmp_path / "h.py").exists()


def _generate_bytes(spec: Path, out: Path, pause: bool) -> bytes:
    # the README's command in a directory laid out like the checkout: the module's
    # docstring names the command, so the bytes match generated/ only when it is the same
    (out / "examples").mkdir(parents=True)
    (out / "examples" / spec.name).write_bytes(spec.read_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "symgrad", "generate", f"examples/{spec.name}", "-q"],
        cwd=out,
        # derived in this run, not read from the derivation cache
        env={**os.environ, "PYTHONPATH": str(ROOT), "SYMGRAD_NO_CACHE": "1"},
    )
    if pause:  # stopped mid-derivation, then continued: a wall clock would notice
        time.sleep(1.0)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(3.0)
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=300) == 0
    return (out / "generated" / "xor.py").read_bytes()


def test_same_bytes_when_the_process_is_paused_mid_run(tmp_path):
    spec = ROOT / "examples" / "xor.yaml"
    quiet = _generate_bytes(spec, tmp_path / "a", pause=False)
    paused = _generate_bytes(spec, tmp_path / "b", pause=True)
    assert paused == quiet
    assert paused == (ROOT / "generated" / "xor.py").read_bytes()


def test_same_rules_in_a_worker_thread_and_the_callers_timer_is_left_alone():
    from symgrad.derive import activation_rule, output_rule
    from symgrad.spec import OpSpec

    op = OpSpec("cubic_t", (), "z**3/(1 + z*z) + 0.123456*z")
    loss = OpSpec("lbce_t", (), "log(1 + exp(yhat)) - y*yhat")
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        results = []
        worker = threading.Thread(
            target=lambda: results.append(
                (activation_rule.__wrapped__(op), output_rule.__wrapped__(loss, op))
            )
        )
        worker.start()
        worker.join(timeout=300)
        main = (activation_rule.__wrapped__(op), output_rule.__wrapped__(loss, op))
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert results and results[0] == main
    assert 0 < remaining <= 100.0 and not fired  # still counting down, never reset


def _cli_generate(path: Path, out: Path, timeout: float) -> subprocess.CompletedProcess:
    """`python -m symgrad generate path -o out` with this checkout's symgrad."""
    return subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SYMGRAD_NO_CACHE": "1"},
    )


def test_summary_warns_where_no_finite_form_exists(tmp_path):
    # exp(-z²)·cosh(z)² is finite everywhere, but every form of it the derivation knows
    # computes cosh(z)², which overflows for |z| > 355: the summary says so
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: w\ninput: 1\nlayers:\n"
        '  - {units: 1, activation: {name: bump, expr: "exp(-z*z)*cosh(z)**2"}}\n'
        "loss: mse\n"
    )
    proc = _cli_generate(path, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no overflow-free form" in proc.stdout + proc.stderr


def test_refusals_name_the_expression():
    with pytest.raises(SpecError) as info:
        symgrad.derive(_hostile_spec(HOSTILE["power_tower"][0]))
    (problem,) = info.value.problems
    assert problem.line == 4 and "layers[0].activation" in problem.path


def test_saturation_remarks_say_what_shrinks_the_delta():
    tanh_net = symgrad.derive(
        "name: t\ninput: 2\nlayers:\n  - {units: 4, activation: tanh}\n"
        "  - {units: 4, activation: sigmoid}\n  - {units: 1, activation: sigmoid}\n"
        "loss: binary_crossentropy\n"
    )
    text = " ".join(symgrad.render_report(tanh_net, "text").split())
    # SymPy's values, printed in the section: tanh'(0) = 1, sigmoid'(0) = 1/4
    assert "tanh'(0) = 1" in text and "σ'(0) = 1/4" in text
    assert "tanh by itself does not shrink the delta" in text
    assert "at least fourfold" in text


def test_report_escapes_the_file_name_from_python(tmp_path):
    path = tmp_path / "net\x1b[31m\u202e.yaml"
    path.write_text((ROOT / "examples" / "xor.yaml").read_text())
    for fmt in ("text", "markdown"):
        out = symgrad.render_report(symgrad.derive(path), fmt)
        assert "\x1b" not in out and "\u202e" not in out
