"""Checkpoints: written atomically, read back with ``weights_only=True``, never trusted blindly.

``last.pt`` is rotated: before a new one is written the previous one becomes ``prev.pt``, so a
``last.pt`` that is later truncated or corrupted (a full disk, a copy cut short) still leaves a
good checkpoint, which :func:`load_checkpoint_or_previous` falls back to with a notice. A file
that cannot be loaded is reported in one line (:class:`CheckpointError`) that never suggests
``weights_only=False``.
"""

from __future__ import annotations

import codecs
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from supcon.errors import MissingFileError, SupconError
from supcon.io import atomic_torch_save
from supcon.messages import say
from supcon.rundir import LAST, PREVIOUS


class CheckpointError(SupconError, ValueError):
    """A file cannot be loaded as a supcon checkpoint; the message says why and what to do."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save a checkpoint dict (state dicts, numbers, strings, plain containers).

    Args:
        path: Destination ``.pt`` file.
        state: What to save; must be loadable with ``weights_only=True``.

    Returns:
        The path written.
    """
    return atomic_torch_save(path, state)


def save_rotating(path: str | Path, state: dict[str, Any]) -> Path:
    """Save ``state`` to ``path`` after moving the existing ``path`` to ``prev.pt`` beside it.

    A crash between the two steps leaves ``prev.pt`` (the previous good checkpoint) and no
    ``path``; :func:`load_checkpoint_or_previous` then loads ``prev.pt``.
    """
    path = Path(path)
    if path.is_file():
        os.replace(path, path.with_name(PREVIOUS))
    return atomic_torch_save(path, state)


def _kind(head: bytes) -> str:
    """What a file that is not a torch checkpoint looks like, from its first bytes."""
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "JSON"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8"):
        return "a JPEG image"
    if head.startswith((b"GIF8", b"BM", b"RIFF")):
        return "an image"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array"
    try:  # incremental: a character cut by the end of ``head`` is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return "binary data of an unknown kind"
    return "text"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: with the path, when it does not exist.
        CheckpointError: when the file is empty, truncated, corrupt, not a torch checkpoint, or
            holds Python objects that a weights-only load refuses (one line, no traceback).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {str(path)!r} not found")
    where = f"checkpoint {str(path)!r}"
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise CheckpointError(f"{where} is empty (0 bytes); the write that made it was cut short")
    is_zip, is_pickle = head.startswith(b"PK\x03\x04"), head.startswith(b"\x80")
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{where} is not a torch checkpoint (it looks like {_kind(head)}); pass a .pt file "
            "written by supcon train, or a run directory"
        )
    if is_zip and not zipfile.is_zipfile(path):  # the zip's directory at the end is missing
        raise CheckpointError(f"{where} is truncated; {_fallback_hint(path)}")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on a pickle protocol it did not write
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and "Unsupported" in str(exc):
            raise CheckpointError(
                f"{where} holds Python objects other than tensors, numbers, strings and plain "
                "containers; supcon does not load those (unpickling them could run code). Use a "
                "checkpoint written by supcon train, or save only state dicts"
            ) from None
        raise CheckpointError(
            f"{where} is corrupt (cannot be unpickled); {_fallback_hint(path)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, struct.error) as exc:
        reason = (
            "truncated"
            if isinstance(exc, EOFError) or "central directory" in str(exc)
            else ("corrupt or not a torch checkpoint")
        )
        raise CheckpointError(f"{where} is {reason}; {_fallback_hint(path)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{where} holds a {type(state).__name__}, not a checkpoint dict; pass a .pt file "
            "written by supcon train"
        )
    return state


def _fallback_hint(path: Path) -> str:
    if path.name == LAST:
        return f"the previous checkpoint, if any, is {str(path.with_name(PREVIOUS))!r}"
    return "use another checkpoint of the run (checkpoints/last.pt or prev.pt)"


def problem_of(error: Exception) -> str:
    """The first clause of a load error (what is wrong, without the advice)."""
    return str(error).split("; ")[0]


def load_checkpoint_or_previous(
    path: str | Path, map_location: str | torch.device = "cpu", *, who: str = "supcon"
) -> tuple[dict[str, Any], Path]:
    """Load ``path``; if it is missing or unloadable, load ``prev.pt`` beside it with a notice.

    Args:
        path: Usually ``RUN/checkpoints/last.pt``.
        map_location: As for ``torch.load``.
        who: Prefix of the notice printed to stderr (e.g. ``"supcon train"``).

    Returns:
        ``(checkpoint, the path it was loaded from)``.

    Raises:
        FileNotFoundError, CheckpointError: of ``path`` when there is no usable ``prev.pt``.
    """
    path = Path(path)
    previous = path.with_name(PREVIOUS)
    try:
        return load_checkpoint(path, map_location), path
    except (FileNotFoundError, CheckpointError) as exc:
        if path.name == PREVIOUS or not previous.is_file():
            raise
        try:
            state = load_checkpoint(previous, map_location)
        except CheckpointError:
            raise exc from None
        say(f"{who}: {problem_of(exc)}; falling back to {str(previous)!r}")
        return state, previous
