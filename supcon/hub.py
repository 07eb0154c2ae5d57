"""Is the Hugging Face hub reachable? One quick probe, so an offline machine fails in seconds.

Without it, ``timm.create_model(name, pretrained=True)`` on a machine without a network retries
every candidate file five times with back-off (about 50 s) before giving up. The probe opens
one TCP connection to the hub endpoint (or the HTTPS proxy) with a short deadline that also
covers the DNS lookup; when it fails, the download runs in Hugging Face's offline mode, so
weights already in the local cache still load and missing ones fail at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 1.5
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = ("1", "on", "yes", "true")


def offline_by_environment() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def probe_target() -> tuple[str, int]:
    """``(host, port)`` a download would connect to first: the HTTPS proxy, else the endpoint."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = proxy or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return parts.hostname or "", port


def _connect(host: str, port: int, timeout: float, outcome: list[str | None]) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            outcome.append(None)
    except OSError as exc:
        outcome.append(f"{type(exc).__name__}: {exc}".strip(": "))


def hub_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached, or ``None`` when it answers.

    Args:
        timeout: Deadline in seconds for the whole probe (DNS lookup and TCP connect); the
            lookup runs in a daemon thread, so a resolver that hangs cannot hold the caller.

    Returns:
        ``None`` if a TCP connection to the endpoint opened in time, else a short reason.
    """
    if offline_by_environment():
        return "HF_HUB_OFFLINE is set"
    host, port = probe_target()
    if not host:
        return "no hub host configured (HF_ENDPOINT / HTTPS_PROXY)"
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=_connect, args=(host, port, timeout, outcome), daemon=True, name="hub-probe"
    )
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer from {host}:{port} within {timeout:g} s"
    if outcome[0] is not None:
        return f"cannot connect to {host}:{port}: {outcome[0]}"
    return None


@contextlib.contextmanager
def hub_offline_mode(enabled: bool = True) -> Iterator[None]:
    """Make ``huggingface_hub`` use only its local cache inside the block (when ``enabled``)."""
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without huggingface_hub downloads from plain URLs
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
