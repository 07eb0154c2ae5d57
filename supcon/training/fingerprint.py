"""A fingerprint of the training data, stored in checkpoints so ``--resume`` notices a change.

Image files: their paths relative to the data's common folder (so a dataset moved or copied to
another mount keeps its fingerprint), labels, class names and file sizes (one ``stat`` each;
modification times are left out because copies change them). In-memory data (the digits): the
pixel bytes and labels.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch


def data_fingerprint(split: Any) -> dict[str, Any]:
    """``{"digest": sha256 hex, "count": items}`` of a training split.

    Args:
        split: A ``FileSplit`` (``paths``, ``labels``, ``class_names``) or a ``TensorSplit``
            (``images``, ``labels``, ``class_names``).
    """
    digest = hashlib.sha256()
    digest.update("\0".join(split.class_names).encode("utf-8", "surrogateescape"))
    digest.update(np.ascontiguousarray(np.asarray(split.labels, dtype=np.int64)).tobytes())
    paths = getattr(split, "paths", None)
    if paths is not None:
        root = os.path.commonpath(paths) if paths else ""
        for path in paths:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = -1
            digest.update(
                f"{os.path.relpath(path, root)}\0{size}\n".encode("utf-8", "surrogateescape")
            )
    else:
        images = split.images.detach().cpu().contiguous()
        digest.update(str((tuple(images.shape), str(images.dtype))).encode())
        digest.update(images.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return {"digest": digest.hexdigest(), "count": len(split.labels)}


def data_change(saved: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """How the training data differs from a checkpoint's, or ``None`` (also for old checkpoints)."""
    if not saved or saved.get("digest") == current["digest"]:
        return None
    then, now = saved.get("count"), current["count"]
    if then != now:
        return (
            f"the training split had {then} items when the checkpoint was written and has {now} now"
        )
    return (
        f"the training split's {now} files, labels or sizes differ from when the checkpoint "
        "was written"
    )
