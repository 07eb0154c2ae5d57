"""An offline Hugging Face hub is detected in ≤ 2 s, and pretrained weights then fail at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from supcon import hub
from supcon.models import create_backbone

LIMIT_S = 2.0


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unresolvable_endpoint_is_reported_within_the_limit(no_env) -> None:
    no_env.setenv("HF_ENDPOINT", "https://no-such-host.invalid")
    start = time.perf_counter()
    reason = hub.hub_unreachable()
    assert time.perf_counter() - start <= LIMIT_S
    assert reason is not None and "no-such-host.invalid:443" in reason


def test_hanging_lookup_is_cut_at_the_deadline(no_env) -> None:
    """A resolver or connect that hangs (firewall dropping packets) ignores socket timeouts."""
    no_env.setenv("HF_ENDPOINT", "https://hub.example")

    def hang(*args: object, **kwargs: object) -> None:
        time.sleep(5)
        raise TimeoutError("late")

    no_env.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    reason = hub.hub_unreachable()
    elapsed = time.perf_counter() - start
    assert reason == "no answer from hub.example:443 within 1.5 s"
    assert hub.PROBE_TIMEOUT_S <= elapsed <= LIMIT_S


def test_listening_endpoint_is_reachable(no_env) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        no_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub.hub_unreachable() is None
    # Closed now: the same port refuses.
    assert "127.0.0.1" in (hub.hub_unreachable() or "")


def test_proxy_is_probed_instead_of_the_endpoint(no_env) -> None:
    no_env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.probe_target() == ("proxy.example", 3128)


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_environment_needs_no_probe(no_env, value: str) -> None:
    no_env.setenv("HF_HUB_OFFLINE", value)
    no_env.setattr(hub, "_connect", lambda *a: pytest.fail("probed although offline"))
    assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_offline_mode_is_restored() -> None:
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    with pytest.raises(KeyError), hub.hub_offline_mode():
        assert constants.HF_HUB_OFFLINE is True
        raise KeyError
    assert before == constants.HF_HUB_OFFLINE


def test_pretrained_weights_offline_fail_fast_with_the_fix(no_env, tmp_path: Path) -> None:
    from huggingface_hub import constants

    no_env.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    no_env.setenv("HF_ENDPOINT", "https://no-such-host.invalid")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"hub unreachable: .*no-such-host") as info:
        create_backbone("test_resnet", pretrained=True)
    assert time.perf_counter() - start <= LIMIT_S
    assert "model.weights=FILE" in str(info.value)
    assert "model.pretrained=false" in str(info.value)
