"""Independent JAX reference for a symgrad spec: forward, loss and autodiff gradients.

This module deliberately shares nothing with symgrad: it reads the spec as a plain dict
(the YAML shape of DESIGN.md, spec v1), builds the network from ``jax.numpy`` and
``jax.nn`` and differentiates it with ``jax.value_and_grad``. All math is in float64.

Custom activations and losses (``{name, expr}`` in the spec) are not parsed here. Pass
them as callables instead, either in place of the activation/loss entry of the spec dict
or through the ``custom`` mapping (spec name -> callable). An activation callable maps
``z`` to ``a`` elementwise; a loss callable maps ``(yhat, y)`` to an elementwise loss
that is summed over the output units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

Array = jax.Array
ActivationFn = Callable[[Array], Array]
LossFn = Callable[[Array, Array], Array]

__all__ = [
    "forward",
    "loss_and_grad",
    "loss_fn",
    "pre_activations",
    "resolve_activation",
]


# --- activations ----------------------------------------------------------------------
# Each entry is a factory: keyword parameters (with the DESIGN.md defaults) -> z -> a.


def _softsign(z: Array) -> Array:
    return z / (1 + jnp.abs(z))


def _silu(z: Array) -> Array:
    return z * jax.nn.sigmoid(z)


ACTIVATIONS: dict[str, Callable[..., ActivationFn]] = {
    "identity": lambda: lambda z: z,
    "linear": lambda: lambda z: z,
    "sigmoid": lambda: jax.nn.sigmoid,
    "tanh": lambda: jnp.tanh,
    "relu": lambda: jax.nn.relu,
    "leaky_relu": lambda alpha=0.01: lambda z: jax.nn.leaky_relu(z, alpha),
    "elu": lambda alpha=1.0: lambda z: jax.nn.elu(z, alpha=alpha),
    "softplus": lambda: jax.nn.softplus,
    "silu": lambda: _silu,
    "swish": lambda: _silu,
    "gelu": lambda: lambda z: jax.nn.gelu(z, approximate=False),
    "softsign": lambda: _softsign,
    "softmax": lambda: lambda z: jax.nn.softmax(z, axis=-1),
}


# --- losses ---------------------------------------------------------------------------
# Elementwise in (yhat, y); summed over output units, then averaged over examples.
# The two cross-entropies are handled in _per_example_loss: on a sigmoid / softmax
# output they are computed from the logits, for stability.


@jax.custom_jvp
def _abs_sign0(r: Array) -> Array:
    """|r| whose derivative is sign(r), 0 at 0 (jnp.abs has derivative 1 at 0)."""
    return jnp.abs(r)


@_abs_sign0.defjvp
def _abs_sign0_jvp(primals, tangents):
    (r,), (t,) = primals, tangents
    return jnp.abs(r), jnp.sign(r) * t


def _huber(delta: float) -> LossFn:
    def h(yhat: Array, y: Array) -> Array:
        r = yhat - y
        quadratic = 0.5 * r**2
        linear = delta * (jnp.abs(r) - 0.5 * delta)
        return jnp.where(jnp.abs(r) <= delta, quadratic, linear)

    return h


ELEMENTWISE_LOSSES: dict[str, Callable[..., LossFn]] = {
    "mse": lambda: lambda yhat, y: 0.5 * (yhat - y) ** 2,
    "mae": lambda: lambda yhat, y: _abs_sign0(yhat - y),
    "huber": lambda delta=1.0: _huber(delta),
}

CROSS_ENTROPIES = ("binary_crossentropy", "categorical_crossentropy")


# --- spec helpers ---------------------------------------------------------------------


def _name_and_params(entry: Any, what: str) -> tuple[str, dict[str, Any]]:
    """Split a spec entry (a name or a dict with ``name``) into name and parameters."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and "name" in entry:
        params = {k: v for k, v in entry.items() if k != "name"}
        return entry["name"], params
    raise ValueError(f"{what}: expected a name or a mapping with 'name', got {entry!r}")


def _lookup(
    entry: Any,
    registry: Mapping[str, Callable[..., Callable]],
    custom: Mapping[str, Callable] | None,
    what: str,
) -> tuple[str, Callable]:
    if callable(entry):
        return getattr(entry, "__name__", "custom"), entry
    name, params = _name_and_params(entry, what)
    if custom and name in custom:
        return name, custom[name]
    if "expr" in params:
        raise NotImplementedError(
            f"{what}: custom expression {params['expr']!r} for {name!r}; "
            "pass a callable through custom={name: fn}"
        )
    if name not in registry:
        raise ValueError(f"{what}: unknown {name!r}")
    try:
        return name, registry[name](**params)
    except TypeError as exc:
        raise ValueError(f"{what}: bad parameters {params!r} for {name!r}") from exc


def resolve_activation(
    entry: Any, custom: Mapping[str, Callable] | None = None
) -> tuple[str, ActivationFn]:
    """Return ``(name, fn)`` for an activation entry: a name, a dict, or a callable."""
    return _lookup(entry, ACTIVATIONS, custom, "activation")


def _activations(spec: Mapping, custom: Mapping[str, Callable] | None):
    layers = spec["layers"]
    resolved = [resolve_activation(layer["activation"], custom) for layer in layers]
    for i, (name, _) in enumerate(resolved[:-1]):
        if name == "softmax":
            raise ValueError(f"layers[{i}]: softmax is for the output layer only")
    return resolved


def _as_jnp(params: Mapping[str, Any]) -> dict[str, Array]:
    return {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}


def _targets(Y: Any, n_out: int) -> Array:
    Y = np.asarray(Y)
    if Y.ndim == 1 and np.issubdtype(Y.dtype, np.integer):
        Y = np.eye(n_out, dtype=np.float64)[Y]  # integer labels -> one-hot
    return jnp.asarray(Y, dtype=jnp.float64)


# --- the network ----------------------------------------------------------------------


def _forward_all(spec: Mapping, params: Mapping[str, Array], X: Array, custom):
    """Return the list of (z, a) per layer."""
    out = []
    a = X
    for i, (_, f) in enumerate(_activations(spec, custom), start=1):
        z = a @ params[f"W{i}"] + params[f"b{i}"]
        a = f(z)
        out.append((z, a))
    return out


def _per_example_loss(spec: Mapping, out_act: str, z, a, y, custom) -> Array:
    loss = spec["loss"]
    name = loss if isinstance(loss, str) else None
    if isinstance(loss, Mapping):
        name = loss.get("name")
    if name == "binary_crossentropy" and not (custom and name in custom):
        if out_act == "sigmoid":
            # log σ(z) and log(1 − σ(z)) = log σ(−z), both from the logits
            elem = -(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))
        else:
            elem = -(y * jnp.log(a) + (1 - y) * jnp.log(1 - a))
    elif name == "categorical_crossentropy" and not (custom and name in custom):
        if out_act == "softmax":
            elem = -y * jax.nn.log_softmax(z, axis=-1)
        else:
            elem = -y * jnp.log(a)
    else:
        _, fn = _lookup(loss, ELEMENTWISE_LOSSES, custom, "loss")
        elem = fn(a, y)
    return jnp.sum(elem, axis=1)


def _make_loss(spec: Mapping, custom: Mapping[str, Callable] | None):
    out_act = _activations(spec, custom)[-1][0]
    l2 = float(spec.get("l2", 0.0) or 0.0)
    n_layers = len(spec["layers"])

    def loss(params: dict[str, Array], X: Array, Y: Array) -> Array:
        z, a = _forward_all(spec, params, X, custom)[-1]
        data = jnp.mean(_per_example_loss(spec, out_act, z, a, Y, custom))
        penalty = sum(jnp.sum(params[f"W{i}"] ** 2) for i in range(1, n_layers + 1))
        return data + 0.5 * l2 * penalty

    return loss


# --- public API ---------------------------------------------------------------------


def forward(
    spec: Mapping, params: Mapping[str, Any], X: Any, *, custom=None
) -> np.ndarray:
    """Network output Ŷ, shape (m, n_L), float64."""
    X = jnp.asarray(X, dtype=jnp.float64)
    _, a = _forward_all(spec, _as_jnp(params), X, custom)[-1]
    return np.asarray(a, dtype=np.float64)


def pre_activations(
    spec: Mapping, params: Mapping[str, Any], X: Any, *, custom=None
) -> list[np.ndarray]:
    """Pre-activations z of every layer (first to last), float64."""
    X = jnp.asarray(X, dtype=jnp.float64)
    layers = _forward_all(spec, _as_jnp(params), X, custom)
    return [np.asarray(z, dtype=np.float64) for z, _ in layers]


def loss_fn(
    spec: Mapping, params: Mapping[str, Any], X: Any, Y: Any, *, custom=None
) -> np.float64:
    """Batch loss: mean over examples of the per-example loss, plus (l2/2)·ΣW²."""
    n_out = spec["layers"][-1]["units"]
    X = jnp.asarray(X, dtype=jnp.float64)
    value = _make_loss(spec, custom)(_as_jnp(params), X, _targets(Y, n_out))
    return np.float64(value)


def loss_and_grad(
    spec: Mapping, params: Mapping[str, Any], X: Any, Y: Any, *, custom=None
) -> tuple[np.float64, dict[str, np.ndarray]]:
    """Batch loss and its gradient w.r.t. every parameter (keys of params), float64."""
    n_out = spec["layers"][-1]["units"]
    X = jnp.asarray(X, dtype=jnp.float64)
    value, grads = jax.value_and_grad(_make_loss(spec, custom))(
        _as_jnp(params), X, _targets(Y, n_out)
    )
    grads = {k: np.asarray(g, dtype=np.float64) for k, g in grads.items()}
    return np.float64(value), grads
