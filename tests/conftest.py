"""pytest setup for symgrad's tests: the ``catalogue`` marker and the ``generate`` fixture."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

# The helpers below are plain modules in tests/; make them importable under any
# --import-mode (importlib mode does not put tests/ on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: left out of the quick subset, python -m pytest -m 'not slow' "
        "(subprocesses, training against references, fuzzing; docs/development.md)",
    )
    config.addinivalue_line(
        "markers",
        "catalogue: extended activation/loss catalogue (elu, softplus, silu, gelu, "
        "softsign, mae, huber); implemented in a later issue",
    )


@pytest.fixture(scope="session")
def _generated(tmp_path_factory: pytest.TempPathFactory):
    return {}, tmp_path_factory.mktemp("generated")


@pytest.fixture
def generate(_generated, tmp_path: Path) -> Callable[..., ModuleType]:
    """Return ``build(spec, *, fresh=False) -> module``.

    ``build`` writes the spec dict as YAML, runs ``symgrad.generate`` and imports the
    written ``<name>.py`` under a unique module name. Modules are stateless, so by
    default one module per distinct spec is generated per session and shared between
    tests; ``fresh=True`` generates a new one under this test's ``tmp_path``.
    """
    cache, session_dir = _generated

    def build(spec: Mapping[str, Any], *, fresh: bool = False) -> ModuleType:
        if fresh:
            return harness.generate_module(spec, tmp_path)
        key = yaml.safe_dump(dict(spec), sort_keys=True)
        if key not in cache:
            cache[key] = harness.generate_module(spec, session_dir)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """(cluster, client) of a dask.distributed LocalCluster, 2 worker processes on
    127.0.0.1, for the whole session (tests/xp_backends.py: bounded start, no
    dashboard); skipped with the reason when this sandbox cannot start it."""
    import xp_backends

    try:
        cluster, client = xp_backends.start_local_cluster(
            2, local_directory=tmp_path_factory.mktemp("dask-workers")
        )
    except xp_backends.ClusterUnavailable as exc:
        pytest.skip(str(exc))
    yield cluster, client
    xp_backends.close_local_cluster(cluster, client)
