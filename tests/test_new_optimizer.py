"""Two optimizers added by their registry entries alone: "one entry per kind" for optimizers.

Adagrad, as torch.optim.Adagrad (lr, lr_decay, eps; initial_accumulator_value 0), whose
decayed learning rate ηₜ is a per-step scalar with names of its own, and plain RMSprop
(named plain_rmsprop here: symgrad registers its own rmsprop), as torch.optim.RMSprop
(lr, alpha, eps; momentum 0, not centered), are registered by a
fixture of this file — an `OptimizerDef` each, nothing more — and removed after it; no
symgrad source names them. Both need a temporary array in the in-place step (g² while g
is still to be read), which their entries declare.

Then the NumPy module and the array-API module of a spec using them train, and the report
and `symgrad check` handle them. The reference is torch.optim, stepping the torch network
of tests/torch_reference.py (autograd gradients, the l2 term in its loss) from the same
initial parameters on the same batches.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import harness  # noqa: E402 - tests/ is on sys.path (conftest.py)
import torch_reference as tr  # noqa: E402

import symgrad  # noqa: E402
from symgrad import optimizers as opt  # noqa: E402
from symgrad.check import import_path  # noqa: E402
from symgrad.report import render_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-9  # float64 parameters after 50 steps, against torch.optim
STEPS, EXAMPLES, BATCH = 50, 36, 8  # 36 = 4 × 8 + 4: ten epochs of five steps
p, g, t = opt.p, opt.g, opt.t
LEARNING_RATE = opt.Setting(
    "learning_rate", 0.01, r"\eta", "η", low=0.0, high=None, low_open=True
)
EPS = r"\epsilon", "ε"


# --- the entries, as a maintainer would write them in symgrad/optimizers.py -------------

_sum = opt.StateArray("sum", sp.Symbol("s", real=True), r"\mathbf{s}", "s")
_decayed = opt.StepScalar(
    sp.Symbol("clr", positive=True),
    r"\eta_{t}",
    "ηₜ",
    lambda s: s["learning_rate"] / (1 + (t - 1) * s["lr_decay"]),
    "η / (1 + (t − 1)·lr_decay)",
)


def _adagrad_rule(s: dict[str, sp.Expr]) -> list[opt.Assign]:
    total = _sum.symbol
    return [
        opt.Assign(total, total + g**2, "the sum of squared gradients"),
        opt.Assign(p, p - _decayed.symbol * g / (sp.sqrt(total) + s["eps"])),
    ]


ADAGRAD = opt.OptimizerDef(
    "adagrad",
    "Adagrad",
    (
        LEARNING_RATE,
        opt.Setting("lr_decay", 0.0, r"\kappa", "κ", low=0.0, high=None),
        opt.Setting("eps", 1e-10, *EPS, low=0.0, high=None, low_open=True),
    ),
    state=(_sum,),
    scalars=(_decayed,),
    rule=_adagrad_rule,
    temporaries=1,  # g² for s, while g is still to be read
)

_square_avg = opt.StateArray("square_avg", sp.Symbol("v", real=True), "v", "v")


def _rmsprop_rule(s: dict[str, sp.Expr]) -> list[opt.Assign]:
    v, alpha = _square_avg.symbol, s["alpha"]
    return [
        opt.Assign(v, alpha * v + (1 - alpha) * g**2, "running mean of g²"),
        opt.Assign(p, p - s["learning_rate"] * g / (sp.sqrt(v) + s["eps"])),
    ]


RMSPROP = opt.OptimizerDef(
    "plain_rmsprop",
    "RMSprop",
    (
        LEARNING_RATE,
        opt.Setting("alpha", 0.99, r"\alpha", "α", low=0.0, high=1.0, high_open=True),
        opt.Setting("eps", 1e-8, *EPS, low=0.0, high=None, low_open=True),
    ),
    state=(_square_avg,),
    rule=_rmsprop_rule,
    temporaries=1,  # (1 − α) g² for v, while g is still to be read
)


@pytest.fixture
def registered():
    """Adagrad and RMSprop in the registry for one test, then out again."""
    for entry in (ADAGRAD, RMSPROP):
        assert entry.name not in opt.OPTIMIZERS  # no symgrad source knows them
        opt.register(entry)
    yield
    for entry in (ADAGRAD, RMSPROP):
        del opt.OPTIMIZERS[entry.name]


# --- the specs, and torch.optim for each -------------------------------------------------

CLASSIFIER = [(6, "tanh"), (5, "sigmoid"), (3, "softmax")]
REGRESSION = [(7, "sigmoid"), (5, "tanh"), (2, "identity")]
CASES = {  # name -> (layers, loss, l2, the spec's optimizer, torch.optim with the same)
    "adagrad": (
        CLASSIFIER,
        "categorical_crossentropy",
        0.01,
        {"name": "adagrad", "learning_rate": 0.05},
        lambda ps: torch.optim.Adagrad(ps, lr=0.05),
    ),
    "adagrad-decay": (
        REGRESSION,
        "mse",
        0.0,
        {"name": "adagrad", "learning_rate": 0.1, "lr_decay": 0.05, "eps": 1e-6},
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.05, eps=1e-6),
    ),
    "rmsprop": (
        REGRESSION,
        "mse",
        0.02,
        {"name": "plain_rmsprop", "learning_rate": 0.01, "alpha": 0.9},
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9),
    ),
    "rmsprop-defaults": (
        CLASSIFIER,
        "categorical_crossentropy",
        0.0,
        {"name": "plain_rmsprop"},
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.99, eps=1e-8),
    ),
}


def case_spec(name: str) -> dict:
    layers, loss, l2, settings, _ = CASES[name]
    spec = harness.spec(name.replace("-", "_"), 4, layers, loss, optimizer=settings)
    if l2:
        spec["l2"] = l2
    return spec


def data(spec: dict):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((EXAMPLES, spec["input"]))
    return X, harness.make_targets(spec, EXAMPLES, rng)


def start(module, seed: int = 1) -> dict:
    params = module.init_params(seed)
    harness.perturb_biases(params, np.random.default_rng(seed))
    return params


def torch_trajectory(name: str, spec: dict, params: dict, X, Y) -> dict:
    """The params after STEPS steps of torch.optim on the torch network of the spec."""
    net = tr.Net(spec, params)
    optimizer = CASES[name][4]([net.params[k] for k in params])
    for batch in _batches():
        optimizer.zero_grad()
        net.loss(X[batch], Y[batch], training=True).backward()
        optimizer.step()
    return {k: v.detach().numpy() for k, v in net.params.items()}


def _batches():
    steps = list(harness.batches(EXAMPLES, BATCH, epochs=-(-STEPS * BATCH // EXAMPLES)))
    assert len(steps[:STEPS]) == STEPS
    return steps[:STEPS]


def assert_close(got: dict, want: dict, start: dict) -> None:
    errors = {k: harness.rel_err(got[k], want[k]) for k in want}
    assert max(errors.values()) <= RTOL, errors
    moved = {k: harness.rel_err(want[k], start[k]) for k in want if k.startswith("W")}
    assert min(moved.values()) > 1e-3, moved  # the trajectory went somewhere


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_modules_follow_torch_optim(registered, name, tmp_path):
    spec = case_spec(name)
    module = import_path(symgrad.generate(spec, tmp_path), f"_new_opt_{name}")
    xp_path = symgrad.generate(spec, tmp_path, target="array-api")
    xp_module = import_path(xp_path, f"_new_opt_{name}_xp")
    X, Y = data(spec)
    initial = start(module)
    want = torch_trajectory(name, spec, initial, X, Y)

    params = {k: v.copy() for k, v in initial.items()}  # the in-place step
    state = module.init_state(params)
    for batch in _batches():
        module.step(params, state, X[batch], Y[batch])
    assert state["t"] == STEPS
    assert_close(params, want, initial)

    params = {k: v.copy() for k, v in initial.items()}  # the array-API train_step
    state = xp_module.init_state(params)
    for batch in _batches():
        params, state, _ = xp_module.train_step(params, state, X[batch], Y[batch])
    assert_close(params, want, initial)

    params = {k: v.copy() for k, v in initial.items()}  # its loss_and_grad, update
    state = xp_module.init_state(params)
    for batch in _batches():
        _, grads = xp_module.loss_and_grad(params, X[batch], Y[batch])
        params, state = xp_module.update(params, grads, state)
    assert int(state["t"]) == STEPS
    assert_close(params, want, initial)


@pytest.mark.formatted  # black's layout is what is tested
def test_the_modules_are_black_and_ruff_clean(registered, tmp_path):
    files = []
    for name in CASES:
        files.append(symgrad.generate(case_spec(name), tmp_path / name))
        files.append(
            symgrad.generate(case_spec(name), tmp_path / name, target="array-api")
        )
    for tool in (
        ["black", "--check", "--quiet"],
        ["ruff", "check", "--quiet", "--no-cache", "--isolated"],  # ruff's defaults
    ):
        result = subprocess.run(
            [sys.executable, "-m", *tool, *map(str, files)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_in_place_update_uses_the_declared_temporaries(registered, tmp_path):
    """The scratch is made once, an array per parameter: after the first step, a step
    allocates nothing (a parameter-sized temporary would show: W1 is 256 kB)."""
    spec = harness.spec(
        "wide", 64, [(512, "tanh"), (3, "softmax")], "categorical_crossentropy"
    )
    spec["optimizer"] = {"name": "plain_rmsprop"}
    module = import_path(symgrad.generate(spec, tmp_path), "_new_opt_wide")
    source = Path(module.__file__).read_text()
    assert "update_scratch[k]" in source
    params = start(module)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 64))
    Y = harness.make_targets(spec, 32, rng)
    harness.assert_step_allocates_nothing(module, params, X, Y, params["W1"].nbytes)


def test_too_few_temporaries_is_the_entrys_error(registered, tmp_path, monkeypatch):
    """An entry that declares fewer temporaries than its in-place update needs fails at
    generation, naming the optimizer and its entry."""
    monkeypatch.setitem(
        opt.OPTIMIZERS, "plain_rmsprop", dataclasses.replace(RMSPROP, temporaries=0)
    )
    with pytest.raises(RuntimeError, match="plain_rmsprop update needs more scratch"):
        symgrad.generate(case_spec("rmsprop"), tmp_path)


@pytest.mark.parametrize("name", ["adagrad-decay", "rmsprop"])
def test_the_report_prints_the_entrys_names(registered, name):
    d = symgrad.derive(case_spec(name))
    entry = opt.OPTIMIZERS[CASES[name][3]["name"]]
    names = {
        "text": [s.text for s in (*entry.settings, *entry.state, *entry.scalars)],
        "markdown": [s.tex for s in (*entry.settings, *entry.state, *entry.scalars)],
        "latex": [s.tex for s in (*entry.settings, *entry.state, *entry.scalars)],
    }
    for fmt, wanted in names.items():
        report = render_report(d, fmt)
        assert "Update rule" in report, fmt
        missing = [n for n in wanted if n not in report]
        assert not missing, (fmt, missing)
    assert render_report(d, "latex", standalone=True).isascii()
    if name == "adagrad-decay":  # the scalar's own line: ηₜ = η / (κ (t − 1) + 1)
        text = render_report(d, "text")
        assert any(line.strip().startswith("ηₜ = ") for line in text.splitlines())


@pytest.mark.parametrize("name", ["adagrad", "rmsprop"])
def test_symgrad_check_passes(registered, name):
    result = symgrad.check_gradients(case_spec(name))
    assert result.ok, result.table()
