"""Run a model in eval mode for a while and give every submodule back the mode it had."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts ``model`` in eval mode inside the block and restores each submodule's own mode after.

    ``model.train(was_training)`` is not the inverse of ``model.eval()``: it sets every
    submodule to the same mode, which would switch a frozen backbone (kept in eval mode so its
    BatchNorm statistics stay put) back to training. This restores the mode module by module.

    Args:
        model: Any module.

    Yields:
        ``model``, in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
