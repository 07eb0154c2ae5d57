"""Run-directory logging: a CSV of training steps and the run's provenance."""

from __future__ import annotations

import csv
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import supcon


class CsvLog:
    """Append rows to a CSV file, writing the header once and flushing every row.

    Args:
        path: The CSV file.
        columns: Column names, in order.
    """

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = columns
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=columns)
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Write one row (missing columns are left empty)."""
        self._writer.writerow({k: row.get(k, "") for k in self.columns})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def git_sha(cwd: str | Path = ".") -> str | None:
    """Commit of the git checkout containing ``cwd`` (with ``-dirty`` if modified), or None."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """What produced a run: versions, git commit, command line."""
    return {
        "supcon_version": supcon.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_sha": git_sha(Path(__file__).resolve().parent) or git_sha(),
        "argv": sys.argv,
    }
