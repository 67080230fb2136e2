"""The worked example's picture: the network as a graph with the step's numbers.

Neurons are drawn in columns (the input, then each layer's output), each with its value
for the first example and, below it, its delta (∂L/∂z for a dense layer); an edge of a
dense layer carries its weight and, after the backward pass, the weight's gradient (the
figure a learner sketches beside a hand-worked example). A layer without weights (a
norm, dropout) is drawn as a column joined unit to unit. The numbers are the Step's; the
names are the worked example's (w₁…w₈). matplotlib draws it without pyplot (the `plot`
extra), as symgrad.plot does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import naming as nm
from ..errors import SymgradError
from ..plot import INSTALL_HINT, _figure_class
from .evaluate import Step
from .scalar import Entry, Names

INCHES = 1.0  # per unit of the drawing
MAX_UNITS = 12  # units a column of the figure shows
SUFFIXES = (".png", ".svg")


def draw(
    names: Names, step: Step, path: str | os.PathLike[str], digits: int = 4
) -> None:
    """Write the figure of a step to path (.png or .svg)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise SymgradError(
            f"--figure writes a .png or an .svg file, found {path.name!r}"
        )
    plan = names.plan
    d = plan.derivation
    columns = [nm.INPUT] + [nm.A(r.index) for r in d.layers]
    sizes = list(d.spec.sizes)
    if max(sizes) > MAX_UNITS:
        raise SymgradError(
            f"--figure draws networks of at most {MAX_UNITS} units a layer; this one"
            f" has {max(sizes)} (the text shows every number)"
        )
    try:
        figure_class = _figure_class()
    except ImportError:
        raise SymgradError(INSTALL_HINT.replace("symgrad.plot", "--figure")) from None

    def fmt(v: float) -> str:
        return f"{float(v):.{digits}g}"

    height = max(sizes)
    width, tall = 3.0 * (len(columns) - 1) + 2.4, (height - 1) * 1.4 + 2.0
    fig = figure_class(figsize=(INCHES * width, INCHES * tall))  # one scale: round
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    xy: list[list[tuple[float, float]]] = []
    for c, n in enumerate(sizes):
        top = (height - n) / 2
        xy.append([(c * 3.0, -(top + j) * 1.4) for j in range(n)])
    ax.set_xlim(-1.2, 3.0 * (len(columns) - 1) + 1.2)
    ax.set_ylim(-(height - 1) * 1.4 - 1.0, 1.0)

    for c, rule in enumerate(d.layers, start=1):
        weight = nm.W(rule.index)
        if weight in step.values:
            grad = plan.grads[weight].name
            W, G = step.values[weight], step.values[grad]
            for i, (x0, y0) in enumerate(xy[c - 1]):
                for j, (x1, y1) in enumerate(xy[c]):
                    ax.plot([x0, x1], [y0, y1], color="0.6", lw=0.8, zorder=1)
                    # along the edge by its target: crossing edges' labels apart
                    t = 0.38 + 0.24 * j / max(1, len(xy[c]) - 1)
                    label = (
                        f"{names(Entry(weight, (i, j))).text} = {fmt(W[i, j])}\n"
                        f"{names(Entry(grad, (i, j))).text} = {fmt(G[i, j])}"
                    )
                    ax.text(
                        x0 + t * (x1 - x0),
                        y0 + t * (y1 - y0),
                        label,
                        fontsize=7,
                        ha="center",
                        va="center",
                        zorder=3,
                        bbox={
                            "boxstyle": "round,pad=0.15",
                            "fc": "white",
                            "ec": "none",
                        },
                    )
        else:  # unit to unit
            for (x0, y0), (x1, y1) in zip(xy[c - 1], xy[c], strict=True):
                ax.plot([x0, x1], [y0, y1], color="0.75", lw=0.8, ls="--", zorder=1)
    titles = ["input"] + [rule.title for rule in d.layers]
    for c, name in enumerate(columns):
        values = np.asarray(step.values[name])[0]
        delta = _delta_of(plan, c, step)
        for j, (x, y) in enumerate(xy[c]):
            ax.add_patch(_circle((x, y), 0.45))
            text = fmt(values[j])
            if delta is not None:
                text += f"\nδ {fmt(delta[j])}"
            ax.text(x, y, text, fontsize=7, ha="center", va="center", zorder=5)
        ax.text(xy[c][0][0], 0.7, titles[c], fontsize=8, ha="center", va="bottom")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)
    import matplotlib

    # the same step gives the same bytes: no date, a fixed salt for the SVG's ids
    metadata = {"Date": None} if path.suffix.lower() == ".svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "symgrad", "svg.fonttype": "none"}):
        fig.savefig(path, metadata=metadata)


def _delta_of(plan, c: int, step: Step) -> np.ndarray | None:
    """Layer c's delta δ = ∂L/∂z for the first example, when it has one."""
    if c == 0:
        return None
    name = nm.D(plan.derivation.layers[c - 1].index)
    if name not in step.values:
        return None
    return np.asarray(step.values[name])[0]


def _circle(xy: tuple[float, float], r: float):
    from matplotlib.patches import Circle

    return Circle(xy, r, fc="#e8f0fa", ec="#3060a0", lw=1.0, zorder=4)
