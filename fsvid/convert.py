"""Load the authors' released TRX / STRM / MASTAF weights into the fsvid heads.

``from_official(method, state_dict, config)`` builds the head from a released-code state dict
(or a whole released checkpoint) and returns it in eval mode. ``config`` has the keys of a
fixture's ``config`` (``shared/fixtures/official/README.md``): TRX ``L, D, Dout, temp_set``,
STRM also ``P``; ``way``, ``shot``, ``nq`` may be present and are not needed (heads read way
and shots from the labels). MASTAF is converted by ``fsvid.heads.mastaf.convert_official_mastaf``.

Released checkpoints (``torch.save({"model_state_dict": ..., ...})`` in the released code)
are handled by ``split_official_checkpoint``: it unwraps ``model_state_dict``, removes the
``module.`` parts DataParallel inserts anywhere in a key (``attn_pat.module.query_proj.weight``,
``resnet.module.0.weight``) and splits off the backbone, ``resnet.{0,1,4,5,6,7}.*`` (an
``nn.Sequential`` of torchvision ResNet children without avgpool/fc), renamed to torchvision's
``conv1 / bn1 / layer1..layer4``. ``from_official`` uses the head part and ignores the backbone.

Parameter names (released -> fsvid), with ``{i}`` the cardinality index:

===============================================  ==================================================
TRX ``transformers.{i}.k_linear``                ``cross_transformers.{i}.key_map``
TRX ``transformers.{i}.norm_k``                  ``cross_transformers.{i}.key_norm``
TRX ``transformers.{i}.v_linear``                ``cross_transformers.{i}.value_map``
TRX ``transformers.{i}.pe.pe``                   ``cross_transformers.{i}.positional_encoding.pe``
TRX ``transformers.{i}.norm_v``                  dropped: created but never used by the released code
STRM ``transformers.{i}.*``                      ``temporal_relation.`` + the TRX names above
STRM ``attn_pat.query_proj / key_proj``          ``patch_enrichment.query_proj / key_proj``
STRM ``attn_pat.value_conv``                     ``patch_enrichment.value_proj``
STRM ``attn_pat.gamma``, ``attn_pat.pe.pe``      ``patch_enrichment.gamma``, ``...positional_encoding.pe``
STRM ``attn_pat.Bot_MLP.{inp,hid,out}_fc``       ``patch_enrichment.refine.{0,2,4}``
STRM ``fr_enrich.Tok_MLP.{inp,out}_fc``          ``frame_enrichment.token_mixing.{0,2}``
STRM ``fr_enrich.Bot_MLP.{inp,out}_fc``          ``frame_enrichment.channel_mixing.{0,2}``
STRM ``fr_enrich.pe.pe``                         ``frame_enrichment.positional_encoding.pe``
STRM ``new_dist_loss_post_pat.{i}.clsW``         ``query_class.tuple_embeddings.{i}.linear``
===============================================  ==================================================

Missing or unexpected keys raise ``ValueError`` listing them. The exception: a released STRM
checkpoint has no classifier weights (``new_dist_loss_post_pat.*``, kept in a plain list by the
released code), so they are left at their random initialisation with a warning.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fsvid.backbones.weights import load_tensors_file
from fsvid.heads.strm import STRMHead
from fsvid.heads.trx import TRXHead

__all__ = [
    "from_official",
    "load_official_checkpoint",
    "split_official_checkpoint",
    "strip_data_parallel",
    "official_head_key",
]

# The released backbone is nn.Sequential(*list(resnet.children())[:-2]): children 2 (relu) and
# 3 (maxpool) hold no parameters.
OFFICIAL_BACKBONE_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}

REQUIRED_CONFIG = {"trx": ("L", "D", "Dout", "temp_set"), "strm": ("L", "P", "D", "Dout", "temp_set")}

_TRANSFORMER_RULES = [
    (r"^transformers\.(\d+)\.k_linear\.(weight|bias)$", r"cross_transformers.\1.key_map.\2"),
    (r"^transformers\.(\d+)\.v_linear\.(weight|bias)$", r"cross_transformers.\1.value_map.\2"),
    (r"^transformers\.(\d+)\.norm_k\.(weight|bias)$", r"cross_transformers.\1.key_norm.\2"),
    (r"^transformers\.(\d+)\.pe\.pe$", r"cross_transformers.\1.positional_encoding.pe"),
    (r"^transformers\.\d+\.norm_v\.(weight|bias)$", None),  # unused by the released forward pass
]
_STRM_RULES = [(pattern, None if new is None else "temporal_relation." + new) for pattern, new in _TRANSFORMER_RULES] + [
    (r"^attn_pat\.query_proj\.(weight|bias)$", r"patch_enrichment.query_proj.\1"),
    (r"^attn_pat\.key_proj\.(weight|bias)$", r"patch_enrichment.key_proj.\1"),
    (r"^attn_pat\.value_conv\.(weight|bias)$", r"patch_enrichment.value_proj.\1"),
    (r"^attn_pat\.gamma$", r"patch_enrichment.gamma"),
    (r"^attn_pat\.pe\.pe$", r"patch_enrichment.positional_encoding.pe"),
    (r"^attn_pat\.Bot_MLP\.inp_fc\.(weight|bias)$", r"patch_enrichment.refine.0.\1"),
    (r"^attn_pat\.Bot_MLP\.hid_fc\.(weight|bias)$", r"patch_enrichment.refine.2.\1"),
    (r"^attn_pat\.Bot_MLP\.out_fc\.(weight|bias)$", r"patch_enrichment.refine.4.\1"),
    (r"^fr_enrich\.Tok_MLP\.inp_fc\.(weight|bias)$", r"frame_enrichment.token_mixing.0.\1"),
    (r"^fr_enrich\.Tok_MLP\.out_fc\.(weight|bias)$", r"frame_enrichment.token_mixing.2.\1"),
    (r"^fr_enrich\.Bot_MLP\.inp_fc\.(weight|bias)$", r"frame_enrichment.channel_mixing.0.\1"),
    (r"^fr_enrich\.Bot_MLP\.out_fc\.(weight|bias)$", r"frame_enrichment.channel_mixing.2.\1"),
    (r"^fr_enrich\.pe\.pe$", r"frame_enrichment.positional_encoding.pe"),
    (r"^new_dist_loss_post_pat\.(\d+)\.clsW\.(weight|bias)$", r"query_class.tuple_embeddings.\1.linear.\2"),
]
KEY_RULES = {"trx": _TRANSFORMER_RULES, "strm": _STRM_RULES}

_UNMAPPED = object()


def strip_data_parallel(key: str) -> str:
    """Remove every ``module.`` part DataParallel inserted: ``attn_pat.module.query_proj.weight``
    -> ``attn_pat.query_proj.weight``, ``module.resnet.0.weight`` -> ``resnet.0.weight``."""
    return ".".join(part for part in key.split(".") if part != "module")


def _unwrap(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model's state dict inside a released checkpoint, with ``module.`` parts removed."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}")
    state = checkpoint.get("model_state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint['model_state_dict'] must be a dict, got {type(state).__name__}")
    unwrapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(
                f"entry {key!r} of the state dict is a {type(value).__name__}, not a tensor "
                "(pass the model state dict or the whole checkpoint with 'model_state_dict')"
            )
        new_key = strip_data_parallel(key)
        if new_key in unwrapped:
            raise ValueError(f"key {key!r} collides with another key once 'module.' is removed: {new_key!r}")
        unwrapped[new_key] = value
    return unwrapped


def split_official_checkpoint(checkpoint: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split a released checkpoint (or model state dict) into (head state dict, backbone state dict).

    The head part keeps the released names (minus ``module.``); the backbone part (``resnet.*``)
    is renamed to torchvision ResNet names, ``resnet.0.weight`` -> ``conv1.weight``,
    ``resnet.5.1.conv2.weight`` -> ``layer2.1.conv2.weight``; it loads into a torchvision ResNet
    (its ``fc`` keys excepted).
    """
    head: dict[str, Tensor] = {}
    backbone: dict[str, Tensor] = {}
    unknown = []
    for key, value in _unwrap(checkpoint).items():
        parts = key.split(".")
        if parts[0] != "resnet":
            head[key] = value
        elif len(parts) > 2 and parts[1] in OFFICIAL_BACKBONE_CHILDREN:
            backbone[".".join([OFFICIAL_BACKBONE_CHILDREN[parts[1]], *parts[2:]])] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"backbone keys not in the released ResNet layout resnet.{{0,1,4,5,6,7}}.*: {sorted(unknown)}"
        )
    return head, backbone


def official_head_key(method: str, key: str) -> str | None:
    """The fsvid parameter name of a released head key; ``None`` for a key that is dropped on
    purpose (TRX's unused ``norm_v``). Raises ``KeyError`` for a key no rule knows."""
    for pattern, replacement in KEY_RULES[method]:
        if re.match(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    raise KeyError(key)


def _check_config(method: str, config: Mapping[str, Any]) -> None:
    missing = [key for key in REQUIRED_CONFIG[method] if key not in config]
    if missing:
        raise ValueError(f"from_official({method!r}): config lacks {missing} (has {sorted(config)})")


def build_official_head(method: str, config: Mapping[str, Any]) -> nn.Module:
    """The fsvid head with the released code's architecture and sizes (untrained)."""
    _check_config(method, config)
    if method == "trx":
        return TRXHead(dim=config["D"], out_dim=config["Dout"], seq_len=config["L"], cardinalities=config["temp_set"])
    return STRMHead(
        dim=config["D"],
        out_dim=config["Dout"],
        seq_len=config["L"],
        patches=config["P"],
        cardinalities=config["temp_set"],
    )  # defaults = released code: SA-PLE, MLP-FLE, QC on, no sqrt(D), learnable gamma


def from_official(method: str, state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> nn.Module:
    """Build ``method``'s head ("trx", "strm" or "mastaf") from released-code weights, in eval mode.

    ``state_dict``: the released model's state dict or a whole released checkpoint (backbone
    keys ``resnet.*`` are ignored here; see ``split_official_checkpoint``). Raises ``ValueError``
    naming the missing / unexpected keys; warns when a STRM checkpoint lacks the classifier.
    """
    if method == "mastaf":
        from fsvid.heads.mastaf import convert_official_mastaf  # written alongside the MASTAF head

        return convert_official_mastaf(_unwrap(state_dict), config).eval()
    if method not in KEY_RULES:
        raise ValueError(f"from_official: unknown method {method!r}; expected 'trx', 'strm' or 'mastaf'")

    official, _backbone = split_official_checkpoint(state_dict)
    head = build_official_head(method, config)

    expected = set(head.state_dict())
    renamed: dict[str, Tensor] = {}
    unexpected = []
    for key, value in official.items():
        try:
            new_key = official_head_key(method, key)
        except KeyError:  # no rule knows this key
            unexpected.append(key)
            continue
        if new_key is None:  # dropped on purpose
            continue
        if new_key not in expected:  # e.g. a third cardinality when config["temp_set"] has two
            unexpected.append(key)
            continue
        renamed[new_key] = value
    if unexpected:
        raise ValueError(
            f"from_official({method!r}): unexpected keys in the state dict (for config {dict(config)}): {sorted(unexpected)}"
        )
    missing = sorted(expected - set(renamed))
    untrained = [key for key in missing if key.startswith("query_class.")]
    missing = [key for key in missing if not key.startswith("query_class.")]
    if missing:
        raise ValueError(
            f"from_official({method!r}): keys missing from the state dict (fsvid names, see the table in "
            f"fsvid.convert): {missing}"
        )
    if untrained:
        warnings.warn(
            "the STRM state dict has no query-class classifier weights (new_dist_loss_post_pat.*: the "
            f"released code never saves them); {untrained} stay at their random initialisation (untrained)",
            UserWarning,
            stacklevel=2,
        )
    try:
        head.load_state_dict(renamed, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"from_official({method!r}): weights do not fit config {dict(config)}: {error}") from error
    return head.eval()


def load_official_checkpoint(path: str | Path, method: str, config: Mapping[str, Any]) -> nn.Module:
    """``from_official`` on a released checkpoint file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    checkpoint = load_tensors_file(path, f"released {method} checkpoint")
    try:
        return from_official(method, checkpoint, config)
    except (TypeError, ValueError) as error:  # not a state dict, keys or shapes that do not fit
        raise ValueError(f"{path}: {error}") from error
