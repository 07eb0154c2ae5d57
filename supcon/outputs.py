"""Where commands may write: never over their own input or a file of another kind, and over an
earlier output of their own kind only with ``--force``.

A command's output kind is recognised by content, not by name alone:

* JSON reports (``eval --json``, ``search --json``, ``fewshot --json``): a JSON object whose
  ``"format"`` is that command's (``supcon-eval/1`` …; older reports without one are recognised
  by their top-level keys).
* Embeddings (``embed --out``): ``NAME.npy`` / ``NAME.safetensors`` whose ``NAME.<ext>.json``
  says ``supcon-embeddings/1``; the ``.labels.npy``-style files beside it count only when that
  description lists them.
* Indexes (``index --out``): a file whose ``.json`` says ``supcon-index/1``.
* Plots (``eval --plots DIR``): PNG files.

Everything is checked before any work starts, so a refused command costs nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supcon.errors import UserError
from supcon.io import sidecar_path

#: JSON files larger than this are not opened to recognise them (never our reports).
MAX_SNIFF_BYTES = 256 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OutputKind:
    """A kind of output file: its name in messages and a test for an existing file."""

    name: str
    is_own: Callable[[Path], bool]


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is not one (or too large to sniff)."""
    try:
        if path.stat().st_size > MAX_SNIFF_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def json_report(fmt: str, name: str, legacy_keys: Sequence[str]) -> OutputKind:
    """A JSON report with ``"format": fmt`` (or, before formats were recorded, these keys)."""

    def is_own(path: Path) -> bool:
        value = read_json_object(path)
        if value is None:
            return False
        if "format" in value:
            return value["format"] == fmt
        return all(key in value for key in legacy_keys)

    return OutputKind(name, is_own)


def described_by(fmt: str) -> Callable[[Path], bool]:
    """Whether ``PATH.json`` beside a file says ``"format": fmt``."""
    return lambda path: (read_json_object(sidecar_path(path)) or {}).get("format") == fmt


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(8) == PNG_SIGNATURE
    except OSError:
        return False


EVAL_REPORT = json_report("supcon-eval/1", "supcon eval report", ("metrics", "num_items"))
SEARCH_REPORT = json_report("supcon-search/1", "supcon search report", ("index", "results"))
FEWSHOT_REPORT = json_report("supcon-fewshot/1", "supcon fewshot report", ("fewshot",))
EMBEDDINGS = OutputKind("supcon embeddings file", described_by("supcon-embeddings/1"))
INDEX = OutputKind("supcon index", described_by("supcon-index/1"))
PLOT = OutputKind("PNG plot", _is_png)
EXPORTED_MODEL = OutputKind("supcon exported model", described_by("supcon-export/1"))


def sidecar_kind(fmt: str, name: str) -> OutputKind:
    """The ``NAME.json`` description written beside an embeddings file or an index."""
    return OutputKind(name, lambda path: (read_json_object(path) or {}).get("format") == fmt)


def companion_kind(main: Path, fmt: str) -> OutputKind:
    """A file written beside ``main`` (e.g. ``NAME.labels.npy``): ours when ``main``'s
    description lists it."""

    def is_own(path: Path) -> bool:
        meta = read_json_object(sidecar_path(main)) or {}
        files = meta.get("files") if meta.get("format") == fmt else None
        return isinstance(files, dict) and path.name in files.values()

    return OutputKind(f"file of the supcon embeddings {str(main)!r}", is_own)


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    try:
        info = path.stat()
        inode = (info.st_dev, info.st_ino)
    except OSError:
        inode = None
    return os.path.realpath(path), inode


def run_inputs(source: str | Path | None) -> list[Path]:
    """What a run argument reads: the path, its checkpoint and the run's checkpoint files."""
    if source is None:
        return []
    path = Path(source)
    found = [path]
    folder = path / "checkpoints" if path.is_dir() else None
    if folder is not None and folder.is_dir():
        found += sorted(folder.glob("*.pt"))
    if path.is_dir():
        found += [path / name for name in ("config.yaml", "meta.json", "classes.json")]
    return found


def data_inputs(source: str | Path | None) -> list[Path]:
    """An embeddings or index file with every file beside it that it is read with."""
    if source is None:
        return []
    path = Path(source)
    found = [path, sidecar_path(path)]
    if path.suffix == ".npy":
        found += [
            path.with_suffix(f".{n}.npy") for n in ("labels", "ids", "is_query", "is_gallery")
        ]
    return found


def check_outputs(
    targets: Sequence[tuple[str | Path, OutputKind]],
    *,
    option: str,
    force: bool,
    inputs: Iterable[str | Path | None] = (),
) -> None:
    """Refuse to write where a command must not.

    Args:
        targets: Every file the command will write, with its kind.
        option: The option named in messages (``"--json"``).
        force: ``--force``: overwrite existing files of the target's own kind.
        inputs: Files the command reads (never written, even with ``force``).

    Raises:
        UserError: when a target is an input, a folder, an existing file of another kind, or
            an existing output of its own kind without ``force``.
    """
    seen = [_identity(Path(p)) for p in inputs if p is not None]
    paths = {real for real, _ in seen}
    inodes = {inode for _, inode in seen if inode is not None}
    for target, kind in targets:
        path = Path(target)
        real, inode = _identity(path)
        if real in paths or (inode is not None and inode in inodes):
            raise UserError(
                f"{option} {str(path)!r} is an input of this command; write the output to "
                "another path"
            )
        if path.is_dir():
            raise UserError(f"{option} {str(path)!r} is a folder; give a file path")
        if not os.path.lexists(path):
            continue
        if not kind.is_own(path):
            raise UserError(
                f"{option} {str(path)!r} exists and is not a {kind.name}; refusing to overwrite "
                "it: choose another path (or move that file away first)"
            )
        if not force:
            raise UserError(
                f"{option} {str(path)!r} already holds a {kind.name}; pass --force to "
                "overwrite it, or choose another path"
            )


def check_plot_folder(
    folder: str | Path,
    names: Sequence[str],
    *,
    force: bool,
    inputs: Iterable[str | Path | None] = (),
) -> None:
    """``--plots DIR``: a folder (new or existing) whose ``names`` may be written."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise UserError(f"--plots {str(folder)!r} is a file; --plots takes a folder")
    check_outputs(
        [(folder / name, PLOT) for name in names], option="--plots", force=force, inputs=inputs
    )


def add_force_argument(parser: Any) -> None:
    """``--force``: overwrite an earlier output of the same kind."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing output of the same kind (never an input or another kind "
        "of file)",
    )


def check_embedding_outputs(
    out: str | Path, *, force: bool, inputs: Iterable[str | Path | None] = ()
) -> None:
    """``embed --out NAME.npy|NAME.safetensors``: the file, its ``.json`` and the ``.npy``
    files written beside it."""
    path = Path(out)
    fmt = "supcon-embeddings/1"
    if path.suffix not in (".npy", ".safetensors"):
        raise UserError(f"--out {str(path)!r} must end in .npy or .safetensors")
    targets = [
        (path, EMBEDDINGS),
        (sidecar_path(path), sidecar_kind(fmt, "supcon embeddings .json")),
    ]
    if path.suffix == ".npy":
        companion = companion_kind(path, fmt)
        targets += [
            (path.with_suffix(f".{name}.npy"), companion)
            for name in ("labels", "ids", "is_query", "is_gallery")
        ]
    check_outputs(targets, option="--out", force=force, inputs=inputs)


def check_export_outputs(
    out: str | Path, *, force: bool, inputs: Iterable[str | Path | None] = ()
) -> None:
    """``export --out FILE``: the exported model and the ``FILE.json`` written beside it."""
    path = Path(out)
    targets = [
        (path, EXPORTED_MODEL),
        (
            sidecar_path(path),
            sidecar_kind("supcon-export/1", "supcon exported model .json"),
        ),
    ]
    check_outputs(targets, option="--out", force=force, inputs=inputs)


def hits_kind(columns: Sequence[str]) -> OutputKind:
    """``search --out hits.csv|json``: a CSV with exactly these columns, or a JSON report
    with ``"format": "supcon-hits/1"``."""

    def is_own(path: Path) -> bool:
        if path.suffix.lower() == ".json":
            return (read_json_object(path) or {}).get("format") == "supcon-hits/1"
        try:
            with path.open(encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n") == ",".join(columns)
        except (OSError, UnicodeDecodeError):
            return False

    return OutputKind("supcon search hits file", is_own)


#: Entries that mark a folder as a supcon run directory.
#: (".lock" alone: a run that has just started.)
RUN_MARKERS = ("config.yaml", "checkpoints", "meta.json", "metrics.json", "log.csv", ".lock")


def check_run_folder(run_dir: str | Path) -> None:
    """``train --out DIR``: a new or empty folder, or a supcon run directory (whose own rules
    apply: finished runs are refused, unfinished ones resumed); never a file or a folder of
    other things (e.g. ``--out ~`` would write ``config.yaml`` and ``log.csv`` there)."""
    path = Path(run_dir)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file; --out takes a (new) run folder")
    entries = [p.name for p in path.iterdir()]
    if entries and not any(name in entries for name in RUN_MARKERS):
        raise UserError(
            f"--out {str(path)!r} is a folder of other files ({len(entries)} entries), not a "
            "supcon run; pass a new or empty folder"
        )
