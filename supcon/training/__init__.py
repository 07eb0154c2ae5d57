"""Training: the loop, AMP, GradCache, optimizer and schedule, checkpoints, resume and logs.

The names below load on first use, so importing a small piece (``supcon.training.gradcache``)
does not pull in timm and the data pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supcon.distributed import distributed_session
    from supcon.training.loop import TrainingError, train
    from supcon.training.preempt import Preempted

_EXPORTS = {
    "TrainingError": "supcon.training.loop",
    "train": "supcon.training.loop",
    "distributed_session": "supcon.distributed",
    "Preempted": "supcon.training.preempt",
}
__all__ = ["Preempted", "TrainingError", "distributed_session", "train"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'supcon.training' has no attribute {name!r}")
