"""What a checkpoint holds, and how RNG state is captured and restored for an exact resume.

A resumed run continues bit for bit when it restores the model, optimizer, scheduler, gradient
scaler, the position in the epoch's batch order and every RNG stream the step consumes
(Python, NumPy, torch CPU and CUDA). Data augmentation draws from per-sample seeds
(:class:`supcon.data.MultiViewDataset`), so it needs no saved state.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Progress:
    """Where training stands.

    Attributes:
        epoch: The current epoch (0-based); equals the epoch count once training is done.
        batch: Batches of ``epoch`` already consumed.
        step: Optimizer steps taken in total.
        best_value: Best value of ``train.best_metric`` so far (``None`` before any eval).
        best_step: Step of that evaluation.
        skipped_steps: Steps skipped for a non-finite loss or gradient
            (``train.on_nonfinite: skip``).
        nonfinite_in_row: Non-finite steps in a row up to ``step``.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    skipped_steps: int = 0
    nonfinite_in_row: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capture_rng() -> dict[str, Any]:
    """Every RNG stream of this process, as tensors and plain values (``weights_only``-safe)."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
