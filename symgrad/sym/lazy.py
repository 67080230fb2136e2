"""NumPy for the derivation's numeric checks, imported on first use.

A derivation whose rules all come from the cache evaluates nothing: a cold `symgrad
generate` of built-in layers (their rules shipped, symgrad/cache.py) needs no NumPy, and
importing it is ~0.05–0.1 s of that run. Modules that evaluate forms bind `np` to the
`numpy` below (type checkers see the real module); its first attribute read imports
NumPy, and every attribute read is kept, so later reads cost what a module's do.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:  # noqa: ANN401
        if attribute.startswith("__"):  # copy, pickle and friends probing: not ours
            raise AttributeError(attribute)
        value = getattr(importlib.import_module(self._name), attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


numpy = LazyModule("numpy")
