"""symgrad: derive neural-network gradients with SymPy, generate standalone NumPy modules.

The pipeline, one stage per module: spec (YAML -> Spec) -> derive (SymPy rules) ->
plan (the step as statements) -> printers of the plan (NumPy allocating and in place,
the array API) -> render (Jinja2 + the runtime + black -> file), and the report (LaTeX,
Markdown, text) from the derivation and the plan. `generate` runs all of it; `derive` returns the
derivation with Jupyter's display (report/notebook.py), which derive.py does not know of.
"""

import importlib as _importlib
import sys as _sys
import types as _types
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .errors import DerivationError, ExpressionError, SpecError, SymgradError
from .version import __version__

if _TYPE_CHECKING:  # for the annotations only: the namespace stays the API
    import os
    from pathlib import Path

    from .check import CheckResult, check_gradients
    from .derive import Derivation
    from .spec import Spec, SpecSource, as_spec, load_spec, parse_spec

# The package loads SymPy and the pipeline when a name that needs them is first used,
# not on import: `symgrad --help` starts at once, and Ctrl-C while `symgrad generate`
# loads them is handled by the command line (exit 130, no traceback).
_LAZY = {
    "CheckResult": "check",
    "check_gradients": "check",
    "Derivation": "derive",
    "Spec": "spec",
    "as_spec": "spec",
    "load_spec": "spec",
    "parse_spec": "spec",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'symgrad' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _pipeline() -> _types.ModuleType:
    """The submodule symgrad.derive (the name `derive` here is the function)."""
    return _importlib.import_module(".derive", __name__)


class _Facade(_types.ModuleType):
    """The package keeps `symgrad.derive` the function below: importing the submodule
    symgrad.derive (sys.modules["symgrad.derive"]) after this file ran would otherwise
    rebind the name to the module."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "derive" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


def derive(spec: "SpecSource") -> "Derivation":
    """Derive the gradient rules of a spec: a Spec, a path, YAML text or a dict.

    The result is the Derivation, displayed by Jupyter as LaTeX (the batch backward
    pass) or Markdown (the whole derivation, as `render_report(d, "markdown")`).
    """
    _derive = _pipeline()
    from .report import displayable

    return displayable(_derive.derive(spec))


def render_report(
    spec: "SpecSource | Derivation",
    fmt: str = "latex",
    *,
    standalone: bool = False,
) -> str:
    """The derivation of a spec as LaTeX, Markdown or unicode text, as `symgrad latex`
    prints it.

    Args:
        spec: a Derivation (`symgrad.derive(spec)`), or a spec as every entry point
            takes one: a Spec, a spec file, YAML text or a dict.
        fmt: "latex", "markdown" or "text".
        standalone: LaTeX only: a complete document for pdflatex, not a fragment.
    """
    _derive = _pipeline()
    from .report import render_report as _render_report

    d = spec if isinstance(spec, _derive.Derivation) else _derive.derive(spec)
    return _render_report(d, fmt, standalone=standalone)


def explain(
    spec: "SpecSource",
    params: "dict | str | os.PathLike[str] | None",
    X: object,
    Y: object,
    format: str = "text",  # noqa: A002 - the CLI's --format
    digits: int = 9,
    *,
    seed: int = 0,
    standalone: bool = False,
    figure: "str | os.PathLike[str] | None" = None,
) -> str:
    """One training step of the spec's network on X, Y, written out with the numbers
    in every equation (the worked example of `symgrad explain`): text, "markdown" or
    "latex". The result is a str that Jupyter displays as Markdown. See
    symgrad.worked.explain for the arguments."""
    from .worked import explain as _explain

    return _explain(
        spec,
        params,
        X,
        Y,
        format,
        digits,
        seed=seed,
        standalone=standalone,
        figure=figure,
    )


def generate(
    spec: "SpecSource",
    out_dir: "str | os.PathLike[str] | None" = None,
    *,
    target: str = "numpy",
) -> "Path":
    """Generate the training module for a spec; returns the path written.

    Args:
        spec: a Spec, a spec file (str or PathLike), YAML text or a dict (see
            `as_spec`).
        out_dir: where the module goes; default ./generated.
        target: "numpy" (the default): <name>.py, the NumPy module; "array-api":
            <name>_xp.py, the same derived math against the array API standard (runs
            on NumPy, PyTorch, CuPy, JAX and Dask arrays); "numba": <name>_numba.py,
            the NumPy module whose step runs its elementwise statements as numba
            kernels (needs numba: symgrad[numba]).
    """
    from .files import TARGETS, write_text
    from .spec import as_spec

    if target not in TARGETS:
        raise SymgradError(
            f"unknown target {target!r}: expected one of {', '.join(TARGETS)}"
        )
    path, text, _ = _made(as_spec(spec), out_dir, target)
    write_text(path, text)
    return path


def _made(
    loaded: "Spec", out_dir: "str | os.PathLike[str] | None", target: str
) -> "tuple[Path, str, Derivation]":
    """Where a spec's module goes (checked), its text, and the derivation: what
    generate writes, and the command line prints a summary of."""
    from .files import TARGETS, output_path

    derivation = _pipeline().derive(loaded)
    path = output_path(loaded.name, out_dir, TARGETS[target])
    if target == "array-api":
        from . import render_xp

        return path, render_xp.render(derivation, out_dir), derivation
    from .render import render

    return path, render(derivation, out_dir, numba=target == "numba"), derivation


__all__ = [
    "CheckResult",
    "Derivation",
    "DerivationError",
    "ExpressionError",
    "Spec",
    "SpecError",
    "SymgradError",
    "__version__",
    "as_spec",
    "check_gradients",
    "derive",
    "explain",
    "generate",
    "load_spec",
    "parse_spec",
    "render_report",
]

_sys.modules[__name__].__class__ = _Facade
