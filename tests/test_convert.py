"""Tests for fsvid/convert.py: released-code fixtures, released checkpoint layout, errors."""

from __future__ import annotations

import importlib

import pytest
import torch
import torchvision
from torch import nn

from fsvid.convert import (
    from_official,
    load_official_checkpoint,
    split_official_checkpoint,
    strip_data_parallel,
)
from head_helpers import FIXTURES


def has_mastaf_converter() -> bool:
    try:
        return hasattr(importlib.import_module("fsvid.heads.mastaf"), "convert_official_mastaf")
    except ModuleNotFoundError:
        return False


def load_fixture(method: str) -> dict:
    path = FIXTURES / f"{method}_public.pt"
    if not path.exists():
        pytest.skip(f"reference fixture not found: {path}")
    return torch.load(path, weights_only=True)


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Agreement within 1e-5 relative to the size of the reference values."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def run_fixture(head: nn.Module, fixture: dict):
    with torch.no_grad():
        return head(fixture["support"], fixture["support_labels"], fixture["query"], fixture["query_labels"])


METHODS = [
    "trx",
    "strm",
    pytest.param(
        "mastaf", marks=pytest.mark.skipif(not has_mastaf_converter(), reason="fsvid.heads.mastaf not written yet")
    ),
]


@pytest.mark.parametrize("method", METHODS)
def test_fixture_equivalence(method: str) -> None:
    fixture = load_fixture(method)
    head = from_official(method, fixture["official_state_dict"], fixture["config"])
    assert not head.training
    out = run_fixture(head, fixture)
    assert_close_relative(out.logits, fixture["logits"])
    if method == "strm":
        assert_close_relative(out.qc_logits, fixture["logits_post_pat"])
        assert_close_relative(out.extras["test_logits"], fixture["logits_combined_test"])
    if method == "mastaf":
        assert_close_relative(out.dense_logits, fixture["dense_logits"])
        assert_close_relative(out.global_logits, fixture["global_logits"])


def test_trx_fixture_per_cardinality_heads_are_averaged() -> None:
    fixture = load_fixture("trx")
    head = from_official("trx", fixture["official_state_dict"], fixture["config"])
    out = run_fixture(head, fixture)
    assert head.cardinalities == (2, 3)
    assert out.extras["logits_per_cardinality"].shape == (15, 5, 2)
    # The two cardinalities disagree, so the mean is a real test of averaging both.
    assert not torch.allclose(out.extras["logits_per_cardinality"][..., 0], fixture["logits"], rtol=1e-3)


def released_backbone_state() -> tuple[dict, dict]:
    """A ResNet-18 in the released layout: nn.Sequential(*children[:-2]) under ``resnet.``."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    released = nn.Sequential(*list(resnet.children())[:-2])
    official = {f"resnet.{k}": v for k, v in released.state_dict().items()}
    return official, resnet.state_dict()


def with_data_parallel(state: dict) -> dict:
    """Insert ``module.`` after the first name part, as DataParallel-wrapped submodules store them."""
    return {k.split(".", 1)[0] + ".module." + k.split(".", 1)[1]: v for k, v in state.items()}


def test_split_official_checkpoint_maps_the_backbone_to_torchvision_names() -> None:
    official, torchvision_state = released_backbone_state()
    head_keys = {"transformers.0.k_linear.weight": torch.zeros(2, 2)}
    checkpoint = {"iteration": 10, "model_state_dict": with_data_parallel(official | head_keys)}
    head, backbone = split_official_checkpoint(checkpoint)
    assert list(head) == ["transformers.0.k_linear.weight"]
    assert "conv1.weight" in backbone and "layer4.1.bn2.running_var" in backbone
    fresh = torchvision.models.resnet18()
    result = fresh.load_state_dict(backbone, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    for key, value in backbone.items():
        assert torch.equal(value, torchvision_state[key]), key


def test_split_official_checkpoint_rejects_unknown_backbone_children() -> None:
    with pytest.raises(ValueError, match=r"resnet\.9\.weight"):
        split_official_checkpoint({"resnet.9.weight": torch.zeros(1), "resnet.0.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    "key, expected",
    [
        ("attn_pat.module.query_proj.weight", "attn_pat.query_proj.weight"),
        ("resnet.module.0.weight", "resnet.0.weight"),
        ("module.transformers.0.pe.pe", "transformers.0.pe.pe"),
        ("transformers.0.k_linear.bias", "transformers.0.k_linear.bias"),
    ],
)
def test_strip_data_parallel(key: str, expected: str) -> None:
    assert strip_data_parallel(key) == expected


@pytest.mark.parametrize("method", ["trx", "strm"])
def test_whole_released_checkpoint_with_data_parallel_keys(method: str) -> None:
    fixture = load_fixture(method)
    official, _ = released_backbone_state()
    state = with_data_parallel(fixture["official_state_dict"] | official)
    head = from_official(method, {"model_state_dict": state, "iteration": 3}, fixture["config"])
    assert_close_relative(run_fixture(head, fixture).logits, fixture["logits"])


def test_released_strm_checkpoint_without_classifier_warns_and_keeps_trm() -> None:
    fixture = load_fixture("strm")
    state = {k: v for k, v in fixture["official_state_dict"].items() if not k.startswith("new_dist_loss_post_pat")}
    with pytest.warns(UserWarning, match="untrained"):
        head = from_official("strm", state, fixture["config"])
    out = run_fixture(head, fixture)
    assert_close_relative(out.logits, fixture["logits"])
    assert not torch.allclose(out.qc_logits, fixture["logits_post_pat"], rtol=1e-3)  # random classifier


def test_trx_unused_value_norm_is_dropped() -> None:
    fixture = load_fixture("trx")
    head = from_official("trx", fixture["official_state_dict"], fixture["config"])
    assert not any("norm_v" in k or "value_norm" in k for k in head.state_dict())


def test_missing_keys_are_listed() -> None:
    fixture = load_fixture("trx")
    state = dict(fixture["official_state_dict"])
    del state["transformers.1.k_linear.bias"]
    with pytest.raises(ValueError, match=r"missing.*cross_transformers\.1\.key_map\.bias"):
        from_official("trx", state, fixture["config"])


def test_unexpected_keys_are_listed() -> None:
    fixture = load_fixture("trx")
    state = dict(fixture["official_state_dict"])
    state["transformers.0.extra.weight"] = torch.zeros(1)
    state["transformers.2.k_linear.weight"] = torch.zeros(16, 64)  # a third cardinality
    with pytest.raises(ValueError, match=r"unexpected.*transformers\.0\.extra\.weight.*transformers\.2\.k_linear\.weight"):
        from_official("trx", state, fixture["config"])


def test_config_errors() -> None:
    fixture = load_fixture("strm")
    config = {k: v for k, v in fixture["config"].items() if k != "P"}
    with pytest.raises(ValueError, match=r"config lacks \['P'\]"):
        from_official("strm", fixture["official_state_dict"], config)
    with pytest.raises(ValueError, match="do not fit config"):
        from_official("strm", fixture["official_state_dict"], fixture["config"] | {"Dout": 8})
    with pytest.raises(ValueError, match="unknown method 'otam'"):
        from_official("otam", fixture["official_state_dict"], fixture["config"])


def test_non_tensor_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="'iteration' of the state dict is a int"):
        from_official("trx", {"iteration": 3, "transformers.0.pe.pe": torch.zeros(1)}, {})
    with pytest.raises(TypeError, match="expected a state dict"):
        split_official_checkpoint([1, 2])  # type: ignore[arg-type]


def test_load_official_checkpoint_file(tmp_path) -> None:
    fixture = load_fixture("trx")
    path = tmp_path / "checkpoint.pt"
    torch.save({"model_state_dict": with_data_parallel(fixture["official_state_dict"]), "iteration": 1}, path)
    head = load_official_checkpoint(path, "trx", fixture["config"])
    assert_close_relative(run_fixture(head, fixture).logits, fixture["logits"])
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_official_checkpoint(tmp_path / "missing.pt", "trx", fixture["config"])
