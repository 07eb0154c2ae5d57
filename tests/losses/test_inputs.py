"""Argument checks of the loss engine's options: ValueError naming the argument and the fix."""

from __future__ import annotations

import pytest
import torch

from supcon import SupConLoss, supcon_loss


def _emb(n: int = 6, d: int = 4) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_size": 0}, "block_size must be a positive int"),
        ({"block_size": -3}, "block_size"),
        ({"block_size": 2.5}, "block_size"),
        ({"block_size": True}, "block_size"),
        ({"tiled": "yes"}, "tiled must be True"),
        ({"hcl_beta": -1.0}, "hcl_beta"),
        ({"base_temperature": 0}, "base_temperature"),
        ({"ref_embeddings": torch.randn(3, 4), "ref_labels": torch.arange(2)}, "ref_labels has 2"),
        ({"ref_labels": torch.arange(3)}, "ref_labels was given without ref_embeddings"),
        ({"ref_embeddings": torch.randn(3, 4)}, "ref_embeddings needs ref_labels"),
        (
            {"ref_embeddings": torch.full((3, 4), float("inf")), "ref_labels": torch.arange(3)},
            "ref_embeddings contains NaN or inf",
        ),
        (
            {"ref_embeddings": torch.randn(3, 4), "ref_labels": torch.ones(3, 2)},
            "ref_labels must have the same layout",
        ),
        (
            {"indices_tuple": (torch.tensor([0]), torch.tensor([9]), torch.tensor([0]))},
            "outside the batch of 6 rows",
        ),
        ({"indices_tuple": (torch.tensor([0]), torch.tensor([1]))}, "indices_tuple must be"),
        (
            {
                "indices_tuple": (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])),
                "ref_embeddings": torch.randn(3, 4),
                "ref_labels": torch.arange(3),
            },
            "cannot be combined with ref_embeddings",
        ),
    ],
)
def test_bad_options_raise_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        supcon_loss(_emb(), torch.arange(6) % 2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_size": 0}, "block_size"),
        ({"tiled": 1}, "tiled"),
        ({"hcl_beta": float("nan")}, "hcl_beta"),
    ],
)
def test_module_checks_options_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SupConLoss(**kwargs)


def test_empty_reference_set_is_ignored() -> None:
    emb, labels = _emb(), torch.arange(6) % 2
    plain = supcon_loss(emb, labels)
    empty = supcon_loss(emb, labels, ref_embeddings=torch.zeros(0, 4), ref_labels=torch.zeros(0))
    assert empty.item() == plain.item()


def test_gather_is_a_no_op_without_a_process_group() -> None:
    emb, labels = _emb(), torch.arange(6) % 2
    gathered = supcon_loss(emb, labels, gather_distributed=True)
    assert gathered.item() == supcon_loss(emb, labels).item()


def test_module_repr_lists_the_options() -> None:
    text = repr(SupConLoss(0.2, hcl_beta=0.5, tiled=True, block_size=64, gather_distributed=True))
    for part in ("temperature=0.2", "hcl_beta=0.5", "tiled=True", "block_size=64", "gather"):
        assert part in text


def test_prepare_batch_gathers_only_when_asked_and_keeps_what_the_gather_says(
    monkeypatch,
) -> None:
    """A stand-in gather puts another rank's two rows first: the batch must then be marked
    distributed (so counts are all-reduced), with the anchors at offset 2. Without
    gather_distributed (the default) nothing is gathered, even inside a process group."""
    from dataclasses import replace

    from supcon.losses import inputs

    calls = []

    def gather(rows):
        calls.append(rows)
        other = torch.zeros(2, rows.flat.shape[1], dtype=rows.flat.dtype)
        keys = torch.cat([torch.tensor([7, 8]), rows.keys])
        return replace(rows, flat=torch.cat([other, rows.flat]), keys=keys), 2, True

    monkeypatch.setattr(inputs, "gather_rows", gather)
    emb, labels = _emb(), torch.arange(6) % 3
    local = inputs.prepare_batch(emb, labels)
    assert calls == [] and local.distributed is False and local.anchor_offset == 0
    assert local.candidates.shape == (6, 4)
    gathered = inputs.prepare_batch(emb, labels, gather_distributed=True)
    assert len(calls) == 1 and gathered.distributed is True
    assert gathered.anchor_offset == gathered.structure.anchor_offset == 2
    assert gathered.num_batch_rows == 8 and gathered.structure.num_anchors == 6
    assert torch.equal(gathered.candidates[2:], emb)


def test_references_take_the_embeddings_dtype() -> None:
    """float64 queue rows with float32 embeddings: the loss is computed in float32."""
    from supcon.losses.inputs import prepare_batch

    emb, labels = _emb(), torch.arange(6) % 3
    refs = torch.randn(3, 4, dtype=torch.float64)
    batch = prepare_batch(emb, labels, ref_embeddings=refs, ref_labels=torch.tensor([0, 1, 2]))
    assert batch.candidates.dtype == torch.float32
    assert torch.equal(batch.candidates[6:], refs.float())
    assert batch.structure.keys is not None and batch.structure.keys.dtype == torch.int64
