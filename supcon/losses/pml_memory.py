"""PML's ``CrossBatchMemory`` (XBM) around a PML pair loss, with a resumable queue position.

PML keeps the queue's write position and fill flag as plain attributes, outside
``state_dict``; :class:`ResumableCrossBatchMemory` adds them as extra state, so a checkpoint
restores the memory exactly. Like PML's wrapper, each call first enqueues the batch
(detached) and then computes the loss of the batch against the whole memory, its own copies
excluded. Only the losses PML lists in ``CrossBatchMemory.supported_losses()`` can be wrapped.
"""

from __future__ import annotations

from typing import Any

from pytorch_metric_learning.losses import CrossBatchMemory


class ResumableCrossBatchMemory(CrossBatchMemory):
    """PML's ``CrossBatchMemory`` whose ``state_dict`` also holds the queue position."""

    def get_extra_state(self) -> dict[str, Any]:
        return {"queue_idx": int(self.queue_idx), "has_been_filled": bool(self.has_been_filled)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.queue_idx = int(state["queue_idx"])
        self.has_been_filled = bool(state["has_been_filled"])


def memory_supported(loss_class_name: str) -> bool:
    """Whether PML's cross-batch memory can wrap this PML loss class."""
    return loss_class_name in CrossBatchMemory.supported_losses()
