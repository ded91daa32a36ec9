"""Typed configuration: dataclasses, YAML files, ``a.b.c=value`` overrides and validation.

A config has three parts, one per thing that is built or trained::

    cfg = load_config("moving_mnist_lite", ["vqvae.train.steps=200"])
    cfg.data    # which videos: name, path, channels, sequence_length, resolution, ...
    cfg.vqvae   # the VQ-VAE (Table 5 of the paper) and its own training settings, cfg.vqvae.train
    cfg.prior   # the GPT prior (Table 6) and its own training settings, cfg.prior.train

``cfg.vqvae`` and ``cfg.prior`` also carry the input shape they are built for (copied from ``cfg.data``
when the file leaves it out), so ``VQVAE(cfg.vqvae)`` needs nothing else.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

DATASETS = ("moving_mnist", "vizdoom", "bair", "video_folder", "hdf5")
POS_EMBEDDINGS = ("spatiotemporal", "spatial", "temporal", "sincos", "none")
PRIOR_ATTENTION = ("full", "axial")


@dataclass
class TrainConfig:
    """How one stage trains. ``batch_size`` is the global batch (split over processes under torchrun)."""

    batch_size: int = 64
    lr: float = 7e-4
    steps: int = 20_000
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_batches: int = 8
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0 = off
    warmup_steps: int = 0
    lr_decay: str = "none"  # 'none' | 'cosine'
    grad_accumulation: int = 1
    bf16: bool = False  # bf16 autocast for the forward pass (GPUs); the codebook stays fp32
    compile: bool = False  # torch.compile the model's fixed-shape parts (model.compile_modules())
    activation_checkpointing: bool = False  # the prior recomputes each block's activations in backward
    # VQ-VAE only: train on random (t, h, w) crops of each clip (a convolutional VQ-VAE without attention runs
    # on any size, so it learns from crops and encodes whole clips); null = whole clips
    crop: list[int] | None = None


@dataclass
class DataConfig:
    """Which videos. Every dataset yields clips ``[C, T, H, W]`` in [-0.5, 0.5]."""

    name: str = "moving_mnist"
    path: str | None = None  # a file or folder for datasets read from disk
    channels: int = 1
    sequence_length: int = 16
    resolution: int = 64
    num_digits: int = 2  # Moving MNIST only
    action_size: int = 0  # per-step action vector size of the dataset (0 = no actions)
    variance: float | None = None  # data variance for NMSE; None = measured on the training split (load_config)
    seed: int = 0


@dataclass
class VQVAEConfig:
    """The VQ-VAE of Table 5. ``downsample`` is the (t, h, w) reduction factor, each a power of two."""

    n_hiddens: int = 240
    res_hiddens: int = 128
    n_res_layers: int = 2
    attention: bool = False
    attention_heads: int = 2
    n_codes: int = 512
    embedding_dim: int = 64
    downsample: tuple = (4, 4, 4)
    beta: float = 0.25
    ema_decay: float = 0.99
    quantizer: str = "ema"  # 'ema' (the paper's EMA codebook) | 'fsq' (finite scalar quantization)
    fsq_levels: tuple = (8, 5, 5, 5)  # FSQ only: levels per latent channel; n_codes must be their product
    channels: int | None = None  # filled from data
    sequence_length: int | None = None  # filled from data
    resolution: int | None = None  # filled from data
    data_variance: float | None = None  # filled from data.variance (or measured) before training
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def input_shape(self) -> tuple:
        return (self.sequence_length, self.resolution, self.resolution)

    @property
    def latent_shape(self) -> tuple:
        return tuple(s // d for s, d in zip(self.input_shape, self.downsample))


@dataclass
class PriorConfig:
    """The GPT prior of Table 6. ``action_dim`` is the flattened conditional size of the actions."""

    hidden: int = 384
    heads: int = 4
    layers: int = 8
    dropout: float = 0.1
    attention_dropout: float = 0.0
    pos_embedding: str = "spatiotemporal"
    attention: str = "full"  # 'full' (the GPT) | 'axial' (the Axial Transformer of Table 2)
    frame_cond: bool = False
    n_cond_frames: int = 1
    resnet_depth: int = 18
    resnet_units: int = 512
    action_dim: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=3e-4, steps=40_000))


@dataclass
class JudgeConfig:
    """The Moving MNIST judge (:mod:`videogen_lite.judge`): a small frame CNN of ``width`` base channels and a
    temporal conv over its feature maps into ``feature_dim`` clip features. It trains on clips of
    ``clip_length`` frames (short clips: more different digits per step) and judges videos of any length;
    its training settings default to a few minutes on two CPU cores."""

    width: int = 24
    feature_dim: int = 128
    clip_length: int = 4
    motion_weight: float = 0.5  # weight of the motion losses beside the digit losses
    resolution: int | None = None  # filled from data
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        batch_size=64, lr=4e-3, steps=700, checkpoint_every=100, log_every=20, eval_batches=8,
        warmup_steps=30, lr_decay="cosine"))


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    name: str = "custom"

    def to_dict(self) -> dict:
        return to_dict(self)


# ---------------------------------------------------------------------------------------------------
# building dataclasses from plain dicts, with errors that name the key


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ValueError(f"config key '{key}' = {value!r} is not valid: expected {allowed}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    origin = get_origin(typ)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in get_args(typ) if a is not type(None)]
        return _coerce(key, value, inner)
    if typ is bool:
        if isinstance(value, bool):
            return value
        _fail(key, value, "true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            _fail(key, value, "an integer")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            _fail(key, value, "a number")
        try:
            return float(value)
        except ValueError:
            _fail(key, value, "a number")
    if typ is str:
        if not isinstance(value, str):
            _fail(key, value, "a string")
        return value
    if typ is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(key, value, "a list such as [4, 4, 4]")
        return tuple(_coerce(f"{key}[{i}]", v, int) for i, v in enumerate(value))
    return value


def _build(cls, values: dict, prefix: str, base=None):
    """``cls`` from ``values``, starting from ``base`` (an instance of ``cls``) or the class defaults."""
    if not isinstance(values, dict):
        raise ValueError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ValueError(
                f"unknown config key '{prefix}{key}'{hint} Allowed keys in this section: {', '.join(sorted(names))}"
            )
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            # a nested section starts from its field's default, e.g. the judge's own training settings
            factory = next(f for f in fields(cls) if f.name == key).default_factory
            kwargs[key] = _build(typ, value, f"{prefix}{key}.",
                                 None if factory is dataclasses.MISSING else factory())
        else:
            kwargs[key] = _coerce(prefix + key, value, typ)
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def to_dict(obj) -> dict:
    """A config (or part of one) as plain JSON-able dicts and lists."""
    out = asdict(obj)
    return json.loads(json.dumps(out))


def from_dict(values: dict, cls=Config):
    """Build ``cls`` (default :class:`Config`) from a dict, validating it."""
    cfg = _build(cls, values, "")
    if isinstance(cfg, Config):
        fill_and_validate(cfg)
    elif isinstance(cfg, VQVAEConfig):
        validate_vqvae(cfg)
    elif isinstance(cfg, JudgeConfig):
        validate_judge(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------
# validation


def _power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def validate_vqvae(v: VQVAEConfig, prefix: str = "vqvae.") -> None:
    for key in ("n_hiddens", "res_hiddens", "n_codes", "embedding_dim", "attention_heads"):
        if getattr(v, key) < 1:
            _fail(prefix + key, getattr(v, key), "a positive integer")
    if v.n_res_layers < 0:
        _fail(prefix + "n_res_layers", v.n_res_layers, "0 or more")
    if len(v.downsample) != 3 or not all(_power_of_two(d) for d in v.downsample):
        _fail(prefix + "downsample", list(v.downsample), "three powers of two (t, h, w), such as [4, 4, 4]")
    if v.attention and v.n_hiddens % v.attention_heads:
        _fail(prefix + "attention_heads", v.attention_heads, f"a divisor of n_hiddens={v.n_hiddens}")
    if not 0.0 < v.ema_decay < 1.0:
        _fail(prefix + "ema_decay", v.ema_decay, "a number between 0 and 1")
    if v.beta < 0:
        _fail(prefix + "beta", v.beta, "0 or more")
    if v.quantizer not in ("ema", "fsq"):
        _fail(prefix + "quantizer", v.quantizer, "'ema' (the EMA codebook) or 'fsq' (finite scalar quantization)")
    if v.quantizer == "fsq":
        if len(v.fsq_levels) < 1 or any(level < 2 for level in v.fsq_levels):
            _fail(prefix + "fsq_levels", list(v.fsq_levels), "a list of integers >= 2, one per latent channel")
        product = 1
        for level in v.fsq_levels:
            product *= level
        if v.n_codes != product:
            _fail(prefix + "n_codes", v.n_codes, f"the product of fsq_levels {list(v.fsq_levels)} = {product}")
    if None not in (v.sequence_length, v.resolution):
        for axis, size, factor in zip("thw", v.input_shape, v.downsample):
            if size % factor:
                raise ValueError(
                    f"{prefix}downsample = {list(v.downsample)} does not divide the input "
                    f"{v.sequence_length}x{v.resolution}x{v.resolution} (T x H x W): axis {axis} has size {size}, "
                    f"not a multiple of {factor}. Choose a sequence_length/resolution divisible by the downsampling."
                )
    _validate_train(v.train, prefix + "train.", crop_allowed=True)
    if v.train.crop is not None:
        crop = list(v.train.crop)
        if len(crop) != 3 or not all(isinstance(n, int) and n >= 1 for n in crop):
            _fail(prefix + "train.crop", crop, "null or three positive integers (t, h, w)")
        if v.attention:
            _fail(prefix + "train.crop", crop, "null: a VQ-VAE with attention (vqvae.attention = true) has "
                  "position embeddings of the whole clip's latent shape and trains on whole clips")
        for axis, n, factor in zip("thw", crop, v.downsample):
            if n % factor:
                _fail(prefix + "train.crop", crop, f"sizes divisible by downsample {list(v.downsample)} "
                      f"(axis {axis}: {n} is not a multiple of {factor})")
        if None not in (v.sequence_length, v.resolution):
            if any(n > size for n, size in zip(crop, v.input_shape)):
                _fail(prefix + "train.crop", crop, f"at most the clip's T x H x W = {list(v.input_shape)}")


def _validate_train(t: TrainConfig, prefix: str, crop_allowed: bool = False) -> None:
    for key in ("batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints", "grad_accumulation"):
        if getattr(t, key) < 1:
            _fail(prefix + key, getattr(t, key), "a positive integer")
    if t.lr <= 0:
        _fail(prefix + "lr", t.lr, "a positive number")
    if t.lr_decay not in ("none", "cosine"):
        _fail(prefix + "lr_decay", t.lr_decay, "'none' or 'cosine'")
    if t.num_workers < 0:
        _fail(prefix + "num_workers", t.num_workers, "0 or more")
    if t.crop is not None and not crop_allowed:
        _fail(prefix + "crop", t.crop, "null (random crops are for the VQ-VAE stage only)")


def validate_judge(j: JudgeConfig, prefix: str = "judge.") -> None:
    for key in ("width", "feature_dim"):
        if getattr(j, key) < 1:
            _fail(prefix + key, getattr(j, key), "a positive integer")
    if j.clip_length < 2:
        _fail(prefix + "clip_length", j.clip_length, "2 or more (frames per training clip: motion needs two)")
    if j.motion_weight < 0:
        _fail(prefix + "motion_weight", j.motion_weight, "0 or more")
    if j.resolution is not None and j.resolution < 1:
        _fail(prefix + "resolution", j.resolution, "a positive integer (or null to copy it from data)")
    _validate_train(j.train, prefix + "train.")


def fill_and_validate(cfg: Config) -> Config:
    d, v, p = cfg.data, cfg.vqvae, cfg.prior
    if d.name not in DATASETS:
        _fail("data.name", d.name, "one of " + ", ".join(DATASETS))
    for key in ("channels", "sequence_length", "resolution"):
        if getattr(d, key) < 1:
            _fail("data." + key, getattr(d, key), "a positive integer")
        if getattr(v, key) is None:
            setattr(v, key, getattr(d, key))
        elif getattr(v, key) != getattr(d, key):
            raise ValueError(
                f"vqvae.{key} = {getattr(v, key)} disagrees with data.{key} = {getattr(d, key)}; "
                "leave vqvae's copy out and it is taken from data"
            )
    if d.variance is not None and d.variance <= 0:
        _fail("data.variance", d.variance, "a positive number (or null to measure it)")
    if v.data_variance is None:
        v.data_variance = d.variance
    validate_vqvae(v)
    validate_prior(p, n_frames=d.sequence_length)
    j = cfg.judge
    if j.resolution is None:
        j.resolution = d.resolution
    elif j.resolution != d.resolution:
        raise ValueError(f"judge.resolution = {j.resolution} disagrees with data.resolution = {d.resolution}; "
                         "leave judge's copy out and it is taken from data")
    validate_judge(j)
    return cfg


def validate_prior(p: PriorConfig, n_frames: int | None = None, prefix: str = "prior.") -> None:
    """Check a prior's config (``n_frames``: the clip length, which bounds ``n_cond_frames``)."""
    if p.pos_embedding not in POS_EMBEDDINGS:
        _fail(prefix + "pos_embedding", p.pos_embedding, "one of " + ", ".join(POS_EMBEDDINGS))
    if p.attention not in PRIOR_ATTENTION:
        _fail(prefix + "attention", p.attention, "'full' (the GPT) or 'axial' (the Axial Transformer)")
    for key in ("hidden", "heads", "layers"):
        if getattr(p, key) < 1:
            _fail(prefix + key, getattr(p, key), "a positive integer")
    if p.hidden % p.heads:
        _fail(prefix + "heads", p.heads, f"a divisor of prior.hidden={p.hidden}")
    if p.frame_cond:
        if p.resnet_depth not in (18, 34):
            _fail(prefix + "resnet_depth", p.resnet_depth, "18 or 34")
        if p.resnet_units < 1:
            _fail(prefix + "resnet_units", p.resnet_units, "a positive integer")
        if n_frames is not None and not 1 <= p.n_cond_frames <= n_frames:
            _fail(prefix + "n_cond_frames", p.n_cond_frames, f"1 to the clip length {n_frames}")
    if p.action_dim < 0:
        _fail(prefix + "action_dim", p.action_dim, "0 (no actions) or the flattened action size")
    if not 0 <= p.dropout < 1:
        _fail(prefix + "dropout", p.dropout, "a number in [0, 1)")
    _validate_train(p.train, prefix + "train.")


# ---------------------------------------------------------------------------------------------------
# loading


def config_names() -> list[str]:
    """The names of the configs that ship inside the package."""
    return sorted(p.name[:-5] for p in resources.files("videogen_lite.configs").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str | Path) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        return yaml.safe_load(path.read_text()) or {}, path.stem
    shipped = resources.files("videogen_lite.configs") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ValueError(
            f"unknown config {str(name_or_path)!r}: expected a YAML file path or one of the shipped names "
            f"{', '.join(config_names())}"
        )
    return yaml.safe_load(shipped.read_text()) or {}, str(name_or_path)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a nested dict."""
    values = json.loads(json.dumps(values))
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.path=value (e.g. vqvae.train.steps=200)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: '{part}' is not a config section")
        node[parts[-1]] = yaml.safe_load(raw)
    return values


def load_config(name_or_path: str | Path | dict = "moving_mnist_lite", overrides: list[str] | None = None) -> Config:
    """Load a shipped config by name (``"bair"``) or a YAML path, apply overrides, validate.

    A YAML file may start with ``base: NAME`` to inherit a shipped config and change only some keys.
    ``data.variance`` is inherited only while the data keep the pixel statistics it was measured for: a
    file or an override that changes ``data.name``, ``channels``, ``resolution`` or ``num_digits`` without
    setting ``data.variance`` too leaves it None, measured on the training split when training starts.
    """
    if isinstance(name_or_path, dict):
        values, name = dict(name_or_path), name_or_path.get("name", "custom")
    else:
        values, name = _read_yaml(name_or_path)
    chain = [values]                               # the file, its base, the base's base, ...
    while "base" in chain[-1]:
        chain.append(_read_yaml(chain[-1].pop("base"))[0])
    values, measured_for = {}, None                # measured_for: the data that data.variance describes
    for layer in reversed(chain):
        values = _merge(values, layer)
        if "variance" in (layer.get("data") or {}):
            measured_for = _data_identity(values)
    values.setdefault("name", name)
    if any(item.split("=", 1)[0].strip() == "data.variance" for item in overrides or []):
        measured_for = None                        # set by the caller for the data as overridden
    values = apply_overrides(values, overrides or [])
    data = values.get("data") or {}
    if measured_for is not None and data.get("variance") is not None and _data_identity(values) != measured_for:
        # A variance measured for other data (say two digits at 64x64, inherited by a one-digit 32x32
        # config) would scale the NMSE wrongly: leave it unknown, to be measured on the training split
        # (the command line does so and prints it). Set data.variance again to keep a value.
        values["data"] = {**data, "variance": None}
    return from_dict(values)


# Data keys that change the pixel statistics, hence the data variance: a config that changes one of them
# and inherits data.variance from its base gets it measured instead. (data.path is not among them: the
# same dataset may lie anywhere.)
_VARIANCE_KEYS = ("name", "channels", "resolution", "num_digits")


def _data_identity(values: dict) -> tuple:
    data, defaults = values.get("data") or {}, DataConfig()
    return tuple(data.get(key, getattr(defaults, key)) for key in _VARIANCE_KEYS)
