"""The training loop: data → views → model → SupCon loss → AdamW, then a retrieval evaluation."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from supcon.builders import build_loss, build_model
from supcon.config import Config, config_to_dict, config_to_yaml
from supcon.data import (
    EvalDataset,
    MultiViewDataset,
    Split,
    build_transforms,
    input_channels,
    load_splits,
)
from supcon.data.transforms import Transform
from supcon.evaluation import embed_dataset, retrieval_metrics
from supcon.io import atomic_write_json, atomic_write_text
from supcon.training.checkpoint import save_checkpoint
from supcon.training.logging import CsvLog, provenance
from supcon.training.optim import build_optimizer, build_scheduler


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, impossible batch); the message says why."""


LOG_COLUMNS = [
    "epoch",
    "step",
    "loss",
    "lr",
    "images_per_s",
    "anchors_without_positives",
    "elapsed_s",
]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; refuses ``cuda`` on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(
            f"train.device={name!r} but CUDA is not available; use train.device=cpu"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model: torch.nn.Module,
    split: Split,
    transform: Transform | None,
    config: Config,
    device: torch.device,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on a held-out split.

    Leave-one-out over the split, or query → gallery when the split carries ``is_query`` /
    ``is_gallery`` flags. Unlabeled splits give no metrics (an empty dict).
    """
    if not split.labeled:
        return {}
    embeddings, labels = embed_dataset(
        model,
        EvalDataset(split, transform),
        batch_size=config.eval.batch_size,
        device=device,
        num_workers=config.data.num_workers,
    )
    if split.is_query is None and split.is_gallery is None:
        return retrieval_metrics(embeddings, labels, ks=config.eval.ks)
    query = split.is_query if split.is_query is not None else np.ones(len(labels), bool)
    gallery = split.is_gallery if split.is_gallery is not None else np.ones(len(labels), bool)
    return retrieval_metrics(
        embeddings[query], labels[query], embeddings[gallery], labels[gallery], ks=config.eval.ks
    )


def train(config: Config, run_dir: str | Path, *, progress: bool = True) -> dict[str, float]:
    """Train on the configured data, evaluate on the held-out split and fill ``run_dir``.

    Writes ``config.yaml``, ``meta.json``, ``log.csv``, ``checkpoints/last.pt`` and
    ``metrics.json`` into ``run_dir``.

    Args:
        config: The resolved run configuration.
        run_dir: Output folder (created).
        progress: Show tqdm bars.

    Returns:
        The held-out retrieval metrics.

    Raises:
        TrainingError: when the loss stops being finite or the data cannot form a batch.
    """
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
    atomic_write_json(run_dir / "meta.json", provenance())

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed)
    device = resolve_device(config.train.device)

    train_split, test_split = load_splits(config.data, config.train.seed)
    if config.loss.use_labels and not train_split.labeled:
        raise TrainingError(
            "the training data has no labels; set loss.use_labels=false to train NT-Xent on "
            "augmentation pairs, or add a label column"
        )
    if len(train_split) < config.train.batch_size:
        raise TrainingError(
            f"train.batch_size={config.train.batch_size} is larger than the training split "
            f"({len(train_split)} images); lower train.batch_size"
        )
    in_chans = input_channels(config.data)
    model = build_model(config.model, in_chans).to(device)
    train_transform, eval_transform = build_transforms(config.data, model.backbone)
    dataset = MultiViewDataset(train_split, train_transform, config.data.views)
    loader = DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.data.num_workers,
        generator=torch.Generator().manual_seed(config.train.seed),
    )

    loss_fn = build_loss(config.loss)
    optimizer = build_optimizer(model, config.optim.lr, config.optim.weight_decay)
    steps_per_epoch = len(loader)
    scheduler = build_scheduler(
        optimizer,
        total_steps=config.train.epochs * steps_per_epoch,
        warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
        min_ratio=config.optim.min_lr_ratio,
    )

    log = CsvLog(run_dir / "log.csv", LOG_COLUMNS)
    start_time = time.perf_counter()
    step = 0
    try:
        for epoch in range(config.train.epochs):
            model.train()
            bar = tqdm(
                loader,
                desc=f"epoch {epoch + 1}/{config.train.epochs}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            )
            for views, labels, _ in bar:
                step_start = time.perf_counter()
                num_samples, num_views = views.shape[:2]
                embeddings = model(views.flatten(0, 1).to(device, non_blocking=True))
                embeddings = embeddings.view(num_samples, num_views, -1)
                loss = loss_fn(embeddings, labels.to(device) if config.loss.use_labels else None)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step}; lower optim.lr or raise "
                        "loss.temperature. The last good checkpoint is in "
                        f"{run_dir / 'checkpoints'}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                images_per_s = num_samples * num_views / (time.perf_counter() - step_start)
                lr = optimizer.param_groups[0]["lr"]
                bar.set_postfix(
                    loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.0f}"
                )
                stats = loss_fn.last_stats
                log.write(
                    {
                        "epoch": epoch,
                        "step": step,
                        "loss": f"{loss.item():.6f}",
                        "lr": f"{lr:.6e}",
                        "images_per_s": f"{images_per_s:.1f}",
                        "anchors_without_positives": stats.num_anchors_without_positives
                        if stats
                        else "",
                        "elapsed_s": f"{time.perf_counter() - start_time:.2f}",
                    }
                )
            save_checkpoint(
                run_dir / "checkpoints" / "last.pt",
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "config": config_to_dict(config),
                    "in_chans": in_chans,
                    "class_names": list(train_split.class_names),
                },
            )
    finally:
        log.close()

    metrics = evaluate(model, test_split, eval_transform, config, device)
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics
