"""Errors the command line reports as one line with exit code 2."""


class UserError(Exception):
    """An error in the user's input; the message says what is wrong and how to fix it."""
