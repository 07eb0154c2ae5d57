"""load_checkpoint's less common paths: map_location, the weights-only guarantee, pickles that
are corrupt or cut short, and how a foreign file's first bytes are read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supcon.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_checkpoint_or_previous,
    save_checkpoint,
    save_rotating,
)


def _legacy(path: Path) -> bytes:
    """A checkpoint in torch's pre-zip format (a bare pickle stream, first byte 0x80)."""
    torch.save({"step": 1, "w": torch.ones(64)}, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def test_save_checkpoint_writes_the_state_to_the_path_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    state = {"step": 7, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "name": "run"}
    assert save_checkpoint(path, state) == path
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 7 and loaded["name"] == "run"
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no temporary left


def test_map_location_is_passed_to_torch_load(tmp_path: Path) -> None:
    """``map_location="meta"`` gives shape-only tensors, also through the prev.pt fallback."""
    last = tmp_path / "last.pt"
    save_rotating(last, {"step": 1, "w": torch.ones(3)})
    save_rotating(last, {"step": 2, "w": torch.ones(3)})
    assert load_checkpoint(last, map_location="meta")["w"].device.type == "meta"
    assert load_checkpoint(last)["w"].device.type == "cpu"
    state, used = load_checkpoint_or_previous(last, map_location="meta")
    assert used == last and state["w"].device.type == "meta"
    last.write_bytes(last.read_bytes()[:100])  # cut short: falls back to prev.pt
    state, used = load_checkpoint_or_previous(last, map_location="meta")
    assert used.name == "prev.pt" and state["step"] == 1 and state["w"].device.type == "meta"


def test_pickled_objects_stay_refused_when_the_environment_allows_them(
    tmp_path: Path, monkeypatch
) -> None:
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` flips torch.load's default, not supcon's load."""
    import argparse

    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(lr=1.0)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        assert isinstance(torch.load(path)["args"], argparse.Namespace)  # the variable works
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("stream", "what"),
    [
        (b"\x80\x02}K\x01a.", "appends to a dict"),
        (b"\x80\x02]K\x01K\x02s.", "sets an item of a list"),
    ],
)
def test_a_pickle_the_weights_only_reader_rejects_as_malformed_is_corrupt(
    tmp_path: Path, stream: bytes, what: str
) -> None:
    """Not an unsupported object (that has its own message): a broken pickle stream."""
    last = tmp_path / "last.pt"
    last.write_bytes(stream)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(last)
    prev = tmp_path / "prev.pt"
    assert str(info.value) == (
        f"checkpoint {str(last)!r} is corrupt (cannot be unpickled); the previous checkpoint, "
        f"if any, is {str(prev)!r}"
    ), what


def test_a_legacy_checkpoint_cut_short_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    data = _legacy(path)
    path.write_bytes(data[:10])  # torch.load raises EOFError
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {str(path)!r} is truncated; use another checkpoint of the run "
        "(checkpoints/last.pt or prev.pt)"
    )


@pytest.mark.parametrize("stream", [b"\x80\x02K", b"\x80\x02X", b"\x80\x02J\x01"])
def test_a_pickle_cut_inside_an_opcode_is_a_one_line_error(tmp_path: Path, stream: bytes) -> None:
    """torch's weights-only reader raises IndexError / struct.error there, not EOFError."""
    path = tmp_path / "cut.pt"
    path.write_bytes(stream)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {str(path)!r} is corrupt or not a torch checkpoint; use another "
        "checkpoint of the run (checkpoints/last.pt or prev.pt)"
    )


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        # "é" is 2 bytes in UTF-8: bytes 15-16, cut in two by the 16-byte head.
        ("step = 1 # rate" + "é" * 20, "text"),
        # The first 16 bytes decide: text there, binary after.
        ("lr: 0.1\nsteps: 9", "text"),
    ],
)
def test_a_foreign_file_is_named_by_its_first_16_bytes(
    tmp_path: Path, content: str, kind: str
) -> None:
    path = tmp_path / "notes.pt"
    data = content.encode()
    if kind == "text" and len(data) == 16:
        data += b"\xff\xfe" * 16
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert f"(it looks like {kind})" in str(info.value)
