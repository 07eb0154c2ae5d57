"""One message channel: the ``supcon`` logger, printed as plain stderr lines by the CLI."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import supcon
from supcon import cli, messages
from supcon.commands import index as index_command
from supcon.losses import functional

PACKAGE = Path(supcon.__file__).parent


def test_say_is_one_stderr_line_even_when_nested(capsys) -> None:
    with messages.to_stderr(), messages.to_stderr():
        messages.say("supcon: a fallback was taken")
    out, err = capsys.readouterr()
    assert out == "" and err == "supcon: a fallback was taken\n"


def test_say_reaches_logging(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="supcon"):
        messages.say("supcon: to the log")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("supcon", logging.WARNING, "supcon: to the log")
    ]


def test_say_once_says_once(caplog) -> None:
    text = "supcon: said once per process (test_say_once_says_once)"
    with caplog.at_level(logging.WARNING, logger="supcon"):
        messages.say_once(text)
        messages.say_once(text)
    assert caplog.messages == [text]


def test_library_without_logging_config_prints_to_stderr() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from supcon.messages import say; say('supcon: hello')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == "supcon: hello\n"


def test_cli_shows_a_library_warning_as_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(functional, "_warned_no_positives", False)

    def run(args: object) -> int:  # a command whose batch has no positive pair
        loss = supcon.SupConLoss()(torch.randn(4, 8), torch.arange(4))
        print(f"loss {loss.item():.1f}")
        return 0

    monkeypatch.setattr(index_command, "run", run)
    assert cli.main(["index", "emb.npy", "--out", "x.faiss"]) == 0
    out, err = capsys.readouterr()
    assert out == "loss 0.0\n"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("supcon: no anchor in this batch")


def test_a_third_party_warning_names_its_origin(capsys) -> None:
    with messages.to_stderr():
        warnings.warn("old thing", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("DeprecationWarning: old thing (")
    assert "test_messages.py" in err[0]


def prints_in(path: Path) -> list[tuple[int, bool]]:
    """``(line, to_stderr)`` of every ``print(...)`` call in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            to_stderr = any(k.arg == "file" for k in node.keywords)
            found.append((node.lineno, to_stderr))
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix()
)
def test_messages_go_through_the_channel(path: Path) -> None:
    """Only commands print (their results, to stdout); the CLI prints its exit line."""
    relative = path.relative_to(PACKAGE).as_posix()
    found = prints_in(path)
    if relative == "cli.py":
        return
    if relative.startswith("commands/"):
        bad = [line for line, to_stderr in found if to_stderr]
        assert not bad, f"{relative}:{bad} prints a message to stderr; use supcon.messages.say"
    else:
        assert not found, f"{relative}:{found} prints; use supcon.messages.say for messages"
