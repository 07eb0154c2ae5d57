"""One module per ``supcon`` subcommand; each exposes ``register(subparsers)``.

``register`` adds the subcommand's parser and sets ``func`` to a function taking the parsed
``argparse.Namespace`` and returning an exit code.
"""
