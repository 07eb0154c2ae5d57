"""The output rules of :mod:`supcon.outputs` on their own, and ``train --out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supcon.cli import main
from supcon.errors import UserError
from supcon.outputs import EVAL_REPORT, INDEX, check_outputs

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "recipes" / "digits.yaml")


def test_own_kind_is_recognised_by_content(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"format": "supcon-eval/1", "metrics": {}}))
    with pytest.raises(UserError, match="pass --force"):
        check_outputs([(report, EVAL_REPORT)], option="--json", force=False)
    check_outputs([(report, EVAL_REPORT)], option="--json", force=True)
    for other in ({"format": "supcon-search/1"}, {"metrics": 1}, [1, 2]):
        report.write_text(json.dumps(other))
        with pytest.raises(UserError, match="is not a supcon eval report"):
            check_outputs([(report, EVAL_REPORT)], option="--json", force=True)
    index = tmp_path / "x.faiss"
    index.write_bytes(b"faiss")
    with pytest.raises(UserError, match="is not a supcon index"):
        check_outputs([(index, INDEX)], option="--out", force=True)
    (tmp_path / "x.faiss.json").write_text('{"format": "supcon-index/1"}')
    check_outputs([(index, INDEX)], option="--out", force=True)


def test_inputs_are_found_through_links(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"format": "supcon-eval/1"}))
    hard, soft = tmp_path / "hard.json", tmp_path / "soft.json"
    hard.hardlink_to(source)
    soft.symlink_to(source)
    for target in (source, hard, soft):
        with pytest.raises(UserError, match="is an input of this command"):
            check_outputs([(target, EVAL_REPORT)], option="--json", force=True, inputs=[source])
    new = tmp_path / "new.json"
    check_outputs([(new, EVAL_REPORT)], option="--json", force=False, inputs=[source])


def test_train_out_must_be_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text("mine")
    for out, message in ((afile, "is a file"), (home, "not a supcon run")):
        assert main(["train", DIGITS, "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert afile.read_text() == "mine" and sorted(p.name for p in home.iterdir()) == ["config.yml"]
