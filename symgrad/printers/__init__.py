"""Printers: SymPy expressions -> NumPy code (code.py), in-place NumPy lines (inplace.py)
and readable unicode (text.py); printers of whole plans build on these (numpy_module.py).

Only the expression printers are imported here: derive.py's stability checks print
candidate forms the way the module will, so they sit below the derivation; the plan
printers sit above the plan and are imported from their own modules.
"""

from .code import DTYPE, NumPyCode, code, number_text
from .text import text

__all__ = ["DTYPE", "NumPyCode", "code", "number_text", "text"]
