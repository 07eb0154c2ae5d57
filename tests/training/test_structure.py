"""The training loop stays readable: train() fits on a screen or two and calls named pieces."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import torch
from pytorch_metric_learning.losses import ContrastiveLoss

from supcon.losses import SupConLoss
from supcon.training import loop
from supcon.training.criterion import anchors_without_positives

TRAINING = Path(loop.__file__).parent
PIECES = ("loop.py", "setup.py", "epoch.py", "saving.py", "evaluate.py", "run.py")


def test_train_reads_in_under_100_lines_and_calls_the_pieces() -> None:
    source = inspect.getsource(loop.train)
    assert len(source.splitlines()) < 100
    called = {
        node.func.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert {"setup", "train_one_epoch", "evaluate_run", "checkpoint"} <= called


def test_loop_pieces_have_no_closures_or_lambdas() -> None:
    found = []
    for name in PIECES:
        tree = ast.parse((TRAINING / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Lambda):
                found.append(f"{name}:{node.lineno} lambda")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if n is not node
                         and isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]  # fmt: skip
                found += [f"{name}:{n.lineno} {n.name} inside {node.name}" for n in inner]
    assert not found, found


def test_anchors_without_positives_is_reported_by_supcon_only() -> None:
    embeddings = torch.randn(6, 4)
    supcon = SupConLoss()
    assert anchors_without_positives(supcon) is None  # before any step
    supcon(embeddings, torch.tensor([0, 0, 1, 1, 2, 3]))  # classes 2 and 3 are singletons
    assert anchors_without_positives(supcon) == 2
    pml = ContrastiveLoss()
    pml(embeddings, torch.tensor([0, 0, 1, 1, 2, 3]))
    assert anchors_without_positives(pml) is None
