"""Typed run configuration: YAML recipe → frozen dataclasses, with dotted overrides.

A recipe is a YAML mapping of sections (``data``, ``model``, ``loss``, ``miner``, ``sampler``,
``optim``, ``train``, ``eval``) to keys. ``load_config(path, ["train.epochs=2"])`` reads it,
applies the overrides (values parsed as YAML), checks every key and type, and reports *all*
problems in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A recipe or override is wrong; the message says what and how to fix it."""


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how views are made.

    Attributes:
        dataset: ``"digits"`` (scikit-learn's bundled 8×8 digits, no download), ``"folder"``
            (``root/<class>/<image>``, or ``root/train`` + ``root/test|val`` trees) or ``"csv"``
            (a manifest with columns ``path,label[,split,is_query,is_gallery]``), or a
            benchmark read from its official files under ``root`` with its standard split:
            ``cub200``, ``cars196``, ``sop``, ``inshop``, ``cifar10``, ``cifar100``,
            ``fewshot_csv`` (miniImageNet-style CSVs) or ``omniglot`` (see
            :mod:`supcon.data.benchmarks`).
        root: Image folder (``folder``), the folder CSV paths are relative to (``csv``;
            default: the CSV's folder), or the folder a benchmark was extracted to.
        manifest: The CSV file (``csv``).
        split_by: How a held-out split is drawn when the data has none: ``"sample"`` (every
            class on both sides, stratified) or ``"class"`` (the last classes held out, as in
            CUB / Cars retrieval benchmarks).
        test_fraction: Fraction held out (of each class, or of the classes).
        image_size: Square side length; ``null`` takes the backbone's timm default (16 for
            digits).
        views: Augmented views per image (≥ 1; 1 needs labels for positives).
        color_jitter: Deprecated alias of ``augment.jitter`` (used when that is unset and the
            preset has colour jitter; ignored with a notice otherwise).
        num_workers: DataLoader worker processes (kept alive across epochs), or ``"auto"``:
            the CPU cores this process may use minus one, at most 8, and 0 on ≤ 2 cores or for
            in-memory data (:func:`supcon.data.workers.resolve_num_workers`).
        channels: Input channels, 1 (grayscale: images are read as ``L`` and the backbone gets a
            1-channel stem through timm's ``in_chans``) or 3; ``null``: 1 for the digits, 3 for
            image files.
        mean: Per-channel normalisation mean (``channels`` values); ``null``: the backbone's
            timm default (averaged to one value for 1 channel).
        std: Per-channel normalisation standard deviation, like ``mean``.
        on_bad_image: What to do with image files that cannot be used (empty, not an image,
            truncated, over ``max_image_pixels``): ``"error"`` stops with the list of them;
            ``"skip"`` checks every image before the first step, drops the bad ones and lists
            them in ``skipped.csv`` in the run directory.
        verify: Open every image once before training (in parallel) so a bad file stops the
            run at once instead of when first drawn; implied by ``on_bad_image: skip``. The
            same check as ``supcon check-data RECIPE``.
        max_image_pixels: Largest image (width × height) accepted; ``null`` keeps Pillow's
            decompression-bomb limit (89,478,485 pixels).
        allow_outside_root: Accept manifest paths outside the image root (absolute paths
            elsewhere, ``../``).
    """

    dataset: Literal[
        "digits",
        "folder",
        "csv",
        "cub200",
        "cars196",
        "sop",
        "inshop",
        "cifar10",
        "cifar100",
        "fewshot_csv",
        "omniglot",
    ] = "digits"
    root: str | None = None
    manifest: str | None = None
    split_by: Literal["sample", "class"] = "sample"
    test_fraction: float = 0.25
    image_size: int | None = None
    views: int = 2
    color_jitter: float | None = None
    num_workers: int | Literal["auto"] = "auto"
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    verify: bool = False
    max_image_pixels: int | None = None
    allow_outside_root: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, pooling and projection head.

    Attributes:
        backbone: Any ``timm.create_model`` name.
        pretrained: Load pretrained backbone weights: from ``weights`` when set, else timm's
            (Hugging Face hub or cache; needs a network the first time).
        weights: Local weights file for the backbone (``.safetensors`` or a ``torch.save``'d
            state dict), loaded through timm (classifier dropped, input channels adapted).
            Implies ``pretrained``.
        pool: Global pooling: ``"default"`` (the model's own, e.g. avg for CNNs, token for
            ViTs), a timm pool type (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``,
            ``"token"``) or ``"gem"`` (generalised mean with a learnable exponent).
        gem_p: Initial GeM exponent (``pool: gem``).
        embedding_dim: Output dimension of the projection head.
        head: ``"mlp"`` (Linear-BN-ReLU-Linear), ``"linear"``, or ``"none"`` (backbone features).
        embedding: Which output is the retrieval embedding: ``"head"`` (the projection the loss
            sees) or ``"backbone"`` (the pooled features before the head, as in SimCLR's
            linear evaluation). Both are L2-normalised; the loss always uses the head.
        drop_rate: Dropout before the backbone's (removed) classifier, passed to timm as
            ``drop_rate`` (0: off). Applies to the pooled features.
        drop_path_rate: Stochastic depth rate passed to timm as ``drop_path_rate`` (0: off;
            for backbones that support it: ResNets, ViTs, ConvNeXts, ...).
    """

    backbone: str = "test_resnet"
    pretrained: bool = False
    weights: str | None = None
    pool: Literal["default", "avg", "max", "avgmax", "catavgmax", "token", "gem"] = "default"
    gem_p: float = 3.0
    embedding_dim: int = 64
    head: Literal["mlp", "linear", "none"] = "mlp"
    embedding: Literal["head", "backbone"] = "head"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    """SupCon loss options (see :class:`supcon.SupConLoss`).

    Attributes:
        temperature: τ.
        base_temperature: ``None`` for plain L_out.
        contrast_mode: ``"all"`` or ``"one"``.
        use_labels: ``True``: positives share a label (SupCon); ``False``: positives are the
            other views of the same image (SimCLR NT-Xent).
        name: ``"supcon"`` (this package's loss; the keys above and below configure it) or
            any PML loss by snake_case name (``"arcface"``, ``"proxy_anchor"``,
            ``"multi_similarity"``, ``"triplet_margin"``, ...; see
            ``supcon.losses.registry.losses()``).
        args: Constructor arguments of a PML loss, e.g. ``{margin: 28.6, scale: 64}`` for
            ``arcface``. ``num_classes`` and the embedding size are filled in.
        hcl_beta: Hard-negative concentration β of HCL (``supcon`` only; 0: off).
        path: ``"auto"``, ``"dense"``, ``"tiled"`` or ``"sparse"`` (mined pairs only):
            which implementation computes ``supcon``.
        block_size: Anchor rows per tile of the tiled path (``null``: automatic).
        memory_size: Rows of a label-aware cross-batch memory (XBM; ``supcon`` only; 0: off).
        memory_start_epoch: First epoch that uses and fills the memory.
    """

    temperature: float = 0.1
    base_temperature: float | None = None
    contrast_mode: Literal["all", "one"] = "all"
    use_labels: bool = True
    name: str = "supcon"
    args: dict[str, Any] = field(default_factory=dict)
    hcl_beta: float = 0.0
    path: Literal["auto", "dense", "tiled", "sparse"] = "auto"
    block_size: int | None = None
    memory_size: int = 0
    memory_start_epoch: int = 0


@dataclass(frozen=True)
class MinerConfig:
    """Which pairs the loss uses (``supcon.builders.build_miner``).

    Attributes:
        name: ``"none"`` (every pair), ``"topk"`` (hard negatives) or a PML miner's snake_case
            name (``"multi_similarity"``, ``"batch_hard"``, ...).
        args: The miner's constructor arguments, e.g. ``{k: 32}`` for ``topk``.
    """

    name: str = "none"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerConfig:
    """How training batches are drawn (``supcon.builders.build_batch_sampler``).

    Attributes:
        name: ``"random"`` (shuffle, drop the last partial batch), ``"m_per_class"`` (``m``
            images of each of ``batch_size / m`` classes) or ``"episodic"`` (N-way K-shot).
        args: The sampler's arguments, e.g. ``{m: 4}`` for ``m_per_class``.
    """

    name: Literal["random", "m_per_class", "episodic"] = "random"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``"adamw"`` or ``"sgd"`` (Nesterov momentum).
        lr: Peak learning rate of the head (and every parameter outside the backbone).
        backbone_lr: Peak learning rate of the backbone (``null``: same as ``lr``); fine-tuning
            a pretrained backbone usually wants it ~10× lower.
        momentum: SGD momentum.
        weight_decay: Weight decay of weight matrices and kernels (never of norms and biases).
        warmup_epochs: Linear warmup length before the cosine decay.
        min_lr_ratio: Final learning rate as a fraction of the peak.
        clip_grad_norm: Clip the global gradient norm to this value (``null``: no clipping).
        freeze_backbone_epochs: Train only the head (and pooling) for this many epochs first;
            the backbone is frozen in eval mode (its BatchNorm statistics do not move either).
        loss_lr: Peak learning rate of the loss's own parameters (proxies / class weights of
            ``arcface``, ``proxy_anchor``, ...; no weight decay); ``null``: 10 × ``lr``.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    backbone_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    clip_grad_norm: float | None = None
    freeze_backbone_epochs: int = 0
    loss_lr: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Images per optimizer step over all processes (each contributes
            ``data.views`` embeddings); with ``torchrun`` every rank takes
            ``batch_size / world_size`` and the loss contrasts the whole batch.
        micro_batch_size: Images per forward pass on each process (``null``: the whole
            per-process batch). Smaller values use cached-embedding accumulation (GradCache),
            which gives the gradient of the whole batch, not of each micro-batch.
        seed: Seeds data split, augmentation, initialisation and shuffling.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: Torch CPU threads per process (0: leave PyTorch's default).
        precision: ``"fp32"``, ``"bf16"`` (autocast; CPU or GPU) or ``"fp16"`` (autocast with a
            gradient scaler; CUDA only).
        channels_last: Use the channels-last memory format (faster convolutions on GPUs).
        compile: ``torch.compile`` the model.
        checkpoint_every: Also write ``checkpoints/last.pt`` every this many steps (0: only at
            the end of each epoch).
        eval_every: Evaluate retrieval on the held-out split every this many epochs and keep
            the best model in ``checkpoints/best.pt`` (0: only the final evaluation).
        best_metric: The metric (higher is better) that picks ``best.pt``.
        log_every: Write a ``log.csv`` / TensorBoard row every this many steps.
        diagnostics_every: Log embedding diagnostics (alignment, uniformity, positive and
            negative similarity, collapse) every this many steps (0: never).
        tensorboard: Also write TensorBoard scalars under ``tensorboard/`` (when installed).
        on_nonfinite: What a step with a non-finite loss or gradient does: ``"stop"`` the run,
            or ``"skip"`` the step (no update; optimizer, scheduler and scaler untouched).
            Either way the step and its batch's sample ids are reported, and no non-finite
            weight ever reaches a checkpoint.
        max_nonfinite_steps: With ``on_nonfinite: skip``, stop after this many non-finite
            steps in a row.
        loggers: Where scalars go: ``csv`` (``log.csv`` etc., always written),
            ``tensorboard`` (with ``tensorboard: true``), ``mlflow`` (local file store
            ``RUN/mlruns`` or ``mlflow_uri``), ``wandb`` (offline, in ``RUN/wandb``).
        mlflow_uri: MLflow tracking URI (``null``: ``file:RUN/mlruns``).
        wandb_project: Weights & Biases project name.
    """

    epochs: int = 20
    batch_size: int = 256
    micro_batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    checkpoint_every: int = 0
    eval_every: int = 0
    best_metric: str = "recall@1"
    log_every: int = 1
    diagnostics_every: int = 0
    tensorboard: bool = True
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_nonfinite_steps: int = 5
    loggers: tuple[str, ...] = ("csv", "tensorboard")
    mlflow_uri: str | None = None
    wandb_project: str = "supcon"


@dataclass(frozen=True)
class EvalConfig:
    """Final evaluation.

    Attributes:
        ks: Cut-offs for recall@k.
        batch_size: Images per forward pass when embedding.
        resize: ``"crop"`` (timm's eval pipeline: resize to ``size / crop_pct``, centre crop)
            or ``"full"`` (the whole image resized to the input size, keeping its edges);
            ``null``: ``full`` for the digits (already at the input size), else ``crop``.
    """

    ks: tuple[int, ...] = (1, 2, 4, 8)
    batch_size: int = 512
    resize: Literal["crop", "full"] | None = None


@dataclass(frozen=True)
class AugmentConfig:
    """Training views (``supcon.data.build_augmentation``; knobs in ``supcon.augment_spec``).

    Every knob is ``null`` by default, meaning the preset's own default; setting a knob the
    preset does not use is an error.

    Attributes:
        preset: ``"simclr"``, ``"retrieval"``, ``"geometric"``, ``"randaugment"``,
            ``"trivialaugment"``, ``"autoaugment"`` or ``"none"``; ``null``: ``simclr`` with
            ``loss.use_labels=false``, ``retrieval`` with labels.
        transforms: A list of ``{ClassName: {args}}`` naming ``torchvision.transforms.v2``
            classes, used instead of a preset (image conversion and normalisation are still
            added around it); ``RandomApply``/``RandomChoice``/``Compose`` take nested lists.
        crop_scale: ``[low, high]`` area fraction of the random resized crop, in (0, 1].
        crop_ratio: ``[low, high]`` aspect ratio of the random resized crop.
        hflip: Horizontal flip probability.
        vflip: Vertical flip probability.
        rotation: Largest rotation in degrees (``geometric``).
        translate: Largest shift as a fraction of the side (``geometric``).
        shear: Largest shear in degrees (``geometric``).
        jitter: SimCLR colour-jitter strength (0 = off).
        grayscale: Probability of converting a view to grayscale.
        blur: Probability of a Gaussian blur.
        num_ops: RandAugment operations per image.
        magnitude: RandAugment magnitude, in [0, num_magnitude_bins).
        num_magnitude_bins: RandAugment / TrivialAugment magnitude bins.
        policy: AutoAugment policy: ``"imagenet"``, ``"cifar10"`` or ``"svhn"``.
    """

    preset: str | None = None
    transforms: tuple[dict[str, Any] | str, ...] = ()
    crop_scale: tuple[float, ...] | None = None
    crop_ratio: tuple[float, ...] | None = None
    hflip: float | None = None
    vflip: float | None = None
    rotation: float | None = None
    translate: float | None = None
    shear: float | None = None
    jitter: float | None = None
    grayscale: float | None = None
    blur: float | None = None
    num_ops: int | None = None
    magnitude: int | None = None
    num_magnitude_bins: int | None = None
    policy: str | None = None

    def knobs(self) -> dict[str, Any]:
        """``{knob: value}`` of every preset knob (``None`` = the preset's default)."""
        skip = ("preset", "transforms")
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


@dataclass(frozen=True)
class Config:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping of names to values"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_MISSING = object()
# Floats YAML 1.2 accepts but PyYAML's YAML 1.1 resolver leaves as strings ("3e-4", "1e6").
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or ``_MISSING`` if it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            out = _coerce(value, arg)
            if out is not _MISSING:
                return out
        return _MISSING
    if origin is Literal:
        return value if value in typing.get_args(tp) else _MISSING
    if origin is tuple:
        if isinstance(value, (list, tuple)):
            (item_tp, *_rest) = typing.get_args(tp)
            items = [_coerce(v, item_tp) for v in value]
            return _MISSING if any(i is _MISSING for i in items) else tuple(items)
        return _MISSING
    if origin is dict:
        if value is None:
            return {}
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
        return _MISSING
    if tp is type(None):
        return None if value is None else _MISSING
    if tp is bool:
        return value if isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.2 reads 3e-4 and 1e6 as floats; PyYAML (1.1) does not
        return _MISSING
    if tp is str:
        return value if isinstance(value, str) else _MISSING
    raise TypeError(f"unsupported config type {tp}")


def config_from_dict(raw: Mapping[str, Any], source: str = "recipe") -> Config:
    """Build a :class:`Config` from nested mappings, reporting every problem at once.

    Args:
        raw: ``{section: {key: value}}``; missing sections and keys take their defaults.
        source: Where ``raw`` came from, for error messages.

    Returns:
        The validated config.

    Raises:
        ConfigError: listing every unknown key and wrong type.
    """
    problems: list[str] = []
    sections = _sections()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}.")
    built: dict[str, Any] = {}
    for name in raw:
        if name not in sections:
            problems.append(f"unknown section {name!r}; valid sections: {', '.join(sections)}")
    for name, section_cls in sections.items():
        given = raw.get(name) or {}
        if not isinstance(given, Mapping):
            problems.append(f"section {name!r} must be a mapping of keys, got {given!r}")
            continue
        hints = typing.get_type_hints(section_cls)
        valid = [f.name for f in dataclasses.fields(section_cls)]
        kwargs = {}
        for key, value in given.items():
            if key not in hints:
                problems.append(f"unknown key {name}.{key}; valid keys: {', '.join(valid)}")
                continue
            coerced = _coerce(value, hints[key])
            if coerced is _MISSING:
                problems.append(f"{name}.{key} must be {_type_name(hints[key])}, got {value!r}")
                continue
            kwargs[key] = coerced
        try:
            built[name] = section_cls(**kwargs)
        except (TypeError, ValueError) as exc:
            problems.append(f"section {name!r}: {exc}")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    config = Config(**built)
    problems = validate(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def _validate_dropout(config: Config) -> list[str]:
    """``model.drop_rate`` / ``model.drop_path_rate`` are probabilities in [0, 1)."""
    return [
        f"model.{name} must be in [0, 1), got {value}"
        for name, value in (
            ("drop_rate", config.model.drop_rate),
            ("drop_path_rate", config.model.drop_path_rate),
        )
        if not 0.0 <= value < 1.0
    ]


def validate(config: Config) -> list[str]:
    """Range checks that types alone cannot express; returns the list of problems."""
    problems = []
    checks = [
        (config.data.views >= 1, "data.views must be ≥ 1"),
        (
            config.data.image_size is None or config.data.image_size >= 8,
            "data.image_size must be ≥ 8 or null",
        ),
        (
            config.data.dataset != "folder" or bool(config.data.root),
            "data.dataset=folder needs data.root",
        ),
        (
            config.data.dataset != "csv" or bool(config.data.manifest),
            "data.dataset=csv needs data.manifest",
        ),
        (
            config.data.color_jitter is None or config.data.color_jitter >= 0,
            "data.color_jitter must be ≥ 0",
        ),
        (0.0 < config.data.test_fraction < 1.0, "data.test_fraction must be in (0, 1)"),
        (
            config.data.num_workers == "auto" or config.data.num_workers >= 0,
            "data.num_workers must be 'auto' or ≥ 0",
        ),
        (config.model.embedding_dim >= 1, "model.embedding_dim must be ≥ 1"),
        (config.model.gem_p > 0, "model.gem_p must be > 0"),
        (config.loss.temperature > 0, "loss.temperature must be > 0"),
        (
            config.loss.base_temperature is None or config.loss.base_temperature > 0,
            "loss.base_temperature must be > 0 or null",
        ),
        (
            config.loss.use_labels or config.data.views >= 2,
            "loss.use_labels=false needs data.views ≥ 2 (positives are views of one image)",
        ),
        (
            config.loss.contrast_mode == "all" or config.data.views >= 2,
            "loss.contrast_mode='one' needs data.views ≥ 2",
        ),
        (
            config.miner.name == "none" or config.loss.use_labels,
            "miner.name needs labels (loss.use_labels=true); miners pick pairs by class",
        ),
        (
            config.miner.name == "none" or config.loss.contrast_mode == "all",
            "miner.name needs loss.contrast_mode='all'",
        ),
        (
            config.sampler.name == "random" or config.loss.use_labels,
            f"sampler.name={config.sampler.name!r} needs labels (loss.use_labels=true)",
        ),
        (config.optim.lr > 0, "optim.lr must be > 0"),
        (
            config.optim.backbone_lr is None or config.optim.backbone_lr >= 0,
            "optim.backbone_lr must be ≥ 0 or null",
        ),
        (0 <= config.optim.momentum < 1, "optim.momentum must be in [0, 1)"),
        (
            config.optim.clip_grad_norm is None or config.optim.clip_grad_norm > 0,
            "optim.clip_grad_norm must be > 0 or null",
        ),
        (
            0 <= config.optim.freeze_backbone_epochs < config.train.epochs,
            "optim.freeze_backbone_epochs must be in [0, train.epochs)",
        ),
        (config.optim.weight_decay >= 0, "optim.weight_decay must be ≥ 0"),
        (config.optim.warmup_epochs >= 0, "optim.warmup_epochs must be ≥ 0"),
        (0 <= config.optim.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]"),
        (config.train.epochs >= 1, "train.epochs must be ≥ 1"),
        (config.train.batch_size >= 2, "train.batch_size must be ≥ 2"),
        (
            config.train.micro_batch_size is None
            or 1 <= config.train.micro_batch_size <= config.train.batch_size,
            "train.micro_batch_size must be in [1, train.batch_size] or null",
        ),
        (config.train.checkpoint_every >= 0, "train.checkpoint_every must be ≥ 0"),
        (config.train.eval_every >= 0, "train.eval_every must be ≥ 0"),
        (config.train.log_every >= 1, "train.log_every must be ≥ 1"),
        (config.train.diagnostics_every >= 0, "train.diagnostics_every must be ≥ 0"),
        (bool(config.train.best_metric), "train.best_metric must name a metric, e.g. recall@1"),
        (
            config.train.device in ("auto", "cpu", "cuda")
            or config.train.device.startswith("cuda:"),
            "train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
        (config.train.threads >= 0, "train.threads must be ≥ 0"),
        (
            all(k >= 1 for k in config.eval.ks) and len(config.eval.ks) > 0,
            "eval.ks must be a non-empty list of integers ≥ 1",
        ),
        (config.eval.batch_size >= 1, "eval.batch_size must be ≥ 1"),
    ]
    problems.extend(msg for ok, msg in checks if not ok)
    problems.extend(_validate_augment(config))
    problems.extend(_validate_channels(config))
    problems.extend(_validate_loss(config))
    problems.extend(_validate_benchmarks(config))
    problems.extend(_validate_data_files(config))
    problems.extend(_validate_training(config))
    problems.extend(_validate_loggers(config))
    problems.extend(_validate_dropout(config))
    return problems


def best_metric_choices(ks: Sequence[int]) -> tuple[str, ...]:
    """The metrics (higher is better) the training evaluation reports for cut-offs ``ks``."""
    return (*(f"recall@{k}" for k in ks), "precision@1", "map@r", "r_precision")


def _validate_training(config: Config) -> list[str]:
    """Checks of the non-finite policy and of ``train.best_metric`` against ``eval.ks``."""
    problems = []
    if config.train.max_nonfinite_steps < 1:
        problems.append("train.max_nonfinite_steps must be ≥ 1")
    choices = best_metric_choices(config.eval.ks)
    if config.train.best_metric and config.train.best_metric not in choices:
        problems.append(
            f"train.best_metric={config.train.best_metric!r} is not a metric the evaluation "
            f"reports with eval.ks={list(config.eval.ks)}; choose one of {', '.join(choices)}"
        )
    return problems


def _validate_augment(config: Config) -> list[str]:
    """The ``augment:`` section: preset name, knobs it uses, ranges, transform names."""
    from supcon.augment_spec import check_augment

    aug = config.augment
    problems = check_augment(aug.preset, config.loss.use_labels, aug.knobs(), bool(aug.transforms))
    if aug.transforms and not problems:
        from supcon.data.augment import parse_transforms  # imports torchvision: only when used

        try:
            parse_transforms(aug.transforms)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def default_channels(data: DataConfig) -> int:
    """``data.channels``, or its default: 1 for the (grayscale) digits, 3 for image files."""
    if data.channels is not None:
        return data.channels
    return 1 if data.dataset == "digits" else 3


def _validate_channels(config: Config) -> list[str]:
    """``data.channels`` and the lengths and signs of ``data.mean`` / ``data.std``."""
    data = config.data
    if data.channels not in (None, 1, 3):
        return [f"data.channels must be 1 (grayscale), 3 (RGB) or null, got {data.channels}"]
    channels = default_channels(data)
    problems = []
    for key in ("mean", "std"):
        values = getattr(data, key)
        if values is not None and len(values) != channels:
            problems.append(
                f"data.{key} needs {channels} value(s), one per channel (data.channels="
                f"{channels}), got {list(values)}"
            )
    if data.std is not None and not all(v > 0 for v in data.std):
        problems.append(f"data.std values must be > 0, got {list(data.std)}")
    return problems


def resolve_defaults(config: Config) -> Config:
    """The config with automatic values made explicit, as a run directory records them.

    ``augment.preset`` (unless ``augment.transforms`` replaces it), ``data.channels`` and
    ``eval.resize`` get their defaults; a deprecated ``data.color_jitter`` moves to
    ``augment.jitter`` when the preset has colour jitter (and is dropped otherwise).
    """
    from supcon.augment_spec import PRESET_DEFAULTS, resolve_preset

    augment, data = config.augment, config.data
    if not augment.transforms:
        preset = resolve_preset(augment.preset, config.loss.use_labels)
        augment = dataclasses.replace(augment, preset=preset)
        alias = data.color_jitter is not None and augment.jitter is None
        if alias and "jitter" in PRESET_DEFAULTS[preset]:
            augment = dataclasses.replace(augment, jitter=data.color_jitter)
    data = dataclasses.replace(data, channels=default_channels(data), color_jitter=None)
    resize = config.eval.resize or ("full" if data.dataset == "digits" else "crop")
    return dataclasses.replace(
        config, augment=augment, data=data, eval=dataclasses.replace(config.eval, resize=resize)
    )


def _validate_loss(config: Config) -> list[str]:
    """The ``loss:`` name, arguments and options against each other and the recipe."""
    from supcon.losses.registry import DEFAULT_LOSS, loss_problems, losses

    loss, name = config.loss, config.loss.name
    if name == DEFAULT_LOSS and loss.args:
        return [
            "loss.args is for PML losses; supcon is set with loss.temperature, "
            "loss.base_temperature, loss.hcl_beta, loss.path, loss.block_size"
        ]
    problems = loss_problems(name, loss.args) if name != DEFAULT_LOSS else []  # PML: lazy
    if problems:
        return problems
    checks = [
        (loss.hcl_beta >= 0, "loss.hcl_beta must be ≥ 0"),
        (loss.block_size is None or loss.block_size >= 1, "loss.block_size must be ≥ 1 or null"),
        (loss.memory_size >= 0, "loss.memory_size must be ≥ 0 (0: no memory)"),
        (
            0 <= loss.memory_start_epoch < config.train.epochs,
            "loss.memory_start_epoch must be in [0, train.epochs)",
        ),
        (
            config.optim.loss_lr is None or config.optim.loss_lr >= 0,
            "optim.loss_lr must be ≥ 0 or null",
        ),
    ]
    if name == DEFAULT_LOSS:
        checks += [
            (
                loss.path != "sparse" or (config.miner.name != "none" and loss.hcl_beta == 0),
                "loss.path=sparse needs mined pairs (a miner.name) and loss.hcl_beta=0",
            ),
            (
                loss.memory_size == 0 or config.miner.name == "none",
                "loss.memory_size needs miner.name=none (mined pairs cannot reach the memory)",
            ),
        ]
    else:
        only_supcon = {
            "temperature": loss.temperature != 0.1,
            "base_temperature": loss.base_temperature is not None,
            "contrast_mode": loss.contrast_mode != "all",
            "hcl_beta": loss.hcl_beta != 0,
            "path": loss.path != "auto",
            "block_size": loss.block_size is not None,
        }
        for key, changed in only_supcon.items():
            checks.append(
                (
                    not changed,
                    f"loss.{key} applies to loss.name=supcon only; set {name}'s own options "
                    "in loss.args",
                )
            )
        if loss.memory_size:
            from supcon.losses.pml_memory import memory_supported

            rows = config.train.batch_size * config.data.views
            supported = [n for n, s in losses().items() if memory_supported(s.cls.__name__)]
            checks += [
                (
                    memory_supported(losses()[name].cls.__name__),
                    f"loss.memory_size works with supcon and the PML losses "
                    f"{', '.join(sorted(supported))}; not with {name}",
                ),
                (
                    loss.memory_size >= rows,
                    f"loss.memory_size must be ≥ train.batch_size × data.views = {rows} for "
                    "a PML loss (PML's memory takes whole batches)",
                ),
                (
                    config.miner.name == "none",
                    "loss.memory_size needs miner.name=none (mined pairs cannot reach the memory)",
                ),
                (
                    loss.use_labels,
                    f"loss.memory_size with loss.name={name} needs labels (loss.use_labels=true); "
                    "without labels use loss.name=supcon, whose memory rows are negatives",
                ),
            ]
        checks.append(
            (
                loss.use_labels or not losses()[name].class_based,
                f"loss.name={name} learns one weight per class, so it needs labels: set "
                "loss.use_labels=true and train on labeled data",
            )
        )
    return [msg for ok, msg in checks if not ok]


#: The ``data.dataset`` values read from a benchmark's official files (``data.root``).
BENCHMARK_DATASETS = tuple(
    name
    for name in typing.get_args(typing.get_type_hints(DataConfig)["dataset"])
    if name not in ("digits", "folder", "csv")
)


def _validate_benchmarks(config: Config) -> list[str]:
    """A benchmark dataset needs the folder it was extracted to."""
    data = config.data
    if data.dataset in BENCHMARK_DATASETS and not data.root:
        return [f"data.dataset={data.dataset} needs data.root, the folder it was extracted to"]
    return []


def _validate_data_files(config: Config) -> list[str]:
    """The bad-image policy keys: ``data.max_image_pixels``."""
    limit = config.data.max_image_pixels
    if limit is not None and limit < 1:
        return [f"data.max_image_pixels must be ≥ 1 or null (Pillow's limit), got {limit}"]
    return []


def _validate_loggers(config: Config) -> list[str]:
    """``train.loggers``: known names only."""
    from supcon.training.trackers import LOGGERS

    unknown = [name for name in config.train.loggers if name not in LOGGERS]
    if unknown:
        return [f"train.loggers: unknown {', '.join(unknown)}; choose from {', '.join(LOGGERS)}"]
    return []


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value`` into its parts, parsing the value as YAML.

    Raises:
        ConfigError: if the text is not of that form.
    """
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} must look like section.key=value (e.g. train.epochs=2)"
        )
    dotted, value_text = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"override {text!r} must look like section.key=value (e.g. train.epochs=2)"
        )
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    return parts[0], parts[1], value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``section.key=value`` overrides applied."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        current = merged.setdefault(section, {})
        if not isinstance(current, dict):
            raise ConfigError(
                f"cannot override {section}.{key}: section {section!r} is not a mapping"
            )
        current[key] = value
    return merged


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe file into nested dicts.

    Raises:
        ConfigError: if the file is missing, unreadable or not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"recipe {str(path)!r} not found; pass a YAML file such as recipes/digits.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(
            f"recipe {str(path)!r} is not valid YAML{at}; fix the syntax there"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recipe {str(path)!r}: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {str(path)!r} must be a mapping of sections (data:, model:, ...), "
            f"got {type(raw).__name__}"
        )
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a recipe, apply overrides and validate.

    Args:
        path: YAML recipe.
        overrides: ``section.key=value`` strings.

    Returns:
        The validated config.

    Raises:
        ConfigError: on any problem, all listed.
    """
    return config_from_dict(apply_overrides(read_recipe(path), overrides), source=str(path))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), ready for YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
