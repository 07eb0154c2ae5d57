"""Checks run before any data is loaded: names and arguments the config alone determines.

``config.validate`` already checks types, ranges, the loss, ``eval.ks`` and
``train.best_metric``; here the miner is built and the sampler's arguments are matched against
its signature, so a typo fails in a second instead of after the data is scanned (or, for the
best metric, after the whole run).
"""

from __future__ import annotations

import inspect

from supcon.builders import build_miner
from supcon.config import Config, ConfigError


def check_components(config: Config) -> None:
    """Build the miner and check the sampler's arguments; raise on the first problem.

    Raises:
        ValueError: one line naming the recipe key and the valid choices.
    """
    try:
        build_miner(config.miner)
    except ValueError as exc:
        raise ConfigError(f"miner.name={config.miner.name}: {exc}") from None
    name, args = config.sampler.name, dict(config.sampler.args)
    if name == "random":
        if args:
            raise ConfigError(f"sampler 'random' takes no args, got {sorted(args)}")
        return
    from supcon.samplers import SAMPLERS

    params = inspect.signature(SAMPLERS[name].__init__).parameters
    own = [
        p
        for p in params
        if p not in ("self", "labels", "batch_size", "num_replicas", "rank", "seed")
    ]
    unknown = sorted(set(args) - set(own))
    missing = [p for p in own if params[p].default is inspect.Parameter.empty and p not in args]
    if unknown or missing:
        said = [f"unknown argument(s) {unknown}"] if unknown else []
        said += [f"missing argument(s) {missing}"] if missing else []
        raise ConfigError(
            f"sampler.name={name}: {' and '.join(said)} in sampler.args; its arguments are {own}"
        )
