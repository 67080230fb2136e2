"""The generated module of a spec, made in memory: its helpers, checks and init.

The worked example reads parameters, inputs and targets the way the generated module
does (`load_params`, `init_params`, its checks of X and Y) and evaluates the plan with
the module's own helpers, so it renders the module once and executes it as a module
object. The source is ours (render.py's output), not user input.
"""

from __future__ import annotations

import types

from ..derive import Derivation
from ..render import render


def module_of(d: Derivation) -> types.ModuleType:
    """The NumPy module of a derivation, executed in memory."""
    source = render(d)
    module = types.ModuleType(f"symgrad_explain_{d.spec.name}")
    module.__dict__["__file__"] = f"<symgrad explain {d.spec.name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    return module
