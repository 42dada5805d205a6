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
    from_videos = evaluate_run(run, tasks=8, progress=False, save=False)
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
    from_videos = evaluate_config(config, tasks=6, untrained=True, progress=False, save=False)
    from_cache = evaluate_config(config, tasks=6, untrained=True, progress=False, cache="auto", save=False)
    assert from_cache.task_list == from_videos.task_list
    assert np.mean(from_cache.task_accuracies == from_videos.task_accuracies) >= 0.8


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
