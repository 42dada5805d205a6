"""One configuration object per run.

A run (training, evaluation, a notebook job) is described by a single :class:`RunConfig`,
made of plain dataclasses. It is built from a preset name or a YAML file plus dotted
overrides (``train.lr=0.01``), validated (unknown keys and bad values are refused with the
list of valid ones), and saved next to every checkpoint and result.

>>> cfg = load_config("synthetic_trx", overrides=["train.lr=0.01", "task.shot=1"])
>>> cfg.train.lr, cfg.task.shot
(0.01, 1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

METHODS = ("prototype", "trx", "strm", "mastaf")


def _choices(*values: Any) -> dict[str, Any]:
    return {"choices": values}


@dataclass
class DataConfig:
    """Which videos, and how clips are made from them."""

    dataset: str = "synthetic"
    """``synthetic`` (generated on first use) or a name for a real benchmark prepared by
    ``data_scripts/`` (``ssv2_OTAM``, ``ssv2_CMN``, ``kinetics_CMN``, ``hmdb_ARN``, ``ucf_ARN``)."""
    root: str | None = None
    """Folder holding ``class/video_id.mp4`` files or ``class/video_id/*.jpg`` folders.
    ``None``: the default synthetic dataset under ``$FSVID_HOME``."""
    split_dir: str | None = None
    """Folder with ``trainlistNN.txt``, ``vallistNN.txt``, ``testlistNN.txt``. ``None``: ``<root>/splits``
    (synthetic) or ``<root>/../splits``."""
    split_id: str = "01"
    frames: int = 8
    sampling: str = field(default="trx", metadata=_choices("trx", "tsn"))
    resize: int = 72
    crop: int = 64
    flip: bool = False
    train_crop: str = field(default="random", metadata=_choices("random", "center"))
    """Training crop: one random window per clip, or the centre window (the released MASTAF
    loader: resize, flip, centre crop; every draw of a video is then the same but for the flip)."""
    test_sampling: str = field(default="deterministic", metadata=_choices("deterministic", "jittered"))
    """Test/validation frames: ``deterministic`` (fsvid; the same clip for every method and
    run), or ``jittered`` like training frames (the released MASTAF loader, whose test
    frames vary from run to run). The test crop is the centre either way."""
    normalize: bool = False
    short_videos: str = field(default="drop", metadata=_choices("drop", "repeat"))
    on_missing: str = field(default="error", metadata=_choices("error", "skip"))
    workers: int = 0
    memory_mb: int = 0
    """Keep up to this many MB of decoded videos in memory, so each is decoded once (worth it
    for the small synthetic set; each DataLoader worker keeps its own)."""
    cache: str | None = None
    """Feature cache for a frozen backbone (``fsvid.features``): ``None`` runs the backbone on the
    videos of every task; ``auto`` keeps each split's features in ``<run folder>/cache``; a
    path keeps them there (shareable by runs with the same backbone). Built on first use, in
    ``<cache>/<split>_<backbone weights hash>``. Training from it needs ``model.trainable: none``."""
    cache_views: int = 0
    """Augmented training views per video in the training split's cache (0: train on the
    test view only, without augmentation)."""
    cache_form: str = field(default="head", metadata=_choices("head", "maps"))
    """What the cache stores: ``head``, the form the head reads (frame vectors for the prototype
    baseline and TRX, patches for STRM, maps for MASTAF: the smallest); ``maps``, the backbone's
    feature maps, from which every head's form is derived when read, so that one cache in
    ``<cache>/<split>_<weights hash>_maps`` serves all four methods (a shared ``data.cache``
    folder; bigger: h*w times the frame vectors)."""
    synthetic_classes: int = 48
    synthetic_videos_per_class: int = 24
    synthetic_frames: int = 24
    synthetic_size: int = 80
    synthetic_seed: int = 0


@dataclass
class TaskConfig:
    """The few-shot task: C-way K-shot with Q queries per class."""

    way: int = 5
    shot: int = 5
    train_shot: int | None = None
    """Shots per class in training tasks; ``None``: the same as ``shot`` (as in the papers)."""
    query: int = 4
    """Queries per class in training tasks (STRM uses 4)."""
    test_query: int = 1
    """Queries per class in validation and test tasks (1 in all papers)."""
    query_sampling: str = field(default="per_class", metadata=_choices("per_class", "one_class"))
    """``per_class``: Q queries from every class of the task; ``one_class``: Q queries from ONE
    random class of the task (the released MASTAF sampler), the same in training and testing."""


@dataclass
class ModelConfig:
    """Backbone plus head."""

    method: str = field(default="trx", metadata=_choices(*METHODS))
    backbone: str = "small_cnn"
    backbone_weights: str | None = None
    """Local weight file, or a torchvision weights name (a download, never in tests)."""
    trainable: str = field(default="all", metadata=_choices("all", "last", "none"))
    backbone_passes: str = field(default="joint", metadata=_choices("joint", "released"))
    """``joint``: one backbone call over every clip of a task; ``released``: support and
    queries in separate calls (the released TRX/STRM code)."""
    backbone_chunks: int = 1
    """Pieces each backbone call is run in, one after the other (2D backbones: the flattened
    frames split like DataParallel over that many GPUs; 3D: whole videos). In training mode
    BatchNorm statistics are those of each piece: ``joint`` with 1 piece normalises over the
    whole task, ``released`` with 4 pieces is the released code on 4 GPUs (``--num_gpus``)."""
    checkpoint_backbone: bool = False
    """Recompute each piece's backbone activations in backward (``torch.utils.checkpoint``):
    activation memory of one piece instead of the whole task, for about one more forward pass."""
    feature_dim: int | None = None
    """Channels of the small CNN's output; ``None`` for the backbone's own."""
    widths: list[int] | None = None
    """Channels of the small CNN's first three blocks; ``None`` for its default (32, 64, 128)."""
    coordinates: bool = False
    """Small CNN: append x/y coordinate channels to each frame (CoordConv)."""
    patch_grid: int = 4
    projection_dim: int = 1152
    """D', the key/value size of the cross-transformer."""
    cardinalities: list[int] = field(default_factory=lambda: [2, 3])
    tuple_fraction: float = 1.0
    prototype_distance: str = field(default="euclidean", metadata=_choices("euclidean", "cosine"))
    # STRM switches
    use_ple: bool = True
    use_fle: bool = True
    use_qc: bool = True
    ple_kind: str = field(default="attention", metadata=_choices("attention", "mlp"))
    fle_kind: str = field(default="mlp", metadata=_choices("attention", "mlp"))
    joint_layers: int = 0
    """>0: joint spatio-temporal self-attention with this many layers instead of PLE+FLE."""
    paper_scaling: bool = False
    """STRM PLE attention divided by sqrt(D) (paper) instead of not (released code)."""
    use_gamma: bool = True
    qc_weight: float = 0.1
    """lambda in STRM's loss, and the weight of the query-class score at test time."""
    qc_mode: str = field(default="trained", metadata=_choices("trained", "released"))
    """STRM's query-class classifier: ``trained`` (optimised and saved, as the paper describes)
    or ``released`` (fixed random weights drawn from ``qc_seed``, dropout also at test time:
    the released code keeps the classifier in a Python list, out of the optimiser's reach)."""
    qc_seed: int = 0
    """Seed of the fixed classifier weights with ``qc_mode: released``."""
    # MASTAF switches
    alpha: float = 1.0
    global_task: bool = True
    global_weight: float = 0.5
    """MASTAF's lamda: loss = loss_global + lamda * loss_fewshot."""
    meta_learner: bool = True
    residual: bool = True
    mastaf_mode: str = field(default="fused", metadata=_choices("fused", "self", "cross", "neighbor"))
    global_classes: str = field(default="train", metadata=_choices("train", "all"))
    """Outputs of MASTAF's global classifier: one per training class, or one per class of the
    whole dataset (train + val + test lists; the released code: one per class folder)."""


@dataclass
class TrainConfig:
    """Episodic training."""

    tasks: int = 2000
    tasks_per_step: int = 16
    optimizer: str = field(default="sgd", metadata=_choices("sgd", "adam"))
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = field(default="constant", metadata=_choices("constant", "cosine", "step"))
    step_every: int = 0
    """With ``schedule: step``: multiply the learning rate by 0.1 every this many tasks."""
    loss_reduction: str = field(default="sum", metadata=_choices("sum", "mean"))
    grad_clip: float | None = None
    amp: str = field(default="none", metadata=_choices("none", "bf16", "fp16"))
    val_every: int = 500
    val_tasks: int = 100
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"


@dataclass
class EvalConfig:
    """Evaluation on a fixed, seeded list of test tasks."""

    tasks: int = 10000
    seed: int = 1234
    split: str = field(default="test", metadata=_choices("test", "val"))
    checkpoint: str = field(default="best", metadata=_choices("best", "last"))


@dataclass
class RunConfig:
    """Everything about one run; saved as ``config.yaml`` beside its results."""

    name: str = "run"
    output_dir: str | None = None
    """``None``: ``$FSVID_HOME/runs/<name>``."""
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A configuration key or value that is not valid; the message lists the valid ones."""


# ----------------------------------------------------------------------------- conversion


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-ready dict of a config dataclass."""
    return dataclasses.asdict(config)


def settings_digest(config: RunConfig, length: int = 10) -> str:
    """A short hex digest of every setting of ``config`` except where it is saved (``name``,
    ``output_dir``): two configurations share it exactly when they would train the same run,
    so a folder named with it is reused only by the same settings."""
    settings = {key: value for key, value in to_dict(config).items() if key not in ("name", "output_dir")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field's type annotation, converting ints to floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {annotation}")  # pragma: no cover


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a config dataclass from a (partial) dict, refusing unknown keys and bad values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        annotation = hints[name]
        key = _join(where, name)
        if dataclasses.is_dataclass(annotation):
            values[name] = from_dict(annotation, value, key)
            continue
        value = _coerce(value, annotation, key)
        choices = fields[name].metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        values[name] = value
    return cls(**values)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def validate(config: RunConfig) -> RunConfig:
    """Round-trip through :func:`from_dict`, so a config built in code is checked too."""
    config = from_dict(RunConfig, to_dict(config))
    problems = []
    if config.task.way < 2:
        problems.append(f"task.way must be at least 2, got {config.task.way}")
    for name in ("shot", "query", "test_query", "train_shot"):
        if getattr(config.task, name) is not None and getattr(config.task, name) < 1:
            problems.append(f"task.{name} must be at least 1, got {getattr(config.task, name)}")
    if config.data.frames < 1:
        problems.append(f"data.frames must be at least 1, got {config.data.frames}")
    if config.data.crop > config.data.resize:
        problems.append(f"data.crop ({config.data.crop}) must not exceed data.resize ({config.data.resize})")
    bad_cardinalities = [w for w in config.model.cardinalities if not 1 <= w <= config.data.frames]
    if not config.model.cardinalities or bad_cardinalities:
        problems.append(
            f"model.cardinalities must be a non-empty list of sizes between 1 and data.frames "
            f"({config.data.frames}), got {config.model.cardinalities}"
        )
    if not 0.0 < config.model.tuple_fraction <= 1.0:
        problems.append(f"model.tuple_fraction must be in (0, 1], got {config.model.tuple_fraction}")
    if config.train.tasks_per_step < 1:
        problems.append(f"train.tasks_per_step must be at least 1, got {config.train.tasks_per_step}")
    if config.data.cache_views < 0:
        problems.append(f"data.cache_views must be non-negative, got {config.data.cache_views}")
    if config.model.backbone_chunks < 1:
        problems.append(f"model.backbone_chunks must be at least 1, got {config.model.backbone_chunks}")
    if config.train.lr <= 0:
        problems.append(f"train.lr must be positive, got {config.train.lr}")
    if config.train.val_every > 0 and config.train.val_tasks < 1:
        problems.append(f"train.val_tasks must be at least 1 while validation is on (train.val_every="
                        f"{config.train.val_every}), got {config.train.val_tasks}; set train.val_every=0 "
                        "to train without validation")
    if config.eval.tasks < 1:
        problems.append(f"eval.tasks must be at least 1, got {config.eval.tasks}")
    problems += _model_problems(config.model)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def _model_problems(model: ModelConfig) -> list[str]:
    """The backbone name (and the options only the small CNN has), checked before any data is read."""
    from fsvid.backbones import BACKBONE_NAMES  # here: importing the backbones loads torch

    problems = []
    if model.backbone not in BACKBONE_NAMES:
        problems.append(f"model.backbone: {model.backbone!r} is not one of {', '.join(BACKBONE_NAMES)}")
    elif model.backbone != "small_cnn" and (model.widths is not None or model.coordinates):
        problems.append(f"model.widths and model.coordinates apply to the small_cnn backbone only, "
                        f"not {model.backbone}")
    return problems


# ----------------------------------------------------------------------------- presets and files


def preset_names() -> list[str]:
    """The presets shipped in ``fsvid/presets/`` (one per paper setting, plus CPU presets)."""
    folder = resources.files("fsvid") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str | Path, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset name or a YAML file path -> its dict (a file may ``inherit`` a preset or file).

    ``chain`` holds the files already being read for ``inherit``; meeting one again is a loop,
    refused naming the files in it. A file that is not YAML or not UTF-8 is a
    :class:`ConfigError` naming the file and line.
    """
    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder, not a YAML file")
        name = str(path.resolve())
    else:
        path = resources.files("fsvid") / "presets" / f"{source}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {source!r}; presets: {', '.join(preset_names())}")
        name = f"preset {source}"
    if name in chain:
        loop = " -> ".join([*chain[chain.index(name):], name])
        raise ConfigError(f"'inherit' loops: {loop}")
    data = read_yaml_file(path, what="config file")
    if data is None:  # an empty file (or only comments) is more likely a mistake than a wish for the defaults
        raise ConfigError(f"config file {path} is empty: it holds no settings (for the defaults, give no config; "
                          "for a preset's settings, write `inherit: <preset>`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config file must hold a mapping, got {type(data).__name__}")
    parent = data.pop("inherit", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{source}: inherit must name a preset or a YAML file, got {parent!r}")
        data = _merge(_read_yaml(parent, (*chain, name)), data)
    return data


def read_yaml_file(path: Any, what: str = "file") -> Any:
    """The YAML document in ``path`` (UTF-8; a ``Path`` or a package resource); a file that is
    not UTF-8 or not valid YAML raises :class:`ConfigError` with the file, line and problem."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x}); "
                          "re-save it as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{what} {path}{where}: not valid YAML: {problem}") from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); values are read as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} names no key")
    if not raw.strip():
        return path, None
    try:
        return path, yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML "
                          f"({getattr(error, 'problem', None) or error})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a config dict (validation happens in :func:`from_dict`)."""
    data = _merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return data


def load_config(source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A preset name or YAML file (or ``None`` for the defaults), plus dotted overrides."""
    data = _read_yaml(source) if source is not None else {}
    try:
        return validate(from_dict(RunConfig, apply_overrides(data, list(overrides))))
    except ConfigError as error:
        if source is None:
            raise
        raise ConfigError(f"{source}{' with overrides' if overrides else ''}: {error}") from None


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    tmp.replace(path)
    return path
