"""pytest setup for symgrad's tests: the ``catalogue`` marker and the ``generate`` fixture."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
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

_OWN_CACHE = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_CACHE, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # One derivation cache for the session, shared by its processes (xdist workers, the
    # command line run in subprocesses), so that each rule is derived once per session;
    # not the user's cache, and removed at the end. tests/test_cache.py tests the cache.
    if "SYMGRAD_CACHE_DIR" not in os.environ:
        os.environ["SYMGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="symgrad-tests-")
        config.stash[_OWN_CACHE] = os.environ["SYMGRAD_CACHE_DIR"]
    config.addinivalue_line(
        "markers",
        "formatted: modules this test generates in its own process go through black "
        "(the others skip it: see _modules_unformatted)",
    )
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


@pytest.fixture(autouse=True)
def _modules_unformatted(request: pytest.FixtureRequest):
    """Modules a test generates in its own process skip black: the same code, compiled,
    not laid out (black takes about 0.6 s of a module's 0.65 s once its rules are
    derived: half the suite's time). Black's layout is tested where it is the subject —
    the tests marked `formatted` (black and ruff on generated text, same bytes) and
    every run of the command line in a subprocess, which formats as users get it.

    Its own MonkeyPatch, not the `monkeypatch` fixture: an autouse fixture would set
    that one up first and undo it last, after the test's other fixtures' teardown."""
    if request.node.get_closest_marker("formatted"):
        yield
        return
    from symgrad import render, render_xp

    def compiled(source: str, filename: str, what: str) -> str:
        compile(source, filename, "exec", dont_inherit=True)
        return source

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "formatted", compiled)
        patch.setattr(render_xp, "formatted", compiled)
        yield


@pytest.fixture(autouse=True)
def _memory_kept_in_budget():
    """After a test, the caches emptied when this process has grown more than
    harness.MEMORY_GROWTH_MIB since they last were (harness.keep_within_budget): a
    file of JAX references (test_catalogue.py) grew one process by 0.5 GiB of compiled
    programs before its end. Below that nothing is emptied, so a file's tests keep
    reusing what they compiled."""
    yield
    harness.keep_within_budget()


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


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """(cluster, client) of a dask.distributed LocalCluster, 2 worker processes on
    127.0.0.1, for one test file (tests/xp_backends.py: bounded start, no dashboard;
    not for the session: its three processes would hold their memory to the end);
    skipped with the reason when this sandbox cannot start it."""
    import xp_backends

    try:
        cluster, client = xp_backends.start_local_cluster(
            2, local_directory=tmp_path_factory.mktemp("dask-workers")
        )
    except xp_backends.ClusterUnavailable as exc:
        pytest.skip(str(exc))
    yield cluster, client
    xp_backends.close_local_cluster(cluster, client)
