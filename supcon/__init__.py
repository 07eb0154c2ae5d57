"""supcon: supervised contrastive (SupCon / NT-Xent) metric learning for PyTorch.

The public names are imported on first use (PEP 562), so ``supcon --help`` and
``import supcon`` do not pay for torch until a name that needs it is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supcon._lazy import lazy_exports

#: The package version: its one source (pyproject.toml reads it; ``supcon --version`` prints it).
__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "BatchDiagnostics": "supcon.losses",
    "CrossBatchMemory": "supcon.losses",
    "LossStats": "supcon.losses",
    "SupConLoss": "supcon.losses",
    "batch_diagnostics": "supcon.losses",
    "loss_bounds": "supcon.losses",
    "supcon_loss": "supcon.losses",
    "retrieval_metrics": "supcon.evaluation.metrics",
}

__all__ = [
    "BatchDiagnostics",
    "CrossBatchMemory",
    "LossStats",
    "SupConLoss",
    "__version__",
    "batch_diagnostics",
    "loss_bounds",
    "retrieval_metrics",
    "supcon_loss",
]

if TYPE_CHECKING:
    from supcon.evaluation.metrics import retrieval_metrics
    from supcon.losses import (
        BatchDiagnostics,
        CrossBatchMemory,
        LossStats,
        SupConLoss,
        batch_diagnostics,
        loss_bounds,
        supcon_loss,
    )


__getattr__, __dir__ = lazy_exports("supcon", _EXPORTS, globals())
