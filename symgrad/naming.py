"""Every generated identifier, in one place: the same names appear in code, comments and LaTeX.

Layers are numbered from 1; layer 0 is the input X.
"""

from __future__ import annotations


def W(l: int) -> str:  # noqa: N802 - the math's name
    return f"W{l}"


def b(l: int) -> str:
    return f"b{l}"


def Z(l: int) -> str:  # noqa: N802
    """Pre-activation Z^l = A^{l-1} W^l + b^l, shape (m, n_l)."""
    return f"Z{l}"


def A(l: int) -> str:  # noqa: N802
    """Activation A^l = f(Z^l); A^0 is the input."""
    return "X" if l == 0 else f"A{l}"


def D(l: int) -> str:  # noqa: N802
    """Delta δ^l = ∂L/∂Z^l (already divided by the batch size m)."""
    return f"D{l}"


def dW(l: int) -> str:  # noqa: N802
    return f"dW{l}"


def db(l: int) -> str:
    return f"db{l}"


TARGET = "Y"
LOG_SOFTMAX = "LS"  # log-softmax of the output pre-activation


# LaTeX counterparts (superscript [l] marks the layer, as in most course notes)
def tex(name: str, l: int | None = None) -> str:
    return name if l is None else f"{name}^{{[{l}]}}"
