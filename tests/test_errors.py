"""One error base: user errors are one line with exit code 2, bugs keep their traceback."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import supcon
from supcon import cli
from supcon.commands import index as index_command
from supcon.errors import InputError, MissingFileError, SupconError, UserError

PACKAGE = Path(supcon.__file__).parent
#: Exceptions that are not errors (a normal way for a run to end).
NOT_ERRORS = {"supcon.training.preempt.Preempted"}


def error_classes() -> list[str]:
    """``module.Class`` of every exception class defined in the package, found in the source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in found)
                for b in node.bases
            ):
                found.append(f"{module}.{node.name}")
    return found


def load(qualified: str) -> type:
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_every_error_class_is_found() -> None:
    names = {q.rsplit(".", 1)[1] for q in error_classes()}
    expected = {"UserError", "ConfigError", "DataError", "BadImageError", "CheckpointError"}
    expected |= {"DeviceError", "OutputError", "RunLocked", "TrainingError", "InputError"}
    assert expected <= names, expected - names


@pytest.mark.parametrize("qualified", [q for q in error_classes() if q not in NOT_ERRORS])
def test_every_error_class_is_a_supcon_error(qualified: str) -> None:
    assert issubclass(load(qualified), SupconError), f"{qualified} must derive from SupconError"


@pytest.mark.parametrize(
    ("qualified", "builtin"),
    [
        ("supcon.config.ConfigError", ValueError),
        ("supcon.data.sources.DataError", ValueError),
        ("supcon.data.sources.BadImageError", ValueError),
        ("supcon.training.checkpoint.CheckpointError", ValueError),
        ("supcon.devices.DeviceError", ValueError),
        ("supcon.training.loop.TrainingError", RuntimeError),
        ("supcon.io.OutputError", OSError),
        ("supcon.errors.InputError", ValueError),
        ("supcon.errors.MissingFileError", FileNotFoundError),
    ],
)
def test_errors_keep_their_builtin_base(qualified: str, builtin: type) -> None:
    assert issubclass(load(qualified), builtin)


def fail_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def run(args: object) -> int:
        raise exc

    monkeypatch.setattr(index_command, "run", run)


def run_index(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli.main(["index", "emb.npy", "--out", "x.faiss"])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "exc",
    [
        UserError("--k must be ≥ 1, got 0"),
        InputError("--k must be ≥ 1, got 0"),
        MissingFileError("--k must be ≥ 1, got 0"),
    ],
)
def test_a_supcon_error_is_one_line_exit_2(monkeypatch, capsys, exc: SupconError) -> None:
    monkeypatch.delenv("SUPCON_DEBUG", raising=False)
    fail_with(monkeypatch, exc)
    code, lines = run_index(capsys)
    assert code == 2
    assert lines == ["supcon index: error: --k must be ≥ 1, got 0"]


@pytest.mark.parametrize(
    "exc",
    [KeyError("labels"), ZeroDivisionError("division by zero"), ValueError("bad shape")],
)
def test_a_bug_keeps_its_traceback_and_asks_for_a_report(
    monkeypatch, capsys, exc: Exception
) -> None:
    monkeypatch.delenv("SUPCON_DEBUG", raising=False)
    fail_with(monkeypatch, exc)
    code, lines = run_index(capsys)
    assert code == 1
    assert lines[0] == "Traceback (most recent call last):"
    assert any(line.startswith(type(exc).__name__) for line in lines)
    assert lines[-1] == f"supcon index: {cli.BUG_HINT}"
    assert "report" in cli.BUG_HINT


def test_a_disk_error_is_one_line(monkeypatch, capsys) -> None:
    import errno

    monkeypatch.delenv("SUPCON_DEBUG", raising=False)
    fail_with(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "out.faiss"))
    code, lines = run_index(capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("supcon index: error: ")
    assert "out.faiss" in lines[0]


def test_supcon_debug_shows_the_traceback_of_a_user_error(monkeypatch) -> None:
    monkeypatch.setenv("SUPCON_DEBUG", "1")
    fail_with(monkeypatch, UserError("nope"))
    with pytest.raises(UserError, match="nope"):
        cli.main(["index", "emb.npy", "--out", "x.faiss"])
