"""Typed run configuration: YAML recipe → frozen dataclasses, with dotted overrides.

A recipe is a YAML mapping of sections (``data``, ``model``, ``loss``, ``miner``, ``sampler``,
``optim``, ``train``, ``eval``) to keys. ``load_config(path, ["train.epochs=2"])`` reads it,
applies the overrides (values parsed as YAML), checks every key and type, and reports *all*
problems in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
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
            (a manifest with columns ``path,label[,split,is_query,is_gallery]``).
        root: Image folder (``folder``), or the folder CSV paths are relative to (``csv``;
            default: the CSV's folder).
        manifest: The CSV file (``csv``).
        split_by: How a held-out split is drawn when the data has none: ``"sample"`` (every
            class on both sides, stratified) or ``"class"`` (the last classes held out, as in
            CUB / Cars retrieval benchmarks).
        test_fraction: Fraction held out (of each class, or of the classes).
        image_size: Square side length; ``null`` takes the backbone's timm default (16 for
            digits).
        views: Augmented views per image (≥ 1; 1 needs labels for positives).
        color_jitter: SimCLR colour-jitter strength for image data.
        num_workers: DataLoader worker processes.
    """

    dataset: Literal["digits", "folder", "csv"] = "digits"
    root: str | None = None
    manifest: str | None = None
    split_by: Literal["sample", "class"] = "sample"
    test_fraction: float = 0.25
    image_size: int | None = None
    views: int = 2
    color_jitter: float = 1.0
    num_workers: int = 0


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
    """

    temperature: float = 0.1
    base_temperature: float | None = None
    contrast_mode: Literal["all", "one"] = "all"
    use_labels: bool = True


@dataclass(frozen=True)
class MinerConfig:
    """Which pairs the loss uses (``supcon.miners.build_miner``).

    Attributes:
        name: ``"none"`` (every pair), ``"topk"`` (hard negatives) or a PML miner's snake_case
            name (``"multi_similarity"``, ``"batch_hard"``, ...).
        args: The miner's constructor arguments, e.g. ``{k: 32}`` for ``topk``.
    """

    name: str = "none"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerConfig:
    """How training batches are drawn (``supcon.samplers.build_sampler``).

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


@dataclass(frozen=True)
class EvalConfig:
    """Final evaluation.

    Attributes:
        ks: Cut-offs for recall@k.
        batch_size: Images per forward pass when embedding.
    """

    ks: tuple[int, ...] = (1, 2, 4, 8)
    batch_size: int = 512


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
        (config.data.color_jitter >= 0, "data.color_jitter must be ≥ 0"),
        (0.0 < config.data.test_fraction < 1.0, "data.test_fraction must be in (0, 1)"),
        (config.data.num_workers >= 0, "data.num_workers must be ≥ 0"),
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
    problems.extend(_validate_dropout(config))
    return problems


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
