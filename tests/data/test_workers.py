"""``data.num_workers: auto`` and ``--num-workers``: workers from the cores this process may use."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from supcon.config import ConfigError, DataConfig, config_from_dict
from supcon.data import workers
from supcon.data.workers import auto_num_workers, resolve_num_workers


@pytest.mark.parametrize(
    ("cores", "processes", "expected"),
    [
        (1, 1, 0),
        (2, 1, 0),  # this machine: the model's threads already use both cores
        (3, 1, 2),
        (4, 1, 3),
        (9, 1, 8),
        (64, 1, 8),  # capped
        (16, 8, 0),  # 2 cores per torchrun process
        (32, 4, 7),
    ],
)
def test_auto_rule(cores: int, processes: int, expected: int) -> None:
    assert auto_num_workers(cores, processes) == expected


def test_auto_uses_the_affinity_mask_and_local_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert resolve_num_workers("auto") == 5
    assert resolve_num_workers("auto", in_memory=True) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resolve_num_workers("auto") == 2
    assert resolve_num_workers(3) == 3  # explicit values are kept


@pytest.mark.parametrize("value", [-1, "many", 1.5, True])
def test_bad_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="'auto' or an integer"):
        resolve_num_workers(value)  # type: ignore[arg-type]


def test_config_default_is_auto_and_bad_values_name_the_key() -> None:
    assert DataConfig().num_workers == "auto"
    assert config_from_dict({"data": {"num_workers": "auto"}}).data.num_workers == "auto"
    assert config_from_dict({"data": {"num_workers": 2}}).data.num_workers == 2
    with pytest.raises(ConfigError, match=r"data.num_workers must be 'auto' or ≥ 0"):
        config_from_dict({"data": {"num_workers": -1}})
    with pytest.raises(ConfigError, match=r"data.num_workers must be int \| 'auto'"):
        config_from_dict({"data": {"num_workers": "many"}})


def test_cli_commands_take_num_workers_instead_of_the_recipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``embed_items`` resolves ``--num-workers``, never the run's ``data.num_workers: 8``."""
    from supcon.cli import build_parser
    from supcon.commands import _evaldata
    from supcon.evaluation import embed as embed_module

    for command in ("eval", "embed", "fewshot"):
        extra = ["--out", "x.npy"] if command == "embed" else []
        args = build_parser().parse_args([command, "run", *extra])
        assert args.num_workers == "auto"
        assert (
            build_parser().parse_args([command, "run", *extra, "--num-workers", "3"]).num_workers
            == 3
        )
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    seen = {}

    def fake_extract(model, dataset, **kwargs):
        seen["num_workers"] = kwargs["num_workers"]
        raise RuntimeError("stop")

    monkeypatch.setattr(embed_module, "extract_embeddings", fake_extract)
    run = SimpleNamespace(
        model=None,
        eval_transform=None,
        config=config_from_dict({"data": {"num_workers": 8}}),
    )
    items = SimpleNamespace(paths=("a.png",), labels=[0])
    for given, expected in (("auto", 0), (1, 1)):
        args = SimpleNamespace(batch_size=4, num_workers=given, no_progress=True)
        with pytest.raises(RuntimeError, match="stop"):
            _evaldata.embed_items(run, items, args, device="cpu")
        assert seen["num_workers"] == expected


def test_cli_refuses_a_bad_num_workers(capsys: pytest.CaptureFixture) -> None:
    from supcon.cli import main

    with pytest.raises(SystemExit) as info:
        main(["eval", "run", "--num-workers", "lots"])
    assert info.value.code == 2
    assert "must be 'auto' or an integer ≥ 0" in capsys.readouterr().err
