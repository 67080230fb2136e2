"""Training plots for any generated module: loss and accuracy curves, and per-layer
gradient norms ‖∂L/∂Wₗ‖ over training (the picture of vanishing gradients).

`grad_norms` and `fit_with_grad_norms` record, with NumPy only; `plot_history` and
`plot_histories` draw. The norms are those of the dense layers' weights ``W{l}``, in layer
order: in a network with norm, dropout or residual layers (spec v2) the dense layers are
the positions that have a ``W{l}`` (``weight_keys``), and the norms' gains and shifts
(``gamma{l}``, ``beta{l}``) are left out. matplotlib is imported only when drawing (the
`plot` extra: ``pip install "symgrad[plot]"``), and figures are drawn without pyplot, so
they work on a machine without a display and leave pyplot's global state alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

INSTALL_HINT = 'symgrad.plot needs matplotlib to draw: pip install "symgrad[plot]"'


_WEIGHT = re.compile(r"W([1-9][0-9]*)")


def weight_keys(model: ModuleType) -> list[str]:
    """The dense layers' weight keys ``W{l}`` of a generated module, in layer order.

    ``l`` is a layer's position in the spec's ``layers``: ``W1 … WL`` in a network of
    dense layers only, e.g. ``W1, W3, W5`` when norm or dropout layers sit between them.
    """
    found = [
        (int(m.group(1)), key)
        for key in model.PARAM_NAMES
        if (m := _WEIGHT.fullmatch(key))
    ]
    return [key for _, key in sorted(found)]


def grad_norms(
    model: ModuleType, params: Mapping[str, np.ndarray], X, Y
) -> list[float]:
    """The Frobenius norm of ∂L/∂W on (X, Y) for each dense layer's weights W, in layer
    order (the keys of ``weight_keys(model)``).

    Args:
        model: a module written by ``symgrad generate``.
        params: its parameters.
        X, Y: the examples, as ``model.loss_and_grad`` takes them (no ``rng``: without
            dropout masks; batchnorm with the statistics of all of X).

    Returns:
        ``[‖∂L/∂W1‖, …, ‖∂L/∂WL‖]`` (the l2 term included, as in the update).
    """
    _, grads = model.loss_and_grad(params, X, Y)
    return [float(np.linalg.norm(grads[key])) for key in weight_keys(model)]


def fit_with_grad_norms(
    model: ModuleType,
    params: dict[str, np.ndarray],
    X,
    Y,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    validation_data: tuple[Any, Any] | None = None,
) -> dict[str, list]:
    """``model.fit`` that also records the per-layer gradient norms after every epoch.

    It calls ``model.fit`` one epoch at a time with one optimizer state, made with
    ``init_state(params, seed)`` (which seeds dropout's masks as ``fit`` does), and the
    seed ``seed + epoch``, which is what a single ``fit(..., epochs=epochs, seed=seed)``
    call does: the parameters end up the same.

    Returns:
        ``model.fit``'s history with two more keys: ``"grad_norms"``, for each epoch the
        list ``grad_norms(model, params, X, Y)`` measured on all of X after it, and
        ``"grad_norm_keys"``, the weights they are of (``weight_keys(model)``).
    """
    state = model.init_state(params, seed)
    history: dict[str, list] = {}
    for epoch in range(epochs):
        one = model.fit(
            params,
            X,
            Y,
            epochs=1,
            batch_size=batch_size,
            seed=seed + epoch,
            validation_data=validation_data,
            state=state,
        )
        for key, values in one.items():
            history.setdefault(key, []).extend(values)
        history.setdefault("grad_norms", []).append(grad_norms(model, params, X, Y))
    history["grad_norm_keys"] = weight_keys(model)
    return history


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return Figure


def plot_history(
    history: Mapping[str, Sequence],
    path: str | os.PathLike[str] | None = None,
    *,
    title=None,
):
    """Loss, accuracy (classifiers) and gradient norms (if recorded) against the epoch.

    Args:
        history: what ``fit`` or ``fit_with_grad_norms`` returned.
        path: write the figure there (PNG by the suffix); directories are created.
        title: the figure's title.

    Returns:
        the matplotlib Figure.
    """
    return plot_histories({title or "": history}, path)


def plot_histories(
    histories: Mapping[str, Mapping[str, Sequence]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
):
    """Several training runs, one row each; the columns are the loss, the accuracy (if any
    run has it) and ‖∂L/∂Wₗ‖ per layer on a log scale (if any run recorded it). A column
    shares its y axis, so the runs compare at a glance.

    Args:
        histories: run label → history (``fit`` or ``fit_with_grad_norms``).
        path: write the figure there (PNG by the suffix); directories are created.
        title: the figure's title.

    Returns:
        the matplotlib Figure.
    """
    Figure = _figure_class()
    runs = list(histories.items())
    columns = ["loss"]
    if any("accuracy" in h for _, h in runs):
        columns.append("accuracy")
    if any("grad_norms" in h for _, h in runs):
        columns.append("grad_norms")
    fig = Figure(
        figsize=(4.2 * len(columns), 3.0 * len(runs) + 0.4), layout="constrained"
    )
    axes = fig.subplots(
        len(runs), len(columns), sharex=True, sharey="col", squeeze=False
    )
    shown_keys: list[list[str] | None] = []  # the weight keys of the legends drawn
    for row, (label, history) in enumerate(runs):
        for col, key in enumerate(columns):
            ax = axes[row][col]
            if key == "grad_norms":
                norms = history.get("grad_norms")
                keys = _weight_labels(history)
                legend = bool(norms) and keys not in shown_keys
                _draw_grad_norms(ax, norms, keys, legend=legend)
                if legend:
                    shown_keys.append(keys)
            else:
                _draw_curves(ax, history, key)
            name = "‖∂L/∂Wₗ‖" if key == "grad_norms" else key
            ax.set_title(f"{label}: {name}" if label else name, fontsize="medium")
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=100, metadata={"Software": None})
    return fig


def _draw_curves(ax, history: Mapping[str, Sequence], key: str) -> None:
    for name, style in ((key, "-"), (f"val_{key}", "--")):
        values = history.get(name)
        if values:
            epochs = np.arange(1, len(values) + 1)
            label = "validation" if name.startswith("val_") else "training"
            ax.plot(epochs, values, style, label=label)
    if key in history or f"val_{key}" in history:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _weight_labels(history: Mapping[str, Sequence]) -> list[str] | None:
    """The weights a history's gradient norms are of: its "grad_norm_keys", else
    W1, W2, … (a history recorded without them)."""
    norms = history.get("grad_norms")
    if not norms:
        return None
    keys = history.get("grad_norm_keys")
    return list(keys) if keys else [f"W{l}" for l in range(1, len(norms[0]) + 1)]


def _draw_grad_norms(
    ax,
    norms: Sequence[Sequence[float]] | None,
    keys: Sequence[str] | None,
    legend: bool,
) -> None:
    if not norms:
        return
    table = np.asarray(norms)  # (epochs, dense layers)
    epochs = np.arange(1, table.shape[0] + 1)
    layers = table.shape[1]
    colors = [_viridis(i / max(layers - 1, 1)) for i in range(layers)]
    for l in range(layers):
        ax.plot(epochs, table[:, l], color=colors[l], label=keys[l])
    ax.set_yscale("log")
    if legend:
        ax.legend(loc="best", fontsize="x-small", ncol=2 if layers > 4 else 1)
    ax.grid(alpha=0.3, which="both")


def _viridis(x: float):
    from matplotlib import colormaps

    return colormaps["viridis"](0.9 * x)
