"""Convolutional networks (issue 20): the generated module against PyTorch in float64.

Each network is written again here in torch.nn.functional (conv2d, max_pool2d,
avg_pool2d, flatten, linear), from the spec's own keys, so that nothing of symgrad's
derivation is reused: loss, every gradient (autograd), and optimizer steps
(torch.optim.Adam); finite differences of the module's own loss; float32 in, float32
throughout; the in-place step allocates nothing after the first.
"""

from __future__ import annotations

import sys
from typing import Any

import harness
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = 1e-9


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


ACT = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda t: t,
    "my_softsign": lambda t: t / (1 + t.abs()),  # the custom expression below
}


def torch_forward(
    spec: dict, params: dict, X: np.ndarray, masks=None, running=None
) -> Any:
    """The spec's network in torch.nn.functional; params: name -> tensor; masks:
    layer number -> dropout's scaled keep-mask; running: layer number -> batchnorm's
    (running mean, running var, training), updated in place when training (without:
    the batch's statistics, nothing kept)."""
    c, h, w = spec["input"]
    x = torch.as_tensor(X, dtype=torch.float64).reshape(-1, c, h, w)
    for l, layer in enumerate(spec["layers"], start=1):  # noqa: E741
        kind = layer.get("type", "dense")
        if kind == "conv2d":
            pad = layer.get("padding", 0)
            pad = {"valid": 0}.get(pad, pad) if isinstance(pad, str) else pad
            padding = "same" if pad == "same" else _pair(pad)
            z = F.conv2d(
                x,
                params[f"W{l}"],
                params[f"b{l}"],
                stride=_pair(layer.get("stride", 1)),
                padding=padding,
            )
            act = layer["activation"]
            name = act if isinstance(act, str) else act["name"]
            out = ACT[name](z)
            x = x + out if layer.get("residual") else out
        elif kind in ("maxpool2d", "avgpool2d"):
            size = _pair(layer["size"])
            stride = _pair(layer.get("stride", layer["size"]))
            pool = F.max_pool2d if kind == "maxpool2d" else F.avg_pool2d
            x = pool(x, size, stride)
        elif kind == "flatten":
            x = torch.flatten(x, 1)
        elif kind == "dropout":
            x = x * torch.as_tensor(masks[l])
        elif kind == "batchnorm":  # BatchNorm2d, in training: the batch's statistics
            stats = (running or {}).get(l)
            x = F.batch_norm(
                x,
                None if stats is None else stats[0],
                None if stats is None else stats[1],
                params[f"gamma{l}"],
                params[f"beta{l}"],
                training=stats is None or stats[2],
                momentum=layer.get("momentum", 0.1),
                eps=1e-5,
            )
        elif kind == "layernorm":  # LayerNorm([C, H, W])
            w, b = params[f"gamma{l}"], params[f"beta{l}"]
            x = F.layer_norm(x, tuple(x.shape[1:]), w, b, eps=1e-5)
        else:
            z = x @ params[f"W{l}"] + params[f"b{l}"]
            act = layer["activation"]
            x = torch.softmax(z, 1) if act == "softmax" else ACT[act](z)
    return x


def torch_loss(
    spec: dict, params: dict, X: np.ndarray, Y: np.ndarray, masks=None, running=None
):
    out = torch_forward(spec, params, X, masks, running)
    y = torch.as_tensor(Y, dtype=torch.float64)
    if spec["loss"] == "categorical_crossentropy":
        return -(y * torch.log(out)).sum() / len(Y)
    return 0.5 * ((out - y) ** 2).sum() / len(Y)


def torch_grads(spec, params, X, Y, masks=None) -> tuple[float, dict]:
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    loss = torch_loss(spec, tensors, X, Y, masks)
    loss.backward()
    return float(loss.detach()), {k: t.grad.numpy() for k, t in tensors.items()}


def problem(module, spec: dict, m: int = 5, seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed=seed, dtype=dtype)
    for k in params:  # biases away from 0, so that every term is tested
        if k.startswith("b"):
            params[k][...] = rng.uniform(-0.3, 0.3, params[k].shape)
    X = rng.standard_normal((m, *spec["input"])).astype(dtype)
    n_out = spec["layers"][-1]["units"]
    if spec["loss"] == "categorical_crossentropy":
        Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, m)]
    else:
        Y = rng.standard_normal((m, n_out)).astype(dtype)
    return params, X, Y


def cnn(name: str, conv: dict, *more: dict, input=(2, 7, 6), loss="mse") -> dict:
    """input → conv → [more] → flatten → dense 3."""
    out = {"units": 3, "activation": "softmax" if loss != "mse" else "identity"}
    return {
        "name": name,
        "input": list(input),
        "layers": [conv, *more, {"type": "flatten"}, out],
        "loss": loss,
    }


def check_against_torch(module, spec, data=None, **kw) -> None:
    params, X, Y = data if data is not None else problem(module, spec, **kw)
    value, grads = module.loss_and_grad(params, X, Y)
    ref_value, ref = torch_grads(spec, params, X, Y)
    assert abs(value - ref_value) <= TOL * max(1.0, abs(ref_value))
    assert set(grads) == set(ref)
    for k in ref:
        assert grads[k].shape == params[k].shape
        err = np.max(np.abs(grads[k] - ref[k])) / max(1.0, np.max(np.abs(ref[k])))
        assert err <= TOL, (k, err)
    # forward on (m, C, H, W) and on flat rows alike
    flat = X.reshape(len(X), -1)
    np.testing.assert_allclose(
        module.forward(params, X), module.forward(params, flat), rtol=0, atol=0
    )
    ref_out = torch_forward(spec, {k: torch.as_tensor(v) for k, v in params.items()}, X)
    np.testing.assert_allclose(module.forward(params, X), ref_out.numpy(), atol=1e-12)


CONVS = [
    ({"filters": 3, "kernel": 3, "padding": 1, "activation": "relu"}, (2, 7, 6)),
    ({"filters": 2, "kernel": 3, "padding": 0, "activation": "tanh"}, (1, 6, 6)),
    ({"filters": 2, "kernel": 3, "padding": "same", "activation": "tanh"}, (2, 5, 7)),
    ({"filters": 2, "kernel": [2, 3], "padding": "valid", "activation": "sigmoid"}, (1, 5, 7)),
    ({"filters": 3, "kernel": 3, "stride": 2, "padding": 1, "activation": "relu"}, (2, 7, 6)),
    (
        {"filters": 2, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0],
         "activation": "tanh"},
        (1, 8, 5),
    ),
    ({"filters": 2, "kernel": 2, "stride": 2, "activation": "identity"}, (3, 5, 4)),
]  # fmt: skip


@pytest.mark.parametrize("conv,shape", CONVS)
def test_conv_layer_matches_torch(generate, conv, shape) -> None:
    spec = cnn("conv1", {"type": "conv2d", **conv}, input=shape)
    module = generate(spec)
    check_against_torch(module, spec)


def test_a_first_layer_conv_after_a_hidden_conv_passes_its_gradient_down(generate):
    # the second conv's ∂L/∂X (strided, padded, rectangular) reaches the first's W
    spec = cnn(
        "conv2",
        {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1, "activation": "tanh"},
        {"type": "conv2d", "filters": 3, "kernel": [3, 2], "stride": [2, 1],
         "padding": [1, 0], "activation": "tanh"},
        input=(2, 7, 6),
    )  # fmt: skip
    check_against_torch(generate(spec), spec)


POOLS = [
    ({"type": "maxpool2d", "size": 2}, (2, 6, 6)),
    ({"type": "maxpool2d", "size": 3, "stride": 1}, (1, 6, 5)),  # overlapping
    ({"type": "maxpool2d", "size": [2, 3], "stride": [1, 2]}, (2, 5, 7)),
    ({"type": "avgpool2d", "size": 2}, (2, 7, 6)),  # a row left over, as torch
    ({"type": "avgpool2d", "size": 3, "stride": [1, 2]}, (1, 6, 7)),
]


@pytest.mark.parametrize("pool,shape", POOLS)
def test_pooling_matches_torch(generate, pool, shape) -> None:
    conv = {"type": "conv2d", "filters": 2, "kernel": 1, "activation": "tanh"}
    spec = cnn("pool1", conv, pool, input=shape)
    check_against_torch(generate(spec), spec)


def test_max_pooling_ties_go_to_the_first_maximum(generate) -> None:
    # a 1×1 conv passes channel 0 (whole numbers: windows of equal values) through
    # unchanged; its weight on channel 1 (random) gets Σ δ·X₁ over the positions
    # that receive each window's gradient, so it tells which of the tied entries did
    spec = cnn(
        "ties",
        {"type": "conv2d", "filters": 1, "kernel": 1, "activation": "identity"},
        {"type": "maxpool2d", "size": 2, "stride": 1},
        input=(2, 4, 4),
    )
    module = generate(spec)
    params, X, Y = problem(module, spec, m=3)
    params["W1"][...] = [[[[1.0]], [[0.0]]]]
    params["b1"][...] = 0.0
    X[:, 0] = np.round(X[:, 0])  # many equal values in each window
    X[0, 0] = 1.0  # every window a tie
    value, grads = module.loss_and_grad(params, X, Y)
    ref_value, ref = torch_grads(spec, params, X, Y)
    assert abs(value - ref_value) <= TOL
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=0, atol=TOL)
    # the last of the tied entries instead would give another weight gradient
    assert abs(ref["W1"][0, 1, 0, 0]) > 1e-3


def test_a_residual_conv_adds_its_input(generate) -> None:
    spec = cnn(
        "residual_conv",
        {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1, "activation": "tanh"},
        {"type": "conv2d", "filters": 2, "kernel": [3, 1], "padding": "same",
         "activation": "relu", "residual": True},
        input=(1, 5, 6),
    )  # fmt: skip
    check_against_torch(generate(spec), spec)


LAYERNORM_CNN = {
    "name": "ln_cnn",
    "input": [2, 5, 4],
    "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "activation": "tanh"},
        {"type": "layernorm"},
        {"type": "conv2d", "filters": 2, "kernel": 2, "activation": "relu"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}  # fmt: skip


def test_layernorm_over_an_image_matches_torchs_layer_norm(generate) -> None:
    # LayerNorm([C, H, W]): gain and shift of shape (C, H, W), as PyTorch's
    module = generate(LAYERNORM_CNN)
    params, X, Y = problem(module, LAYERNORM_CNN, m=4)
    assert params["gamma2"].shape == (3, 5, 4)
    rng = np.random.default_rng(2)
    params["gamma2"] += 0.2 * rng.standard_normal((3, 5, 4))
    check_against_torch(module, LAYERNORM_CNN, (params, X, Y))
    # the in-place step: five adam steps as torch.optim.Adam
    tensors = {
        k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    opt = torch.optim.Adam(list(tensors.values()), lr=0.01)
    state = module.init_state(params)
    for _ in range(5):
        value = module.step(params, state, X, Y)
        opt.zero_grad()
        loss = torch_loss(LAYERNORM_CNN, tensors, X, Y)
        loss.backward()
        opt.step()
        assert abs(value - float(loss.detach())) <= TOL
    for k, t in tensors.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=0, atol=TOL)


BATCHNORM_CNN = {
    "name": "bn_cnn",
    "input": [2, 5, 4],
    "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "activation": "tanh"},
        {"type": "batchnorm", "momentum": 0.2},
        {"type": "conv2d", "filters": 2, "kernel": 2, "activation": "relu"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}  # fmt: skip


def test_batchnorm_per_channel_matches_torchs_batchnorm2d(generate) -> None:
    # training: the batch's statistics over (m, H, W), gradients of every parameter;
    # steps: running mean and unbiased variance as BatchNorm2d keeps them; eval: the
    # running statistics
    module = generate(BATCHNORM_CNN)
    params = module.init_params(seed=1)
    assert params["gamma2"].shape == (3,) and params["mean2"].shape == (3,)
    _, X, Y = problem(module, BATCHNORM_CNN, m=4)
    rng = np.random.default_rng(4)
    params["gamma2"] += 0.3 * rng.standard_normal(3)
    params["beta2"] += 0.3 * rng.standard_normal(3)
    trainable = {k: v for k, v in params.items() if k in module.PARAM_NAMES}
    value, grads = module.loss_and_grad(params, X, Y)
    ref_value, ref = torch_grads(BATCHNORM_CNN, trainable, X, Y)
    assert abs(value - ref_value) <= TOL
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=0, atol=TOL, err_msg=k)
    tensors = {
        k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
        for k, v in trainable.items()
    }
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    opt = torch.optim.Adam(list(tensors.values()), lr=0.01)
    state = module.init_state(params)
    for _ in range(3):
        value = module.step(params, state, X, Y)
        opt.zero_grad()
        loss = torch_loss(BATCHNORM_CNN, tensors, X, Y, running={2: (mean, var, True)})
        loss.backward()
        opt.step()
        assert abs(value - float(loss.detach())) <= TOL
    np.testing.assert_allclose(params["mean2"], mean.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(params["var2"], var.numpy(), rtol=0, atol=TOL)
    for k, t in tensors.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=0, atol=TOL)
    with torch.no_grad():
        out = torch_forward(BATCHNORM_CNN, tensors, X, running={2: (mean, var, False)})
    np.testing.assert_allclose(module.forward(params, X), out.numpy(), atol=1e-12)


def test_dropout_on_an_image_with_the_modules_masks(generate) -> None:
    spec = cnn(
        "conv_dropout",
        {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1, "activation": "tanh"},
        {"type": "dropout", "rate": 0.4},
        {"type": "avgpool2d", "size": 2},
        input=(1, 6, 4),
    )  # fmt: skip
    module = generate(spec)
    params, X, Y = problem(module, spec)
    value, grads = module.loss_and_grad(params, X, Y, rng=np.random.default_rng(7))
    # the module draws one uniform per value of the image, as rng.random(shape)
    u = np.random.default_rng(7).random((len(X), 2, 6, 4))
    masks = {2: np.where(u >= 0.4, 1 / 0.6, 0.0)}
    ref_value, ref = torch_grads(spec, params, X, Y, masks)
    assert abs(value - ref_value) <= TOL
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=0, atol=TOL)
    # the in-place step draws the same masks from its state's generator, default_rng(7)
    state = module.init_state(params, seed=7)
    copy = {k: v.copy() for k, v in params.items()}
    assert abs(module.step(copy, state, X, Y) - value) <= TOL
    # without a generator (and in inference) dropout is the identity
    plain, _ = module.loss_and_grad(params, X, Y)
    ones = {2: np.ones((len(X), 2, 6, 4))}
    assert abs(plain - torch_grads(spec, params, X, Y, ones)[0]) <= TOL


SMALL_CNN = {
    "name": "small_cnn",
    "input": [1, 8, 7],
    "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "size": 2},
        {"type": "conv2d", "filters": 4, "kernel": [2, 3], "stride": 1,
         "padding": [1, 1], "activation": "tanh"},
        {"type": "avgpool2d", "size": 2},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}  # fmt: skip


def test_small_cnn_loss_and_every_gradient(generate) -> None:
    module = generate(SMALL_CNN)
    check_against_torch(module, SMALL_CNN, m=6)


def test_small_cnn_twenty_adam_steps_match_torch_optim(generate) -> None:
    module = generate(SMALL_CNN)
    params, X, Y = problem(module, SMALL_CNN, m=6, seed=3)
    tensors = {
        k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    opt = torch.optim.Adam(list(tensors.values()), lr=0.01)
    state = module.init_state(params)
    for _ in range(20):
        value = module.step(params, state, X, Y)
        opt.zero_grad()
        loss = torch_loss(SMALL_CNN, tensors, X, Y)
        loss.backward()
        opt.step()
        assert abs(value - float(loss.detach())) <= TOL
    for k, t in tensors.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=0, atol=TOL)


STACKED_CONVS = {
    "name": "stacked_convs",
    "input": [2, 7, 6],
    "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "activation": "relu"},
        {"type": "conv2d", "filters": 2, "kernel": [2, 3], "padding": [1, 0],
         "activation": "tanh"},
        {"type": "conv2d", "filters": 2, "kernel": 2, "activation": "identity"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.1},
}  # fmt: skip


def test_dw_reads_the_forward_passes_window_copies_and_steps_match_torch(generate):
    # ∂L/∂W reads the windows the forward pass copied (the step copies each conv's
    # input windows once, into a work array nothing else writes meanwhile); convs
    # that read an activation made in place (ReLU, tanh) and batch sizes that change
    # between steps, each step against torch.optim.SGD
    module = generate(STACKED_CONVS)
    copied: list[tuple] = []
    copy = module._copy_windows

    def counting(dst, src):
        if src.ndim == 6 and sys._getframe(1).f_code.co_name == "_matrix":
            copied.append(src.shape)  # an operand's windows (m, C, H', W', kh, kw)
        copy(dst, src)

    params, _, _ = problem(module, STACKED_CONVS)
    tensors = {
        k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    opt = torch.optim.SGD(list(tensors.values()), lr=0.1)
    state = module.init_state(params)
    rng = np.random.default_rng(5)
    module._copy_windows = counting
    try:
        for m in (6, 4, 6, 6):
            copied.clear()
            X = rng.standard_normal((m, 2, 7, 6))
            Y = np.eye(3)[rng.integers(0, 3, m)]
            value = module.step(params, state, X, Y)
            opt.zero_grad()
            loss = torch_loss(STACKED_CONVS, tensors, X, Y)
            loss.backward()
            opt.step()
            assert abs(value - float(loss.detach())) <= TOL
            for k, t in tensors.items():
                np.testing.assert_allclose(
                    params[k], t.detach().numpy(), rtol=0, atol=TOL
                )
            windows = [(m, 2, 5, 4, 3, 3), (m, 3, 6, 2, 2, 3), (m, 2, 5, 1, 2, 2)]
            assert sorted(copied) == sorted(windows)
    finally:
        module._copy_windows = copy


def test_custom_activation_on_a_conv_layer(generate) -> None:
    act = {"name": "my_softsign", "expr": "z / (1 + abs(z))"}
    spec = cnn(
        "custom_conv",
        {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1, "activation": act},
        input=(1, 5, 5),
    )
    check_against_torch(generate(spec), spec)


def test_finite_differences_of_the_modules_own_loss(generate) -> None:
    spec = dict(SMALL_CNN, name="fd_cnn")
    module = generate(spec)
    params, X, Y = problem(module, spec, m=3, seed=5)
    _, grads = module.loss_and_grad(params, X, Y)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for k, p in params.items():
        for idx in map(tuple, rng.integers(0, p.shape, (3, p.ndim))):
            old = p[idx]
            p[idx] = old + eps
            up = module.loss(params, X, Y, training=True)
            p[idx] = old - eps
            down = module.loss(params, X, Y, training=True)
            p[idx] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - grads[k][idx]) <= 1e-6 * max(1.0, abs(fd)), (k, idx)


def test_float32_stays_float32_and_the_step_agrees(generate) -> None:
    module = generate(SMALL_CNN)
    params, X, Y = problem(module, SMALL_CNN, m=4, dtype=np.float32)
    value, grads = module.loss_and_grad(params, X, Y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert module.forward(params, X).dtype == np.float32
    ref_value, ref = torch_grads(SMALL_CNN, params, X, Y)
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-3, atol=1e-4)
    state = module.init_state(params)
    module.step(params, state, X, Y)
    assert all(p.dtype == np.float32 for p in params.values())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "spec", [SMALL_CNN, LAYERNORM_CNN, BATCHNORM_CNN], ids=lambda s: s["name"]
)
def test_step_allocates_nothing_after_the_first(generate, spec, dtype) -> None:
    module = generate(spec)
    params, _, _ = problem(module, spec, dtype=dtype)
    m = 512  # the smallest image array (m, 2, 4, 3) is then larger than the allowance
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, *spec["input"])).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, m)]
    smallest = m * 2 * 4 * 3 * np.dtype(dtype).itemsize
    harness.assert_step_allocates_nothing(module, params, X, Y, smallest)


def test_fit_trains_a_cnn(generate) -> None:
    module = generate(SMALL_CNN)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 1, 8, 7))
    labels = (X[:, 0, :4].sum(axis=(1, 2)) > 0).astype(int) + (
        X[:, 0, 4:, :3].sum(axis=(1, 2)) > 1
    )
    params = module.init_params(seed=0)
    history = module.fit(params, X, labels, epochs=15, batch_size=10)
    assert history["loss"][-1] < history["loss"][0]


def _evaluate(rule, arrays: dict, sizes: dict, free: dict) -> float:
    """A derived index sum (window_rules.IndexSum.textbook, a Sum of a product of
    Indexed entries) at one entry, by looping over its indices in Python; an index
    outside its array reads as 0 (the padding, the kernel's edges)."""
    import itertools

    import sympy as sp

    total = 0.0
    for term in sp.Add.make_args(rule):
        body, limits = (
            (term.function, term.limits) if isinstance(term, sp.Sum) else (term, ())
        )
        ranges = [range(int(sp.sympify(hi).xreplace(sizes)) + 1) for _, _, hi in limits]
        for values in itertools.product(*ranges):
            at = {**free, **dict(zip((lim[0] for lim in limits), values, strict=True))}
            prod = 1.0
            for f in sp.Mul.make_args(body):
                if isinstance(f, sp.Indexed):
                    idx = tuple(
                        int(sp.sympify(sp.sympify(e).xreplace(at)).xreplace(sizes))
                        for e in f.indices
                    )
                    a = arrays[str(f.base)]
                    inside = all(0 <= k < n for k, n in zip(idx, a.shape, strict=True))
                    prod *= a[idx] if inside else 0.0
                else:
                    prod *= float(f.xreplace(sizes))
            total += prod
    return total


def test_the_derived_flipped_kernel_form_is_torchs_input_gradient() -> None:
    # the report's ∂L/∂x: Σ_f,i,j G[N,f,i,j] W[f,C, U − s_h i + p_h, V − s_w j + p_w],
    # evaluated as written, against torch's conv2d input gradient
    from symgrad import window_rules as wr

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 4))
    W = rng.standard_normal((2, 2, 3, 2))
    stride, pad = (2, 1), (1, 0)
    xt = torch.tensor(x, requires_grad=True)
    out = F.conv2d(xt, torch.tensor(W), stride=stride, padding=pad)
    G = rng.standard_normal(out.shape)
    (out * torch.tensor(G)).sum().backward()
    sizes = {wr.sh: 2, wr.sw: 1, wr.ph: 1, wr.pw: 0, wr.m: 1, wr.nf: 2, wr.nc: 2}
    sizes |= {wr.ho: out.shape[2], wr.wo: out.shape[3], wr.kh: 3, wr.kw: 2}
    textbook = wr.window_rules("conv").grad("x").textbook
    for c in range(2):
        for u in range(5):
            for v in range(4):
                free = {wr.N: 0, wr.C: c, wr.U: u, wr.V: v}
                value = _evaluate(textbook, {"G": G, "W": W}, sizes, free)
                assert abs(value - xt.grad[0, c, u, v].item()) <= 1e-12


def test_the_report_lays_out_every_image_layer(tmp_path) -> None:
    import symgrad

    text = symgrad.render_report(SMALL_CNN, "text")
    for title in ("convolution", "max pooling", "average pooling", "flatten"):
        assert f": {title}" in text
    assert "W[f, C, U + p_h - i·s_h, V + p_w - j·s_w]" in text  # the flipped kernel
    # the network line gives each image layer's C×H×W (by hand from the spec: 8×7 padded
    # by 1 under a 3×3 kernel stays 8×7; pooled by 2, 4×3; a 2×3 kernel with padding 1
    # gives 5×3; pooled by 2, 2×1)
    assert (
        "Network: 1×8×7 → 3×8×7 (conv 3×3, ReLU) → 3×4×3 (maxpool 2×2) → 4×5×3"
        " (conv 2×3, tanh) → 4×2×1 (avgpool 2×2) → 8 (flatten) → 3 (softmax)."
    ) in " ".join(text.split())
    latex = symgrad.render_report(SMALL_CNN, "latex", standalone=True)
    assert r"\operatorname{win}" in latex
    symgrad.render_report(SMALL_CNN, "markdown")
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        return
    (tmp_path / "cnn.tex").write_text(latex)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "cnn.tex"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_same_spec_same_bytes_whatever_the_hash_seed(tmp_path) -> None:
    import os
    import subprocess
    import sys

    spec = harness.write_spec({**BATCHNORM_CNN, "name": "bytes_cnn"}, tmp_path)
    code = "import sys, symgrad; symgrad.generate(sys.argv[1], sys.argv[2])"
    out = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        target = tmp_path / "out"  # the docstring names it
        subprocess.run(
            [sys.executable, "-c", code, str(spec), str(target)], check=True, env=env
        )
        out.append((target / "bytes_cnn.py").read_bytes())
    assert out[0] == out[1]


def test_init_is_a_dense_layers_with_the_kernels_fans(generate) -> None:
    # fan-in C·kh·kw, fan-out filters·kh·kw; He normal for ReLU, Glorot uniform else;
    # drawn in PyTorch's layout, in the order of the parameters
    spec = cnn(
        "conv_init",
        {"type": "conv2d", "filters": 3, "kernel": [3, 2], "activation": "tanh"},
        {"type": "conv2d", "filters": 4, "kernel": 2, "activation": "relu"},
        input=(2, 6, 5),
    )
    params = generate(spec).init_params(seed=5)
    rng = np.random.default_rng(5)
    limit = np.sqrt(6 / (2 * 3 * 2 + 3 * 3 * 2))
    np.testing.assert_array_equal(
        params["W1"], rng.uniform(-limit, limit, (3, 2, 3, 2))
    )
    he = rng.standard_normal((4, 3, 2, 2)) * np.sqrt(2 / (3 * 2 * 2))
    np.testing.assert_array_equal(params["W2"], he)
    assert not params["b1"].any() and not params["b2"].any()


def test_a_first_layer_without_parameters_gets_no_gradient(generate) -> None:
    # pooling first: nothing below the conv learns, so no ∂L/∂(pooling's output) is
    # computed (it would be dead code: ruff's F841 in the module)
    spec = cnn(
        "pool_first",
        {"type": "avgpool2d", "size": [2, 3], "stride": [1, 2]},
        {"type": "conv2d", "filters": 2, "kernel": [3, 1], "stride": 2,
         "padding": [1, 0], "activation": "tanh"},
        input=(2, 7, 6),
    )  # fmt: skip
    module = generate(spec)
    check_against_torch(module, spec)
    from pathlib import Path

    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "G1 = " not in source and "GP2 = " not in source
