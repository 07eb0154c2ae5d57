"""Helpers for command-line tests: a call's result and assertions on it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def ok(result: Result) -> str:
    """The call's stdout, after asserting it succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: Result, message: str) -> None:
    """Assert the call failed with exit code 2 and one stderr line containing ``message``."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
