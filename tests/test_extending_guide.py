"""docs/extending.md shows tested code: each Python block names, on its first line, the
test file it comes from, and its lines appear there, in order and together (indentation
aside: a fixture indents what the guide shows at the top level)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"```python\n# (tests/\S+\.py)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def stripped(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_every_python_block_names_its_test() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert text.count("```python") == len(blocks()) >= 5


@pytest.mark.parametrize(("source", "code"), blocks())
def test_the_block_is_the_tests_code(source: str, code: str) -> None:
    shown = stripped(code)
    lines = stripped((ROOT / source).read_text(encoding="utf-8"))
    starts = [i for i, line in enumerate(lines) if line == shown[0]]
    assert any(lines[i : i + len(shown)] == shown for i in starts), (
        f"docs/extending.md shows code that {source} does not hold (as shown): "
        f"update the guide from the test"
    )


def test_the_guide_names_every_registry_test() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for source in {s for s, _ in blocks()}:
        assert (ROOT / source).is_file(), source
    for name in ("activation", "loss", "norm", "layer kind", "optimizer"):
        assert f"## A{'n' if name[0] in 'aeio' else ''} {name}" in text, name
