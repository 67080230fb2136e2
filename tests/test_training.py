"""Optimizers × schedules × clipping, against torch.optim in float64 (issue 22).

Every optimizer (sgd, momentum, Nesterov, adam, adamw, rmsprop with and without
momentum) × every schedule (none, step, exponential, cosine, each with and without
warmup) × clipping (off, on) trains a small MLP for STEPS steps in the NumPy module's
in-place `step` and in the array-API module's `train_step`; the parameters must equal
those of the same loop written in PyTorch: torch.optim, torch.optim.lr_scheduler
(StepLR, ExponentialLR, CosineAnnealingLR, warmup as LinearLR then the schedule in a
SequentialLR) stepped after every optimizer step, and torch.nn.utils.clip_grad_norm_.
The spec's l2 is torch's weight_decay on the weights (a param group), added inside the
optimizer after clipping; adamw's decay is AdamW's own, the spec's l2 then added to
the clipped gradient as SGD's weight_decay adds it. Each module's learning_rate(t)
must give the learning rate torch used at each step.

Derivation and black dominate generation: black is skipped here for the numbers (the
same source, unformatted), and a few specs are checked black- and ruff-clean.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import harness  # noqa: E402 - tests/ is on sys.path (conftest.py)
import torch_reference as tr  # noqa: E402
import xp_backends as xb  # noqa: E402

import symgrad  # noqa: E402
from symgrad import SpecError, parse_spec, render, render_xp  # noqa: E402
from symgrad import optimizers as opt  # noqa: E402
from symgrad.check import import_path  # noqa: E402
from symgrad.report import render_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-9
STEPS, EXAMPLES, BATCH = 50, 36, 8
L2 = 0.01
CLIP = 0.7  # below the gradients' norm on some steps, above it on others

OPTIMIZERS = {  # name -> the spec's optimizer (no schedule, no clipping)
    "sgd": {"name": "sgd", "learning_rate": 0.1},
    "momentum": {"name": "momentum", "learning_rate": 0.05},
    "nesterov": {
        "name": "momentum",
        "learning_rate": 0.05,
        "momentum": 0.7,
        "nesterov": True,
    },
    "adam": {"name": "adam", "learning_rate": 0.01, "beta1": 0.8},
    "adamw": {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.1},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.005, "rho": 0.9},
    "rmsprop-momentum": {
        "name": "rmsprop",
        "learning_rate": 0.005,
        "rho": 0.95,
        "momentum": 0.6,
        "eps": 1e-6,
    },
}
SCHEDULES = {
    "none": None,
    "step": {"name": "step", "step_size": 7, "gamma": 0.5},
    "exponential": {"name": "exponential", "gamma": 0.97},
    "cosine": {"name": "cosine", "t_max": STEPS, "eta_min": "lr/10"},
}
WARMUP = 5


def spec_of(opt: str, schedule: str, warmup: bool, clip: bool) -> dict:
    settings = dict(OPTIMIZERS[opt])
    if SCHEDULES[schedule] is not None:
        sched = dict(SCHEDULES[schedule])
        if sched.get("eta_min") == "lr/10":
            sched["eta_min"] = settings["learning_rate"] / 10
        if warmup:
            sched["warmup"] = WARMUP
        settings["schedule"] = sched
    if clip:
        settings["clip_norm"] = CLIP
    name = f"t_{opt}_{schedule}_{int(warmup)}_{int(clip)}".replace("-", "_")
    return harness.spec(
        name,
        4,
        [(6, "tanh"), (3, "softmax")],
        "categorical_crossentropy",
        optimizer=settings,
        l2=L2,
    )


CASES = [
    (opt, schedule, warmup, clip)
    for opt in OPTIMIZERS
    for schedule in SCHEDULES
    for warmup in ((False, True) if schedule != "none" else (False,))
    for clip in (False, True)
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny tensors: torch's thread pool only waits (10 ms a softmax on a busy
    machine, against microseconds on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """(NumPy module, array-API module) per spec, generated once, without black."""
    cache: dict[str, tuple] = {}
    out = tmp_path_factory.mktemp("training")
    patch = pytest.MonkeyPatch()
    unformatted = lambda source, filename, what: source  # noqa: E731

    def build(spec: dict):
        if spec["name"] not in cache:
            patch.setattr(render, "formatted", unformatted)
            patch.setattr(render_xp, "formatted", unformatted)
            try:
                path = symgrad.generate(spec, out)
                xp_path = symgrad.generate(spec, out, target="array-api")
            finally:
                patch.undo()
            cache[spec["name"]] = (
                import_path(path, f"_training_{spec['name']}"),
                import_path(xp_path, f"_training_{spec['name']}_xp"),
            )
        return cache[spec["name"]]

    return build


def data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((EXAMPLES, 4))
    return X, np.eye(3)[rng.integers(0, 3, EXAMPLES)]


def batches():
    steps = list(harness.batches(EXAMPLES, BATCH, epochs=-(-STEPS * BATCH // EXAMPLES)))
    return steps[:STEPS]


def start(module) -> dict:
    params = module.init_params(3)
    harness.perturb_biases(params, np.random.default_rng(3))
    return params


# --- the PyTorch loop ------------------------------------------------------------------


def torch_optimizer(settings: dict, groups: list[dict]):
    s, lr = settings, settings["learning_rate"]
    if s["name"] == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if s["name"] == "momentum":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=s.get("momentum", 0.9),
            nesterov=s.get("nesterov", False),
        )
    betas = (s.get("beta1", 0.9), s.get("beta2", 0.999))
    if s["name"] == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=s.get("eps", 1e-8))
    if s["name"] == "adamw":
        return torch.optim.AdamW(
            groups,
            lr=lr,
            betas=betas,
            eps=s.get("eps", 1e-8),
            weight_decay=s.get("weight_decay", 0.01),
        )
    assert s["name"] == "rmsprop"
    return torch.optim.RMSprop(
        groups,
        lr=lr,
        alpha=s.get("rho", 0.99),
        eps=s.get("eps", 1e-8),
        momentum=s.get("momentum", 0.0),
    )


def torch_scheduler(optimizer, schedule: dict | None):
    if schedule is None:
        return None
    sched = torch.optim.lr_scheduler
    name = schedule["name"]
    if name == "step":
        main = sched.StepLR(
            optimizer, schedule["step_size"], schedule.get("gamma", 0.1)
        )
    elif name == "exponential":
        main = sched.ExponentialLR(optimizer, schedule["gamma"])
    else:
        main = sched.CosineAnnealingLR(
            optimizer, schedule["t_max"], schedule.get("eta_min", 0.0)
        )
    k = schedule.get("warmup", 0)
    if not k:
        return main
    # lr·(t+1)/K for t < K: LinearLR from 1/K reaching 1 at t = K − 1
    warm = sched.LinearLR(optimizer, start_factor=1 / k, total_iters=k - 1)
    return sched.SequentialLR(optimizer, [warm, main], milestones=[k])


def torch_trajectory(spec: dict, params: dict, X, Y):
    """(params after the loop, the lr of each step, the clip_grad_norm_ totals)."""
    settings = spec["optimizer"]
    net = tr.Net({**spec, "l2": 0.0}, params)  # l2 as weight_decay, not in the loss
    weights = [net.params[k] for k in params if k.startswith("W")]
    others = [net.params[k] for k in params if not k.startswith("W")]
    adamw = settings["name"] == "adamw"
    if adamw:  # AdamW's own decay on every parameter; the spec's l2 added by hand
        groups = [{"params": weights + others}]
    else:
        groups = [
            {"params": weights, "weight_decay": spec["l2"]},
            {"params": others, "weight_decay": 0.0},
        ]
    optimizer = torch_optimizer(settings, groups)
    scheduler = torch_scheduler(optimizer, settings.get("schedule"))
    lrs, norms = [], []
    for batch in batches():
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        net.loss(X[batch], Y[batch], training=True).backward()
        if "clip_norm" in settings:
            total = torch.nn.utils.clip_grad_norm_(
                weights + others, settings["clip_norm"]
            )
            norms.append(float(total))
        if adamw:
            with torch.no_grad():
                for w in weights:
                    w.grad += spec["l2"] * w  # as torch.optim.SGD's weight_decay
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    final = {k: v.detach().numpy() for k, v in net.params.items()}
    return final, lrs, norms


def assert_close(got: dict, want: dict, initial: dict, what: str) -> None:
    errors = {k: harness.rel_err(np.asarray(got[k]), want[k]) for k in want}
    assert max(errors.values()) <= RTOL, (what, errors)
    moved = {k: harness.rel_err(want[k], initial[k]) for k in want if k[0] == "W"}
    assert min(moved.values()) > 1e-3, moved  # the trajectory went somewhere


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opt", "schedule", "warmup", "clip"),
    CASES,
    ids=[
        f"{o}-{s}{'+warmup' if w else ''}{'-clip' if c else ''}" for o, s, w, c in CASES
    ],
)
def test_both_modules_follow_torch(modules, opt, schedule, warmup, clip):
    spec = spec_of(opt, schedule, warmup, clip)
    module, xp_module = modules(spec)
    X, Y = data()
    initial = start(module)
    want, lrs, norms = torch_trajectory(spec, initial, X, Y)
    if clip:  # the clipping acts on some steps and not on others
        assert min(norms) < CLIP < max(norms), (min(norms), max(norms))
    if schedule != "none":
        assert len(set(lrs)) > 5  # the schedule moved the learning rate
    for m in (module, xp_module):
        got = [m.learning_rate(t) for t in range(STEPS)]
        np.testing.assert_allclose(got, lrs, rtol=1e-12, atol=0)

    params = {k: v.copy() for k, v in initial.items()}  # the in-place step
    state = module.init_state(params)
    for batch in batches():
        module.step(params, state, X[batch], Y[batch])
    assert state["t"] == STEPS
    assert_close(params, want, initial, "step")

    params = {k: v.copy() for k, v in initial.items()}  # the array-API train_step
    state = xp_module.init_state(params)
    for batch in batches():
        params, state, _ = xp_module.train_step(params, state, X[batch], Y[batch])
    assert int(state["t"]) == STEPS
    assert_close(params, want, initial, "train_step")


def test_cosine_stays_at_eta_min_after_t_max(modules):
    """The contract's cosine: η_min + (η − η_min)(1 + cos(π·min(t, N)/N))/2, flat after
    N; PyTorch's CosineAnnealingLR (a recursive form) rises again after T_max."""
    spec = spec_of("sgd", "cosine", False, False)
    spec["optimizer"]["schedule"]["t_max"] = 10
    spec["name"] += "_short"
    module, xp_module = modules(spec)
    lr, eta_min = 0.1, 0.01
    for m in (module, xp_module):
        for t in (0, 5, 10, 11, 25):
            want = eta_min + (lr - eta_min) * (1 + np.cos(np.pi * min(t, 10) / 10)) / 2
            assert m.learning_rate(t) == pytest.approx(want, rel=1e-14)
        assert m.learning_rate(10) == m.learning_rate(30) == pytest.approx(eta_min)


def test_no_schedule_learning_rate_is_the_constant(modules):
    module, xp_module = modules(spec_of("adam", "none", False, False))
    assert module.learning_rate(0) == module.learning_rate(99) == 0.01
    assert xp_module.learning_rate(7) == 0.01


def test_fit_history_records_each_epochs_learning_rate(modules):
    """history["lr"]: the lr of each epoch's first step, as torch's scheduler reports it
    (get_last_lr) at the start of each epoch of a loop that steps it after every
    optimizer step."""
    spec = spec_of("sgd", "step", True, False)
    module, xp_module = modules(spec)
    X, Y = data()
    per_epoch = -(-EXAMPLES // BATCH)
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch_optimizer(spec["optimizer"], [{"params": [weight]}])
    scheduler = torch_scheduler(optimizer, spec["optimizer"]["schedule"])
    want = []
    for _ in range(4):
        want.append(scheduler.get_last_lr()[0])
        for _ in range(per_epoch):
            optimizer.step()
            scheduler.step()
    for m in (module, xp_module):
        history = m.fit(start(module), X, Y, epochs=4, batch_size=BATCH, seed=0)
        got = history[2]["lr"] if isinstance(history, tuple) else history["lr"]
        assert got == pytest.approx(want, rel=1e-14)
    assert len(set(want)) > 2  # warmup and steps: the lr moved between epochs


def test_in_place_step_allocates_nothing_with_schedule_and_clipping(tmp_path):
    spec = harness.spec(
        "wide_sched", 64, [(512, "tanh"), (3, "softmax")], "categorical_crossentropy"
    )
    spec["l2"] = 0.01
    spec["optimizer"] = {
        "name": "rmsprop",
        "momentum": 0.5,
        "schedule": {"name": "cosine", "t_max": 100, "warmup": 3},
        "clip_norm": 0.5,
    }
    module = import_path(symgrad.generate(spec, tmp_path), "_training_wide")
    params = start(module)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 64))
    Y = harness.make_targets(spec, 32, rng)
    harness.assert_step_allocates_nothing(module, params, X, Y, params["W1"].nbytes)


@pytest.mark.formatted  # black's layout is what is tested
def test_generated_modules_are_black_and_ruff_clean(tmp_path):
    files = []
    for case in [
        ("adamw", "cosine", True, True),
        ("rmsprop-momentum", "step", True, False),
    ]:
        spec = spec_of(*case)
        files.append(symgrad.generate(spec, tmp_path))
        files.append(symgrad.generate(spec, tmp_path, target="array-api"))
    for tool in (
        ["black", "--check", "--quiet"],
        ["ruff", "check", "--quiet", "--no-cache", "--isolated"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", *tool, *map(str, files)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- the spec's mistakes -------------------------------------------------------------------

GOOD = """\
name: net
input: 3
layers:
  - units: 4
    activation: tanh
  - units: 2
    activation: softmax
loss: categorical_crossentropy
"""


def problems(optimizer: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(GOOD + f"optimizer: {optimizer}\n", "s.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        ("{name: sgd, schedule: {name: cosin, t_max: 5}}", "unknown schedule 'cosin'"),
        ("{name: sgd, schedule: cosine}", "schedule must be a mapping with a name"),
        ("{name: sgd, schedule: {name: step}}", "schedule 'step' needs step_size"),
        ("{name: sgd, schedule: {name: step, step_size: 0}}", "step_size must be ≥ 1"),
        (
            "{name: sgd, schedule: {name: step, step_size: 2.5}}",
            "step_size must be a whole number, found 2.5",
        ),
        (
            "{name: sgd, schedule: {name: step, step_size: 3, gamma: 0}}",
            "gamma must be in (0, 1], found 0",
        ),
        (
            "{name: sgd, schedule: {name: exponential, gamma: 1.5}}",
            "gamma must be in (0, 1], found 1.5",
        ),
        ("{name: sgd, schedule: {name: cosine, t_max: 0}}", "t_max must be ≥ 1"),
        (
            "{name: sgd, schedule: {name: cosine, t_max: 9, warmup: -1}}",
            "warmup must be ≥ 0, found -1",
        ),
        (
            "{name: sgd, schedule: {name: cosine, t_max: 9, warmup: 1.5}}",
            "warmup must be a whole number",
        ),
        (
            "{name: sgd, learning_rate: 0.1, schedule: {name: cosine, t_max: 9, "
            "eta_min: 0.1}}",
            "eta_min must be below the learning rate 0.1",
        ),
        (
            "{name: sgd, schedule: {name: cosine, t_max: 9, eta_min: -0.1}}",
            "eta_min must be ≥ 0",
        ),
        (
            "{name: sgd, schedule: {name: cosine, t_max: 9, gamma: 0.5}}",
            "unknown parameter 'gamma' for schedule 'cosine'",
        ),
        ("{name: adam, clip_norm: 0}", "clip_norm must be positive, found 0"),
        ("{name: adam, clip_norm: big}", "expected a number"),
        ("{name: rmsprop, rho: 1}", "rho must be in [0, 1), found 1"),
        ("{name: adamw, weight_decay: -1}", "expected a number ≥ 0, found -1"),
        ("{name: adamw, clipnorm: 1}", "unknown parameter 'clipnorm'"),
    ],
)
def test_schedule_and_clipping_mistakes(optimizer, expected):
    found = problems(optimizer)
    assert len(found) == 1, found
    assert expected in found[0], found
    assert found[0].startswith("s.yaml:9:"), found  # the line of the optimizer


def test_a_valid_schedule_is_read_with_its_defaults():
    text = textwrap.dedent("""\
        optimizer:
          name: adamw
          clip_norm: 1.5
          schedule: {name: step, step_size: 10}
        """)
    spec = parse_spec(GOOD + text, "s.yaml")
    assert spec.optimizer.clip_norm == 1.5
    assert spec.optimizer.schedule.name == "step"
    assert dict(spec.optimizer.schedule.params) == {
        "step_size": 10,
        "gamma": 0.1,
        "warmup": 0,
    }


# --- the report: each rule as a textbook writes it -------------------------------------


@pytest.mark.parametrize(
    ("name", "nesterov", "zero"),
    [(n, False, False) for n in sorted(opt.OPTIMIZERS)]
    + [("momentum", True, False), ("rmsprop", False, True)],
)
def test_the_textbook_lines_compute_what_the_rule_computes(name, nesterov, zero):
    """The report's lines (an entry's `textbook`) and the rule the code computes give
    the same p and state, at random numbers (`zero`: the settings that may be 0 are 0,
    rmsprop without momentum): the two forms cannot drift apart."""
    entry = opt.OPTIMIZERS[name]
    rng = np.random.default_rng(1)
    values = {
        s.name: (
            nesterov if isinstance(s.default, bool) else float(rng.uniform(0.1, 0.9))
        )
        for s in entry.settings
    }
    values |= {s.name: 0.0 for s in entry.settings if zero and s.exact_zero}
    scalars, rule = opt.statements(entry, values)
    lines = opt.textbook(entry, opt.arguments(entry, values))
    start = {
        s.symbol: sp.Float(v)
        for s in entry.settings
        if s.name in values
        for v in [values[s.name]]
        if not isinstance(v, bool)
    }
    start |= {opt.p: sp.Float(0.7), opt.g: sp.Float(-0.4), opt.t: sp.Integer(3)}
    start |= {s.symbol: sp.Float(rng.uniform(0.1, 2.0)) for s in entry.state}
    computed, written = dict(start), dict(start)
    for a in [*scalars, *rule]:
        computed[a.target] = a.expr.xreplace(computed).evalf()
    for line in lines:
        written[line.target] = line.expr.xreplace(written).evalf()
    for sym in [opt.p, *(s.symbol for s in entry.state)]:
        assert float(written[sym]) == pytest.approx(float(computed[sym]), rel=1e-12)
    assert float(computed[opt.p]) != pytest.approx(0.7)  # the rule moved p


def update_text(case) -> str:
    text = render_report(symgrad.derive(spec_of(*case)), "text")
    start = text.index("Update rule\n")
    return text[start : text.index("6. The loss", start)]


def test_the_report_prints_adamw_cosine_warmup_and_clipping():
    out = update_text(("adamw", "cosine", True, True))
    assert "    κₜ = min(1, c/(‖g‖ + 10⁻⁶))\n    g ← κₜ·g\n" in out
    assert "    g ← κₜ·g + λ·p   (a weight: its l2 term, added after clipping)\n" in out
    assert "PyTorch's CosineAnnealingLR after a LinearLR, in a SequentialLR" in out
    assert (
        "    ηₜ = {(η·t)/K if t ≤ K; else η_min + (η - η_min)·(1 + cos((π·min(T, t - K"
        " - 1))/T))/2}\n"
    ) in out
    assert (
        "    m̂ = m/(1 - β₁ᵗ)\n    v̂ = v/(1 - β₂ᵗ)\n"
        "    p ← p - ηₜ·(m̂/(√v̂ + ε) + λ_w·p)\n"
    ) in out
    assert "λ_w = 0.1, T = 50, η_min = 0.001, K = 5,\nc = 0.7;" in out
    assert "    dₜ = 1 - ηₜ·λ_w\n" in out  # and torch.optim.AdamW's form, computed


def test_the_report_prints_rmsprop_and_the_step_schedule():
    out = update_text(("rmsprop-momentum", "step", False, False))
    assert "    ηₜ = η·γ^⌊(t - 1)/N⌋\n" in out
    assert (
        "    v ← ρ·v + (1 - ρ)·g²   (mean square)\n"
        "    buf ← μ·buf + g/(√v + ε)   (momentum)\n"
        "    p ← p - ηₜ·buf\n"
    ) in out
    assert "ρ = 0.95, ε = 1e-06, μ = 0.6, N = 7, γ = 0.5" in out
    assert "ηₜ = η·γ^(t - 1)" in update_text(("sgd", "exponential", False, False))
    plain = update_text(("rmsprop", "none", False, False))  # no momentum: no buffer
    assert "    p ← p - η·g/(√v + ε)\n" in plain and "buf" not in plain


def test_the_latex_update_section_is_ascii_and_names_the_symbols():
    d = symgrad.derive(spec_of("adamw", "cosine", True, True))
    tex = render_report(d, "latex", standalone=True)
    assert tex.isascii()
    for part in (
        r"\hat{\mathbf{m}}",
        r"\lambda_{w}",
        r"\eta_{t}",
        r"\kappa_{t}",
        r"\lVert g \rVert",
        r"\min",
        r"\cos",
    ):
        assert part in tex, part


# --- the array-API module on other backends ----------------------------------------------

BACKENDS = {"array-api-strict", "torch-cpu", "jax-jit"}


@pytest.mark.parametrize(
    "backend", xb.pytest_params(lambda b: b.name in BACKENDS)
)  # fmt: skip
@pytest.mark.parametrize(
    "case", [("adamw", "cosine", True, True), ("rmsprop-momentum", "step", True, True)]
)
def test_schedules_and_clipping_on_array_backends(modules, backend, case):
    """The schedule and the clipping in standard functions only (jit-able: ηₜ from
    state["t"] as an array), float32 kept float32."""
    module, xp_module = modules(spec_of(*case))
    X, Y = data()
    xb.check_training(xp_module, module, backend, X, Y, batch_size=8, epochs=3)
    xb.check_float32(xp_module, module, backend, X, Y)


def test_adamw_decay_is_not_l2(modules):
    """AdamW with weight_decay 0 is Adam, l2 included (both couple l2 into g); with a
    decay, AdamW differs from Adam given the same number as l2 (decoupled: p shrinks
    by η·λ·p whatever m̂/√v̂ does with the gradient)."""
    X, Y = data()

    def trained(settings: dict, l2: float) -> dict:
        spec = spec_of("adam", "none", False, False)
        spec["optimizer"], spec["l2"] = settings, l2
        spec["name"] = "t_" + "_".join(f"{v}" for v in settings.values()) + f"_{l2}"
        spec["name"] = spec["name"].replace(".", "_").replace("-", "_")
        module, _ = modules(spec)
        params = start(module)
        state = module.init_state(params)
        for batch in batches():
            module.step(params, state, X[batch], Y[batch])
        return params

    adam = trained({"name": "adam", "learning_rate": 0.01}, 0.1)
    adamw0 = trained({"name": "adamw", "learning_rate": 0.01, "weight_decay": 0}, 0.1)
    adamw = trained({"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.1}, 0)
    for k in adam:
        np.testing.assert_array_equal(adamw0[k], adam[k])
    assert harness.rel_err(adamw["W1"], adam["W1"]) > 1e-3
