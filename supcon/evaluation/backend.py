"""Where evaluation runs: FAISS on GPU when it can be (the torch device: :mod:`supcon.devices`).

Fallbacks are never silent: each is said once per process on the ``supcon`` logger (printed
to stderr when no logging is configured).
"""

from __future__ import annotations

import logging
from typing import Any


def _faiss() -> Any:
    """The faiss module, imported on first use (``import supcon`` stays light)."""
    import faiss

    return faiss


LOGGER = logging.getLogger("supcon")
_said: set[str] = set()


def say(message: str) -> None:
    """Tell the user something they should know (stderr unless logging is configured)."""
    LOGGER.warning(message)


def say_once(message: str) -> None:
    """:func:`say` ``message`` the first time only."""
    if message not in _said:
        _said.add(message)
        say(message)


def faiss_gpu_count() -> int:
    """GPUs FAISS can use (0 for the faiss-cpu package)."""
    if not hasattr(_faiss(), "StandardGpuResources"):
        return 0
    return int(_faiss().get_num_gpus())


def faiss_gpu_or_say(wanted: bool) -> bool:
    """Whether to put a FAISS index on the GPU; says once why not when one was wanted."""
    if not wanted:
        return False
    if faiss_gpu_count() > 0:
        return True
    say_once(
        "FAISS has no GPU here (faiss-cpu is installed, or no GPU is visible); FAISS indexes "
        "search on the CPU. Install faiss-gpu for GPU search."
    )
    return False
