"""The derivation cache: derived rules kept on disk between runs, so that regenerating a
spec after changing a learning rate does not wait for the same SymPy work again.

An entry is one derived rule (an activation's, a loss on an output activation's, a
norm's, a window layer's), stored under a key that names exactly what it was derived
from: the function, the expression as the spec wrote it with its parameters, and the
versions of symgrad (its number and a digest of its code and templates, so that an
edited checkout derives again), SymPy and Python. symgrad/result_cache.py keeps whole
results of `symgrad generate` here too.
Where a rule is asked for, the cache answers only with an entry whose stored key equals
the key asked for; anything else — a missing, corrupt, truncated or foreign entry — is
ignored, derived again and rewritten. So the output is the same bytes with the cache,
without it, and with a damaged one (tests/test_cache.py).

Where: `$SYMGRAD_CACHE_DIR`, else the platform's user cache directory (Linux
`$XDG_CACHE_HOME/symgrad` or `~/.cache/symgrad`, macOS `~/Library/Caches/symgrad`,
Windows `%LOCALAPPDATA%\\symgrad\\Cache`). `SYMGRAD_NO_CACHE=1` or the command line's
`--no-cache` turn it off.

Trust: an entry is a pickle, and unpickling runs what the file says, so the cache is
read only from a directory that the user alone can write, as ssh reads its keys: the
directory and each entry must be owned by the user and not writable by group or others
(on systems with owners); otherwise the cache is not used for reading. Entries are
written to a temporary file and renamed into place, so concurrent runs never see half
an entry; a rule holding a SymPy Dummy (whose identity would not survive a process) is
not stored.

Shipped rules: the built-in activations', losses', norms' and window layers' rules come
derived with the package, in builtin_rules.pickle beside this module (made by
scripts/build_rules.py, which derives them as a cold cache would). A derivation looks
there first, under the same key and with the same checks as the disk cache: an entry is
used only where its stored key equals the key asked for (the key holds the code digest,
so an edited checkout derives again), and a missing, corrupt or stale file only means
deriving. The file is trusted as symgrad's own code is: it is read only from the package's
directory, and only where it is owned by the owner of this module and writable by no one
who cannot write the module. `--no-cache` and `SYMGRAD_NO_CACHE=1` turn it off with the
cache; `SYMGRAD_SHIPPED_RULES=0` alone (the check of the file and the cache's tests use
it, to derive every rule).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from .files import read_bounded
from .version import __version__

MAX_ENTRY_BYTES = 8 * 2**20  # a derived rule pickles to a few kB; larger is not ours
_state = {
    "enabled": os.environ.get("SYMGRAD_NO_CACHE", "") in ("", "0"),
    "shipped": os.environ.get("SYMGRAD_SHIPPED_RULES", "") != "0",
}
SHIPPED = Path(__file__).resolve().with_name("builtin_rules.pickle")
MAX_SHIPPED_BYTES = 64 * 2**20
F = TypeVar("F", bound=Callable[..., Any])


def disable() -> None:
    """Turn the cache off for this process (the command line's --no-cache)."""
    _state["enabled"] = False


def enabled() -> bool:
    """Whether this process reads and writes the cache."""
    return _state["enabled"]


def directory() -> Path:
    """Where the entries live (see the module's docstring)."""
    chosen = os.environ.get("SYMGRAD_CACHE_DIR")
    if chosen:
        return Path(chosen)
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "symgrad" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "symgrad"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "symgrad"


def template_dir() -> Path:
    """templates/ in a source checkout; the symgrad.templates package when installed."""
    here = Path(__file__).resolve().parent.parent / "templates"
    if (here / "module.py.jinja").is_file():
        return here
    return Path(str(resources.files("symgrad.templates")))


@functools.cache
def code_digest() -> str:
    """sha256 of every .py and template file of symgrad (name, size, bytes), ~10 ms;
    the same in a checkout and installed (where the templates are the package
    symgrad.templates: its marker __init__.py is not a template), so that the shipped
    rules' keys match in both."""
    package = Path(__file__).resolve().parent
    files = [
        (name, p)
        for p in package.rglob("*.py")
        for name in [p.relative_to(package).as_posix()]
        if not name.startswith("templates/")
    ]
    files += [("templates/" + p.name, p) for p in template_dir().glob("*.jinja")]
    digest = hashlib.sha256()
    for name, path in sorted(files):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def _normalized(name: str) -> str:
    """A distribution's name as installers write it in a .dist-info folder (PEP 503)."""
    return "".join("_" if c in "-_." else c for c in name.lower())


@functools.cache
def _dist_infos(entry: str) -> dict[str, str]:
    """The .dist-info folders in one sys.path entry: version by normalized name (where
    one name has several, none: importlib.metadata decides)."""
    found: dict[str, list[str]] = {}
    try:
        names = sorted(os.listdir(entry or "."))
    except OSError:
        return {}
    for item in names:
        if item.endswith(".dist-info"):
            dist, sep, version = item[: -len(".dist-info")].partition("-")
            if sep and version:
                found.setdefault(_normalized(dist), []).append(version)
    return {name: v[0] for name, v in found.items() if len(v) == 1}


@functools.cache
def installed_version(name: str) -> str:
    """An installed distribution's version ("" if none), for cache keys.

    Read from its `{name}-{version}.dist-info` folder's name (the wheel layout, PEP
    427) in the first sys.path entry that has one, as importlib.metadata finds it,
    without importing importlib.metadata (~15 ms of a cold start); anything else (an
    .egg-info, two versions side by side, none) is asked of importlib.metadata.
    """
    wanted = _normalized(name)
    for entry in sys.path:
        found = _dist_infos(entry)
        if wanted in found:
            return found[wanted]
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _versions() -> tuple[str, ...]:
    import sympy

    return (
        __version__,
        code_digest(),
        sympy.__version__,
        "{}.{}".format(*sys.version_info[:2]),
    )


def key_text(function: str, args: tuple[Any, ...]) -> str:
    """The key of an entry: what it is derived from, as text (reprs of plain data)."""
    return repr((_versions(), function, args))


def _private(path: Path) -> bool:
    """Owned by this user and writable by no one else (always true where there are no
    owners to check)."""
    if not hasattr(os, "getuid"):
        return True
    info = path.stat()
    return info.st_uid == os.getuid() and not info.st_mode & (
        stat.S_IWGRP | stat.S_IWOTH
    )


def _entry(key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return directory() / digest[:2] / f"{digest}.pickle"


def load(key: str) -> tuple[bool, Any]:
    """(True, value) of the entry stored under exactly this key, else (False, None)."""
    if not _state["enabled"]:
        return False, None
    path = _entry(key)
    try:
        if not (_private(directory()) and _private(path.parent) and _private(path)):
            return False, None
        data = read_bounded(path, MAX_ENTRY_BYTES)
    except Exception:  # noqa: BLE001 - missing, unreadable, no home: derive again
        return False, None
    return _checked(key, data)


def _checked(key: str, data: object) -> tuple[bool, Any]:
    """(True, value) where data is an entry stored under exactly this key."""
    if not isinstance(data, bytes) or len(data) > MAX_ENTRY_BYTES:
        return False, None
    try:
        stored_key, value = pickle.loads(data)
    except Exception:  # noqa: BLE001 - corrupt, truncated: derive again
        return False, None
    if stored_key != key:
        return False, None
    return True, value


def _as_trusted_as_code(path: Path) -> bool:
    """Owned by the owner of this module, and writable by no one who cannot write it
    (always true where there are no owners to check)."""
    if not hasattr(os, "getuid"):
        return True
    info, code = path.stat(), Path(__file__).stat()
    others = stat.S_IWGRP | stat.S_IWOTH
    return info.st_uid == code.st_uid and not info.st_mode & others & ~code.st_mode


@functools.cache
def shipped_table() -> dict[str, bytes]:
    """The rules shipped with the package: entry bytes (as the disk cache stores them)
    by key; empty where the file is missing, unreadable, corrupt or not trusted."""
    try:
        if not _as_trusted_as_code(SHIPPED):
            return {}
        data = read_bounded(SHIPPED, MAX_SHIPPED_BYTES)
        if len(data) > MAX_SHIPPED_BYTES:
            return {}
        table = pickle.loads(data)
    except Exception:  # noqa: BLE001 - missing, unreadable, corrupt: derive
        return {}
    return table if isinstance(table, dict) else {}


def load_shipped(key: str) -> tuple[bool, Any]:
    """(True, value) of the shipped rule stored under exactly this key, else (False,
    None)."""
    if not (_state["enabled"] and _state["shipped"]):
        return False, None
    return _checked(key, shipped_table().get(key))


def _rebuild(cls: type, args: tuple[Any, ...]) -> Any:  # noqa: ANN401
    """A SymPy expression from its class and arguments, as it was built: without
    evaluation where the class takes `evaluate` (an unevaluated product stays one)."""
    try:
        return cls(*args, evaluate=False)
    except TypeError:
        return cls(*args)


class _Pickler(pickle.Pickler):
    """Pickles a SymPy expression as its class and arguments (SymPy's own pickles
    rebuild with evaluation, which flattens a product kept unevaluated on purpose)."""

    def reducer_override(self, obj: Any) -> Any:  # noqa: ANN401
        import sympy

        if isinstance(obj, sympy.Basic) and not obj.is_Atom:
            return _rebuild, (type(obj), obj.args)
        return NotImplemented


def _dumps(value: Any) -> bytes:  # noqa: ANN401
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def store(key: str, value: Any) -> None:  # noqa: ANN401
    """Write an entry (atomically); a failure to write only means no cache. An entry
    that does not read back equal to what was derived is not written."""
    if not _state["enabled"]:
        return
    try:
        data = _dumps((key, value))
        if b"Dummy" in data or len(data) > MAX_ENTRY_BYTES:
            return
        if pickle.loads(data) != (key, value):
            return
    except Exception:  # noqa: BLE001 - not picklable, or not back as it was: not cached
        return
    path = _entry(key)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return


IN_MEMORY = 512  # rules a process keeps per derivation function


def persistent(key: Callable[..., tuple[Any, ...]]) -> Callable[[F], F]:
    """Keep a derivation's results on disk: `key(*args)` gives the plain data (names,
    expression texts, numbers) the result is derived from. The function is also cached
    in memory, for the last IN_MEMORY distinct arguments: a long-running process that
    derives many specs keeps a bounded number of rules (the disk has the rest)."""

    def wrap(function: F) -> F:
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.lru_cache(maxsize=IN_MEMORY)
        @functools.wraps(function)
        def cached(*args: Any) -> Any:  # noqa: ANN401
            text = key_text(name, key(*args))
            found, value = load_shipped(text)
            if not found:
                found, value = load(text)
            if found:
                return value
            value = function(*args)
            store(text, value)
            return value

        return cached  # type: ignore[return-value]

    return wrap
