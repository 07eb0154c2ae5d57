"""The ``supcon`` command line: a thin dispatcher over :mod:`supcon.commands`.

User mistakes (missing file, bad YAML, unknown key, wrong type, impossible setting) print one
line that says what is wrong and how to fix it, and exit with code 2: never a traceback
(set ``SUPCON_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from supcon.commands import check_data, embed, evaluate, export, fewshot, index, search, train
from supcon.errors import UserError

EXIT_USAGE = 2
COMMANDS = (train, evaluate, embed, index, search, fewshot, check_data, export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="supcon",
        description="Supervised contrastive metric learning: train, evaluate, search, few-shot.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``supcon`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as exc:
        from supcon.training import TrainingError

        user_facing = isinstance(exc, (UserError, ValueError, FileNotFoundError, TrainingError))
        if os.environ.get("SUPCON_DEBUG") or not user_facing:
            raise
        from supcon.reporting import escape

        print(f"supcon {args.command}: error: {escape(exc, keep_newlines=True)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # disk full, read-only or unwritable folder, written outside io.py
        from supcon.io import WRITE_ERRNOS, write_error
        from supcon.reporting import escape

        if os.environ.get("SUPCON_DEBUG") or exc.errno not in WRITE_ERRNOS:
            raise
        message = write_error(exc, exc.filename or "a file", action="write or open")
        print(f"supcon {args.command}: error: {escape(message)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"supcon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
