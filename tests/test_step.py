"""The lean step: the numbers of loss_and_grad plus the update, in place, allocation-free.

The step evaluates the derived expressions with in-place NumPy calls (symgrad/inplace.py),
falling back to the printed expression for nodes it does not recognise. These tests run it
over every activation and loss the registry has, custom expressions included, against
loss_and_grad followed by the optimizer's formula written out here, with batch sizes that
change between steps (one set of work arrays per size).
"""

from __future__ import annotations

import copy
import inspect

import harness
import numpy as np
import pytest

SGD = {"name": "sgd", "learning_rate": 0.1}
MOMENTUM = {"name": "momentum", "learning_rate": 0.05, "momentum": 0.8}
NESTEROV = {**MOMENTUM, "nesterov": True}
ADAM = {"name": "adam", "learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7}
OPTIMIZERS = [SGD, MOMENTUM, NESTEROV, ADAM]
CCE, BCE = "categorical_crossentropy", "binary_crossentropy"

HIDDEN = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    {"name": "leaky_relu", "alpha": 0.1},
    "elu",
    "softplus",
    "silu",
    "gelu",
    "softsign",
    {"name": "xabsx", "expr": "z * abs(z)"},  # derivative in z, through a fallback
    {"name": "mysigmoid", "expr": "1 / (1 + exp(-z))"},
    {"name": "bent", "expr": "(sqrt(z*z + 1) - 1) / 2 + z"},
]
OUTPUTS = [  # (units, activation, loss)
    (2, "sigmoid", BCE),
    (1, "sigmoid", BCE),
    (3, "softmax", CCE),
    (3, "softmax", "mse"),  # the Jacobian-vector form of the delta
    (2, "identity", "mse"),
    (2, "identity", "mae"),
    (2, "identity", {"name": "huber", "delta": 0.5}),
    (2, "sigmoid", "mse"),
    (2, "relu", "mse"),
    (2, "elu", "mse"),
    (2, "tanh", {"name": "logcosh", "expr": "log(cosh(yhat - y))"}),
    (2, "identity", {"name": "quartic", "expr": "(yhat - y)**4 / 4 + abs(yhat)"}),
]


def _specs():
    specs = []
    for i, act in enumerate(HIDDEN):
        layers = [(5, act), (4, "tanh"), (3, "softmax")]
        specs.append((layers, CCE, OPTIMIZERS[i % 4], 0.01 * (i % 2)))
    for i, (units, act, loss) in enumerate(OUTPUTS):
        specs.append(
            ([(5, "tanh"), (units, act)], loss, OPTIMIZERS[i % 4], 0.02 * (i % 2))
        )
    specs.append(
        ([(4, "relu"), (4, "relu"), (4, "relu"), (1, "identity")], "mse", SGD, 0.1)
    )
    return [
        pytest.param(
            {
                "name": f"net{i}",
                "input": 3,
                "layers": [{"units": u, "activation": a} for u, a in layers],
                "loss": loss,
                "optimizer": opt,
                "l2": l2,
            },
            id=f"{_id(layers[0][1])}-{_id(layers[-1][1])}-{_id(loss)}-{_opt_id(opt)}"
            + ("-l2" if l2 else ""),
        )
        for i, (layers, loss, opt, l2) in enumerate(specs)
    ]


def _id(x) -> str:
    return x if isinstance(x, str) else x["name"]


def _opt_id(opt) -> str:
    return "nesterov" if opt.get("nesterov") else opt["name"]


def targets(spec: dict, m: int, rng, dtype):
    units = spec["layers"][-1]["units"]
    if spec["loss"] == CCE:
        return rng.integers(0, units, m)  # integer labels: converted inside
    if spec["loss"] == BCE:
        return rng.integers(0, 2, (m, units)).astype(dtype)
    return rng.uniform(0.0, 1.0, (m, units)).astype(dtype)


def problem(module, spec: dict, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed, dtype=dtype)
    for value in params.values():  # non-zero biases, weights off their init
        value += (0.3 * rng.standard_normal(value.shape)).astype(dtype)
    return params, rng


class Reference:
    """loss_and_grad, then the update with torch.optim's formulas, written out."""

    def __init__(self, opt: dict, params: dict):
        self.opt = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, **opt}
        self.t = 0
        self.buf = {k: np.zeros_like(v) for k, v in params.items()}
        self.sq = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, module, params, X, Y):
        o = self.opt
        L, grads = module.loss_and_grad(params, X, Y)
        self.t += 1
        lr = o["learning_rate"]
        for k, g in grads.items():
            if o["name"] == "sgd":
                params[k] -= lr * g
            elif o["name"] == "momentum":
                self.buf[k] = o["momentum"] * self.buf[k] + g
                d = (
                    g + o["momentum"] * self.buf[k]
                    if o.get("nesterov")
                    else self.buf[k]
                )
                params[k] -= lr * d
            else:
                b1, b2 = o["beta1"], o["beta2"]
                self.buf[k] = b1 * self.buf[k] + (1 - b1) * g
                self.sq[k] = b2 * self.sq[k] + (1 - b2) * g * g
                m_hat = self.buf[k] / (1 - b1**self.t)
                v_hat = self.sq[k] / (1 - b2**self.t)
                params[k] -= lr * m_hat / (np.sqrt(v_hat) + o["eps"])
        return L


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


BATCHES = [7, 3, 7, 2, 3]  # a size seen before reuses its arrays


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("spec", _specs())
def test_step_is_loss_and_grad_then_the_update(generate, spec, dtype, tol):
    module = generate(spec)
    params, rng = problem(module, spec, dtype)
    ref_params = copy.deepcopy(params)
    state = module.init_state(params)
    ref = Reference(spec["optimizer"], ref_params)
    for m in BATCHES:
        X = rng.standard_normal((m, spec["input"])).astype(dtype)
        Y = targets(spec, m, rng, dtype)
        L = module.step(params, state, X, Y)
        L_ref = ref.step(module, ref_params, X, Y)
        assert isinstance(L, float)
        assert rel(L, L_ref) <= tol, (L, L_ref)
        for k in params:
            assert params[k].dtype == dtype, k
            assert rel(params[k], ref_params[k]) <= tol, (k, params[k], ref_params[k])
    assert sorted(state["buffers"]) == [2, 3, 7]
    for work in state["buffers"].values():
        assert {w.dtype for w in work.values()} == {np.dtype(dtype)}


NO_ALLOCATION = [  # the specs whose every expression has an in-place form
    ("tiny", [(16, "sigmoid"), (1, "sigmoid")], BCE, SGD),
    ("mnist", [(32, "relu"), (16, "relu"), (10, "softmax")], CCE, SGD),
    ("wide", [(32, "tanh"), (32, "tanh"), (10, "softmax")], CCE, MOMENTUM),
    (
        "regress",
        [(8, {"name": "leaky_relu", "alpha": 0.2}), (2, "identity")],
        "mse",
        ADAM,
    ),
    ("swish", [(8, "silu"), (8, "softplus"), (3, "softmax")], CCE, NESTEROV),
    # leaky ReLU as the output activation: Z times a piecewise constant (the plan's
    # form, derive.factored), a scaled mask in place
    (
        "leaky_out",
        [(8, "tanh"), (2, {"name": "leaky_relu", "alpha": 0.2})],
        "mse",
        MOMENTUM,
    ),
    # ReLU's mask serves A = Z·M and δ ⊙ M; tanh and the sigmoid in their own arrays
    ("lean", [(6, "relu"), (6, "tanh"), (6, "sigmoid"), (3, "softmax")], CCE, ADAM),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layers, loss, opt", [pytest.param(*c[1:], id=c[0]) for c in NO_ALLOCATION]
)
def test_step_allocates_no_arrays_after_the_first(generate, layers, loss, opt, dtype):
    spec = {
        "name": "alloc",
        "input": 20,
        "layers": [{"units": u, "activation": a} for u, a in layers],
        "loss": loss,
        "optimizer": opt,
    }
    module = generate(spec)
    params, rng = problem(module, spec, dtype)
    m = 65536  # big enough that any temporary array stands out, see below
    X = rng.standard_normal((m, 20)).astype(dtype)
    Y = targets(spec, m, rng, dtype)
    if loss == CCE:
        Y = np.eye(layers[-1][0], dtype=dtype)[Y]  # labels would be one-hot encoded
    smallest = m * min(u for u, _ in layers) * np.dtype(dtype).itemsize
    harness.assert_step_allocates_nothing(module, params, X, Y, smallest, bufsize=None)


def test_step_repeats_the_equations_of_loss_and_grad(generate):
    spec = {
        "name": "lean",
        "input": 4,
        "layers": [
            {"units": 6, "activation": "relu"},
            {"units": 6, "activation": "tanh"},
            {"units": 6, "activation": "sigmoid"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": CCE,
    }
    module = generate(spec)

    def equations(function) -> list[str]:
        """The comments of a function that state a gradient or a delta."""
        lines = inspect.getsource(function).splitlines()
        comments = [line.split("# ", 1)[1] for line in lines if "# " in line]
        return [c for c in comments if c.startswith(("δ", "∂L/∂"))]

    expected = equations(module._loss_and_grad)
    assert len(expected) == 3 * 4  # a delta and ∂L/∂W, ∂L/∂b per layer
    assert equations(module._step) == expected


def test_step_checks_its_inputs(generate):
    spec = {
        "name": "checks",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": "softmax"},
        ],
        "loss": CCE,
    }
    module = generate(spec)
    params = module.init_params(0)
    state = module.init_state(params)
    X, Y = np.ones((5, 3)), np.array([0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"X must have shape \(m, 3\), found \(5, 2\)"):
        module.step(params, state, X[:, :2], Y)
    with pytest.raises(ValueError, match=r"labels must be 5 integers"):
        module.step(params, state, X, Y[:4])
    with pytest.raises(ValueError, match=r"params\['b1'\] must have shape \(4,\)"):
        module.step({**params, "b1": np.zeros(1)}, state, X, Y)
    with pytest.raises(
        ValueError, match="all float32 or all float64, found float32, float64"
    ):
        module.step({**params, "b2": params["b2"].astype(np.float32)}, state, X, Y)
    bad = X.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        module.step(params, state, bad, Y)
    # Σx² overflows for these finite inputs: the exact scan then clears them
    assert np.isfinite(module.loss(params, X * 1e200, Y))
    with pytest.raises(ValueError, match="at least one example"):
        module.step(params, state, X[:0], Y[:0])
    f32 = {k: v.astype(np.float32) for k, v in params.items()}
    with pytest.raises(
        ValueError, match="state was made for float64 params, found float32"
    ):
        module.step(f32, state, X, Y)
    assert state["t"] == 0  # nothing was updated
    np.testing.assert_array_equal(params["W1"], module.init_params(0)["W1"])


def test_fortran_ordered_and_strided_inputs(generate):
    spec = {
        "name": "orders",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": "identity"},
        ],
        "loss": "mse",
        "optimizer": MOMENTUM,
    }
    module = generate(spec)
    params = {k: np.asfortranarray(v) for k, v in module.init_params(0).items()}
    reference = copy.deepcopy(params)
    state, ref = module.init_state(params), Reference(MOMENTUM, reference)
    rng = np.random.default_rng(0)
    for m in (1, 6):  # a batch of one, then a strided view of a Fortran array
        X = np.asfortranarray(rng.standard_normal((m, 6)))[:, ::2]
        Y = rng.standard_normal((m, 2))
        assert (
            rel(module.step(params, state, X, Y), ref.step(module, reference, X, Y))
            < 1e-12
        )
    for k in params:
        assert rel(params[k], reference[k]) < 1e-12, k


def test_loss_and_grad_returns_fresh_arrays_after_steps(generate):
    spec = {
        "name": "fresh",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "relu"},
            {"units": 1, "activation": "sigmoid"},
        ],
        "loss": BCE,
    }
    module = generate(spec)
    params, rng = problem(module, spec, np.float64)
    X, Y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    state = module.init_state(params)
    module.step(params, state, X, Y)
    _, g1 = module.loss_and_grad(params, X, Y)
    kept = copy.deepcopy(g1)
    module.step(params, state, X, Y)
    _, g2 = module.loss_and_grad(params, X, Y)
    for k in g1:
        np.testing.assert_array_equal(g1[k], kept[k])  # not overwritten
        assert g1[k] is not g2[k] and g1[k] is not state["grads"][k]


def test_save_and_load_params(generate, tmp_path):
    spec = {
        "name": "saved",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": "identity"},
        ],
        "loss": "mse",
    }
    module = generate(spec)
    params = module.init_params(3, dtype=np.float32)
    module.save_params(tmp_path / "p", params)  # np.savez adds .npz
    loaded = module.load_params(tmp_path / "p.npz")
    assert list(loaded) == list(module.PARAM_NAMES)
    for k in params:
        assert loaded[k].dtype == np.float32
        np.testing.assert_array_equal(loaded[k], params[k])
    np.savez(tmp_path / "wrong.npz", **{**params, "W2": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match=r"params\['W2'\] must have shape \(4, 2\)"):
        module.load_params(tmp_path / "wrong.npz")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_cross_entropy_step_at_saturated_logits(generate, dtype):
    # the output sigmoid reuses the loss's softplus(-Z): exp(-softplus(-Z)) must stay
    # exact enough, and quiet (no overflow warning: warnings are errors here), at |Z| ≫ 1
    spec = {
        "name": "satbce",
        "input": 2,
        "layers": [
            {"units": 3, "activation": "tanh"},
            {"units": 2, "activation": "sigmoid"},
        ],
        "loss": BCE,
        "optimizer": SGD,
    }
    module = generate(spec)
    params = module.init_params(0, dtype=dtype)
    params["W2"][...] = np.array([[400.0, -400.0], [400.0, 400.0], [0.0, 0.0]], dtype)
    X = np.array([[3.0, 0.0], [-3.0, 0.0], [3.0, -3.0], [0.2, 0.1]], dtype)
    Y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype)
    Yhat = module.forward(params, X)
    assert ((Yhat == 0) | (Yhat == 1)).sum() >= 3  # saturated in this dtype
    reference = copy.deepcopy(params)
    state = module.init_state(params)
    L = module.step(params, state, X, Y)
    L_ref, grads = module.loss_and_grad(reference, X, Y)
    assert np.isfinite(L) and L > 10
    assert rel(L, L_ref) <= (1e-12 if dtype == np.float64 else 1e-6)
    for k in params:
        expected = reference[k] - SGD["learning_rate"] * grads[k]
        assert rel(params[k], expected) <= (1e-12 if dtype == np.float64 else 1e-5), k


ALL_OR_NOTHING = {
    "name": "atomic",
    "input": 2,
    "layers": [
        {"units": 4, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "loss": BCE,
    "optimizer": ADAM,
}


def _xor_batch():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    return X, np.array([0.0, 1.0, 1.0, 0.0])


def _snapshot(params, state) -> dict:
    """Everything a step may change and must not when it fails (not the scratch)."""
    kept = {k: v for k, v in state.items() if k not in ("grads", "buffers")}
    return copy.deepcopy({"params": params, "state": kept})


def _assert_unchanged(before: dict, params, state) -> None:
    after = _snapshot(params, state)
    assert after["state"]["t"] == before["state"]["t"]
    for part in ("params", "state"):
        for key, value in before[part].items():
            if isinstance(value, dict):
                for k in value:
                    np.testing.assert_array_equal(after[part][key][k], value[k])
            elif isinstance(value, np.ndarray):
                np.testing.assert_array_equal(after[part][key], value)


def test_a_read_only_parameter_fails_the_step_before_any_update(generate):
    module = generate(ALL_OR_NOTHING)
    params, rng = problem(module, ALL_OR_NOTHING, np.float64)
    state = module.init_state(params)
    reference = copy.deepcopy(params)
    ref = Reference(ADAM, reference)
    X, Y = _xor_batch()
    module.step(params, state, X, Y)  # a valid step first: the checks are cached
    ref.step(module, reference, X, Y)
    params["b2"].flags.writeable = False  # in place: the cache must not hide it
    before = _snapshot(params, state)
    with pytest.raises(ValueError, match=r"params\['b2'\] is read-only"):
        module.step(params, state, X, Y)
    _assert_unchanged(before, params, state)
    params["b2"] = params["b2"].copy()  # fixed: the retry applies the update once
    L = module.step(params, state, X, Y)
    assert state["t"] == 2
    assert rel(L, ref.step(module, reference, X, Y)) < 1e-12
    for k in params:
        assert rel(params[k], reference[k]) < 1e-12, k


def test_a_state_of_another_optimizer_is_refused_before_any_update(generate):
    adam = generate(ALL_OR_NOTHING)
    sgd = generate({**ALL_OR_NOTHING, "optimizer": SGD})
    X, Y = _xor_batch()
    for module, other, name in ((adam, sgd, "sgd"), (sgd, adam, "adam")):
        params = module.init_params(0)
        state = other.init_state(params)
        before = _snapshot(params, state)
        with pytest.raises(
            ValueError, match=f"found keys .* \\(the keys of the {name} optimizer's"
        ):
            module.step(params, state, X, Y)
        _assert_unchanged(before, params, state)
        state = module.init_state(params)
        module.step(params, state, X, Y)
        assert state["t"] == 1


@pytest.mark.parametrize(
    "spoil, error, message",
    [
        (lambda s: s["m"].update(W1=s["m"]["W1"].T), ValueError, r"\['m'\]\['W1'\]"),
        (
            lambda s: s["v"]["b1"].setflags(write=False),
            ValueError,
            r"state\['v'\]\['b1'\] is read-only",
        ),
        (
            lambda s: s["m"].update(b2=s["m"]["b2"].astype(np.float32)),
            ValueError,
            "state was made for float32 params, found float64",
        ),
        (lambda s: s["v"].pop("W2"), ValueError, r"state\['v'\] must have the keys"),
        (lambda s: s["m"].update(W2=[[0.0]] * 4), TypeError, "must be a NumPy array"),
        (lambda s: s.update(t=1.0), TypeError, r"state\['t'\] must be an int"),
        (lambda s: s.update(t=-1), ValueError, r"state\['t'\] must be ≥ 0"),
        (lambda s: s.update(buffers=None), TypeError, r"state\['buffers'\]"),
        # the gradient arrays are not in the cheap check: np.dot(out=) refuses them
        # before any update, and the step names the array
        (
            lambda s: s["grads"].update(W1=np.asfortranarray(s["grads"]["W1"])),
            ValueError,
            r"state\['grads'\]\['W1'\] must be C-contiguous",
        ),
        (
            lambda s: s["grads"]["W2"].setflags(write=False),
            ValueError,
            r"state\['grads'\]\['W2'\] is read-only",
        ),
        (
            lambda s: s["grads"].update(b1=np.zeros(4, np.float32)),
            ValueError,
            r"state was made for float32 params, .*\['grads'\]\['b1'\]",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_spoiled_state_fails_the_step_before_any_update(
    generate, spoil, error, message
):
    module = generate(ALL_OR_NOTHING)
    params, _ = problem(module, ALL_OR_NOTHING, np.float64)
    state = module.init_state(params)
    X, Y = _xor_batch()
    module.step(params, state, X, Y)
    spoil(state)
    before = _snapshot(params, state)
    with pytest.raises(error, match=message):
        module.step(params, state, X, Y)
    _assert_unchanged(before, params, state)
    with pytest.raises(error, match=message):  # fit checks the state before training
        module.fit(params, X, Y, epochs=1, batch_size=2, state=state)
    _assert_unchanged(before, params, state)


def test_a_state_that_is_not_a_dict_is_a_type_error(generate):
    module = generate(ALL_OR_NOTHING)
    params = module.init_params(0)
    with pytest.raises(TypeError, match="state must be a dict made by init_state"):
        module.step(params, [module.init_state(params)], *_xor_batch())


def test_the_work_arrays_of_the_most_recent_batch_sizes_are_kept(generate):
    module = generate(ALL_OR_NOTHING)
    params, rng = problem(module, ALL_OR_NOTHING, np.float64)
    state = module.init_state(params)
    X = rng.standard_normal((12, 2))
    Y = rng.integers(0, 2, 12)
    for m in range(1, 11):  # ten sizes: only the last three are kept
        module.step(params, state, X[:m], Y[:m])
        assert len(state["buffers"]) == min(m, 3)
    assert list(state["buffers"]) == [8, 9, 10]
    kept = state["buffers"][8]
    module.step(params, state, X[:8], Y[:8])  # used again: now the most recent
    module.step(params, state, X[:11], Y[:11])  # a new size drops 9, not 8
    assert list(state["buffers"]) == [10, 8, 11]
    assert state["buffers"][8] is kept
