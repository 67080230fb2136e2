"""The result cache of `symgrad generate`: the module a run wrote, and what it printed,
kept in the derivation cache's directory (symgrad/cache.py, with its trust rules), so
that running the same command again on an unchanged spec loads neither SymPy nor black.

The key names everything the result is made of: the spec file's bytes and its path as
given, the output directory as given, the working directory (the module's docstring
names the command relative to it), the target, a digest of symgrad's own code and
templates (so an edited checkout never gets an old result), the versions of SymPy,
black, Jinja2, PyYAML and NumPy, and Python's. An entry is used only where its stored
key equals this one (cache.load); anything else runs the pipeline. Only the command
line uses it: its process has only symgrad's own registries, where a program calling
symgrad.generate may have registered an activation or a loss under any name.

The output path is still checked as on a miss (files.output_path), and the module is
written the same way (files.write_text). The spec is read once: on a miss the pipeline
parses the bytes the key was made of. A spec that is not a regular file (a pipe, a
device) is left to the pipeline to read, and never cached.
"""

from __future__ import annotations

import os
import stat
import sys

from . import cache, files

# the libraries whose behaviour is in a generated module: derivation, layout, templates,
# reading the spec, printing numbers
DEPENDENCIES = ("sympy", "black", "jinja2", "PyYAML", "numpy")


def _versions() -> tuple[tuple[str, str], ...]:
    return tuple((name, cache.installed_version(name)) for name in DEPENDENCIES)


def read(spec: str) -> bytes | None:
    """The spec file's bytes, read once: the key is made of them and, on a miss, the
    pipeline parses them (so a file saved during the run cannot be stored under another
    text's key); None without the cache, or where the spec is not a regular file."""
    if not cache.enabled():
        return None
    try:
        if not stat.S_ISREG(os.stat(spec).st_mode):
            return None
        data = files.read_bounded(spec, files.SPEC_MAX_BYTES)
    except (OSError, ValueError):
        return None
    return data if len(data) <= files.SPEC_MAX_BYTES else None


def text(data: bytes | None) -> str | None:
    """The spec's text from the bytes `read` returned (None: none, or not UTF-8)."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def key(spec: str, data: bytes | None, out_dir: str, target: str) -> str | None:
    """The key of `symgrad generate SPEC -o OUT_DIR --target TARGET` run here on the
    spec's bytes `data` (read), or None where the result is not cached."""
    if data is None or not cache.enabled():
        return None
    try:
        here = os.getcwd()
    except OSError:  # the working directory was removed: left to the pipeline
        return None
    python = (sys.implementation.name, tuple(sys.version_info))
    made_of = (cache.code_digest(), _versions(), python)
    return repr(("generate", made_of, target, spec, out_dir, here, data))


def load(text: str | None) -> tuple[str, str, list[str]] | None:
    """(the module's file name without .py, its text, the summary's lines) stored under
    exactly this key, or None."""
    if text is None:
        return None
    found, value = cache.load(text)
    if not found:
        return None
    try:
        stem, module, lines = value
        if isinstance(stem, str) and isinstance(module, str):
            if all(isinstance(line, str) for line in lines):
                return stem, module, list(lines)
    except (TypeError, ValueError):
        pass
    return None


def store(text: str | None, stem: str, module: str, lines: list[str]) -> None:
    """Keep a result under its key (nothing where the key is None)."""
    if text is not None:
        cache.store(text, (stem, module, tuple(lines)))
