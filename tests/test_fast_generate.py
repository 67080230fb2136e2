"""Generating fast without changing a byte: the runtime appended unformatted is still
black's layout of the whole module, and the whole-result cache of `symgrad generate`
writes and prints what a run without any cache does.

(tests/test_generated.py compares every example's NumPy module with the committed one,
made by black on the whole text; tests/test_cache.py tests the rule cache.)
"""

from __future__ import annotations

from pathlib import Path

import black
import pytest

import symgrad
from symgrad import render, render_xp

# the modules' text is the subject here: black's layout included
pytestmark = pytest.mark.formatted

ROOT = Path(__file__).resolve().parent.parent
SPECS = [ROOT / "examples" / f"{n}.yaml" for n in ("xor", "digits_cnn")] + [
    ROOT / "examples" / "cancer_norm_drop.yaml",
    ROOT / "benchmarks" / "specs" / "layers.yaml",
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("module", [render, render_xp], ids=["numpy", "array-api"])
def test_the_module_is_black_s_layout_of_the_whole(spec: Path, module) -> None:
    text = module.render(symgrad.derive(spec))
    assert black.format_str(text, mode=black.Mode()) == text
    assert text.endswith("\n\n\n" + module.runtime_code() + "\n")


@pytest.mark.parametrize("module", [render, render_xp], ids=["numpy", "array-api"])
def test_the_runtime_is_black_clean(module) -> None:
    """What render appends unformatted: black, on its own, leaves it as it is."""
    runtime = module.runtime_code()
    assert black.format_str(runtime, mode=black.Mode()) == runtime + "\n"
