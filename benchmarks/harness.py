"""Small pieces the benchmark scripts share: timing a ``supcon train`` subprocess, fault rows.

Imported by the scripts in this folder (run from anywhere: each puts the repository root on
``sys.path`` first).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: One line of a fault-injection table (``faults_data.py``, ``faults_training.py``).
FaultRow = dict[str, Any]


def timed_train(command: list[str]) -> tuple[float, dict[str, float]]:
    """Runs a ``supcon train`` command line in a fresh run directory and times it.

    Args:
        command: the full command without ``--out`` (e.g. ``[python, "-m", "supcon", "train",
            recipe, *overrides]``); ``--no-progress`` is added.

    Returns:
        The wall time in seconds (start-up and the run's own evaluation included) and the
        run's ``metrics.json``.

    Raises:
        SystemExit: the command failed; the message holds the end of its stderr.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        done = subprocess.run(
            [*command, "--no-progress", "--out", str(out)], env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return wall, json.loads((out / "metrics.json").read_text())


def fault_row(fault: str, injected: int, handled: int, lost: int, detail: str) -> FaultRow:
    """One row of a fault table: how many faults were injected, handled cleanly, and lost work."""
    return {
        "fault": fault,
        "injected": injected,
        "handled": handled,
        "lost": lost,
        "detail": detail,
    }


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: platform, CPU count, load average at the end, torch version."""
    import platform

    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "torch": torch.__version__,
    }
