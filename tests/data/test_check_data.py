"""``supcon check-data``: every bad file listed, exit 1; clean data exit 0; bad recipe exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supcon.cli import main
from tests.badfiles import EXPECTED_KIND, write_bad_files
from tests.images import make_image_folder


def _recipe(tmp_path: Path, root: Path) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "folder", "root": str(root)}}))
    return str(path)


def test_lists_every_bad_file_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_image_folder(tmp_path / "d", classes=2, per_class=4)
    bad = write_bad_files(root / "class_0")
    weird = root / "class_1" / "\x1b[31mred.jpg"
    weird.write_bytes(b"")
    (root / "class_1" / "._img_0.png").write_bytes(b"\x00\x05\x16\x07")
    code = main(["check-data", _recipe(tmp_path, root), "--no-progress", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1
    for name, path in bad.items():
        line = next(x for x in out.splitlines() if x.startswith(str(path.resolve())))
        assert EXPECTED_KIND[name] in line
    assert "\x1b" not in out and "\\x1b[31mred.jpg" in out  # escaped, not executed
    assert "._img_0" not in out
    assert "14 images checked" in out and "6 bad images (" in out


def test_clean_data_exits_0_and_overrides_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = make_image_folder(tmp_path / "d", classes=2, per_class=3)
    recipe = _recipe(tmp_path, tmp_path / "elsewhere")
    assert main(["check-data", recipe, f"data.root={root}", "--no-progress"]) == 0
    assert "6 images checked" in capsys.readouterr().out
    assert main(["check-data", recipe, f"data.root={root}", "data.max_image_pixels=100"]) == 1
    assert "6 bad images (6 too large)" in capsys.readouterr().out


def test_a_bad_recipe_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["check-data", _recipe(tmp_path, tmp_path / "nowhere"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
