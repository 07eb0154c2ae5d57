"""``data.num_workers: auto``: DataLoader workers from the CPU cores this process may use.

The rule (documented in the README and the recipes):

- cores = the CPUs this process may run on (``os.sched_getaffinity``, which honours
  ``taskset``, cgroups cpusets and Slurm), divided among the processes ``torchrun`` starts on
  this node (``LOCAL_WORLD_SIZE``);
- one core is left to the main process, which runs the model: ``workers = cores - 1``, at most
  :data:`MAX_AUTO_WORKERS`;
- 0 (load in the main process) when that leaves fewer than 2 workers: on 1–2 cores a worker
  only competes with the model for the same cores and adds inter-process copies; and 0 for
  data already in memory (the bundled digits), where there is nothing to decode.
"""

from __future__ import annotations

import os

from supcon.errors import InputError

AUTO = "auto"
MAX_AUTO_WORKERS = 8
MIN_AUTO_WORKERS = 2


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS / Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


def auto_num_workers(cores: int, processes: int = 1) -> int:
    """The ``auto`` rule for ``cores`` cores shared by ``processes`` training processes.

    Args:
        cores: CPU cores available on this node.
        processes: Processes sharing them (``torchrun``'s ``LOCAL_WORLD_SIZE``).

    Returns:
        Workers per process: ``min(cores // processes - 1, 8)``, or 0 when that is below 2.
    """
    workers = min(cores // max(1, processes) - 1, MAX_AUTO_WORKERS)
    return workers if workers >= MIN_AUTO_WORKERS else 0


def resolve_num_workers(value: int | str, *, in_memory: bool = False) -> int:
    """DataLoader workers for a ``data.num_workers`` / ``--num-workers`` value.

    Args:
        value: An int ≥ 0 (used as given) or ``"auto"``.
        in_memory: The data is already decoded in memory (``auto`` gives 0 then).

    Returns:
        The number of worker processes.

    Raises:
        ValueError: for anything but ``"auto"`` or an int ≥ 0.
    """
    if value == AUTO:
        if in_memory:
            return 0
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        return auto_num_workers(available_cores(), processes)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"num_workers must be 'auto' or an integer ≥ 0, got {value!r}")
    return value
