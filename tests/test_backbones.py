"""Tests for fsvid.backbones: output forms, equivalence with torchvision, weight files, trainable parts, errors.

Sizes are tiny (64 x 64 frames, 1-2 videos, 2-8 frames) so the file runs in well under a
minute on two CPU cores; the full-size 3D ResNet-50 shapes are checked on the meta device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fsvid.backbones import (
    BACKBONE_NAMES,
    Bottleneck3d,
    ResNet2d,
    ResNet3d,
    SmallCNN,
    TorchvisionVideoResNet,
    VisionTransformerB16,
    build_backbone,
    flatten_positions,
    read_state_dict,
    resolve_torchvision_weights,
    shape_output,
)


def random_clips(videos: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(videos, frames, 3, size, size, generator=generator)


def randomise_batchnorm(module: nn.Module, seed: int = 1) -> None:
    """Give every BatchNorm non-trivial statistics and affine values, so loading them matters."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def assert_state_equal(module: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    for key, value in expected.items():
        assert torch.equal(own[key], value), key


# ----- output forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dim", "grid"), [("resnet18", 512, 2), ("small_cnn", 128, 4)]
)
def test_2d_output_forms_shapes_and_relations(name: str, dim: int, grid: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, output="maps").eval()
    assert backbone.feature_dim == dim
    clips = random_clips(2, 4, 64)
    with torch.no_grad():
        maps = backbone(clips)
        assert maps.shape == (2, dim, 4, grid, grid)  # (videos, C, L, h, w)
        outputs = {}
        for output in ("frames", "patches", "positions", "pooled"):
            backbone.output = output
            outputs[output] = backbone(clips)
    assert outputs["frames"].shape == (2, 4, dim)
    assert outputs["patches"].shape == (2, 4, 16, dim)  # P = 4 by default
    assert outputs["positions"].shape == (2, 4 * grid * grid, dim)
    assert outputs["pooled"].shape == (2, dim)
    for t in range(4):
        torch.testing.assert_close(outputs["frames"][:, t], maps[:, :, t].mean(dim=(-2, -1)))
    torch.testing.assert_close(outputs["pooled"], maps.mean(dim=(2, 3, 4)))
    t, i, j = 3, grid - 1, 0
    torch.testing.assert_close(outputs["positions"][:, t * grid * grid + i * grid + j], maps[:, :, t, i, j])


def test_each_frame_is_mapped_on_its_own() -> None:
    torch.manual_seed(0)
    backbone = SmallCNN(output="frames").eval()
    clips = random_clips(2, 3, 64)
    with torch.no_grad():
        together = backbone(clips)
        alone = backbone(clips[1:, 2:])
    torch.testing.assert_close(alone[0, 0], together[1, 2])


def test_small_cnn_patches_are_row_major_max_pooled_cells() -> None:
    torch.manual_seed(0)
    backbone = SmallCNN(output="maps", patch_grid=2).eval()
    clips = random_clips(1, 2, 64)
    with torch.no_grad():
        maps = backbone(clips)  # (1, 128, 2, 4, 4)
        backbone.output = "patches"
        patches = backbone(clips)  # (1, 2, 4, 128)
    assert patches.shape == (1, 2, 4, 128)
    for row in range(2):
        for col in range(2):
            cell = maps[:, :, :, 2 * row : 2 * row + 2, 2 * col : 2 * col + 2].amax(dim=(-2, -1))  # (1, 128, 2)
            torch.testing.assert_close(patches[:, :, row * 2 + col], cell.transpose(1, 2))


def test_patches_equal_strm_adaptive_max_pool_of_7x7_maps() -> None:
    torch.manual_seed(0)
    videos, channels, frames = 2, 8, 3
    maps = torch.randn(videos, channels, frames, 7, 7)
    # STRM's released order: AdaptiveMaxPool2d(4) per frame, reshape (n, C, 16), permute to (n, 16, C).
    per_frame = maps.transpose(1, 2).flatten(0, 1)  # (videos*L, C, 7, 7)
    strm = nn.AdaptiveMaxPool2d(4)(per_frame).reshape(-1, channels, 16).permute(0, 2, 1)
    expected = strm.reshape(videos, frames, 16, channels)
    torch.testing.assert_close(shape_output(maps, "patches", patch_grid=4), expected)
    native = shape_output(maps, "patches", patch_grid=None)
    assert native.shape == (videos, frames, 49, channels)
    torch.testing.assert_close(native[:, :, 7 * 2 + 5], maps[:, :, :, 2, 5].transpose(1, 2))
    averaged = shape_output(maps, "patches", patch_grid=1, patch_pool="avg")
    torch.testing.assert_close(averaged[:, :, 0], maps.mean(dim=(3, 4)).transpose(1, 2))


def test_flatten_positions_is_time_major_then_rows() -> None:
    maps = torch.arange(2 * 3 * 2 * 2 * 3, dtype=torch.float32).reshape(2, 3, 2, 2, 3)  # (videos, C, T, h, w)
    positions = flatten_positions(maps)
    assert positions.shape == (2, 12, 3)
    torch.testing.assert_close(positions[1, 1 * 6 + 1 * 3 + 2], maps[1, :, 1, 1, 2])


def test_normalize_subtracts_mean_and_divides_by_std() -> None:
    torch.manual_seed(0)
    raw = SmallCNN().eval()
    normalised = SmallCNN(normalize="imagenet", weights=raw.state_dict()).eval()
    clips = random_clips(1, 2, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normalised(clips), raw((clips - mean) / std))
    assert "input_mean" not in normalised.state_dict()


def test_group_norm_small_cnn_does_not_mix_videos_in_training() -> None:
    torch.manual_seed(0)
    backbone = SmallCNN(norm="group").train()
    clips = random_clips(2, 2, 64)
    torch.testing.assert_close(backbone(clips)[1], backbone(clips[1:])[0])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())


# ----- 2D ResNet and torchvision layouts --------------------------------------------------


def test_resnet18_file_in_torchvision_layout_matches_torchvision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    randomise_batchnorm(reference)
    path = tmp_path / "resnet18_dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)

    backbone = ResNet2d(18, output="frames", weights=path).eval()
    reference.fc = nn.Identity()
    reference.eval()
    clips = random_clips(2, 3, 64)
    with torch.no_grad():
        expected = reference(clips.flatten(0, 1)).unflatten(0, (2, 3))  # (videos, L, 512)
        torch.testing.assert_close(backbone(clips), expected, rtol=1e-5, atol=1e-5)


def test_resnet50_full_torchvision_state_dict_loads_without_fc() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet50()
    randomise_batchnorm(reference)
    state = reference.state_dict()
    backbone = ResNet2d(50).load_weights(state)
    assert backbone.feature_dim == 2048
    assert not any(k.startswith("fc.") for k in backbone.state_dict())
    assert_state_equal(backbone, {k: v for k, v in state.items() if not k.startswith("fc.")})


def test_resnet18_released_trx_strm_layout_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    randomise_batchnorm(reference)
    # TRX/STRM: self.resnet = nn.Sequential(*list(resnet.children())[:-2]), trained with DataParallel.
    sequential = nn.Sequential(*list(reference.children())[:-2])
    state = {f"resnet.module.{k}": v for k, v in sequential.state_dict().items()}
    path = tmp_path / "backbone_only.pt"
    torch.save(state, path)
    backbone = ResNet2d(18).load_weights(path)
    assert_state_equal(backbone, {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})

    # A whole released checkpoint: other modules beside the backbone need `prefix`.
    whole = dict(state, **{"transformers.0.k_linear.weight": torch.zeros(4, 4)})
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"iteration": 100, "model_state_dict": whole}, checkpoint)
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*unexpected.*transformers\.0\.k_linear\.weight"):
        ResNet2d(18).load_weights(checkpoint)
    loaded = ResNet2d(18).load_weights(checkpoint, prefix="resnet.")
    assert_state_equal(loaded, {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})


def test_resolve_torchvision_weights_names_without_downloading() -> None:
    weights = torchvision.models.ResNet50_Weights
    # ResNet-50 has two ImageNet versions: the alias is refused, naming both
    with pytest.raises(ValueError, match=r"ambiguous for resnet50: .*IMAGENET1K_V1 and IMAGENET1K_V2.*released TRX/STRM"):
        resolve_torchvision_weights("resnet50", "imagenet")
    assert resolve_torchvision_weights("resnet18", "imagenet") is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert resolve_torchvision_weights("resnet50", "imagenet1k_v1") is weights.IMAGENET1K_V1
    assert resolve_torchvision_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1") is weights.IMAGENET1K_V1
    assert resolve_torchvision_weights("resnet50", weights.DEFAULT) is weights.IMAGENET1K_V2
    assert resolve_torchvision_weights("resnet50", "weights/resnet50.pth") is None
    assert resolve_torchvision_weights("r3d_18", "kinetics400") is torchvision.models.video.R3D_18_Weights.KINETICS400_V1
    with pytest.raises(ValueError, match="kinetics400.*resnet50"):
        resolve_torchvision_weights("resnet50", "kinetics400")
    with pytest.raises(ValueError, match="not weights for resnet18"):
        resolve_torchvision_weights("resnet18", weights.DEFAULT)


# ----- ViT-B/16 ---------------------------------------------------------------------------


def test_vit_matches_torchvision_and_gives_patch_tokens() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(image_size=64)  # 4 x 4 patches of 16 pixels
    backbone = VisionTransformerB16(image_size=64, weights=reference.state_dict(), output="frames").eval()
    reference.heads = nn.Identity()
    reference.eval()
    clips = random_clips(1, 2, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(clips)[0], reference(clips[0]), rtol=1e-4, atol=1e-4)
        backbone.output = "maps"
        maps = backbone(clips)
        backbone.output, backbone.patch_grid = "patches", None
        tokens = backbone(clips)
        backbone.patch_grid = 2
        pooled_tokens = backbone(clips)
        backbone.output, backbone.frame_feature = "frames", "mean"
        mean_tokens = backbone(clips)
    assert maps.shape == (1, 768, 2, 4, 4)
    assert tokens.shape == (1, 2, 16, 768)
    assert pooled_tokens.shape == (1, 2, 4, 768)
    torch.testing.assert_close(tokens[0, 1, 1 * 4 + 3], maps[0, :, 1, 1, 3])
    torch.testing.assert_close(mean_tokens, tokens.mean(dim=2))

    with pytest.raises(ValueError, match="built for 64 x 64 frames.*got 32 x 32"):
        backbone(random_clips(1, 1, 32))

    backbone.set_trainable("last")
    trained = {name for name, p in backbone.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("encoder.layers.encoder_layer_11.", "encoder.ln.")) for n in trained)
    assert "encoder.ln.weight" in trained and not backbone.class_token.requires_grad


# ----- 3D ResNet-50 (3D-ResNets-PyTorch names) --------------------------------------------


def expected_resnet3d50_names() -> set[str]:
    """The 3D-ResNets-PyTorch parameter/buffer names of a ResNet-50 without fc, written out."""
    def batchnorm(prefix: str) -> list[str]:
        return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    names = ["conv1.weight", *batchnorm("bn1")]
    for layer, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            for i in (1, 2, 3):
                names += [f"{prefix}.conv{i}.weight", *batchnorm(f"{prefix}.bn{i}")]
            if block == 0:
                names += [f"{prefix}.downsample.0.weight", *batchnorm(f"{prefix}.downsample.1")]
    return set(names)


def test_resnet3d50_has_the_checkpoint_names_and_shapes() -> None:
    with torch.device("meta"):
        backbone = ResNet3d(50)
    state = backbone.state_dict()
    assert set(state) == expected_resnet3d50_names()
    assert state["conv1.weight"].shape == (64, 3, 7, 7, 7)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3, 3)
    assert state["layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1, 1)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1, 1)
    assert backbone.conv1.stride == (1, 2, 2) and backbone.conv1.padding == (3, 3, 3)
    assert backbone.layer2[0].conv2.stride == (2, 2, 2)


@pytest.mark.parametrize(
    ("frames", "size", "expected"),
    [(16, 224, (1, 7, 7)), (16, 112, (1, 4, 4)), (32, 224, (2, 7, 7)), (8, 64, (1, 2, 2))],
)
def test_resnet3d50_map_sizes(frames: int, size: int, expected: tuple[int, int, int]) -> None:
    with torch.device("meta"):  # shapes only, no arithmetic
        backbone = ResNet3d(50, output="maps")
        maps = backbone(torch.empty(2, frames, 3, size, size))
        backbone.output = "positions"
        positions = backbone(torch.empty(2, frames, 3, size, size))
    assert maps.shape == (2, 2048, *expected)
    t, h, w = expected
    assert positions.shape == (2, t * h * w, 2048)  # MASTAF: N = 49 for 16 x 224 x 224


def test_bottleneck3d_computes_conv_bn_relu_with_conv_shortcut() -> None:
    torch.manual_seed(0)
    block = Bottleneck3d(16, 8, stride=2)
    randomise_batchnorm(block)
    block.eval()
    x = torch.randn(1, 16, 4, 6, 6)

    def bn(m: nn.BatchNorm3d, y: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=m.eps)

    out = F.relu(bn(block.bn1, F.conv3d(x, block.conv1.weight)))
    out = F.relu(bn(block.bn2, F.conv3d(out, block.conv2.weight, stride=2, padding=1)))
    out = bn(block.bn3, F.conv3d(out, block.conv3.weight))
    shortcut = bn(block.downsample[1], F.conv3d(x, block.downsample[0].weight, stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + shortcut))
    assert Bottleneck3d(32, 8).downsample is None  # 32 = 4 * 8 channels, stride 1: identity shortcut


def test_resnet3d50_loads_3d_resnets_checkpoint_and_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ResNet3d(50)
    randomise_batchnorm(source)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.randn(1139, 2048)  # KMS: 1139 classes, ignored
    state["module.fc.bias"] = torch.zeros(1139)
    path = tmp_path / "r3d50_KMS_200ep.pth"
    torch.save({"epoch": 200, "arch": "resnet-50", "state_dict": state}, path)

    backbone = ResNet3d(50, weights=path, output="frames", trainable="last")
    assert_state_equal(backbone, source.state_dict())
    clips = random_clips(1, 8, 64)
    features = backbone.train()(clips)
    assert features.shape == (1, 1, 2048)  # (videos, T', C)
    features.sum().backward()
    assert backbone.layer4[2].conv3.weight.grad is not None
    assert backbone.conv1.weight.grad is None


def test_torchvision_r3d18_matches_torchvision_and_r2plus1d_shapes() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18()
    randomise_batchnorm(reference)
    backbone = TorchvisionVideoResNet("r3d_18", weights=reference.state_dict(), output="pooled").eval()
    reference.fc = nn.Identity()
    reference.eval()
    clips = random_clips(1, 8, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(clips), reference(clips.transpose(1, 2)), rtol=1e-5, atol=1e-5)

    r2plus1d = build_backbone("r2plus1d_18", output="maps").eval()
    with torch.device("meta"):
        r2plus1d_meta = build_backbone("r2plus1d_18", output="maps")
        big = r2plus1d_meta(torch.empty(1, 16, 3, 112, 112))
    with torch.no_grad():
        assert r2plus1d(clips).shape == (1, 512, 1, 4, 4)
    assert big.shape == (1, 512, 2, 7, 7)


# ----- trainable parts ---------------------------------------------------------------------


def batchnorm_modules(module: nn.Module) -> dict[str, nn.BatchNorm2d]:
    return {n: m for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_trainable_none_freezes_parameters_and_batchnorm() -> None:
    torch.manual_seed(0)
    backbone = ResNet2d(18, trainable="none").train()
    assert not any(p.requires_grad for p in backbone.parameters())
    assert backbone.training and not any(m.training for m in backbone.modules() if m is not backbone)
    before = {n: m.running_mean.clone() for n, m in batchnorm_modules(backbone).items()}
    out = backbone(random_clips(2, 2, 64))
    assert not out.requires_grad
    for name, m in batchnorm_modules(backbone).items():
        assert torch.equal(m.running_mean, before[name]), name


def test_trainable_last_trains_layer4_only() -> None:
    torch.manual_seed(0)
    backbone = ResNet2d(18, trainable="last")
    backbone.eval().train()  # switching back and forth keeps the frozen parts in eval
    for name, p in backbone.named_parameters():
        assert p.requires_grad == name.startswith("layer4."), name
    assert backbone.layer4[0].bn1.training and not backbone.bn1.training and not backbone.layer1[0].bn1.training
    before_frozen = backbone.layer3[1].bn2.running_mean.clone()
    before_trained = backbone.layer4[1].bn2.running_mean.clone()
    backbone(random_clips(2, 2, 64)).sum().backward()
    assert torch.equal(backbone.layer3[1].bn2.running_mean, before_frozen)
    assert not torch.equal(backbone.layer4[1].bn2.running_mean, before_trained)
    assert backbone.layer4[1].conv2.weight.grad is not None
    assert backbone.layer3[1].conv2.weight.grad is None and backbone.conv1.weight.grad is None


@pytest.mark.parametrize("trainable", ["all", "last", "none"])
def test_gradient_reaches_clips_in_every_mode(trainable: str) -> None:
    torch.manual_seed(0)
    backbone = SmallCNN(output="patches", trainable=trainable).train()
    clips = random_clips(2, 2, 64).requires_grad_()
    backbone(clips).square().mean().backward()
    assert clips.grad is not None and clips.grad.abs().sum() > 0
    first = backbone.blocks[0].conv.weight.grad
    assert (first is not None and first.abs().sum() > 0) == (trainable == "all")
    last = backbone.blocks[-1].conv.weight.grad
    assert (last is not None and last.abs().sum() > 0) == (trainable != "none")


def test_set_trainable_after_building_and_eval_mode() -> None:
    backbone = SmallCNN(trainable="none")
    backbone.set_trainable("all")
    assert all(p.requires_grad for p in backbone.parameters())
    assert all(m.training for m in backbone.modules())
    backbone.eval()
    assert not any(m.training for m in backbone.modules())


# ----- errors --------------------------------------------------------------------------------


def test_missing_file_names_it_and_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "r3d50_KMS_200ep.pth"
    with pytest.raises(FileNotFoundError, match=r"r3d50_KMS_200ep\.pth.*not found.*3D-ResNets-PyTorch"):
        with torch.device("meta"):
            ResNet3d(50, weights=missing)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth.*torchvision\.models\.resnet18"):
        ResNet2d(18).load_weights(tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="ResNet3d has no named torchvision weights"):
        with torch.device("meta"):
            ResNet3d(50, weights="imagenet")


def test_wrong_keys_are_all_listed_with_the_file(tmp_path: Path) -> None:
    state = SmallCNN().state_dict()
    state["blocks.0.conv.kernel"] = state.pop("blocks.0.conv.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        SmallCNN().load_weights(path)
    message = str(error.value)
    assert "renamed.pt" in message and "SmallCNN" in message
    assert "1 missing key(s): blocks.0.conv.weight" in message
    assert "1 unexpected key(s): blocks.0.conv.kernel" in message


def test_shape_mismatch_lists_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "small64.pt"
    torch.save({"state_dict": SmallCNN(feature_dim=64).state_dict()}, path)
    with pytest.raises(ValueError, match=r"small64\.pt.*shape mismatch.*blocks\.3\.conv\.weight: file \(64, 128, 3, 3\) vs model \(128, 128, 3, 3\)"):
        SmallCNN(feature_dim=128).load_weights(path)
    target = SmallCNN(feature_dim=128)
    before = target.blocks[0].conv.weight.clone()
    with pytest.raises(ValueError):
        target.load_weights(path)
    assert torch.equal(target.blocks[0].conv.weight, before)  # nothing copied on failure


def test_missing_num_batches_tracked_is_accepted() -> None:
    source = SmallCNN()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert_state_equal(SmallCNN().load_weights(state), state)


def test_files_without_a_state_dict_are_refused(tmp_path: Path) -> None:
    not_tensors = tmp_path / "config.pt"
    torch.save({"lr": 0.1, "name": "trx"}, not_tensors)
    with pytest.raises(ValueError, match=r"config\.pt.*not tensors"):
        SmallCNN().load_weights(not_tensors)
    pickled_module = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled_module)
    with pytest.raises(ValueError, match=r"module\.pt.*Python objects.*GLOBAL torch\.nn\.modules\.linear\.Linear"):
        read_state_dict(pickled_module)


def test_bad_arguments_and_inputs_raise_clear_errors() -> None:
    backbone = SmallCNN()
    with pytest.raises(ValueError, match=r"SmallCNN expects clips of shape \(videos, L, 3, H, W\), got \(4, 3, 64, 64\)"):
        backbone(torch.rand(4, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'"):
        build_backbone("resnet51")
    with pytest.raises(ValueError, match="unknown output 'tokens'"):
        build_backbone("small_cnn", output="tokens")
    with pytest.raises(ValueError, match="trainable must be one of"):
        build_backbone("small_cnn", trainable="some")
    with pytest.raises(ValueError, match="norm must be one of"):
        SmallCNN(norm="layer")
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet2d(depth=101)


def test_every_name_builds_with_its_feature_dim() -> None:
    dims = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "vit_b_16": 768, "r3d50": 2048,
            "r3d_18": 512, "r2plus1d_18": 512, "small_cnn": 128,
            "efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280}
    assert set(dims) == set(BACKBONE_NAMES)
    with torch.device("meta"):
        for name, dim in dims.items():
            assert build_backbone(name).feature_dim == dim, name


def test_small_cnn_coordinate_channels_are_appended_to_every_frame():
    torch.manual_seed(0)
    backbone = SmallCNN(feature_dim=16, widths=(8, 8, 16), coordinates=True, output="maps").eval()
    assert backbone.blocks[0].conv.in_channels == 5
    clips = torch.rand(2, 3, 3, 32, 32)
    frames = clips.flatten(0, 1)
    xs = torch.linspace(-1, 1, 32).view(1, 1, 32).expand(6, 32, 32)  # x varies along the width
    ys = torch.linspace(-1, 1, 32).view(1, 32, 1).expand(6, 32, 32)
    by_hand = backbone.blocks(torch.cat([frames, xs.unsqueeze(1), ys.unsqueeze(1)], dim=1))
    expected = by_hand.unflatten(0, (2, 3)).transpose(1, 2)  # (videos, D, L, h, w)
    torch.testing.assert_close(backbone(clips), expected)
