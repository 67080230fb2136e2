"""Issue 19's silent traps in the generated modules' runtime: a step that fails changes
nothing, training with dropout needs its noise, saved params are read within bounds,
and the small lies of the checks (the wrong row named, noise outside [0, 1), a module
passed as xp)."""

from __future__ import annotations

import copy
import re
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


def assert_unchanged(before, params, state, *, grads=True):
    """As snapshot found them; with grads=False but for state["grads"], which a step
    refused for NaN or inf leaves holding its gradients (as GradScaler leaves .grad)."""
    arrays, t, drawn = snapshot(params, state)
    assert t == before[1]
    assert drawn == before[2], "the dropout generator moved"
    assert arrays.keys() == before[0].keys()
    for name, a in arrays.items():
        if not grads and name.startswith("state['grads']"):
            continue
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
    grads = dict(state["grads"])
    huge = X / np.abs(X).max() * (np.finfo(dtype).max / 10)  # finite; products overflow
    with pytest.raises(
        ValueError,
        match=r"step refused: the loss .* came out NaN or inf; the update was skipped, "
        r"params and state are .* but for state\['grads'\], which holds the refused",
    ):
        module.step(params, state, huge, Y)
    assert_unchanged(before, params, state, grads=False)
    assert all(state["grads"][k] is grads[k] for k in grads)  # the same arrays
    # the same state goes on as if the refused step had not been tried
    again = copy.deepcopy((params, state))
    L1 = module.step(params, state, X, Y)
    L2 = module.step(*again, X, Y)
    assert L1 == L2 and all(np.array_equal(params[k], again[0][k]) for k in params)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_with_gradients_that_overflow_is_refused_and_names_them(
    generate, optimizer
):
    # no batchnorm to hide the overflow: the loss and the weights' gradients come out
    # inf (the biases' are sums of δ, 1e200)
    module = generate(
        {
            "name": "overflowing",
            "input": 3,
            "layers": [
                {"units": 4, "activation": "identity"},
                {"units": 1, "activation": "identity"},
            ],
            "loss": "mse",
            "optimizer": {"name": optimizer, "learning_rate": 0.1},
        }
    )
    params = module.init_params(0)
    state = module.init_state(params)
    X, Y = np.ones((4, 3)), np.zeros((4, 1))
    module.step(params, state, X, Y)
    before = {k: v.copy() for k, v in params.items()}
    moments = {key: copy.deepcopy(state[key]) for key in module.MOMENTS}
    with pytest.raises(
        ValueError,
        match=r"step refused: the loss came out inf and the gradients of W1, W2 came "
        r"out NaN or inf; the update was skipped",
    ):
        module.step(params, state, np.full((4, 3), 1e200), Y)
    assert state["t"] == 1
    assert all(np.array_equal(params[k], before[k]) for k in params)
    for key, arrays in moments.items():
        assert all(np.array_equal(state[key][k], arrays[k]) for k in arrays)
    # the refused step's gradients are left to look at
    assert not np.isfinite(state["grads"]["W2"]).all()
    module.CHECK_FINITE = False  # the check skipped: the update writes what comes out
    try:
        with np.errstate(all="ignore"):
            module.step(params, state, np.full((4, 3), 1e200), Y)
    finally:
        module.CHECK_FINITE = True
    assert state["t"] == 2 and not np.isfinite(params["W2"]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_gradients_whose_squares_overflow_are_not_refused(generate, dtype):
    # Σ g² overflows past √max (1.8e19 in float32): then each entry is looked at
    module = generate(
        {
            "name": "squares_overflow",
            "input": 2,
            "layers": [{"units": 1, "activation": "identity"}],
            "loss": "mse",
            "optimizer": {"name": "sgd", "learning_rate": 1.0},
        }
    )
    params = module.init_params(0, dtype=dtype)
    state = module.init_state(params)
    big = np.sqrt(np.finfo(dtype).max) * 4
    X = np.array([[big, 0.0], [0.0, 0.0]], dtype)  # Ŷ = (1, 0): ∂L/∂W1 = (big/2, 0)
    params["W1"][...] = 1 / big
    params["b1"][...] = 0
    L = module.step(params, state, X, np.zeros((2, 1), dtype))
    assert np.isfinite(L) and state["t"] == 1
    dW1 = state["grads"]["W1"]
    with np.errstate(over="ignore"):
        assert np.isfinite(dW1).all() and not np.isfinite(np.vdot(dW1, dW1))
    assert module._finite_update(L, params, state["grads"])
    state["grads"]["b1"][0] = np.nan
    assert not module._finite_update(L, params, state["grads"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_check_before_the_update_allocates_no_arrays(generate, dtype):
    import harness

    module = norm_drop(generate, "adam")
    m = 8192  # a (m, 1) array is larger than the allowance below
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 30)).astype(dtype)
    Y = (rng.random((m, 1)) < 0.5).astype(dtype)
    params = module.init_params(0, dtype=dtype)
    smallest = m * np.dtype(dtype).itemsize
    harness.assert_step_allocates_nothing(
        module, params, X, Y, smallest, check_finite=True
    )


def test_fit_stops_at_a_step_that_overflows(generate):
    module = norm_drop(generate, "sgd")
    params, _, X, Y = trained(module)
    X[5] = 1e300
    with pytest.raises(ValueError, match="step refused"):
        module.fit(params, X, Y, epochs=1, batch_size=len(X))
    assert all(np.isfinite(v).all() for v in params.values())


# --- saved params are read within bounds ------------------------------------------------

IRIS = yaml.safe_load((ROOT / "examples" / "iris_mlp.yaml").read_text())


def npy_header(shape, dtype="<f8") -> bytes:
    """A .npy (1.0) header declaring shape and dtype, as np.save writes it."""
    import io

    out = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


def archive(path, members, *, compress=False):
    """An .npz of {name: bytes or a callable writing into the member}."""
    import zipfile

    how = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", how) as z:
        for name, content in members.items():
            with z.open(name, "w", force_zip64=True) as member:
                if callable(content):
                    content(member)
                else:
                    member.write(content)
    return path


def good_members(module):
    import io

    members = {}
    for k, v in module.init_params(0).items():
        out = io.BytesIO()
        np.save(out, v)
        members[f"{k}.npy"] = out.getvalue()
    return members


def zeros(total):
    def write(member):
        chunk = bytes(1 << 20)
        for _ in range(total >> 20):
            member.write(chunk)

    return write


def hostile_files(module, tmp_path):
    good = good_members(module)
    W1 = module.PARAM_SHAPES["W1"]
    header = npy_header(W1)
    return {
        # 302 bytes on disk, 10¹² float64 declared
        "huge-header": (
            {**good, "W1.npy": npy_header((10**12,))},
            r"W1\.npy declares shape \(1000000000000,\): params\['W1'\] must have shape",
        ),
        # the right header, then 256 MiB of zeros compressed to a few hundred kB
        "zip-bomb": (
            {**good, "W1.npy": lambda m: (m.write(header), zeros(256 << 20)(m))},
            r"W1\.npy holds more data than the \d+ bytes its header declares",
        ),
        "short-data": (
            {**good, "W1.npy": header + bytes(8)},
            r"W1\.npy holds 8 bytes of data than the \d+ bytes",
        ),
        "wrong-shape": (
            {
                **good,
                "W1.npy": npy_header((W1[0] + 1, W1[1]))
                + bytes(8 * (W1[0] + 1) * W1[1]),
            },
            r"W1\.npy declares shape .*: params\['W1'\] must have shape",
        ),
        "extra-member": (
            {**good, "evil.npy": good["W1.npy"]},
            r"params must be a dict with keys .* found \d+ members; unexpected \['evil\.npy'\]",
        ),
        "missing-member": (
            {k: v for k, v in good.items() if k != "b1.npy"},
            r"missing \['b1\.npy'\]",
        ),
        "many-members": (
            {**good, **{f"x{i}.npy": b"" for i in range(10_000)}},
            r"found 10\d\d\d members; unexpected \['x0\.npy', .*\.\.\. 9995 more",
        ),
        "object-dtype": (
            {**good, "W1.npy": npy_header(W1, "|O") + b"\x80\x04N."},
            r"W1\.npy declares dtype object: params are float32 or float64 \(pickled",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "huge-header",
        "zip-bomb",
        "short-data",
        "wrong-shape",
        "extra-member",
        "missing-member",
        "many-members",
        "object-dtype",
    ],
)
def test_load_params_reads_within_the_declared_shapes(generate, tmp_path, case):
    import tracemalloc

    module = generate(IRIS)
    members, message = hostile_files(module, tmp_path)[case]
    path = archive(tmp_path / f"{case}.npz", members, compress=case == "zip-bomb")
    assert path.stat().st_size < 2 << 20  # small on disk
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(str(path)) + ": .*" + message):
            module.load_params(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{case}: reading it took {peak} bytes"


def test_load_params_reads_back_what_save_params_wrote(generate, tmp_path):
    module = generate(IRIS)
    params = module.init_params(3, dtype=np.float32)
    params["W1"] = np.asfortranarray(params["W1"])
    module.save_params(tmp_path / "p.npz", params)
    loaded = module.load_params(tmp_path / "p.npz")
    assert list(loaded) == list(module.PARAM_NAMES + module.BUFFER_NAMES)
    for k in params:
        assert loaded[k].dtype == np.float32 and loaded[k].flags.writeable
        assert np.array_equal(loaded[k], params[k])


# --- messages: a column of labels, validation_data ------------------------------------


@pytest.mark.parametrize("target", ["numpy", "xp"])
def test_a_column_of_labels_says_what_is_accepted(generate, tmp_path, target):
    module = generate(IRIS)
    if target == "xp":
        from harness import import_path

        import symgrad

        spec = tmp_path / "iris_mlp.yaml"
        spec.write_text(yaml.safe_dump(IRIS))
        path = symgrad.generate(spec, tmp_path / "out", target="array-api")
        module = import_path(path, "silent_traps_iris_xp")
    params = module.init_params(0)
    X = np.zeros((5, 4))
    labels = np.array([[0], [1], [2], [1], [0]])
    with pytest.raises(
        ValueError,
        match=r"Y must have shape \(5, 3\), found \(5, 1\): class labels are taken as "
        r"5 integers of shape \(5,\) \(Y.ravel\(\)\), or as one-hot rows of shape \(5, 3\)",
    ):
        module.loss(params, X, labels)
    module.loss(params, X, labels.ravel())
    with pytest.raises(
        ValueError, match=r"^validation_data: X_val must have shape \(m, 4\)"
    ):
        module.fit(
            params,
            X,
            labels.ravel(),
            epochs=1,
            batch_size=5,
            validation_data=(np.zeros((5, 3)), labels.ravel()),
        )
    with pytest.raises(
        ValueError, match=r"^validation_data: Y_val must have shape \(5, 3\)"
    ):
        module.fit(
            params,
            X,
            labels.ravel(),
            epochs=1,
            batch_size=5,
            validation_data=(X, labels),
        )
