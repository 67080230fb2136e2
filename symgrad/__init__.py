"""symgrad: derive neural-network gradients with SymPy, generate standalone NumPy modules.

The pipeline, one stage per module: spec (YAML -> Spec) -> derive (SymPy rules) ->
printers (NumPy / text) -> render (Jinja2 + black -> file). `generate` runs all of it.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os
from pathlib import Path

from .check import CheckResult, check_gradients
from .derive import Derivation, derive
from .errors import DerivationError, ExpressionError, SpecError, SymgradError
from .report import render_report
from .spec import Spec, load_spec, parse_spec


def generate(
    spec: str | os.PathLike[str] | Spec, out_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Generate the training module for a spec; returns the path written.

    Args:
        spec: a spec file (YAML) or a loaded Spec.
        out_dir: where <name>.py goes; default ./generated.
    """
    from .render import output_path, render, write_atomic

    loaded = spec if isinstance(spec, Spec) else load_spec(spec)
    derivation = derive(loaded)
    path = output_path(loaded.name, out_dir)
    write_atomic(path, render(derivation))
    return path


__all__ = [
    "CheckResult",
    "Derivation",
    "DerivationError",
    "ExpressionError",
    "Spec",
    "SpecError",
    "SymgradError",
    "check_gradients",
    "derive",
    "generate",
    "load_spec",
    "parse_spec",
    "render_report",
]
