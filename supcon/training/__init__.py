"""Training: the loop, AMP, GradCache, optimizer and schedule, checkpoints, resume and logs."""

from supcon.training.distributed import distributed_session
from supcon.training.loop import TrainingError, train

__all__ = ["TrainingError", "distributed_session", "train"]
