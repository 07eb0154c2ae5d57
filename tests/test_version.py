"""The version has one source, ``supcon.__version__``, which packaging and the CLI read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import supcon

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_version_from_the_package() -> None:
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(ROOT / "pyproject.toml", expand=False)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    resolved = read_configuration(ROOT / "pyproject.toml", expand=True)["project"]["version"]
    assert resolved == supcon.__version__


def test_the_version_is_assigned_once_in_the_package() -> None:
    assignments = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "supcon").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "__version__" for t in node.targets)
    ]
    assert assignments == ["supcon/__init__.py"]


def test_cli_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supcon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == f"supcon {supcon.__version__}\n"
