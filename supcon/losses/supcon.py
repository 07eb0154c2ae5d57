"""``SupConLoss``: the ``nn.Module`` face of :func:`supcon.losses.functional.supcon_loss`."""

from __future__ import annotations

from torch import Tensor, nn

from supcon.losses.functional import LossStats, supcon_loss_with_stats
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

    Attributes:
        last_stats: :class:`LossStats` of the most recent call (anchors without positives, ...).

    Example:
        >>> loss_fn = SupConLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 2, 128))            # SimCLR: 2 views, no labels
        >>> loss = loss_fn(torch.randn(64, 128), labels)       # supervised
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        base_temperature: float | None = None,
        contrast_mode: str = "all",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.base_temperature = (
            None
            if base_temperature is None
            else check_temperature(base_temperature, "base_temperature")
        )
        self.contrast_mode = check_contrast_mode(contrast_mode)
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
        )
        return loss

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"contrast_mode={self.contrast_mode!r}"
        )
