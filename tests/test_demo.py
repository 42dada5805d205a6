"""The main job (`make demo`) end to end on a tiny synthetic set, and its pieces."""

from pathlib import Path

import numpy as np
import pytest

from fsvid.config import load_config
from fsvid.demo import METHODS, demo_config, format_table, regime_overrides, reversal_dataset, run_demo
from fsvid.engine.data import locate_data, time_reversed_pairs

TINY = [
    "data.synthetic_classes=24",
    "data.synthetic_videos_per_class=5",
    "data.synthetic_frames=12",
    "data.synthetic_size=32",
    "data.resize=32",
    "data.crop=32",
    "data.frames=4",
    "model.widths=[8,8,16]",
    "model.feature_dim=16",
    "model.projection_dim=16",
    "task.way=3",
    "task.shot=1",
    "task.train_shot=1",
    "task.query=1",
    "train.tasks=8",
    "train.tasks_per_step=4",
    "train.val_every=8",
    "train.val_tasks=3",
    "train.checkpoint_every=8",
]


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("FSVID_HOME", str(tmp_path / "home"))
    return [f"data.root={tmp_path / 'synthetic'}", *TINY]


@pytest.mark.parametrize("regime", ["scratch", "pretrained"])
def test_presets_share_the_data_and_differ_in_method(regime):
    configs = {m: demo_config(m, regime=regime) for m in METHODS}
    assert {c.model.method for c in configs.values()} == {"prototype", "trx", "strm", "mastaf"}
    assert len({str(c.data) for c in configs.values()}) == 1
    backbones = {(c.model.backbone, c.model.backbone_weights, c.model.trainable, c.model.feature_dim) for c in configs.values()}
    assert len(backbones) == 1  # the same backbone for every head
    assert len({(c.eval.seed, c.eval.tasks) for c in configs.values()}) == 1  # the same test tasks


def test_the_pretrained_regime_is_a_frozen_backbone_on_cached_maps():
    scratch, pretrained = demo_config("trx"), demo_config("trx", regime="pretrained")
    assert (scratch.model.backbone, scratch.model.trainable, scratch.data.crop) == ("small_cnn", "all", 32)
    model, data = pretrained.model, pretrained.data
    assert (model.backbone, model.backbone_weights, model.trainable) == ("efficientnet_lite0", "imagenet", "none")
    assert (data.synthetic_size, data.crop, data.cache_form, data.cache_views) == (128, 112, "maps", 1)
    assert (scratch.train.tasks, pretrained.train.tasks) == (600, 300)
    assert pretrained.data.root != scratch.data.root and pretrained.name == "demo_trx_pretrained"
    assert "data.crop=112" in regime_overrides("pretrained") and regime_overrides("scratch") == []
    with pytest.raises(ValueError, match="unknown demo regime 'frozen'"):
        regime_overrides("frozen")


def test_reversal_tasks_hold_exactly_one_pair(tiny):
    config = load_config("demo_trx", tiny)
    locate_data(config, progress=False)
    pairs = time_reversed_pairs(config, "test")
    assert pairs, "the tiny synthetic set should keep at least one time-reversed pair in test"
    dataset = reversal_dataset(config, pairs[0], tasks=3, seed=5)
    for index in range(3):
        episode = dataset[index]
        assert sorted(episode.class_names) == sorted(pairs[0])
        assert episode.support.shape[0] == 2 * config.task.shot and episode.query.shape[0] == 2
    again = reversal_dataset(config, pairs[0], tasks=3, seed=5)
    assert again[1].support_videos == dataset[1].support_videos  # a fixed task list


def test_demo_runs_end_to_end_and_writes_its_table(tiny, tmp_path, capsys):
    results = run_demo(test_tasks=4, reversal_tasks_per_pair=2, output=tmp_path / "out", progress=False, overrides=tiny)
    assert [r.method for r in results] == list(METHODS)
    pairs = len(time_reversed_pairs(load_config("demo_trx", tiny), "test"))
    for result in results:
        assert result.test.tasks == 4 and result.reversal.tasks == 2 * pairs
        assert 0.0 <= result.test.mean <= 100.0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| TRX |" in table and "| STRM |" in table and "| MASTAF |" in table and "Prototypes" in table
    assert (tmp_path / "out" / "results.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "time-reversed pairs" in printed and "total time" in printed and "mastaf: trained 8 tasks" in printed
    from fsvid.engine.runs import run_dir

    for method in METHODS:  # the trained backbones' test features were for that evaluation only
        folder = run_dir(demo_config(method, False, tiny))
        assert (folder / "best.pt").is_file() and not (folder / "eval_features").exists()


def test_the_prototype_baseline_is_blind_to_time_reversal(tiny):
    """On a clip and its exact time reversal the frame-mean prototype scores are equal."""
    import torch

    from fsvid.models import build_model

    config = load_config("demo_prototype", tiny)
    model = build_model(config).eval()
    torch.manual_seed(0)
    support = torch.rand(2, 4, 3, 32, 32)
    query = torch.rand(1, 4, 3, 32, 32)
    labels = torch.tensor([0, 1])
    forward = model(support, labels, query).logits
    backward = model(support, labels, query.flip(1)).logits
    torch.testing.assert_close(forward, backward)


def test_format_table_reports_the_paired_gain():
    from fsvid.demo import MethodResult
    from fsvid.engine.metrics import mean_and_ci

    base = np.array([0.5, 0.5, 0.5, 0.5])
    better = np.array([1.0, 1.0, 0.5, 1.0])
    results = [
        MethodResult("prototype", mean_and_ci(base), mean_and_ci(base), base, base, 1.0),
        MethodResult("trx", mean_and_ci(better), mean_and_ci(better), better, better, 1.0),
    ]
    table = format_table(results)
    assert "| TRX | 87.50 ± " in table and "+37.50 ± " in table


def test_the_pretrained_regime_trains_the_heads_on_one_cache(tiny, tmp_path, capsys):
    # EfficientNet-Lite0's ImageNet weights come with its pip package (nothing downloads)
    overrides = [*tiny, "model.widths=null", "model.feature_dim=null"]
    results = run_demo(test_tasks=4, reversal_tasks_per_pair=2, output=tmp_path / "out", progress=False,
                       overrides=overrides, regime="pretrained")
    assert [r.method for r in results] == list(METHODS)
    for result in results:
        assert result.test.tasks == 4 and 0.0 <= result.reversal.mean <= 100.0
    printed = capsys.readouterr().out
    assert "prototype: nothing to train (frozen backbone, parameter-free head)" in printed
    assert "trx: trained 8 tasks" in printed and "mastaf: trained 8 tasks" in printed
    assert "feature cache of the train, val and test videos" in printed and "pretrained regime" in printed
    caches = sorted(p.name.split("_")[0] for p in (tmp_path / "out" / "cache").iterdir())
    assert caches == ["test", "train", "val"]  # one cache of maps per split, for the four methods
    assert all(p.name.endswith("_maps") for p in (tmp_path / "out" / "cache").iterdir())


@pytest.mark.parametrize("method", ["trx", "mastaf"])
def test_scratch_evaluation_from_the_test_cache_equals_evaluation_from_the_videos(tiny, method):
    """The scratch regime scores its test tasks from the trained backbone's features of each test
    video, computed once: the same task accuracies as running the backbone on every task."""
    import torch

    from fsvid.demo import evaluate_tasks, test_features
    from fsvid.engine import episode_dataset
    from fsvid.engine.runs import run_dir
    from fsvid.models import build_model

    config = demo_config(method, False, tiny, "scratch")
    location = locate_data(config, progress=False)
    torch.manual_seed(0)
    model = build_model(config, n_global=24).eval()
    features, plan = test_features(model, config, progress=False)
    # in the run folder, as any evaluation of a trained backbone keeps them: for this evaluation only
    assert features.folder.parent == run_dir(config) / "eval_features" and not plan.kept
    dataset = episode_dataset(config, "test", 6, config.eval.seed, False, location, False)
    from_videos = evaluate_tasks(model, dataset, None, progress=False).task_accuracies
    from_cache = evaluate_tasks(model, dataset, features, progress=False).task_accuracies
    np.testing.assert_array_equal(from_cache, from_videos)
