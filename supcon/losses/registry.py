"""One registry of training losses: ``supcon`` and every PML loss, by snake_case name.

The PML part is derived from ``pytorch_metric_learning.losses``: each concrete
``BaseMetricLossFunction`` subclass is listed under its class name in snake_case without the
``Loss`` suffix (``ProxyAnchorLoss`` → ``proxy_anchor``, ``MultiSimilarityLoss`` →
``multi_similarity``), with the usual spellings for a few (``arcface``, ``cosface``,
``ntxent``). Adding a loss is one entry in :data:`EXTRA_LOSSES`, not a branch in the loop.

PML is imported on first use, so ``from supcon import SupConLoss`` stays light.

Losses whose constructor takes ``num_classes`` (ArcFace, CosFace, ProxyAnchor, ProxyNCA,
NormalizedSoftmax, SoftTriple, ...) are *class-based*: they hold learnable weights (proxies,
class centres), need class labels, and get ``num_classes`` and the embedding size from the
data and the model (:func:`create_loss`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from supcon.arguments import constructor_arguments
from supcon.losses.supcon import SupConLoss

#: The loss implemented here (exact, tiled, DDP-gathering); the default ``loss.name``.
DEFAULT_LOSS = "supcon"

#: Spellings that differ from the mechanical snake_case of the PML class name.
_ALIASES = {
    "arc_face": "arcface",
    "cos_face": "cosface",
    "sphere_face": "sphereface",
    "sub_center_arc_face": "subcenter_arcface",
    "nt_xent": "ntxent",
    "p2_s_grad": "p2sgrad",
}

#: PML classes that are not trainable losses on ``(embeddings, labels)``, and why.
_EXCLUDED = {
    "BaseMetricLossFunction": "abstract base class",
    "GenericPairLoss": "abstract base class",
    "SupConLoss": "'supcon' is this package's exact, DDP-gathering equivalent",
    "VICRegLoss": "self-supervised on paired batches only; takes no labels",
    "ManifoldLoss": "takes no labels and needs a manifold graph",
}

#: Losses outside PML, by name (one entry each).
EXTRA_LOSSES: dict[str, type[nn.Module]] = {DEFAULT_LOSS: SupConLoss}

#: Constructor arguments filled in by :func:`create_loss` from the data and the model.
_CLASS_COUNT_ARGS = ("num_classes",)
_EMBEDDING_SIZE_ARGS = ("embedding_size", "descriptors_dim")


def snake_case(class_name: str) -> str:
    """The registry name of a PML loss class, e.g. ``"ProxyNCALoss"`` → ``"proxy_nca"``."""
    stem = class_name.removesuffix("Loss")
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()
    return _ALIASES.get(name, name)


@dataclass(frozen=True)
class LossSpec:
    """A registry entry.

    Attributes:
        name: The ``loss.name`` value.
        cls: The ``nn.Module`` class.
        arguments: Constructor arguments, the class's own first (then inherited ones).
        class_based: Takes ``num_classes`` (learnable proxies / class weights; needs labels).
    """

    name: str
    cls: type[nn.Module]
    arguments: tuple[str, ...]
    class_based: bool

    @property
    def user_arguments(self) -> list[str]:
        """Arguments a recipe sets (those filled from data and model left out)."""
        filled = set(_CLASS_COUNT_ARGS) | set(_EMBEDDING_SIZE_ARGS)
        return [name for name in self.arguments if name not in filled]


def _spec(name: str, cls: type[nn.Module]) -> LossSpec:
    arguments = constructor_arguments(cls)
    return LossSpec(name, cls, arguments, class_based="num_classes" in arguments)


@functools.cache
def losses() -> dict[str, LossSpec]:
    """Every registered loss by name (PML imported on the first call)."""
    from pytorch_metric_learning import losses as pml_losses

    table = {name: _spec(name, cls) for name, cls in EXTRA_LOSSES.items()}
    for class_name, cls in sorted(vars(pml_losses).items()):
        if (
            inspect.isclass(cls)
            and issubclass(cls, pml_losses.BaseMetricLossFunction)
            and class_name not in _EXCLUDED
        ):
            table.setdefault(snake_case(class_name), _spec(snake_case(class_name), cls))
    return table


def suggest(name: str, valid: list[str]) -> str:
    """``valid`` as a comma-separated list, close matches to ``name`` first."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    return ", ".join([*close, *(v for v in sorted(valid) if v not in close)])


def loss_problems(name: str, args: dict[str, Any]) -> list[str]:
    """What is wrong with ``loss.name`` / ``loss.args`` (empty when they are fine).

    Args:
        name: A registry name.
        args: Constructor arguments from the recipe.

    Returns:
        One line per problem, naming the valid choices.
    """
    table = losses()
    if name not in table:
        return [f"unknown loss.name {name!r}; choose one of: {suggest(name, list(table))}"]
    spec = table[name]
    valid = spec.user_arguments
    filled = [name for name in spec.arguments if name not in valid]
    unknown = [key for key in args if key not in spec.arguments]
    problems = []
    if unknown:
        problems.append(
            f"loss.args {unknown} are not arguments of {spec.cls.__name__} (loss.name="
            f"{name}); valid: {', '.join(valid) or 'none'}"
        )
    given_filled = [key for key in args if key in filled]
    if given_filled:
        problems.append(f"loss.args {given_filled} are set from the data and model; remove them")
    return problems


def create_loss(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    num_classes: int | None = None,
    embedding_size: int | None = None,
) -> nn.Module:
    """Build a registered loss.

    Args:
        name: ``"supcon"`` or a PML loss's registry name.
        args: Constructor arguments.
        num_classes: Number of classes, passed to losses that take ``num_classes``.
        embedding_size: Dimension of the embeddings the loss sees, passed as
            ``embedding_size`` (or ``descriptors_dim``) to losses that take it.

    Returns:
        The loss module (parameters, if any, on the CPU).

    Raises:
        ValueError: for an unknown name or argument (listing the valid ones), or a
            class-based loss without ``num_classes`` / ``embedding_size``.
    """
    args = dict(args or {})
    problems = loss_problems(name, args)
    if problems:
        raise ValueError("; ".join(problems))
    spec = losses()[name]
    for key in _CLASS_COUNT_ARGS:
        if key in spec.arguments and num_classes is not None:
            args[key] = num_classes
    for key in _EMBEDDING_SIZE_ARGS:
        if key in spec.arguments and embedding_size is not None:
            args[key] = embedding_size
    try:
        return spec.cls(**args)
    except TypeError as exc:
        raise ValueError(
            f"loss.name={name}: {exc}; valid loss.args: {', '.join(spec.user_arguments)}"
        ) from None
