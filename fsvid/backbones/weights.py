"""Reading weight files and checking them against a backbone.

Every backbone loads weights the same way:

1. `read_state_dict(source)` reads a local `.pt`/`.pth` file with
   `torch.load(path, weights_only=True)` (never unpickling arbitrary objects), or takes a
   state dict that is already in memory. Checkpoint wrappers such as
   `{"arch": ..., "state_dict": ...}` (3D-ResNets-PyTorch) or `{"model_state_dict": ...}`
   (TRX/STRM training code) are opened, and the `module.` parts that `nn.DataParallel`
   puts into names (`module.conv1.weight`, `resnet.module.0.weight`) are removed.
2. The backbone renames keys from other layouts into its own (for example the released
   TRX/STRM `resnet.0.weight` into torchvision's `conv1.weight`) and drops classifier
   heads it does not have (`fc.*`, `heads.*`).
3. `load_checked_state_dict(module, state, label)` compares the names and shapes with the
   module's own and raises one `ValueError` that lists every missing, unexpected and
   shape-mismatched key, naming the file, before copying anything.

Named torchvision weights (`"IMAGENET1K_V1"`, `"ResNet50_Weights.IMAGENET1K_V1"`, the alias
`"imagenet"` where it is unambiguous) are resolved by `resolve_torchvision_weights`; only
building a backbone with such a name downloads anything.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights

# A weights source: a path to a local file, or a state dict already in memory.
WeightsSource = Union[str, Path, Mapping[str, Any]]

# Wrappers used by training scripts around the actual state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")

# Name parts added by wrappers: nn.DataParallel / DistributedDataParallel ("module") and
# torch.compile ("_orig_mod").
_WRAPPER_NAME_PARTS = {"module", "_orig_mod"}

# Short aliases accepted for named torchvision weights, mapped to the dataset the weights
# must have been trained on (checked against the enum member's name).
_TORCHVISION_ALIASES = {"imagenet": "IMAGENET", "kinetics400": "KINETICS400", "kinetics": "KINETICS400"}


def strip_wrapper_names(key: str) -> str:
    """Remove `module.` / `_orig_mod.` parts anywhere in a parameter name.

    `module.layer1.0.conv1.weight` -> `layer1.0.conv1.weight`,
    `resnet.module.0.weight` -> `resnet.0.weight`.
    """
    return ".".join(part for part in key.split(".") if part not in _WRAPPER_NAME_PARTS)


def load_tensors_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, or ``ValueError`` saying "this is not a
    ``what`` fsvid can read safely: PATH" and why (a pickle of Python objects other than
    tensors, numbers, strings, lists and dicts, which could run code; a damaged file; not a
    torch file at all). Never falls back to full unpickling."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of plain pickles
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        objects = next((line for line in lines if "GLOBAL" in line or "Unsupported global" in line), None)
        opcode = next((line for line in lines if line.startswith("Unsupported operand")), None)
        if opcode is None and (objects is not None or "Weights only load failed" in str(error)):
            why = "it holds Python objects, which fsvid does not unpickle (that could run code)"
            why += f": {objects.split('. ')[0].rstrip('.')}" if objects else ""
            why += "; save tensors only, e.g. torch.save(model.state_dict(), path)"
        elif opcode is not None and _first_byte(path) == b"\x80":  # pickle protocol 2+
            why = "a plain Python pickle, not a torch.save file; fsvid does not unpickle those (that could run code)"
        else:
            why = f"{opcode or lines[0] if lines else type(error).__name__}: damaged, or not a torch file"
        raise ValueError(f"this is not a {what} fsvid can read safely: {path} ({why})") from None


def _first_byte(path: str | Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(1)


def read_state_dict(source: WeightsSource, missing_file_help: str = "") -> tuple[dict[str, Tensor], str]:
    """Read a state dict from a local file or take one from memory.

    Args:
        source: path to a file saved with `torch.save`, or a mapping of names to tensors.
            A mapping with a `state_dict`, `model_state_dict` or `model` entry is opened.
        missing_file_help: a sentence appended to the FileNotFoundError saying how to get
            the file.

    Returns:
        `(state, label)`: a plain dict of tensors with wrapper name parts removed, and a
        label naming the source for error messages (`weights file '/path/x.pth'`).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be read with `weights_only=True`, or it holds no state
            dict of tensors.
    """
    if isinstance(source, Mapping):
        content: Any = source
        label = "the given state dict"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            message = f"weights file '{path}' not found."
            if missing_file_help:
                message += " " + missing_file_help
            raise FileNotFoundError(message)
        label = f"weights file '{path}'"
        content = load_tensors_file(path, "weights file")

    # Open wrappers such as {"arch": "resnet-50", "state_dict": {...}, "optimizer": {...}}.
    while isinstance(content, Mapping):
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(content.get(k), Mapping)), None)
        if wrapper is None:
            break
        content = content[wrapper]
    if not isinstance(content, Mapping):
        raise ValueError(f"{label} holds a {type(content).__name__}, not a state dict (a mapping of names to tensors)")
    not_tensors = [str(k) for k, v in content.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ValueError(
            f"{label} is not a state dict of tensors: entries {_preview(not_tensors)} are not tensors "
            f"(expected a state dict, or a checkpoint with one under {' / '.join(_WRAPPER_KEYS)})"
        )

    state: dict[str, Tensor] = {}
    for key, value in content.items():
        name = strip_wrapper_names(str(key))
        if name in state:
            raise ValueError(f"{label} has two entries for '{name}' once 'module.' parts are removed")
        state[name] = value
    return state, label


def select_prefix(state: Mapping[str, Tensor], prefix: str, label: str) -> dict[str, Tensor]:
    """Keep the entries whose names start with `prefix` and remove the prefix.

    For example `prefix="backbone."` takes a backbone out of a whole-model checkpoint.
    """
    selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not selected:
        raise ValueError(f"{label} has no entries starting with '{prefix}' (first names: {_preview(list(state))})")
    return selected


# Children of torchvision's ResNet (and of 3D-ResNets-PyTorch's) in order: conv1, bn1, relu,
# maxpool, layer1..4, avgpool, fc. TRX/STRM keep `nn.Sequential(*children[:-1 or -2])` as
# `resnet`, so their names are `resnet.0.weight` (conv1), `resnet.4.0.conv1.weight` (layer1).
RESNET_SEQUENTIAL_NAMES = {0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}
_SEQUENTIAL_KEY = re.compile(r"^(?:resnet\.)?(\d+)\.(.+)$")


def resnet_names_from_sequential(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the TRX/STRM `resnet.<index>.*` layout into ResNet module names.

    `resnet.0.weight` -> `conv1.weight`, `resnet.5.1.bn2.bias` -> `layer2.1.bn2.bias`.
    Names in the torchvision layout pass through unchanged; unknown indices are left as
    they are, so the caller reports them as unexpected keys.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _SEQUENTIAL_KEY.match(key)
        if match and int(match.group(1)) in RESNET_SEQUENTIAL_NAMES:
            key = f"{RESNET_SEQUENTIAL_NAMES[int(match.group(1))]}.{match.group(2)}"
        renamed[key] = value
    return renamed


def drop_prefixes(state: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """Drop entries whose names start with one of `prefixes` (classifier heads: `fc.`)."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def load_checked_state_dict(module: nn.Module, state: Mapping[str, Tensor], label: str) -> None:
    """Copy `state` into `module` after checking every name and shape.

    BatchNorm `num_batches_tracked` counters may be absent (old checkpoints); they keep the
    module's values. Everything else must match exactly.

    Raises:
        ValueError: naming `label`, listing the missing, unexpected and shape-mismatched keys.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): {_preview(mismatched)}")
        raise ValueError(f"{label} does not fit {type(module).__name__}: " + "; ".join(problems))
    full = {k: state.get(k, own[k]) for k in own}
    module.load_state_dict(full, strict=True)


def resolve_torchvision_weights(arch: str, spec: Any) -> WeightsEnum | None:
    """Turn a weights name into a torchvision weights enum member, or None if it is no name.

    Accepted for `arch="resnet50"`: a `ResNet50_Weights` member, `"DEFAULT"`,
    `"IMAGENET1K_V1"` (any case), `"ResNet50_Weights.IMAGENET1K_V1"`; for video models
    `"kinetics400"`. The alias `"imagenet"` stands for the default ImageNet weights, except
    for a ResNet with several ImageNet versions (resnet50, resnet101, resnet152: V1 and V2),
    where it is refused: the released TRX/STRM code used `resnet50(pretrained=True)`, i.e.
    `IMAGENET1K_V1`, while torchvision's DEFAULT is `IMAGENET1K_V2`, and they give different
    features. Any other string is not a name (the caller treats it as a file path).
    Resolving does not download; `member.get_state_dict()` does.

    Raises:
        ValueError: an alias or enum member that does not belong to `arch`, or the
            ambiguous `"imagenet"` for such a ResNet.
    """
    enum_class = get_model_weights(arch)
    if isinstance(spec, WeightsEnum):
        if not isinstance(spec, enum_class):
            raise ValueError(f"weights {spec} are not weights for {arch} ({enum_class.__name__})")
        return spec
    if not isinstance(spec, str):
        return None
    name = spec.strip()
    if name.lower() in _TORCHVISION_ALIASES:
        dataset = _TORCHVISION_ALIASES[name.lower()]
        default = enum_class["DEFAULT"]
        if not default.name.startswith(dataset):
            raise ValueError(
                f"weights='{spec}' is not available for {arch}: torchvision has {list(enum_class.__members__)}"
            )
        versions = [m for m in enum_class.__members__ if m.startswith(dataset)]
        if arch.startswith("resnet") and len(versions) > 1:
            raise ValueError(
                f"weights='{spec}' is ambiguous for {arch}: torchvision has {' and '.join(versions)}. "
                f"IMAGENET1K_V1 is the original release, what `{arch}(pretrained=True)` loaded and the "
                f"released TRX/STRM code used; IMAGENET1K_V2 (torchvision's DEFAULT) comes from a newer "
                f"training recipe. Name one: weights='IMAGENET1K_V1' (model.backbone_weights=IMAGENET1K_V1)"
            )
        return default
    if "." in name:
        class_name, _, name = name.partition(".")
        if class_name != enum_class.__name__:
            return None
    members = {m.upper(): m for m in enum_class.__members__}
    if name.upper() in members:
        return enum_class[members[name.upper()]]
    return None


def _preview(items: list[str], limit: int = 6) -> str:
    """Comma-separated first items, with a count of the rest."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
