"""Training and evaluation from the feature cache, through the engine and the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine_helpers import fsvid_home, one_thread, reference_run, tiny_config, tiny_dataset  # noqa: F401
from fsvid.cli import main
from fsvid.config import ConfigError
from fsvid.engine import compare_runs, evaluate_config, evaluate_run, load_checkpoint, load_trained_model, train
from fsvid.features import FeatureCache, module_sha256


def test_evaluation_from_the_cache_matches_the_videos(reference_run, tmp_path, fsvid_home, one_thread):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    from_videos = evaluate_run(run, tasks=8, progress=False, save=False, cache=False)
    from_cache = evaluate_run(run, tasks=8, progress=False, cache="auto")  # PrecomputedTRX on cached features

    model, _ = load_trained_model(run)
    folder = run / "cache" / f"test_{module_sha256(model.backbone)[:12]}"
    assert FeatureCache(folder).num_videos == len(from_videos.class_names) * 6
    assert from_cache.task_list == from_videos.task_list  # the same tasks, fingerprint included
    # float16 features may flip a near tie, nothing more
    assert np.mean(from_cache.task_accuracies == from_videos.task_accuracies) >= 0.9
    assert from_cache.confusion.sum() == from_videos.confusion.sum() == 8 * 3
    assert from_cache.meta["cache"] == str(run / "cache")
    paired = compare_runs(run, run)  # eval_test.json of the cached evaluation against itself
    assert paired.difference.mean == 0.0


@pytest.mark.parametrize("method", ["prototype", "mastaf"])
def test_untrained_models_from_the_cache_match_the_videos(method, tiny_dataset, tmp_path, fsvid_home, one_thread):
    # prototype: the precomputed scorer; MASTAF: its head called on cached feature maps
    config = tiny_config(tiny_dataset, tmp_path / method, f"model.method={method}")
    from_videos = evaluate_config(config, tasks=6, untrained=True, progress=False, save=False, cache=False)
    from_cache = evaluate_config(config, tasks=6, untrained=True, progress=False, cache="auto", save=False)
    assert from_cache.task_list == from_videos.task_list
    assert np.mean(from_cache.task_accuracies == from_videos.task_accuracies) >= 0.8


@pytest.mark.parametrize("method, extra", [
    ("prototype", []), ("trx", []), ("strm", []), ("mastaf", []),
    ("strm", ["model.qc_mode=released"]),  # test-time dropout: the head on each task's cached features
    ("trx", ["task.query_sampling=one_class", "task.test_query=2"]),
    ("mastaf", ["task.query_sampling=one_class"]),
])
def test_default_evaluation_computes_each_video_once_and_matches_the_per_task_path(
    method, extra, tiny_dataset, tmp_path, fsvid_home, one_thread, monkeypatch
):
    """By default the split's features are computed once (float32) and every task is scored
    from them: the same accuracy on every task, the same confusion, as each task's videos
    through the whole model. A trained backbone's features are removed afterwards."""
    import fsvid.models

    config = tiny_config(tiny_dataset, tmp_path / method, f"model.method={method}", "model.cardinalities=[1, 2]", *extra)
    calls = []
    forward = fsvid.models.FewShotModel.forward
    monkeypatch.setattr(fsvid.models.FewShotModel, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    torch.manual_seed(5)  # the same dropout draws of STRM's released classifier on both paths
    per_task = evaluate_config(config, tasks=12, untrained=True, progress=False, save=False, cache=False)
    assert len(calls) == 12  # the whole model on each task's videos
    calls.clear()
    torch.manual_seed(5)
    once = evaluate_config(config, tasks=12, untrained=True, progress=False, save=False)
    assert calls == []  # the backbone ran over the split's videos, the head over the features
    np.testing.assert_array_equal(once.task_accuracies, per_task.task_accuracies)
    np.testing.assert_array_equal(once.confusion, per_task.confusion)
    assert once.task_list == per_task.task_list
    assert once.meta["cache"] == "computed once, removed after"
    assert not (tmp_path / method / "eval_features").exists()


def test_jittered_test_frames_are_evaluated_per_task(tiny_dataset, tmp_path, fsvid_home, one_thread):
    config = tiny_config(tiny_dataset, tmp_path / "jitter", "model.method=prototype", "data.test_sampling=jittered")
    result = evaluate_config(config, tasks=3, untrained=True, progress=False, save=False)
    assert "cache" not in result.meta and not (tmp_path / "jitter" / "eval_features").exists()
    with pytest.raises(ConfigError, match="data.test_sampling=jittered draws other frames in every task"):
        evaluate_config(config, tasks=3, untrained=True, progress=False, save=False, cache="auto")


def test_a_frozen_backbone_keeps_its_evaluation_features(tiny_dataset, tmp_path, fsvid_home, one_thread):
    config = tiny_config(tiny_dataset, tmp_path / "frozen", "model.method=prototype", "model.trainable=none")
    first = evaluate_config(config, tasks=5, untrained=True, progress=False, save=False)
    kept = sorted((tmp_path / "frozen" / "eval_features").iterdir())
    assert [p.name[:5] for p in kept] == ["test_"] and first.meta["cache"] == str(tmp_path / "frozen" / "eval_features")
    assert FeatureCache(kept[0]).dtype == "float32"
    again = evaluate_config(config, tasks=5, untrained=True, progress=False, save=False)
    np.testing.assert_array_equal(again.task_accuracies, first.task_accuracies)


def test_training_from_the_cache_trains_only_the_head(tiny_dataset, tmp_path, fsvid_home, one_thread):
    folder = tmp_path / "run"
    config = tiny_config(tiny_dataset, folder, "data.cache=auto", "data.cache_views=1", "model.trainable=none",
                         "train.tasks=6", "train.val_every=4")
    with pytest.raises(ConfigError, match="model.trainable=none"):
        train(tiny_config(tiny_dataset, tmp_path / "other", "data.cache=auto"), progress=False)

    result = train(config, progress=False)
    assert result.tasks == 6
    model, _ = load_trained_model(folder, "last")
    caches = sorted(p.name for p in (folder / "cache").iterdir())
    digest = module_sha256(model.backbone)[:12]
    assert caches == [f"train_{digest}", f"val_{digest}"]  # the saved backbone is the frozen one of the caches
    assert FeatureCache(folder / "cache" / caches[0]).num_views == 2  # test view + 1 augmented view

    trained = load_checkpoint(folder / "last.pt")["model"]
    from fsvid.models import build_model

    torch.manual_seed(config.train.seed)  # the initial model, as train() builds it
    initial = build_model(config).state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if k.startswith("head."))
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("backbone."))


def test_cache_command_builds_the_caches_training_reuses(capsys, tiny_dataset, tmp_path, fsvid_home, one_thread):
    root = tmp_path / "caches"
    config = tiny_config(tiny_dataset, tmp_path / "run", f"data.cache={root}", "model.trainable=none", "train.tasks=2",
                         "train.val_every=0")
    from engine_helpers import write_config

    config_file = write_config(config, tmp_path / "config.yaml")
    code = main(["cache", "--config", str(config_file), "--splits", "train", "test", "-q"])
    assert code == 0, capsys.readouterr().err
    built = {str(p): p.stat().st_mtime_ns for p in root.rglob("shard_*.npy")}
    assert sorted({p.parent.name.split("_")[0] for p in root.rglob("shard_*.npy")}) == ["test", "train"]
    train(config, progress=False)  # finds the training cache already built: nothing recomputed
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("shard_*.npy")} == built


def test_validation_during_training_scores_features_computed_once(tiny_dataset, tmp_path, fsvid_home, one_thread,
                                                                   monkeypatch):
    """Each validation computes the validation videos' features with the current backbone and
    scores the tasks from them: the same validation accuracies (hence the same best.pt) as
    each task's videos through the whole model; nothing left in eval_features/ afterwards."""
    import csv

    import fsvid.engine.features as engine_features

    built = []
    split_cache = engine_features.split_cache
    monkeypatch.setattr(engine_features, "split_cache", lambda *a, **k: built.append(a[3]) or split_cache(*a, **k))

    def validation_rows(folder):
        with open(folder / "metrics.csv", newline="") as handle:
            return [(row["task"], row["accuracy"]) for row in csv.DictReader(handle) if row["split"] == "val"]

    once = train(tiny_config(tiny_dataset, tmp_path / "once", "train.val_every=4"), progress=False)
    rows = validation_rows(once.directory)
    assert len(rows) >= 2 and built == ["val"] * len(rows)  # one feature pass per validation
    assert not (once.directory / "eval_features").exists()
    monkeypatch.setattr(engine_features, "clips_vary_by_task", lambda config: "forced per task for the test")
    per_task = train(tiny_config(tiny_dataset, tmp_path / "per_task", "train.val_every=4"), progress=False)
    assert built == ["val"] * len(rows)  # no features this time
    assert validation_rows(per_task.directory) == rows
    assert once.best_task == per_task.best_task


# ----------------------------------------------------------------------------- the frozen-feature regime, every head

#: Per method: what makes it trainable on a frozen backbone (the prototype baseline's only
#: parameter is the cosine scale) and a cardinality that fits 4 frames.
HEAD_OVERRIDES = {
    "prototype": ["model.prototype_distance=cosine"],
    "trx": [],
    "strm": [],
    "mastaf": [],
}


def frozen_config(dataset, folder, method, *extra):
    return tiny_config(dataset, folder, f"model.method={method}", *HEAD_OVERRIDES[method], "model.trainable=none",
                       "data.cache_views=2", "train.tasks=6", "train.val_every=6", "model.patch_grid=2", *extra)


@pytest.mark.parametrize("form", ["head", "maps"])
@pytest.mark.parametrize("method", ["prototype", "trx", "strm", "mastaf"])
def test_every_head_trains_from_cached_features(method, form, tiny_dataset, tmp_path, fsvid_home, one_thread):
    from fsvid.engine.data import episode_dataset, locate_data, split_class_names
    from fsvid.engine.features import feature_episodes, split_cache
    from fsvid.models import build_model, prediction_scores

    root = tmp_path / "caches"
    config = frozen_config(tiny_dataset, tmp_path / "run", method, f"data.cache={root}", f"data.cache_form={form}")
    result = train(config, progress=False)
    losses = [row["loss"] for row in result.history if row["split"] == "train"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert [row["task"] for row in result.history if row["split"] == "val"] == [6]  # validation from the cache

    location = locate_data(config, generate=False)
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    torch.manual_seed(config.train.seed)  # the initial model, as train() builds it
    initial = build_model(config, n_global=len(split_class_names(location, "train"))).state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if k.startswith("head."))
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("backbone."))
    suffix = "_maps" if form == "maps" else ""
    assert sorted(p.name.split("_", 1)[0] + suffix for p in root.iterdir()) == [f"train{suffix}", f"val{suffix}"]

    # the trained head on cached test-view features = the whole model on the test videos
    model, _ = load_trained_model(tmp_path / "run", "last")
    videos = episode_dataset(config, "test", 3, config.eval.seed, False, location, False)
    features = feature_episodes(videos, split_cache(config, videos, model.backbone, "test", root, 0, False), False)
    with torch.no_grad():
        for index in range(3):
            clips, cached = videos[index], features[index]
            assert cached.support_videos == clips.support_videos and cached.query_videos == clips.query_videos
            direct = prediction_scores(model(clips.support, clips.support_labels, clips.query))
            from_cache = prediction_scores(model.head(cached.support, cached.support_labels, cached.query))
            # float16 features: relative error ~1e-3
            torch.testing.assert_close(from_cache, direct, rtol=2e-2, atol=2e-2 * float(direct.abs().max()))
    evaluated = evaluate_run(tmp_path / "run", tasks=4, progress=False, cache=str(root), save=False)
    assert evaluated.task_list == evaluate_run(tmp_path / "run", tasks=4, progress=False, cache=False, save=False).task_list


def test_mastaf_trains_its_global_task_on_the_classes_of_cached_tasks(tiny_dataset, tmp_path, fsvid_home, one_thread):
    """MASTAF's global classifier reads each training task's class indices among ALL training
    classes: a cached task must carry the same ones as the task of videos."""
    from fsvid.engine.data import episode_dataset, locate_data, split_class_names
    from fsvid.engine.features import feature_episodes, split_cache
    from fsvid.engine.training import task_loss
    from fsvid.models import build_model

    config = frozen_config(tiny_dataset, tmp_path / "run", "mastaf", "data.cache=auto", "data.cache_form=maps")
    location = locate_data(config, generate=False)
    videos = episode_dataset(config, "train", 4, config.train.seed, True, location, False)
    n_global = len(split_class_names(location, "train"))
    torch.manual_seed(0)
    model = build_model(config, n_global=n_global)
    cache = split_cache(config, videos, model.backbone, "train", tmp_path / "caches", 2, False)
    episodes = feature_episodes(videos, cache, train=True)
    for index in range(4):
        assert torch.equal(episodes[index].class_indices, videos[index].class_indices)
    assert int(episodes[0].class_indices.max()) < n_global == model.head.global_classifier.out_features
    model.head.train()
    episode = episodes[0]
    output = model.head(episode.support, episode.support_labels, episode.query, episode.query_labels)
    assert output.global_logits is not None and output.global_logits.shape[1] == n_global
    loss = task_loss(config, output, episode)
    loss.backward()
    assert torch.isfinite(loss) and model.head.global_classifier.weight.grad.abs().sum() > 0


def test_one_cache_of_maps_serves_all_four_heads(tiny_dataset, tmp_path, fsvid_home, one_thread):
    root = tmp_path / "caches"
    built = None
    for method in ("trx", "prototype", "strm", "mastaf"):
        grid = ["model.patch_grid=1"] if method == "strm" else []  # patch pooling does not shape the maps
        config = frozen_config(tiny_dataset, tmp_path / method, method, f"data.cache={root}", "data.cache_form=maps",
                               "train.tasks=2", "train.val_every=0", *grid)
        train(config, progress=False)
        shards = {str(p): p.stat().st_mtime_ns for p in root.rglob("shard_*.npy")}
        built = built or shards
        assert shards == built  # built by the first run, read by the others
    assert sorted(p.name.rsplit("_", 2)[0] for p in root.iterdir()) == ["train"]
    assert FeatureCache(next(root.iterdir())).feature_shape[:2] == (8, 4)  # (C, T, h, w) maps of 4 frames


def test_a_cache_of_maps_is_refused_when_the_output_is_not_made_of_the_maps(tmp_path):
    from fsvid.backbones import build_backbone
    from fsvid.engine.features import check_maps_give_output

    backbone = build_backbone("small_cnn", output="frames", feature_dim=8, widths=(8, 8, 8), trainable="none")
    check_maps_give_output(backbone, frames=4, crop=32)  # frame vectors = the spatial mean of the maps
    maps_of = backbone.forward_maps
    # frame vectors of their own (as a ViT's class tokens), not the mean of the maps
    backbone.forward_maps = lambda clips: (maps_of(clips)[0], maps_of(clips)[0].amax(dim=(3, 4)).transpose(1, 2))
    with pytest.raises(ConfigError, match="SmallCNN backbone's 'frames' output is not a function of its feature maps"):
        check_maps_give_output(backbone, frames=4, crop=32)
    assert backbone.output == "frames"  # left as it was
