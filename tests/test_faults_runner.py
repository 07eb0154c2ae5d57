"""``benchmarks/faults.py``: collects every ``check_*`` and survives a crashing one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import faults  # noqa: E402


def test_collects_checks_from_every_faults_module(tmp_path: Path) -> None:
    (tmp_path / "faults_a.py").write_text(
        "def check_one():\n"
        "    return [{'fault': 'x', 'injected': 2, 'handled': 2, 'lost': 0, 'detail': 'd'}]\n"
        "def check_boom():\n"
        "    raise RuntimeError('broken check')\n"
        "def helper():\n"
        "    return []\n"
    )
    (tmp_path / "other.py").write_text("def check_not_collected():\n    return []\n")
    checks = faults.collect(tmp_path)
    assert [name for name, _ in checks] == ["faults_a.check_boom", "faults_a.check_one"]
    rows, _ = faults.run_checks(checks)
    assert rows[0]["fault"] == "faults_a.check_boom (crashed)" and rows[0]["lost"] == 1
    assert "broken check" in rows[0]["detail"]
    assert faults.totals(rows) == {"injected": 3, "handled": 2, "lost": 1}


def test_data_checks_are_found_and_numbers_check_passes(tmp_path: Path) -> None:
    names = [name for name, _ in faults.collect()]
    for check in ("check_bad_images", "check_outputs", "check_write_errors", "check_numbers"):
        assert f"faults_data.{check}" in names
    out = tmp_path / "faults.json"
    assert faults.main(["--only", "check_numbers", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["totals"]["injected"] == report["totals"]["handled"] > 0
