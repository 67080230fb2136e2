"""The command line: `symgrad generate SPEC [-o DIR]`.

User errors (a bad spec, a rejected expression, an unwritable directory) print as one
line each, `FILE:LINE:COL: key.path: message (hint)`, and exit with code 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import SpecError, SymgradError

EXIT_USER_ERROR = 2

EPILOG = """examples:
  symgrad generate examples/xor.yaml            # writes generated/xor.py
  symgrad generate my_net.yaml -o build/models  # writes build/models/<name>.py
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Derive neural-network gradients with SymPy and generate a standalone, "
        "vectorized NumPy training module from a YAML spec.",
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
    gen = sub.add_parser(
        "generate",
        help="write the NumPy training module of a spec",
        description="Derive the gradients of SPEC with SymPy and write <name>.py, a "
        "NumPy-only training module (init_params, forward, loss, loss_and_grad, "
        "predict, init_state, step, fit).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("spec", metavar="SPEC", help="the network spec (YAML)")
    gen.add_argument(
        "-o",
        "--out-dir",
        metavar="DIR",
        default="generated",
        help="directory for <name>.py (default: generated; created if missing)",
    )
    gen.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    return parser


def _generate(args: argparse.Namespace) -> int:
    from . import generate

    path = generate(args.spec, args.out_dir)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return _generate(args)
    except SpecError as exc:
        if args.debug:
            raise
        for problem in exc.problems:
            print(f"symgrad: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SymgradError as exc:
        if args.debug:
            raise
        print(f"symgrad: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        if args.debug:
            raise
        print(f"symgrad: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
