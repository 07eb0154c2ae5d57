"""``SupConLoss``: the ``nn.Module`` face of :func:`supcon.losses.functional.supcon_loss`."""

from __future__ import annotations

from torch import Tensor, nn

from supcon.losses.functional import (
    LossStats,
    check_block_size,
    check_path,
    check_tiled,
    supcon_loss_with_stats,
)
from supcon.losses.hcl import check_beta
from supcon.losses.inputs import check_contrast_mode, check_temperature


class SupConLoss(nn.Module):
    """Label-aware NT-Xent: SupCon L_out (Khosla et al., NeurIPS 2020, eq. 2).

    Positives come from class labels, from the views of one sample (``(B, V, D)`` input or
    ``sample_ids``), from an explicit mask, or from a PML miner's ``indices_tuple``. With one
    positive per anchor it is SimCLR's NT-Xent. Values match PML's ``SupConLoss`` on
    ``(N, D)`` + labels and ``SelfSupervisedLoss(NTXentLoss)`` on two views.

    Args:
        temperature: τ > 0.
        base_temperature: Optional; multiplies the loss by ``τ / base_temperature`` as in the
            SupContrast code. ``None`` (default) gives plain L_out.
        contrast_mode: ``"all"`` (every view anchors) or ``"one"`` (only view 0 anchors).
        hcl_beta: Hard-negative concentration β (HCL, Robinson et al. 2021); 0 is plain SupCon.
        tiled: ``True`` / ``False`` forces the row-block / dense path; ``None`` chooses by size.
        block_size: Anchor rows per tile for the tiled path (``None``: automatic).
        gather_distributed: Contrast against the rows of every DDP rank with exact gradients
            (see :func:`supcon.losses.functional.supcon_loss`); a no-op when not distributed.
        path: ``"auto"``, or force ``"dense"``, ``"tiled"`` or ``"sparse"`` (mined pairs only);
            an alternative to ``tiled``.

    Attributes:
        last_stats: :class:`LossStats` of the most recent call (anchors without positives, ...).

    Example:
        >>> loss_fn = SupConLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 2, 128))            # SimCLR: 2 views, no labels
        >>> loss = loss_fn(torch.randn(64, 128), labels)       # supervised
        >>> loss_fn.last_stats.num_anchors_without_positives
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        base_temperature: float | None = None,
        contrast_mode: str = "all",
        hcl_beta: float = 0.0,
        tiled: bool | None = None,
        block_size: int | None = None,
        gather_distributed: bool = False,
        path: str = "auto",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.base_temperature = (
            None
            if base_temperature is None
            else check_temperature(base_temperature, "base_temperature")
        )
        self.contrast_mode = check_contrast_mode(contrast_mode)
        self.hcl_beta = check_beta(hcl_beta)
        self.tiled = check_tiled(tiled)
        self.block_size = check_block_size(block_size)
        self.gather_distributed = bool(gather_distributed)
        check_path(path, self.tiled)
        self.path = path
        self.last_stats: LossStats | None = None

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        sample_ids: Tensor | None = None,
        mask: Tensor | None = None,
        indices_tuple: tuple[Tensor, ...] | None = None,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Compute the loss; see :func:`supcon.losses.functional.supcon_loss` for the arguments.

        Returns:
            Scalar loss.
        """
        loss, self.last_stats = supcon_loss_with_stats(
            embeddings,
            labels,
            sample_ids=sample_ids,
            mask=mask,
            indices_tuple=indices_tuple,
            ref_embeddings=ref_embeddings,
            ref_labels=ref_labels,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            hcl_beta=self.hcl_beta,
            tiled=self.tiled,
            block_size=self.block_size,
            gather_distributed=self.gather_distributed,
            path=self.path,
        )
        return loss

    def extra_repr(self) -> str:
        parts = [
            f"temperature={self.temperature}",
            f"base_temperature={self.base_temperature}",
            f"contrast_mode={self.contrast_mode!r}",
        ]
        if self.hcl_beta:
            parts.append(f"hcl_beta={self.hcl_beta}")
        if self.tiled is not None:
            parts.append(f"tiled={self.tiled}")
        if self.block_size is not None:
            parts.append(f"block_size={self.block_size}")
        if self.gather_distributed:
            parts.append("gather_distributed=True")
        if self.path != "auto":
            parts.append(f"path={self.path!r}")
        return ", ".join(parts)
