"""The worked example (`symgrad explain`): its numbers are the generated module's.

The evaluator runs the plan's statements; these tests compare what it computes with a
module generated into tmp_path and imported (its `loss_and_grad` and `step`), for every
example spec and a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import generate_module, make_targets, perturb_biases

from symgrad.derive import derive
from symgrad.explain.evaluate import evaluate
from symgrad.explain.module import module_of
from symgrad.plan import build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def close(a, b, tol=1e-12) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(
        np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b)))
    )


def problem(module, spec: dict, m: int = 5, seed: int = 3):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed)
    perturb_biases(params, rng)
    X = rng.standard_normal((m, spec["input"]))
    Y = make_targets(spec, m, rng)
    return params, X, Y


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_evaluated_plan_equals_the_module(path: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    generated = generate_module(spec, tmp_path)
    params, X, Y = problem(generated, spec)
    d = derive(path)
    step = evaluate(build(d), module_of(d), params, X, Y, np.random.default_rng(7))

    loss, grads = generated.loss_and_grad(params, X, Y, rng=np.random.default_rng(7))
    assert close(step.values["L"], loss)
    for k, g in grads.items():
        assert close(step.values[f"d{k}"], g), k

    updated = {k: v.copy() for k, v in params.items()}
    state = generated.init_state(updated, seed=7)
    before = generated.step(updated, state, X, Y)
    assert close(step.values["L"], before)
    assert set(step.after) == set(updated)
    for k, v in updated.items():
        assert close(step.after[k], v), k
    for key in step.state_after:
        for k, v in step.state_after[key].items():
            assert close(v, state[key][k]), (key, k)
