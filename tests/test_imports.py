"""Start-up stays light: the loss and the metrics import no heavy optional library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("timm", "faiss", "sklearn", "matplotlib", "torchvision", "pytorch_metric_learning")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_loss_and_metrics_import_no_heavy_library() -> None:
    assert _loaded_after("from supcon import SupConLoss, retrieval_metrics") == []


def test_evaluation_names_load_on_first_use() -> None:
    loaded = _loaded_after(
        "import supcon.evaluation as e\nassert e.retrieval_metrics and e.SearchIndex"
    )
    assert "faiss" in loaded  # SearchIndex needs it; asking for the name imports it


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom supcon.cli import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_names_resolve_to_their_modules() -> None:
    import supcon
    from supcon.evaluation.metrics import retrieval_metrics
    from supcon.losses import SupConLoss

    assert supcon.SupConLoss is SupConLoss and supcon.retrieval_metrics is retrieval_metrics
    assert set(supcon.__all__) <= set(dir(supcon))


def test_training_on_image_folders_does_not_import_sklearn() -> None:
    """scikit-learn (with scipy.stats) costs seconds of start-up; only the digits and
    per-sample splits need it, and they import it themselves."""
    loaded = _loaded_after("import supcon.training.loop, supcon.data, supcon.commands.train")
    assert "sklearn" not in loaded and "timm" in loaded
