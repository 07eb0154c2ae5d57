"""Checks run before any data is loaded: names and arguments the config alone determines.

``config.validate`` already checks types, ranges, the loss, ``eval.ks`` and
``train.best_metric``; here the miner is built and the sampler's arguments are matched against
its signature, so a typo fails in a second instead of after the data is scanned (or, for the
best metric, after the whole run).
"""

from __future__ import annotations

from supcon.arguments import reject_arguments
from supcon.builders import build_miner
from supcon.config import Config


def check_components(config: Config) -> None:
    """Build the miner and check the sampler's arguments; raise on the first problem.

    Raises:
        ValueError: one line naming the recipe key and the valid choices.
    """
    try:
        build_miner(config.miner)
    except ValueError as exc:
        raise ValueError(f"miner.name={config.miner.name}: {exc}") from None
    name, args = config.sampler.name, dict(config.sampler.args)
    if name == "random":
        reject_arguments("sampler", "random", args, noun="args")
        return
    from supcon.samplers import check_sampler_arguments

    try:
        check_sampler_arguments(name, args)
    except ValueError as exc:
        raise ValueError(f"sampler.name={name}: {exc}") from None
