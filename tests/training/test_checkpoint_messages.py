"""The exact words of checkpoint load errors and of the prev.pt fallback notice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supcon.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_checkpoint_or_previous,
    save_rotating,
)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rotated(tmp_path: Path) -> tuple[Path, Path]:
    """checkpoints/last.pt (step 2) and prev.pt (step 1)."""
    last = tmp_path / "checkpoints" / "last.pt"
    last.parent.mkdir()
    save_rotating(last, {"step": 1, "w": torch.ones(256)})
    save_rotating(last, {"step": 2, "w": torch.ones(256)})
    return last, last.with_name("prev.pt")


def test_a_truncated_last_pt_points_to_prev_pt(tmp_path: Path) -> None:
    last, prev = _rotated(tmp_path)
    _truncate(last)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(last)
    assert str(info.value) == (
        f"checkpoint {str(last)!r} is truncated; the previous checkpoint, if any, is {str(prev)!r}"
    )


def test_another_truncated_file_points_to_the_runs_checkpoints(tmp_path: Path) -> None:
    other = tmp_path / "best.pt"
    torch.save({"w": torch.ones(256)}, other)
    _truncate(other)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(other)
    assert str(info.value) == (
        f"checkpoint {str(other)!r} is truncated; use another checkpoint of the run "
        "(checkpoints/last.pt or prev.pt)"
    )


def test_fallback_to_prev_pt_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    last, prev = _rotated(tmp_path)
    _truncate(last)
    state, used = load_checkpoint_or_previous(last)
    assert used == prev and state["step"] == 1
    assert capsys.readouterr().err == (
        f"supcon: checkpoint {str(last)!r} is truncated; falling back to {str(prev)!r}\n"
    )


def test_without_prev_pt_the_error_is_about_last_pt(tmp_path: Path) -> None:
    last, prev = _rotated(tmp_path)
    _truncate(last)
    prev.unlink()
    with pytest.raises(CheckpointError, match="last.pt' is truncated"):
        load_checkpoint_or_previous(last)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b'  {"step": 1}', "JSON"),
        (b"[1, 2, 3]", "JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (b"GIF89a\x01\x00", "an image"),
        (b"BM\x36\x00\x00\x00", "an image"),
        (b"RIFF\x24\x00\x00\x00WEBP", "an image"),
        (b"\x93NUMPY\x01\x00", "a NumPy array"),
        (b"\x00\xfe\xff\x01\x02", "binary data of an unknown kind"),
        (b"step: 1\nlr: 0.1\n", "text"),
    ],
)
def test_a_foreign_file_is_named_by_what_it_looks_like(
    tmp_path: Path, head: bytes, kind: str
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(head + b" " * 32)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {str(path)!r} is not a torch checkpoint (it looks like {kind}); pass a .pt "
        "file written by supcon train, or a run directory"
    )


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError) as info:
        load_checkpoint(missing)
    assert str(info.value) == f"checkpoint {str(missing)!r} not found"


def test_a_legacy_pickle_checkpoint_loads(tmp_path: Path) -> None:
    """torch.save without the zip container writes a bare pickle (first byte 0x80)."""
    path = tmp_path / "old.pt"
    torch.save({"step": 3, "w": torch.arange(4)}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4))


def test_load_errors_in_full(tmp_path: Path) -> None:
    """Each refusal of load_checkpoint, word for word (what is wrong; what to do)."""
    from tests.training.test_checkpoint_safety import foreign

    files = foreign(tmp_path)
    hint = "use another checkpoint of the run (checkpoints/last.pt or prev.pt)"
    expected = {
        "foreign pickle": "holds Python objects other than tensors, numbers, strings and plain "
        "containers; supcon does not load those (unpickling them could run code). Use a "
        "checkpoint written by supcon train, or save only state dicts",
        "other zip": f"is corrupt or not a torch checkpoint; {hint}",
        "not a dict": "holds a list, not a checkpoint dict; pass a .pt file written by supcon "
        "train",
        "empty": "is empty (0 bytes); the write that made it was cut short",
    }
    for case, words in expected.items():
        path = tmp_path / f"{case.replace(' ', '_')}.pt"
        path.write_bytes(files[case])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(info.value) == f"checkpoint {str(path)!r} {words}", case
