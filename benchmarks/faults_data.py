"""Fault injection for data and outputs: bad image files, broken manifests, protected outputs,
full or read-only disks, broken indexes, extreme numbers.

Each ``check_*()`` returns rows ``{"fault", "injected", "handled", "lost", "detail"}``:
*injected* faults, how many were *handled* as documented (a one-line error with exit code 2
and nothing written, a bad file skipped and listed, a refused overwrite, a right number), and
how many *lost* something (a file overwritten or half-written, a temporary file left behind, a
crash with a traceback, a wrong number). ``benchmarks/faults.py`` collects these functions
with those of the other ``faults_*`` modules into one table; run alone, this module prints its
own rows:

    nice -n 10 python benchmarks/faults_data.py

Commands run in-process through ``supcon.cli.main`` on a tiny image folder (4 classes × 12
generated 24-px PNGs, ``test_resnet``, one epoch), so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import FaultRow, fault_row  # noqa: E402

from supcon.cli import main  # noqa: E402
from tests.badfiles import EXPECTED_KIND, apple_double, write_bad_files  # noqa: E402
from tests.images import make_image, make_image_folder  # noqa: E402

SETTINGS = {
    "model": {"backbone": "test_resnet", "embedding_dim": 16},
    "train": {"epochs": 1, "batch_size": 16, "threads": 1, "tensorboard": False},
    "optim": {"warmup_epochs": 0},
    "data": {"dataset": "folder", "image_size": 32},
}


def _cli(*args: str) -> tuple[int, str, str]:
    """``supcon ARGS`` in this process: ``(exit code, stdout, stderr)``; a traceback is 99."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        except BaseException as exc:  # a traceback counts as lost
            err.write(f"TRACEBACK {type(exc).__name__}: {exc}")
            code = 99
    return code, out.getvalue(), err.getvalue()


def _one_line(code: int, err: str, needle: str = "") -> bool:
    lines = err.strip().splitlines()
    return code == 2 and len(lines) == 1 and needle in lines[0]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _recipe(folder: Path, root: Path, **data: Any) -> str:
    config = json.loads(json.dumps(SETTINGS))
    config["data"].update(root=str(root), **data)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="supcon-faults-") as tmp:
        yield Path(tmp)


def _trained(work: Path) -> Path:
    """A tiny run on generated images (shared by the output checks)."""
    images = make_image_folder(work / "images", classes=4, per_class=12)
    code, _, err = _cli("train", _recipe(work, images), "--out", str(work / "run"), "--no-progress")
    if code != 0:
        raise RuntimeError(f"the reference run failed: {err}")
    return work / "run"


def check_bad_images() -> list[FaultRow]:
    """Each kind of bad file, under the error policy (with ``data.verify``), the skip policy
    and ``check-data``; AppleDouble and hidden files must be ignored."""
    rows = []
    with _workdir() as work:
        root = make_image_folder(work / "data", classes=3, per_class=6)
        bad = write_bad_files(root / "class_1")
        apple_double(root / "class_2" / "._img_0.png")
        (root / "class_2" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        recipe = _recipe(work, root)
        names = list(bad)

        # Error policy: each bad file alone stops the run before the first step, in one line.
        handled, lost, details = 0, 0, []
        for name, path in bad.items():
            others = [p for p in bad.values() if p != path]
            hidden = [p.with_name("._" + p.name) for p in others]
            for p, h in zip(others, hidden, strict=True):
                p.rename(h)  # hidden now: ignored
            out = work / f"err-{len(details)}"
            code, _, err = _cli(
                "train", recipe, "data.verify=true", "--out", str(out), "--no-progress"
            )
            for p, h in zip(others, hidden, strict=True):
                h.rename(p)
            ok = _one_line(code, err, path.name) and EXPECTED_KIND[name] in err
            started = (out / "checkpoints" / "last.pt").exists()
            handled += ok and not started
            lost += code == 99
            details.append(f"{name}: {'refused' if ok else err.strip()[:80]}")
        rows.append(
            fault_row(
                "bad image, on_bad_image=error + verify",
                len(bad),
                handled,
                lost,
                "stopped before step 1, one line naming the file and its problem",
            )
        )

        # Skip policy: one run with every bad file; all listed in skipped.csv, run finishes.
        out = work / "skip"
        code, stdout, err = _cli(
            "train",
            recipe,
            "data.on_bad_image=skip",
            "train.batch_size=8",
            "--out",
            str(out),
            "--no-progress",
        )
        listed: dict[str, str] = {}
        if (out / "skipped.csv").is_file():
            with (out / "skipped.csv").open() as handle:
                listed = {r["path"]: r["problem"] for r in csv.DictReader(handle)}
        right = sum(listed.get(str(p.resolve())) == EXPECTED_KIND[n] for n, p in bad.items())
        finished = code == 0 and (out / "metrics.json").is_file()
        extra = len(set(listed) - {str(p.resolve()) for p in bad.values()})
        rows.append(
            fault_row(
                "bad image, on_bad_image=skip",
                len(bad),
                right if finished and not extra else 0,
                int(code == 99 or not finished),
                f"run finished, {len(listed)} listed in skipped.csv, {extra} good files dropped",
            )
        )

        # check-data: every file classified; hidden files not reported.
        code, stdout, err = _cli("check-data", recipe, "--no-progress")
        found = sum(
            any(
                line.startswith(str(p.resolve())) and EXPECTED_KIND[n] in line
                for line in stdout.splitlines()
            )
            for n, p in bad.items()
        )
        quiet = "._img_0" not in stdout and ".DS_Store" not in stdout
        rows.append(
            fault_row(
                "bad image, supcon check-data",
                len(bad) + 2,
                (found if code == 1 else 0) + 2 * quiet,
                int(code == 99),
                f"{', '.join(names)} classified; ._* and .DS_Store ignored; exit {code}",
            )
        )
    return rows


def check_manifests() -> list[FaultRow]:
    """Ambiguous manifests are refused in one line with the line number."""
    cases = {
        "row with an extra field": ("img/0.png,a\nimg/1.png,b,extra\n", "line 3 has 3 field"),
        "same path, two labels": ("img/0.png,a\nimg/1.png,b\nimg/0.png,b\n", "lines 2 and 4"),
        "same path twice": ("img/0.png,a\nimg/1.png,b\nimg/0.png,a\n", "list each image once"),
        "path outside the root": ("img/0.png,a\n../escape.png,b\n", "outside the image root"),
    }
    handled, lost = 0, 0
    with _workdir() as work:
        rng = np.random.default_rng(0)
        for i in range(2):
            make_image(work / "m" / "img" / f"{i}.png", i, rng)
        make_image(work / "escape.png", 0, rng)
        for name, (body, needle) in cases.items():
            manifest = work / "m" / f"{name.replace(' ', '_')}.csv"
            manifest.write_text("path,label\n" + body)
            recipe = work / "r.yaml"
            recipe.write_text(
                yaml.safe_dump({"data": {"dataset": "csv", "manifest": str(manifest)}})
            )
            code, _, err = _cli("check-data", str(recipe), "--no-progress")
            handled += _one_line(code, err, needle)
            lost += code == 99
    return [fault_row("ambiguous manifest", len(cases), handled, lost, ", ".join(cases))]


def _attempts(run: Path, work: Path) -> list[tuple[str, list[str], Path]]:
    emb, index = work / "emb.npy", work / "g.faiss"
    emb_json = Path(str(emb) + ".json")
    notes = work / "notes.txt"
    notes.write_text("the user's own notes")
    image = next((work / "images" / "class_0").iterdir())
    ckpt = run / "checkpoints" / "last.pt"
    metrics, config = run / "metrics.json", run / "config.yaml"
    recipe = str(work / "recipe.yaml")
    r, e, i = str(run), str(emb), str(index)
    return [
        ("eval --json the checkpoint", ["eval", r, "--json", str(ckpt)], ckpt),
        ("eval --json the checkpoint --force", ["eval", r, "--json", str(ckpt), "--force"], ckpt),
        ("eval --json train's metrics.json", ["eval", r, "--json", str(metrics)], metrics),
        ("eval --json config.yaml --force", ["eval", r, "--json", str(config), "--force"], config),
        ("eval --plots onto a file", ["eval", r, "--plots", str(notes)], notes),
        ("embed --out the checkpoint", ["embed", r, "--out", str(ckpt)], ckpt),
        ("embed --out existing embeddings", ["embed", r, "--out", e], emb),
        ("index EMB --out EMB --force", ["index", e, "--out", e, "--force"], emb),
        (
            "index EMB --out EMB.json --force",
            ["index", e, "--out", str(emb_json), "--force"],
            emb_json,
        ),
        ("index --out a user's file --force", ["index", e, "--out", str(notes), "--force"], notes),
        ("index --out existing index", ["index", e, "--out", i], index),
        ("search --json the index", ["search", i, str(image), "--json", i], index),
        ("search --json the query image", ["search", i, str(image), "--json", str(image)], image),
        (
            "fewshot --json EMB.json --force",
            ["fewshot", e, "--json", str(emb_json), "--force"],
            emb_json,
        ),
        ("train --out a file", ["train", recipe, "--out", str(notes)], notes),
        (
            "train --out a folder of other files",
            ["train", recipe, "--out", str(work / "images")],
            work / "images" / "class_0",
        ),
    ]


def _state(path: Path) -> Any:
    return _digest(path) if path.is_file() else sorted(os.listdir(path))


def check_outputs() -> list[FaultRow]:
    """Overwrite attempts refused (nothing changes); ``--force`` replaces the command's own
    kind of output."""
    with _workdir() as work:
        run = _trained(work)
        emb, index = work / "emb.npy", work / "g.faiss"
        assert _cli("embed", str(run), "--out", str(emb), "--no-progress")[0] == 0
        assert _cli("index", str(emb), "--out", str(index))[0] == 0
        attempts = _attempts(run, work)
        handled, lost, failed = 0, 0, []
        for name, args, guarded in attempts:
            before = _state(guarded)
            quiet = ["--no-progress"] if args[0] in ("eval", "embed", "fewshot", "train") else []
            code, _, err = _cli(*args, *quiet)
            after = _state(guarded)
            ok = _one_line(code, err) and before == after
            handled += ok
            lost += before != after or code == 99
            if not ok:
                failed.append(name)
        rows = [
            fault_row(
                "overwrite of an input or another kind of file",
                len(attempts),
                handled,
                lost,
                "refused in one line, file unchanged" + (f"; not: {failed}" if failed else ""),
            )
        ]
        forced = [
            ("eval --json", ["eval", str(run), "--json", str(work / "m.json"), "--no-progress"]),
            ("embed --out", ["embed", str(run), "--out", str(emb), "--no-progress"]),
            ("index --out", ["index", str(emb), "--out", str(index)]),
            ("eval --plots", ["eval", str(run), "--plots", str(work / "plots"), "--no-progress"]),
        ]
        done = 0
        for _, args in forced:
            if args[0] == "eval":
                _cli(*args)  # first write (a new file)
            refused = _one_line(*_cli(*args)[::2], "pass --force")
            done += refused and _cli(*args, "--force")[0] == 0
        rows.append(
            fault_row(
                "own kind of output: refused, then --force",
                len(forced),
                done,
                0,
                ", ".join(name for name, _ in forced),
            )
        )
    return rows


@contextlib.contextmanager
def _failing(where: str, code: int) -> Iterator[None]:
    import supcon.io as sio

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    if where == "mkstemp":
        saved, sio.tempfile.mkstemp = sio.tempfile.mkstemp, refuse
        try:
            yield
        finally:
            sio.tempfile.mkstemp = saved
    else:
        saved = getattr(sio.os, where)
        setattr(sio.os, where, refuse)
        try:
            yield
        finally:
            setattr(sio.os, where, saved)


def check_write_errors() -> list[FaultRow]:
    """Disk full (``ENOSPC`` mid-write), read-only (``EROFS``) and unwritable (``EACCES``)
    output folders: one line naming the path, the old file intact, no temporary file left."""
    rows = []
    with _workdir() as work:
        run = _trained(work)
        emb = work / "emb.npy"
        assert _cli("embed", str(run), "--out", str(emb), "--no-progress")[0] == 0
        out = work / "out"
        out.mkdir()
        (out / "m.json").write_text(json.dumps({"format": "supcon-eval/1", "old": True}))
        commands = [
            ["eval", str(run), "--json", str(out / "m.json"), "--force", "--no-progress"],
            ["embed", str(run), "--out", str(out / "e.npy"), "--no-progress"],
            ["index", str(emb), "--out", str(out / "g.faiss")],
        ]
        for label, where, code in (
            ("disk full while writing", "fsync", errno.ENOSPC),
            ("read-only output folder", "mkstemp", errno.EROFS),
            ("unwritable output folder", "mkstemp", errno.EACCES),
        ):
            handled, lost = 0, 0
            for args in commands:
                before = sorted(os.listdir(out)), _digest(out / "m.json")
                with _failing(where, code):
                    result, _, err = _cli(*args)
                after = sorted(os.listdir(out)), _digest(out / "m.json")
                handled += _one_line(result, err, "cannot write") and before == after
                lost += before != after or result == 99
            rows.append(
                fault_row(
                    label,
                    len(commands),
                    handled,
                    lost,
                    "eval --json, embed --out, index --out: one line, nothing changed",
                )
            )
    return rows


def check_indexes() -> list[FaultRow]:
    """Broken index files and descriptions: one line from ``supcon search``."""
    edits: dict[str, Callable[[Path, dict], Any]] = {
        "sidecar without ids": lambda i, m: m.pop("ids"),
        "sidecar without model fingerprint": lambda i, m: m["model"].pop("fingerprint"),
        "sidecar with wrong counts": lambda i, m: m.update(labels=m["labels"][:-1]),
        "index file swapped": lambda i, m: i.write_bytes(b"not faiss"),
        "corrupt index, matching hash": lambda i, m: (
            i.write_bytes(b"IxM2" + bytes(32)),
            m.update(faiss_sha256=hashlib.sha256(b"IxM2" + bytes(32)).hexdigest()),
        ),
    }
    handled, lost = 0, 0
    with _workdir() as work:
        run = _trained(work)
        good = work / "g.faiss"
        assert _cli("index", str(run), "--out", str(good), "--no-progress")[0] == 0
        image = str(next((work / "images" / "class_1").iterdir()))
        for edit in edits.values():
            broken = work / "b.faiss"
            broken.write_bytes(good.read_bytes())
            meta = json.loads((work / "g.faiss.json").read_text())
            edit(broken, meta)
            (work / "b.faiss.json").write_text(json.dumps(meta))
            code, _, err = _cli("search", str(broken), image, "--run", str(run))
            handled += _one_line(code, err)
            lost += code == 99
    return [fault_row("broken index or sidecar", len(edits), handled, lost, ", ".join(edits))]


def check_numbers() -> list[FaultRow]:
    """Embeddings × 1e30, × 1e-30, in bf16/fp16 give the reference metrics; NaN is refused."""
    import torch

    from supcon import retrieval_metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 400)
    emb = (rng.normal(size=(8, 32))[labels] + rng.normal(size=(400, 32))).astype(np.float32)
    reference = retrieval_metrics(emb.astype(np.float64), labels)
    variants = {
        "x1e30": emb.astype(np.float64) * 1e30,
        "x1e-30": emb.astype(np.float64) * 1e-30,
        "x1e300": emb.astype(np.float64) * 1e300,
    }
    handled = sum(retrieval_metrics(v, labels) == reference for v in variants.values())
    for dtype in (torch.float16, torch.bfloat16):
        half = torch.from_numpy(emb).to(dtype)
        handled += retrieval_metrics(half, labels) == retrieval_metrics(half.double(), labels)
    bad = emb.copy()
    bad[5] = np.nan
    try:
        retrieval_metrics(bad, labels)
    except ValueError as exc:
        handled += "rows 5" in str(exc)
    injected = len(variants) + 3
    detail = "x1e30, x1e-30, x1e300, fp16, bf16 equal the reference; NaN row refused"
    return [
        fault_row(
            "extreme or half-precision embeddings", injected, handled, injected - handled, detail
        )
    ]


if __name__ == "__main__":
    from benchmarks.faults import print_rows

    print_rows(
        [
            row
            for check in (
                check_bad_images,
                check_manifests,
                check_outputs,
                check_write_errors,
                check_indexes,
                check_numbers,
            )
            for row in check()
        ]
    )
