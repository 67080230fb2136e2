"""The command line: `symgrad generate | latex | check | explain SPEC`.

`generate` writes the NumPy training module and prints a short summary of what was derived;
`latex` prints the derivation (LaTeX, Markdown or terminal text); `check` compares the
generated gradients with finite differences and exits 1 on a mismatch; `explain` writes
out one training step with its numbers (the worked example).

User errors (a bad spec, a rejected expression, an unwritable directory) print as one
line each, `FILE:LINE:COL: key.path: message (hint)`, and exit with code 2; `--debug`
shows the traceback as well (the exit code stays). Control characters in anything echoed
(file names, keys) are printed as escapes.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import SpecError, SymgradError, printable
from .files import TARGETS
from .version import __version__

if TYPE_CHECKING:
    from .derive import Derivation

EXIT_MISMATCH = 1
EXIT_USER_ERROR = 2
HELP_WIDTH = 80

GENERATE_EXAMPLES = """examples:
  symgrad generate examples/xor.yaml            # writes generated/xor.py
  symgrad generate my_net.yaml -o build/models  # writes build/models/<name>.py
  symgrad generate my_net.yaml --quiet          # no summary, for scripts
  symgrad generate my_net.yaml --target array-api  # generated/<name>_xp.py: GPU, JAX, Dask
"""
LATEX_EXAMPLES = """examples:
  symgrad latex examples/xor.yaml --format text           # read it in the terminal
  symgrad latex my_net.yaml --format markdown -o NOTES.md   # $$ blocks: GitHub, Jupyter
  symgrad latex my_net.yaml --standalone -o net.tex && pdflatex net.tex
  symgrad latex my_net.yaml > derivation.tex                # a fragment to \\input
"""
CHECK_EXAMPLES = """examples:
  symgrad check examples/xor.yaml             # exit 0: the gradients match
  symgrad check my_net.yaml --seed 3 -m 32    # other random data, a larger batch
"""
EXPLAIN_EXAMPLES = """examples:
  symgrad explain examples/mazur.yaml --params examples/data/mazur_params.yaml \\
      --x 0.05,0.10 --y 0.01,0.99     # Mazur's step-by-step example, every number
  symgrad explain examples/xor.yaml --x "0,1;1,1" --y "1;0" --seed 3
  symgrad explain my_net.yaml --params trained.npz --data few.csv -f markdown
"""
EPILOG = """examples:
  symgrad generate examples/xor.yaml            # writes generated/xor.py
  symgrad latex examples/xor.yaml -f text       # the derivation, in the terminal
  symgrad check examples/xor.yaml               # gradients against finite differences
  symgrad explain examples/xor.yaml --x 0,1 --y 1   # one step, with its numbers

Run `symgrad COMMAND --help` for the options of each command.
"""


def _subparser(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    cmd = sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("spec", metavar="SPEC", help="the network spec (YAML)")
    # --debug is accepted after the command too
    cmd.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    cmd.add_argument(
        "--no-cache",
        action="store_true",
        help="derive everything again, reading and writing no cached rules "
        "(also SYMGRAD_NO_CACHE=1; the cache: $SYMGRAD_CACHE_DIR or the user cache "
        "directory)",
    )
    return cmd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description=textwrap.fill(
            "Derive neural-network gradients with SymPy and generate a standalone, "
            "vectorized NumPy training module from a YAML spec.",
            HELP_WIDTH,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show a traceback for errors (for bug reports)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = _subparser(
        sub,
        "generate",
        "write the NumPy training module of a spec",
        "Derive the gradients of SPEC with SymPy and write <name>.py, a "
        "NumPy-only training module (init_params, forward, loss, loss_and_grad, "
        "predict, init_state, step, fit). Prints the layers, the parameter count and "
        "the derived output delta.",
        GENERATE_EXAMPLES,
    )
    gen.add_argument(
        "-o",
        "--out-dir",
        metavar="DIR",
        default="generated",
        help="directory for the module (default: generated; created if missing)",
    )
    gen.add_argument(
        "-t",
        "--target",
        choices=tuple(TARGETS),
        default="numpy",
        help="numpy (default): <name>.py, NumPy its only import; array-api: "
        "<name>_xp.py, the same math for any array API library (PyTorch, CuPy, JAX, "
        "Dask, ...); numba: <name>_numba.py, the NumPy module with its step's "
        "elementwise work in numba kernels (needs numba)",
    )
    gen.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing when all goes well"
    )

    tex = _subparser(
        sub,
        "latex",
        "print the derivation (LaTeX, Markdown or text)",
        "Print the derivation of SPEC's gradients the way a textbook derives "
        "backpropagation: the output layer's chain rule with each factor derived, "
        "the output delta (and its collapse to ŷ − y), the bias, each hidden layer with "
        "its activation's derivative, the matrix and batch forms, the optimizer's "
        "update rule, the loss, and saturation where sigmoid or tanh is used.",
        LATEX_EXAMPLES,
    )
    tex.add_argument(
        "-f",
        "--format",
        choices=("latex", "markdown", "text"),
        default="latex",
        help="latex (default: a fragment; see --standalone), markdown ($$ blocks, "
        "for GitHub and Jupyter) or text (unicode, for a terminal)",
    )
    tex.add_argument(
        "--standalone",
        action="store_true",
        help="with --format latex: a complete document that pdflatex compiles",
    )
    tex.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead of standard output",
    )

    chk = _subparser(
        sub,
        "check",
        "compare the generated gradients with finite differences",
        "Generate SPEC's module in a temporary directory, compare every parameter's "
        "gradient from loss_and_grad with central finite differences of loss on seeded "
        "random data (targets valid for the loss), and print the largest error per "
        "parameter. Exit status 0 when all match, 1 on a mismatch.",
        CHECK_EXAMPLES,
    )
    chk.add_argument(
        "-m",
        "--examples",
        type=int,
        default=8,
        metavar="M",
        help="random examples in the batch (default: 8)",
    )
    chk.add_argument(
        "--seed", type=int, default=0, help="seed of the random data (default: 0)"
    )
    chk.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="TOL",
        help="largest acceptable error (default: 1e-05)",
    )
    exp = _subparser(
        sub,
        "explain",
        "one training step with the numbers in every equation",
        "Write out one training step of SPEC's network on the given example(s), the "
        "way hand-worked backpropagation tutorials do: each pre-activation as its sum "
        "with numbers, each activation, the loss term by term, the output delta, every "
        "hidden delta and gradient, and each parameter before and after one update by "
        "the spec's optimizer. Per neuron for a small network, in matrices otherwise. "
        "Every number is computed from the same statements as the generated module.",
        EXPLAIN_EXAMPLES,
    )
    exp.add_argument(
        "--params",
        metavar="FILE",
        help="the parameters: an .npz written by save_params, or a .yaml/.json "
        "mapping of W1, b1, ... to nested lists (default: init_params(seed))",
    )
    exp.add_argument(
        "--x",
        metavar="VALUES",
        help="the inputs: comma-separated numbers, examples separated by ';'",
    )
    exp.add_argument(
        "--y",
        metavar="VALUES",
        help="the targets the same way (or class labels, one per example)",
    )
    exp.add_argument(
        "--data",
        metavar="FILE.csv",
        help="examples from a CSV file instead: the inputs, then the targets",
    )
    exp.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of init_params (without --params) and of dropout's masks (default: 0)",
    )
    exp.add_argument(
        "-f",
        "--format",
        choices=("text", "markdown", "latex"),
        default="text",
        help="text (default, for a terminal), markdown or latex",
    )
    exp.add_argument(
        "--standalone",
        action="store_true",
        help="with --format latex: a complete document that pdflatex compiles",
    )
    exp.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead of standard output",
    )
    exp.add_argument(
        "--figure",
        metavar="FILE",
        help="also draw the network with the step's numbers (.png or .svg; needs "
        'matplotlib: pip install "symgrad[plot]")',
    )
    exp.add_argument(
        "--digits",
        type=int,
        default=9,
        metavar="N",
        help="significant digits of every number (default: 9)",
    )
    return parser


def _print(text: str, file: object = None) -> None:
    """print, degrading unicode to escapes on a terminal that cannot show it."""
    stream = file or sys.stdout
    try:
        print(text, file=stream)  # type: ignore[arg-type]
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        safe = text.encode(encoding, errors="backslashreplace").decode(encoding)
        print(safe, file=stream)  # type: ignore[arg-type]


def summary(d: Derivation) -> list[str]:
    """What `generate` prints before the file it wrote: network, parameter count,
    output delta, warnings."""
    from .activations import a
    from .layer_registry import shape_text
    from .sym.text import text

    spec, out = d.spec, d.output
    count = sum(r.trainable for r in d.layers)
    shapes = spec.shapes  # each layer as the report's network line shows it
    network = " → ".join(
        [shape_text(shapes[0])]
        + [
            f"{shape_text(s)} ({r.label})"
            for r, s in zip(d.layers, shapes[1:], strict=True)
        ]
    )
    loss = spec.loss.name if spec.loss.custom else out.loss_title
    if out.jvp:
        delta = f"δ = h − ŷ ⊙ Σₖ hₖ with h = {text(out.delta, {a: 'ŷ'})}"
    else:
        delta = f"δ = {text(out.delta, {a: 'ŷ'})}"
        if out.collapsed:
            delta += " (collapsed)"
    return [
        f"{spec.name}: {network}; {count:,} parameters",
        f"loss: {loss}; output delta {delta}",
        *(f"warning: {note}" for note in d.notes),
    ]


def _generate(args: argparse.Namespace) -> int:
    from . import result_cache
    from .files import output_path, write_text

    data = result_cache.read(args.spec)
    key = result_cache.key(args.spec, data, args.out_dir, args.target)
    found = result_cache.load(key)
    if found is not None:  # this command, on this spec, with this symgrad: done before
        stem, text, lines = found
        path = output_path(stem, args.out_dir)
        write_text(path, text)
    else:
        from . import _made
        from .spec import load_spec, parse_spec

        read = result_cache.text(data)  # the bytes the key was made of, as UTF-8
        if read is not None:
            spec = parse_spec(read, args.spec)  # as load_spec parses the file's text
        else:  # not read, or not UTF-8: load_spec reads it (and words the error)
            spec = load_spec(args.spec)
        path, text, d = _made(spec, args.out_dir, args.target)
        write_text(path, text)
        lines = summary(d)
        result_cache.store(key, path.stem, text, lines)
    if not args.quiet:
        _print("\n".join([*lines, f"wrote {printable(str(path))}"]))
    return 0


def _latex(args: argparse.Namespace) -> int:
    from .derive import derive
    from .files import write_text
    from .report import render_report

    if args.standalone and args.format != "latex":
        raise SymgradError(
            f"--standalone makes a LaTeX document; it does not apply to --format "
            f"{args.format}"
        )
    document = render_report(
        derive(Path(args.spec)), args.format, standalone=args.standalone
    )
    if args.format != "latex":  # (LaTeX escapes for itself: a control character is ?)
        # no control character from the spec (its file name) reaches the terminal
        document = "\n".join(printable(line) for line in document.split("\n"))
    if args.output is None:
        _print(document.rstrip("\n"))
        return 0
    path = Path(args.output)
    if path.is_dir():
        raise SymgradError(f"{path}: is a directory (-o takes a file name)")
    write_text(path, document)
    if not _is_stdout(path):
        _print(f"wrote {printable(str(path))}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import TOLERANCE, check_gradients

    if args.examples < 1:
        raise SymgradError(f"--examples must be at least 1, found {args.examples}")
    tolerance = TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance > 0:
        raise SymgradError(f"--tolerance must be positive, found {args.tolerance}")
    result = check_gradients(
        Path(args.spec), examples=args.examples, seed=args.seed, tolerance=tolerance
    )
    _print(result.table())
    return 0 if result.ok else EXIT_MISMATCH


def _explain(args: argparse.Namespace) -> int:
    from .derive import derive
    from .spec import load_spec
    from .worked import explain
    from .worked.inputs import examples

    if args.standalone and args.format != "latex":
        raise SymgradError(
            f"--standalone makes a LaTeX document; it does not apply to --format "
            f"{args.format}"
        )
    spec = load_spec(args.spec)
    X, Y = examples(
        args.x,
        args.y,
        Path(args.data) if args.data is not None else None,
        spec.sizes[0],  # an image counts its values: X may be given flat
        spec.sizes[-1],
        labels=derive(spec).out.activation.vector,  # class labels: softmax's
    )
    params = Path(args.params) if args.params is not None else None
    document = explain(
        spec,
        params,
        X,
        Y,
        args.format,
        args.digits,
        seed=args.seed,
        standalone=args.standalone,
        figure=args.figure,
    )
    return _write(document, args.output, args.format)


def _write(document: str, output: str | None, fmt: str) -> int:
    """The document on standard output, or into a file."""
    if fmt != "latex":
        document = "\n".join(printable(line) for line in document.split("\n"))
    if output is None:
        _print(document.rstrip("\n"))
        return 0
    from .files import write_text

    path = Path(output)
    if path.is_dir():
        raise SymgradError(f"{path}: is a directory (-o takes a file name)")
    write_text(path, document)
    if not _is_stdout(path):
        _print(f"wrote {printable(str(path))}")
    return 0


def _is_stdout(path: Path) -> bool:
    """-o names the terminal or pipe that standard output already goes to."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


COMMANDS = {
    "generate": _generate,
    "latex": _latex,
    "check": _check,
    "explain": _explain,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    if args.no_cache:
        from . import cache

        cache.disable()
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        _traceback(args)
        for problem in exc.problems:
            _print(f"symgrad: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SymgradError as exc:
        _traceback(args)
        _print(f"symgrad: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `symgrad latex spec.yaml | head`: not an error
        # as the Python docs advise: point stdout at devnull so the exit flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        _traceback(args)
        where = f"{exc.filename}: " if exc.filename else ""
        text = exc.strerror or str(exc) or type(exc).__name__
        _print(f"symgrad: error: {printable(where + text)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


def run() -> NoReturn:
    """The `symgrad` command (`python -m symgrad` too): main, then the process ends."""
    _exit(main())


def _exit(code: int) -> NoReturn:
    """End the process with this exit code once standard output and error are flushed
    and the atexit handlers have run (coverage saves its data there), without Python's
    teardown of every module and object: ~0.1–0.2 s after SymPy, NumPy and black, a
    tenth of a cold `symgrad generate` (mypy ends so too). Where a profiler or a tracer
    is on (`python -m cProfile -m symgrad ...` writes its data after the command
    returns), another thread runs, or a stream cannot be flushed, the interpreter ends
    as usual."""
    import atexit
    import threading

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    usual = (
        run_exit_functions is None
        or sys.getprofile() is not None
        or sys.gettrace() is not None
        or threading.active_count() > 1
    )
    if not usual:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):  # a broken pipe, a closed stream: Python says so
            usual = True
    if usual:
        sys.exit(code)
    run_exit_functions()
    os._exit(code)


def _traceback(args: argparse.Namespace) -> None:
    """With --debug, the traceback of the error being handled (the exit code stays)."""
    if args.debug:
        traceback.print_exc()


if __name__ == "__main__":
    run()
