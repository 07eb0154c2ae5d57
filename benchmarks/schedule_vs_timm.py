"""Could timm's ``CosineLRScheduler`` replace supcon's warmup + cosine schedule? How far apart.

    python benchmarks/schedule_vs_timm.py

supcon's schedule (:func:`supcon.training.optim.build_scheduler`) scales every parameter group
by the same multiplier, so each group warms up from and decays to ``min_lr_ratio`` of its own
peak. timm's ``lr_min`` and ``warmup_lr_init`` are absolute values shared by all groups. timm is
set to its closest match (decay after the warmup, ``warmup_prefix=True``; floor and warmup start
of the head group) and stepped per update (``step_update``); the table gives, per setting, the
largest relative difference of each group's rate over the run.

Prints a markdown table and writes ``benchmarks/results/schedule_vs_timm.json`` atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402
from supcon.training.optim import build_scheduler  # noqa: E402

#: name -> (peak rate of each group, total steps, warmup steps, min_lr_ratio)
SETTINGS = {
    "one group, no warmup, ratio 0": ({"head": 1e-3}, 100, 0, 0.0),
    "one group, warmup 10, ratio 0.01 (defaults)": ({"head": 1e-3}, 100, 10, 0.01),
    "head 1e-3 + backbone 1e-4 (cub200_resnet50)": (
        {"head": 1e-3, "backbone": 1e-4},
        100,
        10,
        0.01,
    ),
}


def _optimizer(peaks: dict[str, float]) -> torch.optim.Optimizer:
    groups = [{"name": n, "params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
              for n, lr in peaks.items()]  # fmt: skip
    return torch.optim.SGD(groups, lr=1.0)


def worst_difference(
    peaks: dict[str, float], total: int, warmup: int, ratio: float
) -> dict[str, float]:
    """Per group, the largest ``|timm - supcon| / supcon`` rate over ``total`` steps."""
    from timm.scheduler import CosineLRScheduler

    ours_opt, timm_opt = _optimizer(peaks), _optimizer(peaks)
    ours = build_scheduler(ours_opt, total, warmup, ratio)
    head = next(iter(peaks.values()))
    theirs = CosineLRScheduler(
        timm_opt,
        t_initial=total - warmup,
        lr_min=ratio * head,
        warmup_t=warmup,
        warmup_lr_init=head / max(warmup, 1),
        warmup_prefix=True,
        t_in_epochs=False,
    )
    worst = dict.fromkeys(peaks, 0.0)
    for step in range(total):
        theirs.step_update(step)
        for a, b in zip(ours_opt.param_groups, timm_opt.param_groups, strict=True):
            worst[a["name"]] = max(worst[a["name"]], abs(a["lr"] - b["lr"]) / a["lr"])
        ours_opt.step()
        ours.step()
    return worst


def main() -> None:
    results = {name: worst_difference(*setting) for name, setting in SETTINGS.items()}
    print("| setting | largest relative difference per group |")
    print("|---|---|")
    for name, worst in results.items():
        print(f"| {name} | {', '.join(f'{g}: {v:.3g}' for g, v in worst.items())} |")
    atomic_write_json(ROOT / "benchmarks" / "results" / "schedule_vs_timm.json", results)


if __name__ == "__main__":
    main()
