"""Checkpoints you can trust: one-line load errors, last.pt / prev.pt fallback, finite weights."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from supcon.cli import main
from supcon.runs import load_run
from supcon.training import TrainingError, train
from supcon.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_checkpoint_or_previous,
    save_rotating,
)
from supcon.training.guard import nonfinite_state
from tests.training.helpers import tiny


def _torch_bytes(obj: object, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


def foreign(path: Path) -> dict[str, bytes]:
    """Files that are not loadable checkpoints, by what is wrong with them."""
    good = _torch_bytes({"model": {"w": torch.ones(64, 64)}}, path / "good.pt")
    with zipfile.ZipFile(path / "z.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "json": json.dumps({"recall@1": 0.9}).encode(),
        "png image": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "random bytes": bytes((i * 151 + 7) % 256 for i in range(4096)),
        "foreign pickle": _torch_bytes({"args": argparse.Namespace(lr=1.0)}, path / "ns.pt"),
        "other zip": (path / "z.zip").read_bytes(),
        "not a dict": _torch_bytes([torch.ones(2)], path / "list.pt"),
    }


EXPECTED = {
    "empty": "is empty",
    "truncated": "is truncated",
    "json": r"not a torch checkpoint \(it looks like JSON\)",
    "png image": r"not a torch checkpoint \(it looks like a PNG image\)",
    "random bytes": "not a torch checkpoint",
    "foreign pickle": "holds Python objects other than tensors",
    "other zip": "corrupt or not a torch checkpoint",
    "not a dict": "holds a list, not a checkpoint dict",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_unloadable_files_are_one_line_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(foreign(tmp_path)[case])
    with pytest.raises(CheckpointError, match=EXPECTED[case]) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message
    assert str(path) in message


@pytest.mark.parametrize("case", ["json", "foreign pickle", "truncated"])
def test_eval_of_a_foreign_file_exits_2_in_one_line(tmp_path: Path, capsys, case: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(foreign(tmp_path)[case])
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("supcon eval: error: checkpoint")
    assert "weights_only" not in err[0]


def test_rotation_keeps_the_previous_checkpoint_and_falls_back_to_it(
    tmp_path: Path, capsys
) -> None:
    last = tmp_path / "last.pt"
    save_rotating(last, {"step": 1, "w": torch.zeros(3)})
    save_rotating(last, {"step": 2, "w": torch.ones(3)})
    assert load_checkpoint(tmp_path / "prev.pt")["step"] == 1
    assert load_checkpoint_or_previous(last)[0]["step"] == 2
    assert capsys.readouterr().err == ""

    last.write_bytes(last.read_bytes()[:100])  # a copy cut short, a full disk
    state, used = load_checkpoint_or_previous(last, who="supcon test")
    assert (state["step"], used.name) == (1, "prev.pt")
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "is truncated; falling back to" in notice[0]

    last.unlink()  # a crash between the rename and the write
    assert load_checkpoint_or_previous(last)[0]["step"] == 1
    (tmp_path / "prev.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError):  # nothing usable: the error of last.pt itself
        load_checkpoint_or_previous(last)


@pytest.fixture(scope="module")
def finished(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run (3 steps each) that saved last.pt after every step."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny(images, train={"checkpoint_every": 1}), run, progress=False)
    return run


def test_load_run_eval_and_resume_fall_back_to_prev(
    finished: Path, images: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    checkpoints = run / "checkpoints"
    final = load_checkpoint(checkpoints / "last.pt")
    previous = load_checkpoint(checkpoints / "prev.pt")
    assert (final["step"], previous["step"]) == (6, 5)
    (checkpoints / "last.pt").write_bytes((checkpoints / "last.pt").read_bytes()[:4096])

    loaded = load_run(checkpoints / "last.pt")
    assert loaded.checkpoint.name == "prev.pt"
    for name, tensor in previous["model"].items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert "falling back to" in capsys.readouterr().err

    assert main(["eval", str(run), "--ks", "1"]) == 0
    captured = capsys.readouterr()
    assert "recall@1" in captured.out and "falling back to" in captured.err

    # --resume from prev.pt redoes step 6 and ends exactly where the uninterrupted run ended.
    (run / "metrics.json").unlink()
    train(tiny(images, train={"checkpoint_every": 1}), run, progress=False, resume=True)
    assert "falling back to" in capsys.readouterr().err
    resumed = load_checkpoint(checkpoints / "last.pt")
    assert load_checkpoint(checkpoints / "prev.pt")["step"] == 5  # not the corrupt file
    assert resumed["progress"] == final["progress"]
    for name, tensor in final["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_divergence_leaves_a_finite_usable_checkpoint(images: Path, tmp_path: Path) -> None:
    # lr=30: step 1 stays usable, step 2 blows the weights up (finite, ~1e30) so that every
    # eval-mode embedding is NaN; that state must never replace the last good checkpoint.
    config = tiny(images, optim={"lr": 30.0}, train={"checkpoint_every": 1, "epochs": 3})
    with pytest.raises(TrainingError, match="not finite .*not saving last.pt.*last good"):
        train(config, tmp_path, progress=False)
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for name, tensor in saved["model"].items():
        assert not tensor.is_floating_point() or bool(tensor.isfinite().all()), name
    for slots in saved["optimizer"]["state"].values():
        assert all(bool(v.isfinite().all()) for v in slots.values() if v.is_floating_point())
    loaded = load_run(tmp_path)
    assert nonfinite_state(loaded.model, torch.optim.SGD(loaded.model.parameters())) is None
    from supcon.data import load_splits
    from supcon.training.evaluate import evaluate

    _, test_split = load_splits(config.data, config.train.seed)
    cpu = torch.device("cpu")
    metrics = evaluate(
        loaded.model, test_split, loaded.eval_transform, ks=(1,), batch_size=64, device=cpu
    )
    assert math.isfinite(metrics["recall@1"]) and math.isfinite(metrics["map@r"])
    assert saved["step"] >= 1  # the last step whose weights still embed finitely


def test_corrupt_best_falls_back_to_last(finished: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "checkpoints" / "best.pt").write_bytes(b'{"recall@1": 1.0}')
    loaded = load_run(run)
    assert loaded.checkpoint.name == "last.pt"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt' is not a torch checkpoint" in err[0]
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert load_run(run).checkpoint.name == "prev.pt"
    for name in ("last.pt", "prev.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match="best.pt' is not a torch checkpoint"):
        load_run(run)
