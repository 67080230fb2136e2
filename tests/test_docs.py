"""The README and docs/ say what is true: every relative link leads to a file, and every
`console` block of docs/ prints what it shows when run (the README's runnable sections
are checked by tests/test_examples.py).

A console block is a list of `$ command` lines, each followed by its output. A line `...`
in the shown output stands for any number of printed lines (an excerpt). Commands run in
a fresh directory holding copies of examples/ and docs/specs/, as from the repository
root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_examples import same_output

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def console_blocks(page: Path) -> list[tuple[str, str]]:
    """(command, shown output) of every console block of a page, in order."""
    text = page.read_text()
    found = []
    for block in re.findall(r"^```console\n(.*?)^```$", text, flags=re.S | re.M):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            found.append((command, output))
    return found


def matches(printed: str, shown: str) -> bool:
    """The shown output, where each `...` line stands for any run of printed lines."""
    parts = re.split(r"^\.\.\.\n", shown, flags=re.M)
    if len(parts) == 1:
        return same_output(printed, shown)
    lines = printed.splitlines(keepends=True)
    at = 0
    for k, part in enumerate(parts):
        want = part.splitlines(keepends=True)
        if not want:
            continue
        starts = [at] if k == 0 else range(at, len(lines) - len(want) + 1)
        for start in starts:
            piece = "".join(lines[start : start + len(want)])
            if same_output(piece, "".join(want)):
                at = start + len(want)
                break
        else:
            return False
    return not parts[-1] or at == len(lines)


DOCS_BLOCKS = [
    pytest.param(page, command, shown, id=f"{page.name}: {command}")
    for page in PAGES[1:]
    for command, shown in console_blocks(page)
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.partition("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_docs_have_console_blocks() -> None:
    assert len(DOCS_BLOCKS) >= 3  # the check below is not vacuous


@pytest.mark.parametrize("page, command, shown", DOCS_BLOCKS)
def test_console_block_prints_what_it_shows(
    page: Path, command: str, shown: str, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "docs" / "specs", tmp_path / "docs" / "specs")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    printed = done.stdout + done.stderr
    assert matches(
        printed, shown
    ), f"{page.name}: $ {command}\nnow prints\n{printed}\nbut the page shows\n{shown}"


def test_an_excerpt_must_match_in_order() -> None:
    printed = "a\nb 1.0\nc\nd\n"
    assert matches(printed, "a\n...\nc\n...\n")
    assert matches(printed, "...\nb 1.0\n...\n")
    assert not matches(printed, "...\nc\n...\nb 1.0\n...\n")  # out of order
    assert not matches(printed, "a\n...\nc\n")  # d was left out without a `...`
    assert not matches(printed, "...\nb 2.0\n...\n")  # a number changed


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the markdown table whose header row starts so."""
    start = text.index(header)
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readmes_step_times_are_the_performance_pages() -> None:
    # the README's short table is rows of docs/performance.md's latest step table
    # (what benchmarks/run.py printed on the development machine), not numbers of
    # its own
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "performance.md").read_text()
    latest = page[page.index("## The steps on the development machine") :]
    shown = _table_rows(readme, "| config, batch | dtype | symgrad |")
    full = _table_rows(latest, "| config | dtype | generated |")
    assert len(shown) == 6
    by_row = {(r[0], r[1]): r for r in full}
    columns = (2, 4, 6, 7)  # generated, numba, PyTorch eager, JAX jit
    for row in shown:
        config = row[0].split(":")[0]
        want = [by_row[(config, row[1])][k].split(" (")[0] for k in columns]
        assert row[2:] == want, row
