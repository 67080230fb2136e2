"""Hostile input and hostile targets: nothing from a file becomes code, reads are bounded,
writes are all or nothing, special files are written as what they are.

Each class of issue 10's adversarial suite: injection through file names, unbounded
reads, broken output (compile before replacing), special paths, signals, full disks.
"""

from __future__ import annotations

import ast
import errno
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import symgrad
from symgrad import SpecError, as_spec, files, load_spec
from symgrad.check import memory_estimate
from symgrad.cli import main
from symgrad.render import docstring_text
from symgrad.spec import MAX_BYTES

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "examples" / "xor.yaml"

HOSTILE_NAMES = [
    'net""" if __import__("os").system("touch pwned") else """.yaml',
    "bad\\x.yaml",
    "bad\\N{.yaml",
    "trailing\\",
    'quote".yaml',
    "new\nline.yaml",
    "esc\x1b[2J.yaml",
    "bidi\u202egnp.yaml",
    "nul\u2028sep.yaml",
]


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symgrad", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# ------------------------------------------------------------------ injection


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_file_name_cannot_break_or_inject_into_the_module(tmp_path, name) -> None:
    spec = tmp_path / name
    spec.write_text(XOR.read_text())
    out = symgrad.generate(spec, tmp_path / "out")
    source = out.read_text(encoding="utf-8")
    compile(source, str(out), "exec")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    assert doc is not None and "Regenerate with:" in doc
    # a long command is continued with backslash-newline (the docstring is raw);
    # otherwise, after escaping, no backslash, ESC, bidi override or line separator
    command = doc[doc.index("Regenerate with:") :].replace("\\\n ", " ")
    assert command.startswith("Regenerate with:") and "symgrad generate" in command
    # the docstring is the first statement and the only string before `import numpy`
    assert isinstance(tree.body[1], ast.Import)
    rest = doc.replace("\\\n ", " ")
    assert not any(c in rest for c in "\\\x1b\u202e\u2028")
    env = {**os.environ, "PYTHONPATH": str(out.parent)}
    subprocess.run(
        [sys.executable, "-c", "import xor"], cwd=tmp_path, env=env, check=True
    )
    assert not (tmp_path / "pwned").exists()


def test_check_on_a_hostile_file_name_runs_nothing(tmp_path) -> None:
    spec = tmp_path / HOSTILE_NAMES[0]
    spec.write_text(XOR.read_text())
    result = run("check", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pwned").exists()
    result = run("check", str(tmp_path / "x.yaml"), cwd=tmp_path)  # no such file
    assert result.returncode == 2


def test_docstring_text_keeps_names_and_escapes_the_rest() -> None:
    assert docstring_text("iris_mlp.yaml") == "iris_mlp.yaml"
    assert docstring_text("réseau näıf.yaml") == "réseau näıf.yaml"
    assert docstring_text('a"""b') == "a<U+0022><U+0022><U+0022>b"
    assert docstring_text("a\\x\nb\x00") == "a<U+005C>x<U+000A>b<U+0000>"


@pytest.mark.formatted  # black's layout is what is tested
def test_a_module_that_does_not_compile_is_a_bug_and_writes_nothing(
    tmp_path, monkeypatch
) -> None:
    import black

    target = tmp_path / "xor.py"
    target.write_text("# a good module\n")
    monkeypatch.setattr(black, "format_str", lambda src, mode: 'x = "\\x"\n')
    with pytest.raises(RuntimeError, match="symgrad bug: .* does not compile"):
        symgrad.generate(XOR, tmp_path)
    assert target.read_text() == "# a good module\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.py"]


def test_latex_escapes_the_file_name(tmp_path) -> None:
    spec = tmp_path / "a\x01$%_{}\\end{document}\x7f.yaml"
    spec.write_text(XOR.read_text())
    doc = symgrad.render_report(symgrad.derive(spec), "latex")
    line = next(x for x in doc.splitlines() if "Derived by symgrad" in x)
    # control characters as Python escapes (as on the terminal), then TeX-escaped
    assert (
        r"\texttt{a\textbackslash{}x01\$\%\_\{\}\textbackslash{}end\{document\}"
        r"\textbackslash{}x7f.yaml}" in line
    )
    assert not any(ord(c) < 32 or ord(c) == 127 for c in doc.replace("\n", ""))


def test_text_report_on_a_terminal_gets_no_control_characters(tmp_path) -> None:
    spec = tmp_path / "esc\x1b[2J.yaml"
    spec.write_text(XOR.read_text())
    for fmt in ("text", "markdown"):
        result = run("latex", str(spec), "-f", fmt, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "esc\\x1b[2J.yaml" in result.stdout


# ------------------------------------------------------------------ unbounded input


def test_dev_zero_is_refused_after_reading_the_limit() -> None:
    with pytest.raises(SpecError, match=f"larger than {MAX_BYTES} bytes"):
        load_spec("/dev/zero")
    assert len(files.read_bounded("/dev/zero", 10)) == 11


def test_a_pipe_is_read_up_to_the_limit_only(tmp_path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    written = [0]

    def writer() -> None:
        block = b"# " + b"x" * 4093 + b"\n"
        try:
            with open(fifo, "wb") as fh:
                for _ in range(10 * MAX_BYTES // len(block)):
                    fh.write(block)
                    written[0] += len(block)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer)
    thread.start()
    with pytest.raises(SpecError, match="larger than"):
        load_spec(fifo)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert written[0] < 2 * MAX_BYTES  # the reader stopped; it did not drain the pipe


def test_a_spec_from_a_pipe_loads(tmp_path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    thread = threading.Thread(target=lambda: fifo.write_bytes(XOR.read_bytes()))
    thread.start()
    assert load_spec(fifo).name == "xor"
    thread.join(timeout=30)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("# a comment \x00\n", "s.yaml:11:13", "NUL (U+0000)"),
        ("\x1b[31mkey: 1\n", "s.yaml:11:1", "ESC (U+001B)"),
        ("init: auto\x07\n", "s.yaml:11:11", "control character (U+0007)"),
        ("l2: 0.1 # \x7f\n", "s.yaml:11:11", "DEL (U+007F)"),
        ("l2: '\ufffe'\n", "s.yaml:11:6", "control character (U+FFFE)"),
    ],
)
def test_control_bytes_anywhere_are_one_located_problem(
    tmp_path, text, where, what
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_bytes(XOR.read_bytes() + text.encode("utf-8"))
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert [str(p) for p in info.value.problems] == [
        f"{spec.parent / where}: {what} is not allowed in a spec, even in a comment"
        " (remove it; in a quoted string write it as an escape)"
    ]


def test_control_bytes_from_the_command_line_no_traceback(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_bytes(XOR.read_bytes() + b"# \x00\x1b\n")
    result = run("generate", str(spec), "-o", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    assert result.stderr.count("\n") == 1 and "s.yaml:11:3: NUL" in result.stderr


def test_check_estimates_memory_before_allocating(tmp_path, capsys) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(
        "name: huge\ninput: 1000000\nlayers:\n"
        "  - {units: 1000000, activation: tanh}\n"
        "  - {units: 1000000, activation: tanh}\n"
        "  - {units: 1, activation: sigmoid}\nloss: binary_crossentropy\n"
    )
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symgrad: error: checking huge on 8 examples needs about ")
    assert "TiB of memory (2,000,003,000,001 parameters)" in err
    assert "at most 2.0 GiB" in err and "Traceback" not in err
    small = as_spec(
        {
            "name": "small",
            "input": 2,
            "layers": [
                {"units": 8, "activation": "tanh"},
                {"units": 1, "activation": "sigmoid"},
            ],
            "loss": "binary_crossentropy",
        }
    )
    assert memory_estimate(small, 8) == 8 * (3 * 33 + 4 * 8 * 11)


# ------------------------------------------------------------------ special paths


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_honour_the_umask_and_keep_their_mode(tmp_path, umask_022) -> None:
    out = symgrad.generate(XOR, tmp_path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    os.chmod(out, 0o640)
    symgrad.generate(XOR, tmp_path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    os.umask(0o077)
    tex = tmp_path / "x.tex"
    files.write_text(tex, "x")
    assert stat.S_IMODE(tex.stat().st_mode) == 0o600


def test_latex_to_a_fifo_writes_into_it(tmp_path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(["latex", str(XOR), "-f", "text", "-o", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and received[0].decode().startswith("The derivation of xor")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]


@pytest.mark.parametrize("via_link", [False, True], ids=["dev-stdout", "symlink"])
def test_latex_to_dev_stdout_writes_the_stream(tmp_path, via_link) -> None:
    target = "/dev/stdout"
    if via_link:
        (tmp_path / "out").symlink_to("/dev/stdout")
        target = str(tmp_path / "out")
    result = run("latex", str(XOR), "-f", "text", "-o", target, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The derivation of xor")
    assert "wrote" not in result.stdout
    if via_link:
        assert os.readlink(tmp_path / "out") == "/dev/stdout"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_latex_to_dev_null_writes_nothing_else(tmp_path) -> None:
    assert main(["latex", str(XOR), "-o", os.devnull]) == 0
    assert Path(os.devnull).is_char_device()


def test_symlink_to_a_file_replaces_the_target_and_keeps_the_link(tmp_path) -> None:
    real = tmp_path / "real" / "notes.md"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "notes.md"
    link.symlink_to(real)
    assert main(["latex", str(XOR), "-f", "markdown", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text(encoding="utf-8").startswith("# The derivation of xor")
    assert sorted(p.name for p in real.parent.iterdir()) == ["notes.md"]


def test_full_disk_removes_the_temp_file_and_the_directories_made(
    tmp_path, monkeypatch, capsys
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", full)
    target = tmp_path / "a" / "b" / "xor.py"
    with pytest.raises(OSError) as info:
        files.write_text(target, "x = 1\n")
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    assert main(["generate", str(XOR), "-o", str(tmp_path / "new")]) == 2
    assert capsys.readouterr().err == (
        f"symgrad: error: {tmp_path / 'new' / 'xor.py'}: No space left on device\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "xor.py"
    target.write_text("old\n")

    def broken(src, dst) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(OSError) as info:
        files.write_text(target, "new\n")
    assert info.value.filename == str(target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.py"]


@pytest.mark.parametrize(
    ("signum", "raised"),
    [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_before_the_rename_leaves_no_temp_file(
    tmp_path, monkeypatch, signum, raised
) -> None:
    target = tmp_path / "xor.py"
    target.write_text("old\n")
    real_replace = os.replace

    def interrupted(src, dst) -> None:
        os.kill(os.getpid(), signum)
        real_replace(src, dst)  # not reached: the handler raises first

    before = signal.getsignal(signal.SIGTERM)
    # Python's own SIGINT handler, as at a terminal: a shell starts background jobs
    # (`pytest &`) with SIGINT ignored, and then Ctrl-C raises nothing
    interactive = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(files.os, "replace", interrupted)
    try:
        with pytest.raises(raised):
            files.write_text(target, "new\n")
    finally:
        signal.signal(signal.SIGINT, interactive)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.py"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_directory_in_the_way_is_named(tmp_path, capsys) -> None:
    (tmp_path / "xor.py").mkdir()
    assert main(["generate", str(XOR), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"symgrad: error: {tmp_path / 'xor.py'}: is a directory (expected a file name)\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_names_the_target(tmp_path, capsys) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["generate", str(XOR), "-o", str(out)]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err == f"symgrad: error: {out / 'xor.py'}: Permission denied\n"


def test_dev_stdout_redirected_to_a_file_appends_to_it(tmp_path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    with open(log, "a") as fh:
        subprocess.run(
            [sys.executable, "-m", "symgrad", "latex", str(XOR), "-f", "text"]
            + ["-o", "/dev/stdout"],
            stdout=fh,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    text = log.read_text(encoding="utf-8")
    assert text.startswith("before\nThe derivation of xor") and "wrote" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]
