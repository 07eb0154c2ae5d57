"""Commands never write over their input or another kind of file; ``--force`` for their own
kind; a full disk, corrupt index or incomplete sidecar is one line, exit 2."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from supcon import io
from tests.evaluation.helpers import ok, one_line_error


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(work: Path) -> Path:
    """An embeddings file and an index made from the shared run (in a module folder)."""
    from supcon.cli import main

    folder = work / "outputs"
    folder.mkdir(exist_ok=True)
    assert (
        main(["embed", str(work / "run"), "--out", str(folder / "emb.npy"), "--no-progress"]) == 0
    )
    assert main(["index", str(folder / "emb.npy"), "--out", str(folder / "g.faiss")]) == 0
    return folder


def test_eval_json_never_replaces_a_checkpoint_or_train_metrics(work: Path, run_cli) -> None:
    checkpoint = work / "run" / "checkpoints" / "last.pt"
    before = {p: _digest(p) for p in (checkpoint, work / "run" / "metrics.json")}
    for target in (checkpoint, work / "run" / "metrics.json"):
        for extra in ([], ["--force"]):
            result = run_cli("eval", "run", "--json", str(target), *extra, cwd=work)
            one_line_error(result, "--json")
    assert {p: _digest(p) for p in before} == before


def test_eval_json_and_plots_need_force_to_be_replaced(work: Path, run_cli) -> None:
    args = ("eval", "run", "--json", "own.json", "--plots", "own_plots", "--no-progress")
    ok(run_cli(*args, cwd=work))
    assert json.loads((work / "own.json").read_text())["format"] == "supcon-eval/1"
    one_line_error(run_cli(*args, cwd=work), "already holds a supcon eval report; pass --force")
    (work / "own.json").write_text(json.dumps({"metrics": {}, "num_items": 3}))  # older report
    one_line_error(run_cli(*args, cwd=work), "pass --force")
    ok(run_cli(*args, "--force", cwd=work))
    assert json.loads((work / "own.json").read_text())["num_items"] == 12
    (work / "notes.json").write_text('{"mine": 1}')
    one_line_error(
        run_cli("eval", "run", "--json", "notes.json", "--force", cwd=work),
        "exists and is not a supcon eval report",
    )
    (work / "plots_file").write_text("x")
    one_line_error(run_cli("eval", "run", "--plots", "plots_file", cwd=work), "is a file")


def test_embed_and_index_protect_inputs_and_other_files(work: Path, files: Path, run_cli) -> None:
    emb, index = files / "emb.npy", files / "g.faiss"
    guarded = [emb, emb.with_name("emb.npy.json"), emb.with_suffix(".labels.npy"), index]
    before = {p: _digest(p) for p in guarded}
    one_line_error(
        run_cli("embed", "run", "--out", "run/checkpoints/last.pt", cwd=work),
        "must end in .npy or .safetensors",
    )
    one_line_error(run_cli("embed", "run", "--out", str(emb), cwd=work), "pass --force")
    for out in (emb, emb.with_name("emb.npy.json"), emb.with_suffix(".ids.npy")):
        result = run_cli("index", str(emb), "--out", str(out), "--force", cwd=work)
        one_line_error(result, "is an input of this command")
    one_line_error(run_cli("index", str(emb), "--out", str(index), cwd=work), "pass --force")
    assert {p: _digest(p) for p in before} == before
    ok(run_cli("index", str(emb), "--out", str(index), "--force", cwd=work))
    user = files / "user.npy"
    user.with_suffix(".labels.npy").write_bytes(b"user data")
    one_line_error(
        run_cli("embed", "run", "--out", str(user), "--no-progress", cwd=work),
        "user.labels.npy' exists and is not a file of the supcon embeddings",
    )
    link = files / "link.json"
    os.symlink(emb.with_name("emb.npy.json"), link)
    one_line_error(
        run_cli("fewshot", str(emb), "--json", str(link), "--force", cwd=work),
        "is an input of this command",
    )


def test_search_json_never_replaces_the_index_or_a_query(work: Path, files: Path, run_cli) -> None:
    image = str(work / "images" / "class_0" / "img_0.png")
    before = _digest(Path(image))
    for target in (str(files / "g.faiss"), str(files / "g.faiss.json"), image):
        result = run_cli("search", str(files / "g.faiss"), image, "--json", target, cwd=work)
        one_line_error(result, "is an input of this command")
    assert _digest(Path(image)) == before


def test_disk_full_is_one_line(
    work: Path, files: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    target = files / "full.faiss"
    result = run_cli("index", str(files / "emb.npy"), "--out", str(target), cwd=work)
    one_line_error(result, f"cannot write {str(target)!r}: No space left on device; free disk")
    assert not target.exists() and not [p for p in files.iterdir() if p.suffix == ".tmp"]


def _corrupt(files: Path, name: str, edit) -> Path:
    index = files / name
    (files / f"{name}.json").write_text((files / "g.faiss.json").read_text())
    index.write_bytes((files / "g.faiss").read_bytes())
    meta = json.loads((files / f"{name}.json").read_text())
    edit(index, meta)
    (files / f"{name}.json").write_text(json.dumps(meta))
    return index


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i, m: m.pop("ids"), "lacks key(s) ids; rebuild the index"),
        (lambda i, m: m.pop("faiss_sha256"), "lacks key(s) faiss_sha256"),
        (lambda i, m: m.update(labels=m["labels"][:-1]), "count=48 but labels has 47"),
        (lambda i, m: m.update(params="flat"), "wrong type: params"),
        (lambda i, m: i.write_bytes(b"garbage"), "does not match its metadata"),
        (
            lambda i, m: (
                i.write_bytes(b"IxM2" + bytes(64)),
                m.update(faiss_sha256=hashlib.sha256(b"IxM2" + bytes(64)).hexdigest()),
            ),
            "the file is corrupt: rebuild it",
        ),
        (lambda i, m: m["model"].pop("fingerprint"), "records no model fingerprint"),
    ],
)
def test_broken_indexes_are_one_line(work: Path, files: Path, run_cli, edit, message) -> None:
    index = _corrupt(files, "broken.faiss", edit)
    image = str(work / "images" / "class_1" / "img_2.png")
    one_line_error(run_cli("search", str(index), image, "--run", "run", cwd=work), message)


def test_class_names_and_paths_are_printed_escaped(work: Path, files: Path, run_cli) -> None:
    _corrupt(
        files, "evil.faiss", lambda i, m: m.update(class_names=["\x1b[2Jevil\r", "b", "c", "d"])
    )
    meta = json.loads((files / "evil.faiss.json").read_text())
    meta["paths"] = [p + "\x1b]0;title\x07" for p in meta["paths"]]
    (files / "evil.faiss.json").write_text(json.dumps(meta))
    image = str(work / "images" / "class_0" / "img_3.png")
    out = ok(run_cli("search", str(files / "evil.faiss"), image, "--k", "3", cwd=work))
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b[2Jevil\\r" in out and "\\x1b]0;title\\x07" in out
