"""Independent PyTorch reference for symgrad v2 specs: dense (residual), norms, dropout.

Shares nothing with symgrad: the spec is read as a plain dict (the YAML shape of
DESIGN.md, spec v2) and the network is built from torch.nn.functional — F.linear,
F.layer_norm, F.rms_norm, F.batch_norm (with PyTorch's own running statistics), masks
for dropout, residual adds — in float64, differentiated by torch autograd.

Custom activations, losses and norms are not parsed: pass torch callables through
``custom`` (spec name -> callable). An activation maps z to a elementwise, a loss maps
(yhat, y) to an elementwise loss summed over the outputs, a norm maps one batch (m, n)
to its normalization over each row's features (the gain and shift are added here
unless the spec says ``affine: false``).

Parameters follow DESIGN.md: the l-th entry of ``layers`` (from 1) owns W{l}, b{l}
(dense), gamma{l}, beta{l} (norms; rmsnorm has no beta) and mean{l}, var{l}
(batchnorm's running statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

Fn = Callable[..., torch.Tensor]

ACTIVATIONS: dict[str, Callable[..., Fn]] = {
    "identity": lambda: lambda z: z,
    "sigmoid": lambda: torch.sigmoid,
    "tanh": lambda: torch.tanh,
    "relu": lambda: F.relu,
    "leaky_relu": lambda alpha=0.01: lambda z: F.leaky_relu(z, alpha),
    "elu": lambda alpha=1.0: lambda z: F.elu(z, alpha),
    # F.softplus is linear above its threshold (20): the exact log(1 + e^z) instead
    "softplus": lambda: lambda z: torch.logaddexp(z, torch.zeros_like(z)),
    "silu": lambda: F.silu,
    "gelu": lambda: lambda z: F.gelu(z, approximate="none"),
    "softsign": lambda: F.softsign,
    "softmax": lambda: lambda z: torch.softmax(z, dim=1),
}


def _huber(delta: float = 1.0) -> Fn:
    return lambda yhat, y: F.huber_loss(yhat, y, reduction="none", delta=delta)


LOSSES: dict[str, Callable[..., Fn]] = {
    "mse": lambda: lambda yhat, y: 0.5 * (yhat - y) ** 2,
    "mae": lambda: lambda yhat, y: torch.abs(yhat - y),  # torch: d|r|/dr = 0 at 0
    "huber": _huber,
}

NORM_EPS = {"layernorm": 1e-5, "rmsnorm": 1e-6, "batchnorm": 1e-5}


def _entry(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    return entry["name"], {k: v for k, v in entry.items() if k not in ("name", "expr")}


def _resolve(entry: Any, table: Mapping, custom: Mapping[str, Fn]) -> Fn:
    name, params = _entry(entry)
    if not isinstance(entry, str) and "expr" in entry:
        return custom[name]  # a KeyError names a custom op without a torch callable
    return table[name](**params)


def layer_kind(layer: Mapping[str, Any]) -> str:
    return layer.get("type", "dense")


def width(spec: Mapping[str, Any], upto: int) -> int:
    """The width of the values that layer `upto` (0-based) reads."""
    n = spec["input"]
    for layer in spec["layers"][:upto]:
        if layer_kind(layer) == "dense":
            n = layer["units"]
    return n


def dropout_masks(spec: Mapping[str, Any], m: int, rng, dtype=np.float64) -> dict:
    """The masks a module draws from `rng`: per dropout layer, in layer order, one
    rng.random((m, n), dtype); kept where u >= rate, scaled by 1/(1 − rate)."""
    masks = {}
    for i, layer in enumerate(spec["layers"]):
        if layer_kind(layer) == "dropout":
            rate = layer["rate"]
            u = rng.random((m, width(spec, i)), dtype=dtype)
            masks[i] = np.where(u >= rate, 1 / (1 - rate), 0.0)
    return masks


class Net:
    """A spec's network over copies of the params: trainable leaves with gradients,
    batchnorm's running statistics as PyTorch's buffers (updated in training)."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        params: Mapping[str, np.ndarray],
        custom: Mapping[str, Fn] | None = None,
    ) -> None:
        self.spec = spec
        self.custom = dict(custom or {})
        self.params = {}
        for k, v in params.items():
            t = torch.tensor(np.asarray(v, dtype=np.float64))
            buffer = k.startswith(("mean", "var"))
            self.params[k] = t if buffer else t.requires_grad_(True)

    def forward(self, X, *, training: bool, masks: Mapping[int, np.ndarray] = None):
        """(Ŷ, the output layer's pre-activation)."""
        p, h, z = self.params, torch.tensor(np.asarray(X, dtype=np.float64)), None
        masks = masks or {}
        for i, layer in enumerate(self.spec["layers"]):
            l, kind = i + 1, layer_kind(layer)
            if kind == "dense":
                z = F.linear(h, p[f"W{l}"].T, p[f"b{l}"])
                a = _resolve(layer["activation"], ACTIVATIONS, self.custom)(z)
                h = h + a if layer.get("residual", False) else a
            elif kind == "dropout":
                if i in masks:
                    h = h * torch.tensor(masks[i])
            elif kind == "layernorm":
                eps = layer.get("eps", NORM_EPS[kind])
                h = F.layer_norm(h, h.shape[1:], p[f"gamma{l}"], p[f"beta{l}"], eps)
            elif kind == "rmsnorm":
                eps = layer.get("eps", NORM_EPS[kind])
                h = F.rms_norm(h, h.shape[1:], p[f"gamma{l}"], eps=eps)
            elif kind == "batchnorm":
                h = F.batch_norm(
                    h,
                    p[f"mean{l}"],
                    p[f"var{l}"],
                    p[f"gamma{l}"],
                    p[f"beta{l}"],
                    training=training,
                    momentum=layer.get("momentum", 0.1),
                    eps=layer.get("eps", NORM_EPS[kind]),
                )
            elif kind == "norm":
                h = self.custom[layer["name"]](h)
                if layer.get("affine", True):
                    h = h * p[f"gamma{l}"] + p[f"beta{l}"]
            else:
                raise ValueError(f"layers[{i}]: unknown type {kind!r}")
        return h, z

    def loss(self, X, Y, *, training: bool, masks=None) -> torch.Tensor:
        yhat, z = self.forward(X, training=training, masks=masks)
        Y = torch.tensor(np.asarray(Y, dtype=np.float64))
        out, _ = _entry(self.spec["layers"][-1]["activation"])
        loss = self.spec["loss"]
        name = loss if isinstance(loss, str) else loss["name"]
        if name == "categorical_crossentropy" and out == "softmax":
            elem = -Y * torch.log_softmax(z, dim=1)
        elif name == "binary_crossentropy" and out == "sigmoid":
            elem = F.binary_cross_entropy_with_logits(z, Y, reduction="none")
        elif name == "binary_crossentropy":
            elem = -(Y * torch.log(yhat) + (1 - Y) * torch.log(1 - yhat))
        else:
            elem = _resolve(loss, LOSSES, self.custom)(yhat, Y)
        value = elem.sum(dim=1).mean()
        l2 = float(self.spec.get("l2", 0.0))
        if l2:
            weights = [v for k, v in self.params.items() if k.startswith("W")]
            value = value + l2 / 2 * sum((w**2).sum() for w in weights)
        return value

    def buffers(self) -> dict[str, np.ndarray]:
        return {
            k: v.detach().numpy().copy()
            for k, v in self.params.items()
            if not v.requires_grad
        }


def loss_and_grad(spec, params, X, Y, *, masks=None, custom=None):
    """(loss, grads over the trainable keys, running statistics after the pass):
    training mode (batch statistics), dropout with `masks` (none: no dropout)."""
    net = Net(spec, params, custom)
    value = net.loss(X, Y, training=True, masks=masks)
    value.backward()
    grads = {
        k: v.grad.numpy().copy() if v.grad is not None else np.zeros(v.shape)
        for k, v in net.params.items()
        if v.requires_grad
    }
    return float(value.detach()), grads, net.buffers()


def forward(spec, params, X, *, training=False, masks=None, custom=None) -> np.ndarray:
    with torch.no_grad():
        yhat, _ = Net(spec, params, custom).forward(X, training=training, masks=masks)
    return yhat.numpy()


def loss(spec, params, X, Y, *, training=False, masks=None, custom=None) -> float:
    with torch.no_grad():
        value = Net(spec, params, custom).loss(X, Y, training=training, masks=masks)
    return float(value)
