"""Fault-injection run: every ``check_*`` of the ``benchmarks/faults_*.py`` modules, one table.

    nice -n 10 python benchmarks/faults.py                 # everything
    nice -n 10 python benchmarks/faults.py --only data     # modules / checks whose name has "data"

Each check injects faults of one kind and returns rows ``{"fault", "injected", "handled",
"lost", "detail"}``: *handled* counts faults dealt with as documented (run resumed identically,
bad file skipped and listed, overwrite refused, one-line error with nothing written …), *lost*
counts lost work, destroyed or half-written files, tracebacks and wrong numbers. A check that
raises is reported as one row with everything unhandled. Prints a markdown table (for the
README) and writes ``benchmarks/results/faults.json`` atomically. Exit code 0 when every fault
was handled and nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import FaultRow as Row  # noqa: E402

from supcon.io import atomic_write_json  # noqa: E402

COLUMNS = ("fault", "injected", "handled", "lost", "detail")


def collect(folder: Path = ROOT / "benchmarks") -> list[tuple[str, Callable[[], list[Row]]]]:
    """``(module.check_name, function)`` for every ``check_*`` in ``faults_*.py``, in order."""
    found = []
    for path in sorted(folder.glob("faults_*.py")):
        spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for name in dir(module):
            function = getattr(module, name)
            if name.startswith("check_") and callable(function):
                found.append((f"{path.stem}.{name}", function))
    return found


def run_checks(
    checks: Sequence[tuple[str, Callable[[], list[Row]]]],
) -> tuple[list[Row], dict[str, float]]:
    """Run each check; a crash becomes one unhandled row. Returns rows and seconds per check."""
    rows, seconds = [], {}
    for name, check in checks:
        started = time.perf_counter()
        try:
            produced = list(check())
        except Exception as exc:  # a crashing check is a finding
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            produced = [
                {
                    "fault": f"{name} (crashed)",
                    "injected": 1,
                    "handled": 0,
                    "lost": 1,
                    "detail": last[:200],
                }
            ]
        seconds[name] = round(time.perf_counter() - started, 1)
        for row in produced:
            rows.append({**{c: row[c] for c in COLUMNS}, "check": name})
        print(f"  {name}: {len(produced)} row(s), {seconds[name]:.1f} s", file=sys.stderr)
    return rows, seconds


def totals(rows: Sequence[Row]) -> Row:
    return {c: sum(int(r[c]) for r in rows) for c in ("injected", "handled", "lost")}


def print_rows(rows: Sequence[Row]) -> None:
    """The markdown table, with a totals line."""
    from supcon.reporting import escape

    print("| fault | injected | handled | lost | detail |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        cells = [escape(r["fault"]), r["injected"], r["handled"], r["lost"], escape(r["detail"])]
        print("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    t = totals(rows)
    print(f"| **total** | **{t['injected']}** | **{t['handled']}** | **{t['lost']}** | |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="run checks whose name contains this")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "faults.json"), help="JSON file"
    )
    args = parser.parse_args(argv)
    checks = [(n, f) for n, f in collect() if args.only in n]
    started = time.perf_counter()
    rows, seconds = run_checks(checks)
    print_rows(rows)
    summary = totals(rows)
    atomic_write_json(
        args.out,
        {
            "rows": rows,
            "totals": summary,
            "seconds": seconds,
            "total_seconds": round(time.perf_counter() - started, 1),
            "command": "python benchmarks/faults.py"
            + (f" --only {args.only}" if args.only else ""),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    print(f"\nwritten to {args.out}", file=sys.stderr)
    ok = summary["handled"] == summary["injected"] and summary["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
