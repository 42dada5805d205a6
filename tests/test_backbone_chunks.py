"""Backbones run in pieces (``chunks``) and with recomputed activations (``checkpoint``)."""

import copy

import pytest
import torch

from fsvid.backbones import SmallCNN, build_backbone
from fsvid.backbones.chunks import batch_norm_statistics_kept


def _loss_and_grads(backbone, clips, **options):
    """Sum of squares of the backbone's output, and the gradient of every trained parameter."""
    out = backbone(clips, **options)
    loss = (out**2).sum()
    grads = torch.autograd.grad(loss, [p for p in backbone.parameters() if p.requires_grad])
    return out.detach(), loss.detach(), grads


def _shifted_statistics(backbone):
    for layer in backbone.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-0.3, 0.3)
            layer.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("norm, mode", [("batch", "eval"), ("group", "train")])
@pytest.mark.parametrize("chunks, checkpoint", [(3, False), (1, True), (4, True)])
def test_chunked_and_checkpointed_passes_equal_one_pass(norm, mode, chunks, checkpoint):
    """BatchNorm in eval mode, or GroupNorm in train mode: same output, loss and gradients.
    3 videos x 4 frames in 3 or 4 pieces: pieces end inside videos (12 frames -> 4 + 4 + 4 or 3 x 4)."""
    torch.manual_seed(0)
    backbone = SmallCNN(feature_dim=16, widths=(8, 8), norm=norm, output="patches", patch_grid=2)
    _shifted_statistics(backbone)
    backbone.train(mode == "train")
    clips = torch.rand(3, 4, 3, 32, 32)
    out, loss, grads = _loss_and_grads(backbone, clips)
    out_c, loss_c, grads_c = _loss_and_grads(backbone, clips, chunks=chunks, checkpoint=checkpoint)
    assert out_c.shape == out.shape == (3, 4, 4, 16)
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-5)
    for g_c, g in zip(grads_c, grads, strict=True):
        torch.testing.assert_close(g_c, g, rtol=1e-4, atol=1e-5)


def test_video_backbone_chunks_whole_videos():
    """A 3D network is split between videos, never inside one; eval mode equals one pass."""
    torch.manual_seed(1)
    backbone = build_backbone("r3d_18", output="maps").eval()
    _shifted_statistics(backbone)
    clips = torch.rand(3, 4, 3, 48, 48)
    with torch.no_grad():
        whole = backbone(clips)
        pieces = backbone(clips, chunks=2)
        by_hand = torch.cat([backbone(clips[:2]), backbone(clips[2:])])
    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pieces, by_hand)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_batch_norm_in_training_mode_uses_the_statistics_of_each_piece(checkpoint):
    """Training mode: each piece normalised with its own statistics (the pieces run through a
    copy by hand), the running statistics moved by the first piece only, once, even when the
    pieces are recomputed in backward."""
    torch.manual_seed(2)
    backbone = SmallCNN(feature_dim=8, widths=(8,), output="frames").train()
    by_hand, discard = copy.deepcopy(backbone), copy.deepcopy(backbone)
    clips = torch.rand(2, 5, 3, 16, 16)
    out = backbone(clips, chunks=3, checkpoint=checkpoint)  # 10 frames -> 4, 4, 2
    out.sum().backward()
    frames = clips.flatten(0, 1)
    expected = torch.cat([by_hand(frames[:4][None]), discard(frames[4:8][None]), discard(frames[8:][None])], dim=1)
    torch.testing.assert_close(out, expected.view(2, 5, 8))
    for layer, reference in zip(backbone.modules(), by_hand.modules()):
        if isinstance(layer, torch.nn.BatchNorm2d):
            torch.testing.assert_close(layer.running_mean, reference.running_mean)
            torch.testing.assert_close(layer.running_var, reference.running_var)
            assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked) == 1
    # and the statistics of the pieces are not those of the whole batch
    assert (out - copy.deepcopy(discard)(clips)).abs().max() > 1e-3


def test_batch_norm_statistics_kept_restores_running_statistics():
    layer = torch.nn.BatchNorm1d(3).train()
    with batch_norm_statistics_kept(layer):
        layer(torch.randn(8, 3) + 5)
    torch.testing.assert_close(layer.running_mean, torch.zeros(3))
    assert int(layer.num_batches_tracked) == 0
    with batch_norm_statistics_kept(layer, keep=False):
        layer(torch.randn(8, 3) + 5)
    assert layer.running_mean.min() > 0.3


def test_chunks_must_be_positive():
    backbone = SmallCNN(feature_dim=8, widths=(8,))
    with pytest.raises(ValueError, match="chunks must be at least 1, got 0"):
        backbone(torch.rand(1, 2, 3, 16, 16), chunks=0)
