"""`learning_rate(t)`: the learning rate of optimizer step t (0-based), in both modules.

Printed from the plan's update (its schedule, `Update.schedule`, or the constant η) as
plain Python over floats, with math for the cosine: the function a caller (fit's
history, a plot) asks, and the in-place step reads for each step's ηₜ.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .. import schedules
from ..plan import Plan
from ..sym.code import number_text
from .blocks import INDENT

T = sp.Symbol("t", integer=True, nonnegative=True)  # the argument: steps taken


class _Python(PythonCodePrinter):
    """Python floats: math.cos, math.floor, min, a conditional expression; the settings
    (symbols of the update's numbers) printed as their values."""

    def __init__(self, values: dict[sp.Symbol, float]) -> None:
        super().__init__({"fully_qualified_modules": True})
        self.values = values

    def _print_Symbol(self, expr: sp.Symbol) -> str:  # noqa: N802
        if expr in self.values:
            return number_text(sp.Float(self.values[expr]))
        return super()._print_Symbol(expr)

    def _print_Float(self, expr: sp.Float) -> str:  # noqa: N802
        return number_text(expr)


def source(plan: Plan) -> str:
    """The function's source."""
    up = plan.update
    lr = next(sym for sym, _ in up.numbers if sym.name == "learning_rate")
    expr: sp.Expr = lr
    if up.schedule is not None:
        expr = up.schedule.expr.xreplace({schedules.T0: T})
    text = _Python(dict(up.numbers)).doprint(expr)
    if isinstance(expr, sp.Piecewise):  # ((a) if (c) else (b)): a statement's value
        text = text[1:-1]
    title = f"the {up.schedule_name} schedule" if up.schedule_name else "constant"
    lines = [
        '"""The learning rate of optimizer step t (t = 0, 1, ...: state["t"]):',
        f'{title}."""',
    ]
    if "math." in text:
        lines += ["import math", ""]
    lines.append(f"return {text}")
    body = "\n".join(INDENT + line if line else "" for line in lines)
    return f"def learning_rate(t):\n{body}\n"
