"""Issue 19's silent traps in the generated modules' runtime: a step that fails changes
nothing, training with dropout needs its noise, saved params are read within bounds,
and the small lies of the checks (the wrong row named, noise outside [0, 1), a module
passed as xp)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NORM_DROP = yaml.safe_load((ROOT / "examples" / "cancer_norm_drop.yaml").read_text())


def norm_drop(generate, optimizer: str):
    return generate(
        {**NORM_DROP, "optimizer": {"name": optimizer, "learning_rate": 0.01}}
    )


def snapshot(params, state):
    """Everything a step could write: every array (copied), t and the rng's state."""
    arrays = {f"params[{k!r}]": v.copy() for k, v in params.items()}
    for key, value in state.items():
        if isinstance(value, dict) and key != "buffers":
            arrays.update(
                {f"state[{key!r}][{k!r}]": v.copy() for k, v in value.items()}
            )
    return arrays, state["t"], copy.deepcopy(state["rng"].bit_generator.state)


def assert_unchanged(before, params, state):
    arrays, t, drawn = snapshot(params, state)
    assert t == before[1]
    assert drawn == before[2], "the dropout generator moved"
    assert arrays.keys() == before[0].keys()
    for name, a in arrays.items():
        assert a.dtype == before[0][name].dtype, name
        assert a.tobytes() == before[0][name].tobytes(), f"{name} changed"


def trained(module, dtype=np.float64, m=16):
    """params and state after two good steps (moments, statistics and rng moved)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 30)).astype(dtype)
    Y = (rng.random((m, 1)) < 0.5).astype(dtype)
    params = module.init_params(0, dtype=dtype)
    state = module.init_state(params, seed=3)
    for _ in range(2):
        module.step(params, state, X, Y)
    return params, state, X, Y


# --- a failing step changes nothing -----------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_refused_for_fortran_ordered_gradients_changes_nothing(
    generate, optimizer
):
    module = norm_drop(generate, optimizer)
    params, state, X, Y = trained(module)
    state["grads"]["W1"] = np.asfortranarray(state["grads"]["W1"])
    before = snapshot(params, state)
    with pytest.raises(
        ValueError, match=r"state\['grads'\]\['W1'\] must be C-contiguous"
    ):
        module.step(params, state, X, Y)
    assert_unchanged(before, params, state)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_state_made_for_float32_params_changes_nothing(generate, optimizer):
    module = norm_drop(generate, optimizer)
    params, _, X, Y = trained(module)
    state = module.init_state({k: v.astype(np.float32) for k, v in params.items()})
    before = snapshot(params, state)
    with pytest.raises(
        ValueError, match="state was made for float32 params, found float64"
    ):
        module.step(params, state, X, Y)
    assert_unchanged(before, params, state)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_step_that_overflows_is_refused_and_changes_nothing(
    generate, optimizer, dtype
):
    module = norm_drop(generate, optimizer)
    params, state, X, Y = trained(module, dtype)
    before = snapshot(params, state)
    huge = X / np.abs(X).max() * (np.finfo(dtype).max / 10)  # finite; products overflow
    with pytest.raises(
        ValueError, match=r"step refused: the loss .* params and state are"
    ):
        module.step(params, state, huge, Y)
    assert_unchanged(before, params, state)
    # the same state goes on as if the refused step had not been tried
    again = copy.deepcopy((params, state))
    L1 = module.step(params, state, X, Y)
    L2 = module.step(*again, X, Y)
    assert L1 == L2 and all(np.array_equal(params[k], again[0][k]) for k in params)


def test_fit_stops_at_a_step_that_overflows(generate):
    module = norm_drop(generate, "sgd")
    params, _, X, Y = trained(module)
    X[5] = 1e300
    with pytest.raises(ValueError, match="step refused"):
        module.fit(params, X, Y, epochs=1, batch_size=len(X))
    assert all(np.isfinite(v).all() for v in params.values())
