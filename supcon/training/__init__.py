"""Training: the loop, optimizer and schedule, checkpoints and logs."""

from supcon.training.loop import TrainingError, train

__all__ = ["TrainingError", "train"]
