"""Files in and out: bounded reads, and writes that never leave half a file behind.

`read_bounded` reads at most limit + 1 bytes, whatever the file is: a pipe, a FIFO or a
device reports size 0 to `stat`, so the size is only known after reading.

`write_text` is the one writer of `symgrad generate` and `symgrad latex -o`:

- a regular file (or a symlink to one: the target is replaced, the link kept) is replaced
  atomically: a temporary file in the target's directory, then a rename;
- a FIFO, a character device or /dev/stdout is opened and written directly (replacing it
  would cut off its reader);
- a new file honours the umask, a regenerated one keeps its mode;
- on any failure, and on SIGINT or SIGTERM, the temporary file and the directories the
  call made are removed, and an OSError names the target, not the temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import SymgradError, printable

NEW_FILE_MODE = 0o666  # before the umask, as open() makes files


SPEC_MAX_BYTES = (
    256 * 1024
)  # a spec file's limit (spec.read, and generate's result cache)


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The first limit + 1 bytes of path at most (more than limit means: too large)."""
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def write_text(path: str | os.PathLike[str], content: str) -> None:
    """Write UTF-8 text to path: atomically for a regular file, directly for a stream.

    Raises:
        SymgradError: path is a directory, or a kind of file that cannot be written.
        OSError: the write failed; `filename` is path (never the temporary file).
    """
    path = Path(path)
    data = content.encode("utf-8")
    try:
        st = os.stat(path)  # follows symlinks: what a reader of path would see
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _named(exc, path) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise SymgradError(f"{path}: is a directory (expected a file name)")
    if st is not None and (not stat.S_ISREG(st.st_mode) or _is_stream_name(path)):
        if stat.S_ISSOCK(st.st_mode):
            raise SymgradError(f"{path}: is a socket; name a file, a FIFO or a device")
        try:  # append: no truncation of a stream redirected with >> (FIFOs ignore it)
            with open(path, "ab") as fh:
                fh.write(data)
        except OSError as exc:
            raise _named(exc, path) from None
        return
    # a symlink to a regular file (or a dangling one): write its target, keep the link
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    mode = stat.S_IMODE(st.st_mode) if st is not None else None
    _replace(target, data, mode, shown=path)


def _is_stream_name(path: Path) -> bool:
    """/dev/stdout, /proc/self/fd/1 and the like: links to the caller's streams, written
    through even when the stream is a redirected regular file (a new file in its place
    would not reach the shell's descriptor). /dev/shm/x, a plain file, is not one."""
    return os.path.islink(path) and Path(os.path.abspath(path)).parts[1:2] in (
        ("dev",),
        ("proc",),
    )


def _replace(target: Path, data: bytes, mode: int | None, shown: Path) -> None:
    made: list[Path] = []  # directories this call created, outermost first
    tmp: Path | None = None
    with _sigterm_raises():
        try:
            made = _make_parents(target.parent)
            fd, tmp = _create_temp(target)
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, target)
            tmp = None
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            if isinstance(exc, OSError):
                raise _named(exc, shown) from None
            raise


def _make_parents(directory: Path) -> list[Path]:
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    made = []
    for d in reversed(missing):
        os.mkdir(d)
        made.append(d)
    return made


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new temporary file beside target; its mode is NEW_FILE_MODE less the umask."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target))


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises SystemExit while the block runs, so its cleanup runs too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _named(exc: OSError, path: Path) -> OSError:
    """The same error, naming path (not a temporary file, not nothing)."""
    strerror = exc.strerror or str(exc) or type(exc).__name__
    return OSError(exc.errno or errno.EIO, strerror, str(path))


# what `symgrad generate --target T` writes: <name><suffix>.py
TARGETS = {"numpy": "", "array-api": "_xp", "numba": "_numba"}


def output_path(
    name: str, out_dir: str | os.PathLike[str] | None, suffix: str = ""
) -> Path:
    """Where `<name><suffix>.py` goes in out_dir (default: generated; suffix `_numba`
    for the numba target), checked: out_dir is not a file, and the path stays inside
    it."""
    directory = Path(out_dir) if out_dir is not None else Path("generated")
    if directory.exists() and not directory.is_dir():
        raise SymgradError(f"{directory}: output directory is a file")
    path = directory / f"{name}{suffix}.py"
    try:
        inside = path.resolve().parent == directory.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before 3.13)
        raise SymgradError(
            f"{printable(str(path))}: cannot follow its links ({exc.__class__.__name__}:"
            " a symlink loop?); write to another directory with -o"
        ) from None
    if not inside:
        raise SymgradError(f"{name!r} would be written outside {directory}")
    return path
