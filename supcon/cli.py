"""The ``supcon`` command line: a thin dispatcher over :mod:`supcon.commands`.

User mistakes (missing file, bad YAML, unknown key, wrong type, impossible setting) raise a
:class:`supcon.errors.SupconError`; the CLI prints it as one line that says what is wrong and how
to fix it, and exits with code 2: never a traceback (set ``SUPCON_DEBUG=1`` to see one). A disk
that is full or read-only is reported the same way. Any other exception is a bug in supcon: its
traceback is printed with a line asking to report it, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from supcon import __version__
from supcon.commands import check_data, embed, evaluate, export, fewshot, index, search, train
from supcon.errors import SupconError
from supcon.messages import to_stderr

EXIT_USAGE = 2
EXIT_BUG = 1
BUG_HINT = "this is a bug in supcon; please report it with the command and the traceback"
COMMANDS = (train, evaluate, embed, index, search, fewshot, check_data, export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="supcon",
        description="Supervised contrastive metric learning: train, evaluate, search, few-shot.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``supcon`` console script."""
    args = parse_arguments(build_parser(), argv)
    debug = bool(os.environ.get("SUPCON_DEBUG"))
    try:
        with to_stderr():
            return args.func(args)
    except KeyboardInterrupt:
        print(f"supcon {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            traceback.print_exc()
            print(f"supcon {args.command}: {BUG_HINT}", file=sys.stderr)
            return EXIT_BUG
        if debug:
            raise
        print(f"supcon {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``parser``'s arguments, with ``section.key=value`` overrides allowed after options too.

    argparse ends a ``nargs="*"`` positional at the first option, so ``supcon train R --out D
    train.epochs=2`` would refuse the override; commands that take overrides get the leftover
    ``key=value`` words appended in order. Anything else left over is refused as argparse does.
    """
    args, extra = parser.parse_known_args(argv)
    overrides = [word for word in extra if "=" in word and not word.startswith("-")]
    if hasattr(args, "overrides") and overrides:
        args.overrides = [*args.overrides, *overrides]
        extra = [word for word in extra if word not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def user_message(exc: BaseException) -> str | None:
    """The one-line report of a user error, or ``None`` when ``exc`` is a bug in supcon.

    User errors are :class:`~supcon.errors.SupconError` and an ``OSError`` that means the disk is
    full, read-only or not writable (raised by code that writes outside :mod:`supcon.io`).
    """
    from supcon.reporting import escape

    if isinstance(exc, SupconError):
        return escape(exc, keep_newlines=True)
    if isinstance(exc, OSError):
        from supcon.io import WRITE_ERRNOS, write_error

        if exc.errno in WRITE_ERRNOS:
            return escape(write_error(exc, exc.filename or "a file", action="write or open"))
    return None


if __name__ == "__main__":
    sys.exit(main())
