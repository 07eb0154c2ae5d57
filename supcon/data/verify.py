"""Check every image of a dataset once, in parallel, and apply ``data.on_bad_image``.

:func:`check_images` opens and fully decodes each file with :func:`~supcon.data.sources.load_image`
(the loader training uses) on a thread pool sized to the CPU cores (Pillow decodes without the
GIL) and lists the files that fail: zero-byte, not an image, truncated or corrupt, too large,
unreadable. :func:`screen_splits` applies the recipe's policy: ``error`` stops with the list,
``skip`` drops them from both splits (and says so).
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from supcon.data.sources import BadImageError, DataError, FileSplit, load_image
from supcon.messages import say

if TYPE_CHECKING:
    from supcon.config import DataConfig
    from supcon.data.views import Split

#: Name of the list of skipped files written into the run directory.
SKIPPED_CSV = "skipped.csv"


@dataclass(frozen=True)
class BadImage:
    """A file that cannot be used: its path, the kind of problem and Pillow's words."""

    path: str
    kind: str
    detail: str


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_image(path: str, max_pixels: int | None = None) -> BadImage | None:
    """``None`` when ``path`` loads, else what is wrong with it."""
    try:
        load_image(path, max_pixels=max_pixels)
    except BadImageError as exc:
        return BadImage(path, exc.kind, exc.detail or "")
    return None


def check_images(
    paths: Sequence[str],
    max_pixels: int | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> list[BadImage]:
    """Open every file once, in parallel; the bad ones in input order.

    Args:
        paths: Image files.
        max_pixels: Largest image accepted (``None``: Pillow's limit).
        workers: Threads (default: the CPU cores this process may use).
        progress: Show a tqdm bar.
    """
    workers = workers or _cores()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: check_image(p, max_pixels), paths, chunksize=16)
        found = list(tqdm(results, total=len(paths), desc="check", disable=not progress))
    return [bad for bad in found if bad is not None]


def summarize(bad: Sequence[BadImage]) -> str:
    """``"3 bad images (2 zero-byte, 1 truncated or corrupt)"`` (or ``"no bad images"``)."""
    if not bad:
        return "no bad images"
    counts = Counter(b.kind for b in bad).most_common()
    return f"{len(bad)} bad images (" + ", ".join(f"{n} {kind}" for kind, n in counts) + ")"


def skipped_csv(bad: Sequence[BadImage]) -> str:
    """The ``skipped.csv`` text: ``path,problem,detail`` per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "problem", "detail"])
    writer.writerows((b.path, b.kind, b.detail) for b in bad)
    return buffer.getvalue()


def _drop(split: FileSplit, bad_paths: set[str]) -> FileSplit:
    keep = np.array([p not in bad_paths for p in split.paths], dtype=bool)
    return split if keep.all() else split.subset(np.flatnonzero(keep))


def screen_splits(
    config: DataConfig, train: Split, held_out: Split, *, progress: bool = False
) -> tuple[Split, Split, list[BadImage]]:
    """Check the images of both splits when the recipe asks for it, and apply the policy.

    Nothing is checked for the bundled digits, or when ``data.verify`` is false and
    ``data.on_bad_image`` is ``error`` (a bad file then stops the run when it is drawn).

    Args:
        config: The ``data:`` section.
        train: Training split.
        held_out: Held-out split.
        progress: Show a tqdm bar while checking.

    Returns:
        ``(train, held_out, bad)``: with ``skip``, the splits without the bad files.

    Raises:
        DataError: with ``error`` and bad files (the first few listed), or when skipping
            leaves a split empty.
    """
    if not isinstance(train, FileSplit) or not isinstance(held_out, FileSplit):
        return train, held_out, []
    if not (config.verify or config.on_bad_image == "skip"):
        return train, held_out, []
    paths = list(dict.fromkeys([*train.paths, *held_out.paths]))
    bad = check_images(paths, config.max_image_pixels, progress=progress)
    if not bad:
        return train, held_out, []
    if config.on_bad_image == "error":
        shown = "; ".join(f"{b.path!r} ({b.kind})" for b in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(
            f"{len(bad)} of {len(paths)} images cannot be used: {shown}{more}; fix or remove "
            "them (supcon check-data RECIPE lists all), or set data.on_bad_image=skip"
        )
    bad_paths = {b.path for b in bad}
    train, held_out = _drop(train, bad_paths), _drop(held_out, bad_paths)
    if len(train) == 0 or len(held_out) == 0:
        raise DataError(
            f"skipping {len(bad)} bad images leaves the "
            f"{'training' if len(train) == 0 else 'held-out'} split empty; fix the images"
        )
    return train, held_out, bad


def write_skipped(run_dir: str | Path, bad: Sequence[BadImage]) -> Path | None:
    """Write ``skipped.csv`` into ``run_dir`` (when files were skipped) and say so."""
    from supcon.io import atomic_write_text
    from supcon.reporting import escape

    if not bad:
        return None
    path = atomic_write_text(Path(run_dir) / SKIPPED_CSV, skipped_csv(bad))
    say(f"supcon: data.on_bad_image=skip: skipped {summarize(bad)}; listed in {escape(path)}")
    return path
