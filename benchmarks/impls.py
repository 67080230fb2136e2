"""The train steps compared by the benchmarks, one maker per implementation.

Every maker takes a config and a dtype and returns a `run()` that does one training step
(forward, loss, backward, sgd update) on a fixed batch and returns the loss as a Python
float, as a training loop that logs its loss does. All start from the same parameters
(the generated module's init_params) and use the same batch.

- generated: the symgrad module's `step` (CHECK_FINITE off unless asked: the frameworks
  do not scan their inputs either).
- numpy: backprop written by hand the plain way: every expression allocates.
- torch: PyTorch eager on the CPU (2 threads), torch.optim.SGD.
- jax: the whole step (value_and_grad and the update) under one jax.jit, params donated.
- floor: only the 3L − 1 matrix products the step needs, into preallocated arrays.
  For a CNN config (`image`), the products of an im2col step, one per example (see
  make_floor_cnn); torch and jax then run F.conv2d / lax.conv_general_dilated.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"


@dataclass(frozen=True)
class Config:
    name: str
    sizes: tuple[int, ...]
    hidden: str  # sigmoid | relu | tanh
    output: str  # sigmoid (+ binary cross-entropy) | softmax (+ categorical)
    batch: int
    lr: float
    blocks: int = (
        0  # residual relu layers, each followed by a layernorm (after layer 1)
    )
    image: tuple[int, int, int] | None = None  # a CNN's input (C, H, W); X is flat
    # batches of random data the steps cycle through. A CNN trained on one batch for
    # the thousands of steps of a run learns it: its softmax outputs for the wrong
    # classes sink into subnormal floats, which x86 multiplies ~10-100× slower
    # (PyTorch's float32 LeNet step went from ~5 to 47 ms after 1300 steps, and to
    # 4.4 ms again with torch.set_flush_denormal(True)); lenet cycles 16 batches at a
    # learning rate of 0.001, which its steps do not learn
    batches: int = 1

    @property
    def spec(self) -> Path:
        return SPECS / f"{self.name}.yaml"


CONFIGS = {
    "tiny": Config("tiny", (2, 16, 1), "sigmoid", "sigmoid", 32, 0.1),
    "mnist": Config("mnist", (784, 256, 128, 10), "relu", "softmax", 128, 0.01),
    "wide": Config("wide", (1024, 1024, 1024, 10), "tanh", "softmax", 512, 0.01),
    "layers": Config(
        "layers", (784, 256, 256, 256, 256, 256, 10), "relu", "softmax", 128, 0.01, 4
    ),
    # LeNet-style: (conv 3×3 pad 1, relu, maxpool 2) × 2 (8, 16 filters), flatten, 10
    # softmax; the layers are read from the module's parameters (4-d W: a conv)
    "lenet": Config(
        "lenet", (784, 10), "relu", "softmax", 64, 0.001, image=(1, 28, 28), batches=16
    ),
}


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def problem(cfg: Config, module, dtype, batches: int = 1):
    """Initial params (from the generated module) and `batches` batches of (X, Y)
    (cfg.batches at least)."""
    batches = max(batches, cfg.batches)
    rng = np.random.default_rng(0)
    params = module.init_params(seed=0, dtype=dtype)
    data = []
    for _ in range(batches):
        X = rng.standard_normal((cfg.batch, cfg.sizes[0])).astype(dtype)
        n_out = cfg.sizes[-1]
        if cfg.output == "softmax":
            Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, cfg.batch)]
        else:
            Y = rng.integers(0, 2, (cfg.batch, n_out)).astype(dtype)
        data.append((X, Y))
    return params, data


# ---------------------------------------------------------------- generated


def make_generated(cfg, module, dtype, data_batches=1, check_finite=False):
    params, data = problem(cfg, module, dtype, data_batches)
    module.CHECK_FINITE = check_finite
    state = module.init_state(params)
    step = module.step
    batches = itertools.cycle(data)

    def run():
        X, Y = next(batches)
        return step(params, state, X, Y)

    return run


# ---------------------------------------------------------------- hand-written NumPy


def make_numpy(cfg, module, dtype, data_batches=1):
    if cfg.blocks or cfg.image:
        return None  # written by hand for the dense configs only
    params, data = problem(cfg, module, dtype, data_batches)
    batches = itertools.cycle(data)
    L = len(cfg.sizes) - 1
    Ws = [params[f"W{l}"] for l in range(1, L + 1)]
    bs = [params[f"b{l}"] for l in range(1, L + 1)]
    lr, m = cfg.lr, cfg.batch

    def act(z):
        if cfg.hidden == "sigmoid":
            return 1 / (1 + np.exp(-z))
        if cfg.hidden == "relu":
            return np.maximum(z, 0)
        return np.tanh(z)

    def act_grad(a):
        if cfg.hidden == "sigmoid":
            return a * (1 - a)
        if cfg.hidden == "relu":
            return a > 0
        return 1 - a * a

    def run():
        X, Y = next(batches)
        As = [X]
        for l in range(L - 1):
            As.append(act(As[-1] @ Ws[l] + bs[l]))
        z = As[-1] @ Ws[-1] + bs[-1]
        if cfg.output == "softmax":
            shifted = z - z.max(axis=1, keepdims=True)
            log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss = -np.sum(Y * log_softmax) / m
            delta = (np.exp(log_softmax) - Y) / m
        else:  # binary cross-entropy from the logits
            loss = np.sum(np.logaddexp(0, z) - Y * z) / m
            delta = (1 / (1 + np.exp(-z)) - Y) / m
        for l in range(L - 1, -1, -1):
            dW = As[l].T @ delta
            db = delta.sum(axis=0)
            if l:
                delta = (delta @ Ws[l].T) * act_grad(As[l])
            Ws[l] -= lr * dW
            bs[l] -= lr * db
        return float(loss)

    return run


# ---------------------------------------------------------------- PyTorch eager


def make_torch(cfg, module, dtype, data_batches=1):
    if cfg.image:
        return make_torch_cnn(cfg, module, dtype, data_batches)
    import torch

    torch.set_num_threads(2)
    params, data = problem(cfg, module, dtype, data_batches)
    batches = itertools.cycle(
        [(torch.from_numpy(X), torch.from_numpy(Y)) for X, Y in data]
    )
    tensors = {
        k: torch.tensor(params[k], requires_grad=True) for k in module.PARAM_NAMES
    }
    opt = torch.optim.SGD(list(tensors.values()), lr=cfg.lr)
    act = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}[cfg.hidden]
    m = cfg.batch
    layers = _layers(cfg)

    def run():
        X, Y = next(batches)
        opt.zero_grad()
        a = X
        for kind, l in layers[:-1]:
            if kind == "dense":
                a = act(a @ tensors[f"W{l}"] + tensors[f"b{l}"])
            elif kind == "residual":
                a = a + act(a @ tensors[f"W{l}"] + tensors[f"b{l}"])
            else:
                a = torch.nn.functional.layer_norm(
                    a, a.shape[1:], tensors[f"gamma{l}"], tensors[f"beta{l}"], 1e-5
                )
        z = a @ tensors[f"W{layers[-1][1]}"] + tensors[f"b{layers[-1][1]}"]
        if cfg.output == "softmax":
            loss = -(Y * torch.log_softmax(z, dim=1)).sum() / m
        else:
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    z, Y, reduction="sum"
                )
                / m
            )
        loss.backward()
        opt.step()
        return loss.item()

    return run


def _layers(cfg) -> list[tuple[str, int]]:
    """The layers of a config by kind and position: dense, residual, layernorm."""
    out = [("dense", 1)]
    for k in range(cfg.blocks):
        out += [("residual", 2 + 2 * k), ("layernorm", 3 + 2 * k)]
    dense = len(cfg.sizes) - 1 - cfg.blocks  # plain dense layers, the output included
    start = len(out) + 1
    out += [("dense", start + i) for i in range(dense - 1)]
    return out


# ---------------------------------------------------------------- JAX jit


def make_jax(cfg, module, dtype, data_batches=1):
    if cfg.image:
        return make_jax_cnn(cfg, module, dtype, data_batches)
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    params, data = problem(cfg, module, dtype, data_batches)
    batches = itertools.cycle([(jnp.asarray(X), jnp.asarray(Y)) for X, Y in data])
    names = module.PARAM_NAMES
    act = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[cfg.hidden]
    m, lr = cfg.batch, cfg.lr

    layers = _layers(cfg)

    def loss_fn(p, X, Y):
        a = X
        for kind, l in layers[:-1]:
            if kind == "dense":
                a = act(a @ p[f"W{l}"] + p[f"b{l}"])
            elif kind == "residual":
                a = a + act(a @ p[f"W{l}"] + p[f"b{l}"])
            else:
                mu = jnp.mean(a, axis=1, keepdims=True)
                var = jnp.mean((a - mu) ** 2, axis=1, keepdims=True)
                a = (a - mu) / jnp.sqrt(var + 1e-5) * p[f"gamma{l}"] + p[f"beta{l}"]
        z = a @ p[f"W{layers[-1][1]}"] + p[f"b{layers[-1][1]}"]
        if cfg.output == "softmax":
            return -jnp.sum(Y * jax.nn.log_softmax(z, axis=1)) / m
        return jnp.sum(jnp.logaddexp(0, z) - Y * z) / m

    def step(p, X, Y):
        loss, grads = jax.value_and_grad(loss_fn)(p, X, Y)
        return jax.tree.map(lambda w, g: w - lr * g, p, grads), loss

    jitted = jax.jit(step, donate_argnums=0)
    state = [{k: jnp.asarray(params[k]) for k in names}]

    def run():
        X, Y = next(batches)
        state[0], loss = jitted(state[0], X, Y)
        return float(loss)

    return run


# ---------------------------------------------------------------- the GEMM floor


def make_floor(cfg, module, dtype, data_batches=1):
    """forward A^{l-1} W^l per layer; backward A^{l-1}ᵀ δ^l per layer, δ^l W^lᵀ for l > 1."""
    if cfg.image:
        return make_floor_cnn(cfg, module, dtype, data_batches)
    params, data = problem(cfg, module, dtype)
    X = data[0][0]
    L = len(cfg.sizes) - 1
    rng = np.random.default_rng(1)
    Ws = [params[k] for k in module.PARAM_NAMES if k.startswith("W")]
    As = [X] + [np.empty((cfg.batch, n), dtype) for n in cfg.sizes[1:]]
    Ds = [None] + [
        (0.01 * rng.standard_normal((cfg.batch, n))).astype(dtype)
        for n in cfg.sizes[1:]
    ]
    dWs = [np.empty_like(W) for W in Ws]

    def run():
        for l in range(L):
            np.dot(As[l], Ws[l], out=As[l + 1])
        for l in range(L, 0, -1):
            np.dot(As[l - 1].T, Ds[l], out=dWs[l - 1])
            if l > 1:
                np.dot(Ds[l], Ws[l - 1].T, out=Ds[l - 1])
        return 0.0

    return run


# ---------------------------------------------------------------- CNN configs


def _cnn_layers(module) -> list[tuple[str, str, bool]]:
    """(W, b, is a conv) per layer of a CNN config: a 4-d W is a conv (same padding,
    stride 1) followed by relu and a 2×2 max pooling; the last, a dense softmax."""
    names = [k for k in module.PARAM_NAMES if k.startswith("W")]
    return [(k, "b" + k[1:], len(module.PARAM_SHAPES[k]) == 4) for k in names]


def make_torch_cnn(cfg, module, dtype, data_batches=1):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    params, data = problem(cfg, module, dtype, data_batches)
    batches = itertools.cycle(
        [(torch.from_numpy(X), torch.from_numpy(Y)) for X, Y in data]
    )
    t = {k: torch.tensor(params[k], requires_grad=True) for k in module.PARAM_NAMES}
    opt = torch.optim.SGD(list(t.values()), lr=cfg.lr)
    layers = _cnn_layers(module)
    m = cfg.batch

    def run():
        X, Y = next(batches)
        opt.zero_grad()
        a = X.reshape(-1, *cfg.image)
        for W, b, _ in layers[:-1]:
            pad = t[W].shape[-1] // 2
            a = F.max_pool2d(torch.relu(F.conv2d(a, t[W], t[b], padding=pad)), 2)
        W, b, _ = layers[-1]
        z = a.flatten(1) @ t[W] + t[b]
        loss = -(Y * torch.log_softmax(z, dim=1)).sum() / m
        loss.backward()
        opt.step()
        return loss.item()

    return run


def make_jax_cnn(cfg, module, dtype, data_batches=1):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    params, data = problem(cfg, module, dtype, data_batches)
    batches = itertools.cycle([(jnp.asarray(X), jnp.asarray(Y)) for X, Y in data])
    layers = _cnn_layers(module)
    m, lr = cfg.batch, cfg.lr

    def loss_fn(p, X, Y):
        a = X.reshape(-1, *cfg.image)
        for W, b, _ in layers[:-1]:
            pad = p[W].shape[-1] // 2
            z = jax.lax.conv_general_dilated(
                a,
                p[W],
                (1, 1),
                [(pad, pad), (pad, pad)],
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
            )
            a = jax.nn.relu(z + p[b][None, :, None, None])
            a = jax.lax.reduce_window(
                a, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"
            )
        W, b, _ = layers[-1]
        z = a.reshape(a.shape[0], -1) @ p[W] + p[b]
        return -jnp.sum(Y * jax.nn.log_softmax(z, axis=1)) / m

    def step(p, X, Y):
        loss, grads = jax.value_and_grad(loss_fn)(p, X, Y)
        return jax.tree.map(lambda w, g: w - lr * g, p, grads), loss

    jitted = jax.jit(step, donate_argnums=0)
    state = [{k: jnp.asarray(params[k]) for k in module.PARAM_NAMES}]

    def run():
        X, Y = next(batches)
        state[0], loss = jitted(state[0], X, Y)
        return float(loss)

    return run


def make_floor_cnn(cfg, module, dtype, data_batches=1):
    """The products of an im2col step, into preallocated arrays: per conv layer and
    example, W·cols (forward), δ·colsᵀ (∂L/∂W, one example's share) and, below the
    first layer, Wᵀ·δ (the columns of ∂L/∂x), as stacked np.matmul calls (one small
    product per example, as the generated step runs them); the dense layer's three
    products as in make_floor. cols and δ are random."""
    params, _ = problem(cfg, module, dtype)
    rng = np.random.default_rng(1)
    products = []
    c, h, w = cfg.image
    m = cfg.batch
    for k, (W, _, conv) in enumerate(_cnn_layers(module)):
        if conv:
            f, c, kh, kw = module.PARAM_SHAPES[W]
            inner, pixels = c * kh * kw, h * w  # stride 1, same padding
            h, w = h // 2, w // 2  # the pooling after it
            Wm = rng.standard_normal((f, inner)).astype(dtype)
            cols = rng.standard_normal((m, inner, pixels)).astype(dtype)
            D = (0.01 * rng.standard_normal((m, f, pixels))).astype(dtype)
            products.append((Wm, cols, np.empty((m, f, pixels), dtype)))
            products.append(
                (D, cols.transpose(0, 2, 1), np.empty((m, f, inner), dtype))
            )
            if k:
                products.append((Wm.T, D, np.empty((m, inner, pixels), dtype)))
            continue
        inner, out = module.PARAM_SHAPES[W]
        A = rng.standard_normal((m, inner)).astype(dtype)
        Wm = rng.standard_normal((inner, out)).astype(dtype)
        D = (0.01 * rng.standard_normal((m, out))).astype(dtype)
        products.append((A, Wm, np.empty((m, out), dtype)))
        products.append((A.T, D, np.empty((inner, out), dtype)))
        products.append((D, Wm.T, np.empty((m, inner), dtype)))

    def run():
        for a, b, out in products:
            np.matmul(a, b, out=out)
        return 0.0

    return run


MAKERS = {
    "generated": make_generated,
    "numpy": make_numpy,
    "torch": make_torch,
    "jax": make_jax,
    "floor": make_floor,
}
