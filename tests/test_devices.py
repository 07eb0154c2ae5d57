"""One device rule for training, evaluation and the CLI (:mod:`supcon.devices`)."""

from __future__ import annotations

import pytest
import torch

from supcon.devices import DeviceError, resolve_device
from supcon.errors import UserError


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_is_the_cpu_without_cuda(no_cuda) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_and_cuda_are_this_process_gpu(fake_cuda, monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")  # torchrun's fourth process on this node
    assert resolve_device("auto") == torch.device("cuda", 3)
    assert resolve_device("cuda") == torch.device("cuda", 3)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("option", ["device", "train.device", "--device"])
def test_cuda_without_cuda_is_one_line_naming_the_setting_and_the_fix(no_cuda, option) -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda:0", option=option)
    message = str(info.value)
    assert "\n" not in message and f"{option}=cuda:0" in message and f"{option}=cpu" in message
    # The CLI reports it as a user error; Python callers may catch ValueError as before.
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["tpu", "mps", "cuda:x", ""])
def test_other_devices_are_refused(name) -> None:
    with pytest.raises(DeviceError, match="must be auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_none_follows_the_inputs() -> None:
    assert resolve_device(None, torch.zeros(2), "not a tensor") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
