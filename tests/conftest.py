"""Shared fixtures and marker handling: `gpu` tests skip cleanly without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.evaluation.helpers import Result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``run_cli(*args, cwd=DIR)``: :func:`supcon.cli.main` in DIR, as a :class:`Result`."""
    from supcon.cli import main

    def call(*args: str, cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


@pytest.fixture(autouse=True)
def _messages_on_stderr():
    """Show the ``supcon`` message channel on stderr, as with no logging configured.

    pytest's log capture gives the root logger handlers, so Python would not print the channel to
    stderr by itself here; tests that read messages from ``capsys``/``capfd`` see them as a user
    does (``caplog`` still sees them too).
    """
    from supcon.messages import to_stderr

    with to_stderr(python_warnings=False):
        yield
