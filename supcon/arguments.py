"""Checking the arguments of a component chosen by name (miner, sampler, loss).

Every registry (``supcon.miners.MINERS``, ``supcon.samplers.SAMPLERS``,
``supcon.losses.registry``) answers a wrong argument with the same kinds of one-line messages,
made here once.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection


def constructor_arguments(cls: type) -> tuple[str, ...]:
    """Named ``__init__`` arguments of ``cls``, in order, following ``**kwargs`` up the MRO.

    PML classes pass ``**kwargs`` on to their bases, so a base's arguments are accepted too;
    the walk stops at the first ``__init__`` without ``**kwargs`` (and at ``torch.nn.Module``).
    """
    names: dict[str, None] = {}
    for klass in cls.__mro__:
        if (
            "__init__" not in vars(klass)
            or klass.__module__.startswith("torch.")
            or (klass is object)
        ):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.setdefault(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return tuple(names)


def reject_arguments(kind: str, name: str, given: Collection[str], noun: str = "arguments") -> None:
    """Raise when a choice that takes no arguments (miner ``none``, sampler ``random``) got some.

    Args:
        kind: ``"miner"``, ``"sampler"``, …
        name: The choice, e.g. ``"none"``.
        given: The argument names passed.
        noun: How the caller spells them: ``"arguments"`` (Python keywords) or ``"args"`` (the
            recipe's ``args:`` key).

    Raises:
        ValueError: one line naming the choice and the arguments to drop.
    """
    if given:
        raise ValueError(f"{kind} {name!r} takes no {noun}, got {sorted(given)}.")
