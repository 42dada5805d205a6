"""Analysis figures: activation maps, tuple matches, MASTAF angles, 2-D projections."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fsvid.experiments import analysis  # noqa: E402
from fsvid.heads import MASTAFHead  # noqa: E402


# ----------------------------------------------------------------------------- analysis figures


def test_activation_magnitude_is_the_normalised_channel_norm():
    torch.manual_seed(0)
    patches = torch.randn(2, 3, 4, 5)  # (videos, L, P=4, D)
    maps = analysis.activation_magnitude(patches)
    assert maps.shape == (2, 3, 2, 2)
    expected = patches.norm(dim=-1).view(2, 3, 2, 2)
    assert torch.allclose(maps[0], expected[0] / expected[0].max())
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2))
    volumes = torch.randn(2, 6, 3, 2, 2)  # (videos, D, T, h, w)
    assert analysis.activation_magnitude(volumes).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="square P"):
        analysis.activation_magnitude(torch.randn(1, 3, 5, 4))
    fig = analysis.frame_activation_figure(torch.rand(3, 3, 16, 16), {"backbone": maps[0], "after PLE": maps[1]})
    assert len(fig.axes) == 3 * 3 and fig.axes[3].get_ylabel() == "backbone"
    plt.close(fig)


def test_best_tuple_matches_picks_the_largest_attention():
    tuples = torch.tensor([[0, 1], [0, 2], [1, 2]])  # T = 3
    attention = torch.full((3, 2, 3), 0.05)  # (T, shots, T)
    attention[0, 1, 2] = 0.9  # query tuple (0,1) -> shot 1, tuple (1,2)
    attention[2, 0, 1] = 0.6  # query tuple (1,2) -> shot 0, tuple (0,2)
    matches = analysis.best_tuple_matches(attention, tuples, k=2)
    assert [(m.query_tuple, m.shot, m.support_tuple) for m in matches] == [((0, 1), 1, (1, 2)), ((1, 2), 0, (0, 2))]
    assert matches[0].weight == pytest.approx(0.9)
    chosen = analysis.best_tuple_matches(attention, tuples, query_tuples=[2])
    assert chosen[0].query_tuple == (1, 2)
    with pytest.raises(ValueError, match="outside 0..2"):
        analysis.best_tuple_matches(attention, tuples, query_tuples=[5])
    with pytest.raises(ValueError, match=r"\(T, shots, T\)"):
        analysis.best_tuple_matches(attention[:2], tuples)
    clips = torch.rand(3, 4, 3, 8, 8)  # query + 2 support clips of 4 frames
    fig = analysis.tuple_matches_figure(clips[0], clips[1:], {"TRM": matches, "STRM": matches})
    assert len(fig.axes) == (1 + 2 * 2) * 4
    plt.close(fig)


def test_mastaf_angles_match_the_head_scores():
    torch.manual_seed(0)
    head = MASTAFHead(positions=6, channels=4).eval()
    support = torch.rand(3, 4, 1, 2, 3)  # (support videos, D, T, h, w), N = 6: 3-way 1-shot
    query = torch.rand(2, 4, 1, 2, 3)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        output = head(support, labels, query)
    angles = analysis.mastaf_angles(output, query, support)
    assert set(angles) == {"neighbor", "self", "cross", "fused"} and all(a.shape == (2, 3) for a in angles.values())
    gap_query, gap_support = query.flatten(2).mean(-1), support.flatten(2).mean(-1)  # (videos, D)
    cosine = torch.nn.functional.cosine_similarity(gap_query[:, None], gap_support[None], dim=-1)
    assert torch.allclose(torch.cos(torch.deg2rad(angles["neighbor"])), cosine.float(), atol=1e-5)
    mean_cos = (torch.cos(torch.deg2rad(angles["self"])) + torch.cos(torch.deg2rad(angles["cross"]))) / 2
    assert torch.allclose(torch.cos(torch.deg2rad(angles["fused"])), mean_cos, atol=1e-5)
    # the fused angle ranks classes as the fused logits do
    assert torch.equal(angles["fused"].argmin(1), output.logits.argmax(1))
    fig = analysis.prototype_angles_figure({k: v[0] for k, v in angles.items()}, ["a", "b", "c"], true_class=1)
    assert fig.axes[0].get_xlabel() == "cos(angle)"
    plt.close(fig)
    with pytest.raises(ValueError, match="one angle per class"):
        analysis.prototype_angles_figure({"self": [10.0, 20.0]}, ["a", "b", "c"])


def test_project_2d_pca_and_mds():
    rng = np.random.default_rng(0)
    planar = rng.normal(size=(10, 2)) @ rng.normal(size=(2, 6))  # 10 points on a plane in 6-D
    for method in ("pca", "mds"):
        xy = analysis.project_2d(planar, method)
        assert xy.shape == (10, 2)
        original = np.linalg.norm(planar[:, None] - planar[None], axis=-1)
        projected = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        assert np.allclose(original, projected, atol=1e-8)  # a plane keeps its distances
    line = np.outer(np.arange(5.0), np.ones(3))
    assert np.allclose(analysis.project_2d(line)[:, 1], 0.0)
    with pytest.raises(ValueError, match="'pca' or 'mds'"):
        analysis.project_2d(planar, "tsne")
    fig = analysis.prototype_projection_figure({"TRM": planar, "STRM": planar * 2}, np.arange(10) % 2, ["x", "y"])
    assert [ax.get_title() for ax in fig.axes] == ["TRM (PCA projection)", "STRM (PCA projection)"]
    plt.close(fig)
