"""The spec, parser and CLI tests need no JAX: they run where JAX is not installed.

conftest.py imports tests/harness.py for every test, and harness imports the JAX
reference only when a comparison with it is made. Here a fresh interpreter makes jax
(and optax) unimportable, as on a machine without them, and runs the spec and parser
tests, and collects the CLI and fuzz tests (collection imports every test module and
what it imports at the top).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_JAX = (
    "import sys; sys.modules.update(dict.fromkeys(['jax', 'jaxlib', 'optax'])); "
    "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


def _pytest_without_jax(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_JAX, "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_jax_is_unimportable_in_the_subprocess():
    check = _pytest_without_jax("--collect-only", "tests/test_jax_reference.py")
    assert (
        check.returncode != 0 and "ModuleNotFoundError" in check.stdout + check.stderr
    )


def test_spec_and_parser_tests_run_without_jax():
    run = _pytest_without_jax("tests/test_spec.py", "tests/test_expr.py")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-500:]


def test_cli_hostile_and_fuzz_tests_import_without_jax():
    files = ["tests/test_cli.py", "tests/test_hostile.py", "tests/test_fuzz_spec.py"]
    run = _pytest_without_jax("--collect-only", *files)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
