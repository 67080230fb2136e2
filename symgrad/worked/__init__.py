"""The worked example: one training step of a spec's network with the numbers in every
equation (`symgrad explain`, `symgrad.worked`).

The numbers come from the Plan's statements, evaluated (evaluate.py); the layout is the
report's document (write.py), printed as text, Markdown or LaTeX by the report's
printers. Parameters and examples are read and checked by inputs.py, with the generated
module's own checks (module.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..derive import derive
from ..errors import SymgradError
from ..plan import build
from ..report.latex import latex
from ..report.markdown import markdown
from ..report.text import plain_text
from .evaluate import Step, evaluate
from .inputs import params_from
from .module import module_of
from .write import Writer

if TYPE_CHECKING:
    from ..spec import SpecSource

FORMATS = ("text", "markdown", "latex")
MAX_DIGITS = 17


class Explanation(str):
    """The worked example as text in the format asked for; Jupyter shows it as
    Markdown (`_repr_markdown_`). `step` holds every number (evaluate.Step)."""

    step: Step
    _writer: Writer

    def _repr_markdown_(self) -> str:
        return markdown(self._writer.report())


def explain(
    spec: SpecSource,
    params: dict[str, np.ndarray] | str | os.PathLike[str] | None,
    X: object,
    Y: object,
    format: str = "text",  # noqa: A002 - the CLI's --format
    digits: int = 9,
    *,
    seed: int = 0,
    standalone: bool = False,
    figure: str | os.PathLike[str] | None = None,
) -> Explanation:
    """One training step of the spec's network on X, Y, written out with its numbers.

    Args:
        spec: a Spec, a spec file, YAML text or a dict.
        params: a dict of arrays, a path (.npz from save_params, or .yaml/.json of
            nested lists), or None for `init_params(seed)`.
        X: the examples, shape (m, inputs) (one example may be given flat).
        Y: the targets as the generated module takes them (class labels too).
        format: "text", "markdown" or "latex".
        digits: significant digits of every printed number.
        seed: the seed of init_params (without params) and of dropout's masks.
        standalone: LaTeX only: a complete document for pdflatex.
        figure: also draw the network with the step's numbers into this .png or
            .svg file (needs matplotlib: the plot extra).
    """
    if format not in FORMATS:
        raise SymgradError(
            f"format must be one of {', '.join(FORMATS)}, found {format!r}"
        )
    if standalone and format != "latex":
        raise SymgradError("standalone applies to the latex format only")
    if (
        isinstance(digits, bool)
        or not isinstance(digits, int)
        or not 1 <= digits <= MAX_DIGITS
    ):
        raise SymgradError(
            f"digits must be a whole number from 1 to {MAX_DIGITS}, found {digits!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SymgradError(f"the seed must be a whole number ≥ 0, found {seed!r}")
    d = derive(spec)
    plan = build(d)
    module = module_of(d)
    if params is None:
        params = module.init_params(seed)
    elif isinstance(params, str | os.PathLike):
        params = params_from(Path(params), module)
    try:
        module._check_params(params)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        X = module._features(X, np.float64)
        Y = np.asarray(Y)
        if (
            Y.ndim == 1
            and X.shape[0] == 1
            and Y.shape[0] == d.out.units
            and d.out.units > 1
        ):
            Y = Y[None, :]
        Y = module._targets(Y, X.shape[0], np.float64)
    except (ValueError, TypeError) as exc:
        raise SymgradError(str(exc)) from None
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    rng = np.random.default_rng(seed) if plan.dropout else None
    step = evaluate(plan, module, params, X, Y, rng)
    writer = Writer(plan, step, digits)
    if figure is not None:
        from .figure import draw

        draw(writer.names, step, figure, min(digits, 4))
    report = writer.report()
    if format == "latex":
        text = latex(report, standalone)
    elif format == "markdown":
        text = markdown(report)
    else:
        text = plain_text(report)
    out = Explanation(text)
    out.step, out._writer = step, writer
    return out


__all__ = ["FORMATS", "Explanation", "explain"]
