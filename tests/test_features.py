"""Feature cache: same features as the backbone on the clips, same tasks as the video episodes,
resuming, refusing other settings, memory-mapped reading, and a task list scored from a precomputed head."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import write_frame_folder, write_split, write_video
from head_helpers import randomise_norms
from fsvid.backbones import build_backbone
from fsvid.data import ClipTransform, EpisodeDataset, load_clip
from fsvid.features import (
    CacheMismatchError,
    CacheView,
    FeatureCache,
    FeatureEpisodeDataset,
    build_feature_cache,
    build_feature_cache_from_dataset,
    OutputForm,
    evaluate_precomputed,
    write_feature_cache,
)
from fsvid.heads import PrecomputedTRX, TRXHead

FRAMES, SIZE, DIM = 4, 32, 16
CLASSES = ("apple", "Banana split", "cherry", "date")  # 3 videos each; "date" as mp4 files
SETTINGS = dict(way=3, shot=2, query=1, frames=FRAMES, resize=SIZE, crop=SIZE, num_tasks=20, seed=5, progress=False)


class Interrupted(Exception):
    """Stands for a run killed in the middle of caching."""


def noise_dataset(root: Path) -> list[str]:
    """12 videos of 10 random 32 x 40 frames (every video different), frame folders and mp4."""
    rng = np.random.default_rng(0)
    lines = []
    for class_name in CLASSES:
        for k in range(3):
            frames = rng.integers(0, 256, size=(10, SIZE, 40, 3), dtype=np.uint8)
            if class_name == "date":
                write_video(root / class_name / f"v{k}.mp4", frames)
            else:
                write_frame_folder(root / class_name / f"v{k}", frames)
            lines.append(f"{class_name}/v{k}")
    return lines


def small_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("small_cnn", output="frames", feature_dim=DIM, widths=(8, 8, 16), trainable="none").eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The split, its test EpisodeDataset, a backbone and a float16 cache with 2 training views."""
    root = tmp_path_factory.mktemp("cache_data")
    split = write_split(root / "split.txt", noise_dataset(root / "videos"))
    dataset = EpisodeDataset.from_split(split, root / "videos", train=False, **SETTINGS)
    backbone = small_backbone()
    cache = build_feature_cache_from_dataset(root / "cache", dataset, backbone, train_views=2, shard_size=5,
                                             batch_size=4, progress=False)
    return {"root": root, "split": split, "dataset": dataset, "backbone": backbone, "cache": cache}


def direct_features(backbone: torch.nn.Module, dataset: EpisodeDataset, video: int, view: int) -> torch.Tensor:
    """The backbone on one clip read by load_clip: view 0 the test clip, view k the training
    clip drawn from default_rng([view_seed=0, video, k])."""
    train = view > 0
    rng = np.random.default_rng([0, video, view]) if train else None
    clip = load_clip(dataset.videos[video], FRAMES, train, ClipTransform(train, resize=SIZE, crop=SIZE), rng)
    with torch.no_grad():
        return backbone(clip.unsqueeze(0))[0]  # (L, D)


def test_cache_holds_the_backbone_features_of_every_view(data: dict) -> None:
    cache, dataset, backbone = data["cache"], data["dataset"], data["backbone"]
    assert cache.num_videos == 12 and cache.num_views == 3 and cache.feature_shape == (FRAMES, DIM)
    assert cache.dtype == "float16" and cache.video_keys == [v.key for v in dataset.videos]
    for video in range(12):
        cached = cache.features([video] * 3, [0, 1, 2])  # (3, L, D)
        assert cached.dtype == torch.float32
        expected = torch.stack([direct_features(backbone, dataset, video, view) for view in range(3)])
        torch.testing.assert_close(cached, expected, rtol=2e-3, atol=2e-3)  # float16 storage
        assert not torch.allclose(cached[0], cached[1])  # a training view is another clip


def test_float32_cache_is_exact_and_shards_are_memory_mapped(data: dict, tmp_path: Path) -> None:
    dataset, backbone = data["dataset"], data["backbone"]
    cache = build_feature_cache(tmp_path / "f32", dataset.videos, backbone, frames=FRAMES, resize=SIZE, crop=SIZE,
                                dtype="float32", shard_size=8, progress=False)
    expected = torch.stack([direct_features(backbone, dataset, v, 0) for v in range(12)])
    torch.testing.assert_close(cache.load_view(0), expected, rtol=1e-5, atol=1e-5)
    shard = np.load(tmp_path / "f32" / "shard_00001.npy", mmap_mode="r")  # videos 8..11
    assert isinstance(shard, np.memmap) and shard.dtype == np.float32 and shard.shape == (4, 1, FRAMES, DIM)
    torch.testing.assert_close(torch.from_numpy(np.array(shard[2, 0])), expected[10])
    assert isinstance(cache.shard_array(0), np.memmap)
    # the default float16 cache stores half the bytes
    half = np.load(data["cache"].folder / "shard_00000.npy", mmap_mode="r")
    assert isinstance(half, np.memmap) and half.dtype == np.float16 and half.shape == (5, 3, FRAMES, DIM)


def test_feature_episodes_have_the_video_episodes_composition(data: dict) -> None:
    cache, backbone = data["cache"], data["backbone"]
    videos = data["dataset"]
    features = FeatureEpisodeDataset.like(videos, cache)
    assert len(features) == len(videos) == 20 and features.class_names == videos.class_names
    for index in range(20):
        a, b = videos[index], features[index]
        assert (b.class_names, b.support_videos, b.query_videos) == (a.class_names, a.support_videos, a.query_videos)
        assert torch.equal(b.support_labels, a.support_labels) and torch.equal(b.query_labels, a.query_labels)
        assert torch.equal(b.class_indices, a.class_indices) and b.task_index == index
        assert b.support.shape == (6, FRAMES, DIM) and b.query.shape == (3, FRAMES, DIM)
        if index < 3:  # the features are those of the episode's clips
            with torch.no_grad():
                clips = backbone(torch.cat([a.support, a.query]))
            torch.testing.assert_close(torch.cat([b.support, b.query]), clips, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("train", [False, True], ids=["test view", "training views"])
def test_one_class_query_sampling_gives_the_video_tasks_on_features(data: dict, train: bool) -> None:
    """MASTAF's released sampler (queries of one class per task): the cached tasks are the video tasks."""
    from fsvid.engine.features import feature_episodes

    videos = EpisodeDataset.from_split(data["split"], data["root"] / "videos", train=train, query_sampling="one_class",
                                       **SETTINGS)
    for features in (FeatureEpisodeDataset.like(videos, data["cache"]), feature_episodes(videos, data["cache"], train)):
        assert features.sampler.query_sampling == "one_class" and features.train == train
        query_classes = set()
        for index in range(20):
            a, b = videos.task(index), features.task(index)
            assert np.array_equal(a.classes, b.classes) and np.array_equal(a.support, b.support)
            assert np.array_equal(a.query, b.query) and np.array_equal(a.query_rows, b.query_rows)
            episode = features[index]
            assert episode.query.shape == (1, FRAMES, DIM) and episode.support.shape == (6, FRAMES, DIM)  # not 3 queries
            assert torch.equal(episode.query_labels, torch.from_numpy(a.query_labels))
            assert episode.query_videos == [videos.videos[v].key for v in a.query.reshape(-1)]
            assert {key.split("/")[0] for key in episode.query_videos} == {episode.class_names[a.query_rows[0]]}
            query_classes.add(int(a.query_rows[0]))
        assert query_classes == {0, 1, 2}  # the class that gets the queries varies from task to task
    # the clips' episodes agree with the features' (labels and videos), not only the task lists
    episodes = FeatureEpisodeDataset.like(videos, data["cache"])
    clip_episode, feature_episode = videos[0], episodes[0]
    assert torch.equal(clip_episode.query_labels, feature_episode.query_labels)
    assert clip_episode.query_videos == feature_episode.query_videos
    if train:  # a precomputed head reads the test view
        return
    # and a precomputed head scores the one-class queries against their own class
    torch.manual_seed(5)
    head = TRXHead(DIM, 8, FRAMES, cardinalities=(2, 3)).eval()
    randomise_norms(head)
    result = evaluate_precomputed(PrecomputedTRX(head, data["cache"]), episodes, tasks=range(8), tasks_per_batch=4,
                                  progress=False)
    for row in range(8):
        episode = episodes[row]
        with torch.no_grad():
            predicted = head(episode.support, episode.support_labels, episode.query).logits.argmax(-1)  # (1,)
        assert result.predicted[row].tolist() == episode.class_indices[predicted].tolist()
        assert result.true_classes[row].tolist() == episode.query_class_indices.tolist()
        assert result.accuracies[row] == float((predicted == episode.query_labels).float().mean())


def test_training_episodes_pick_training_views_deterministically(data: dict) -> None:
    cache = data["cache"]
    train_videos = EpisodeDataset.from_split(data["split"], data["root"] / "videos", train=True, **SETTINGS)
    features = FeatureEpisodeDataset.like(train_videos, cache)
    assert features.train
    index_of = {key: v for v, key in enumerate(cache.video_keys)}
    used_views = []
    for index in range(10):
        episode, again = features[index], features[index]
        assert torch.equal(episode.support, again.support) and torch.equal(episode.query, again.query)
        assert episode.support_videos == train_videos[index].support_videos
        for key, x in zip(episode.support_videos + episode.query_videos, torch.cat([episode.support, episode.query])):
            views = cache.features([index_of[key]] * 3, [0, 1, 2])
            matches = [view for view in (1, 2) if torch.equal(x, views[view])]
            assert len(matches) == 1
            used_views.append(matches[0])
    assert set(used_views) == {1, 2}
    with pytest.raises(ValueError, match="train_views"):
        FeatureEpisodeDataset(_test_view_only(data), train=True)


def _test_view_only(data: dict) -> FeatureCache:
    folder = data["root"] / "test_view_only"
    return build_feature_cache_from_dataset(folder, data["dataset"], data["backbone"], shard_size=12, progress=False)


def test_interrupted_build_resumes_without_recomputing_finished_shards(data: dict, tmp_path: Path) -> None:
    dataset, backbone = data["dataset"], copy.deepcopy(data["backbone"])
    folder = tmp_path / "resume"
    computed: list[int] = []

    def crash_after_seven(module, inputs, output) -> None:
        computed.append(inputs[0].shape[0])
        if sum(computed) >= 7:  # shard 0 (videos 0-4) written, shard 1 half done
            raise Interrupted

    options = dict(frames=FRAMES, resize=SIZE, crop=SIZE, shard_size=5, batch_size=2, progress=False)
    hook = backbone.register_forward_hook(crash_after_seven)
    with pytest.raises(Interrupted):
        build_feature_cache(folder, dataset.videos, backbone, **options)
    hook.remove()
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "shard_00000.npy", "videos.json"]  # no temp files
    with pytest.raises(ValueError, match="unfinished .5 of 12 videos"):
        FeatureCache(folder)
    assert FeatureCache(folder, require_complete=False).index["finished"] == [0]

    counted: list[int] = []
    backbone.register_forward_hook(lambda module, inputs, output: counted.append(inputs[0].shape[0]))
    cache = build_feature_cache(folder, dataset.videos, backbone, **options)
    assert sum(counted) == 7  # only videos 5..11
    torch.testing.assert_close(cache.load_view(0), data["cache"].load_view(0), rtol=2e-3, atol=2e-3)

    counted.clear()
    build_feature_cache(folder, dataset.videos, backbone, **options)
    assert counted == []  # a finished cache computes nothing
    (folder / "shard_00001.npy").unlink()  # a finished shard gone missing is computed again
    build_feature_cache(folder, dataset.videos, backbone, **options)
    assert sum(counted) == 5


def test_refuses_a_cache_built_with_other_settings(data: dict, tmp_path: Path) -> None:
    dataset, backbone, folder = data["dataset"], data["backbone"], data["cache"].folder
    same = dict(frames=FRAMES, resize=SIZE, crop=SIZE, train_views=2, shard_size=5, progress=False)
    with pytest.raises(CacheMismatchError, match=r"(?s)frames: cache has 4, requested 5.*overwrite=True"):
        build_feature_cache(folder, dataset.videos, backbone, **{**same, "frames": 5})
    with pytest.raises(CacheMismatchError, match=r"clip_transform.crop: cache has 32, requested 24"):
        build_feature_cache(folder, dataset.videos, backbone, **{**same, "crop": 24})
    with pytest.raises(CacheMismatchError, match=r"dtype: cache has 'float16', requested 'float32'"):
        build_feature_cache(folder, dataset.videos, backbone, **same, dtype="float32")
    other_weights = copy.deepcopy(backbone)
    with torch.no_grad():
        next(other_weights.parameters()).add_(0.01)
    with pytest.raises(CacheMismatchError, match="weights_sha256"):
        build_feature_cache(folder, dataset.videos, other_weights, **same)
    with pytest.raises(CacheMismatchError, match=r"videos: the cache holds 12 videos, the request has 11; 1 only in the cache"):
        build_feature_cache(folder, dataset.videos[:11], backbone, **same)
    with pytest.raises(CacheMismatchError, match="other videos"):
        FeatureEpisodeDataset.like(_dataset_without_last(dataset), data["cache"])

    # a weights file that changed on disk counts as a change
    weights = tmp_path / "small_cnn.pt"
    torch.save(backbone.state_dict(), weights)
    few = dataset.videos[:3]
    build_feature_cache(tmp_path / "with_file", few, backbone, weights_file=weights, **{**same, "shard_size": 3})
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(CacheMismatchError, match="weights_file.mtime_ns"):
        build_feature_cache(tmp_path / "with_file", few, backbone, weights_file=weights, **{**same, "shard_size": 3})

    # overwrite=True rebuilds with the new settings
    copy_folder = tmp_path / "copy"
    shutil.copytree(folder, copy_folder)
    rebuilt = build_feature_cache(copy_folder, dataset.videos, backbone, **{**same, "frames": 5}, overwrite=True)
    assert rebuilt.feature_shape == (5, DIM) and rebuilt.settings["frames"] == 5
    assert data["cache"].settings["frames"] == FRAMES


def _dataset_without_last(dataset: EpisodeDataset) -> EpisodeDataset:
    smaller = copy.copy(dataset)
    smaller.videos = dataset.videos[:11]
    return smaller


def test_write_feature_cache_round_trip_and_float16_overflow(tmp_path: Path) -> None:
    keys = [f"c{k % 3}/v{k}" for k in range(7)]
    values = np.random.default_rng(1).normal(size=(7, 2, 3, 5)).astype(np.float32)
    cache = write_feature_cache(tmp_path / "arrays", keys, lambda a, b: [values[a:b]], num_views=2, dtype="float32",
                                shard_size=3, settings={"source": "test"}, progress=False)
    assert cache.class_names == ["c0", "c1", "c2"] and cache.video_classes.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert torch.equal(cache.features([6, 0, 4], [1, 0, 1]), torch.from_numpy(values[[6, 0, 4], [1, 0, 1]]))
    with pytest.raises(IndexError, match="0..6"):
        cache.features([7])
    with pytest.raises(ValueError, match="dtype='float32'"):
        write_feature_cache(tmp_path / "big", keys, lambda a, b: [values[a:b] * 1e5], num_views=2, progress=False)
    with pytest.raises(FileNotFoundError, match="no feature cache"):
        FeatureCache(tmp_path / "nothing_here")


# --------------------------------------------------------------------------------------------
# Scoring a task list with a precomputed head (the heads' own checks: test_precomputed_heads.py)
# --------------------------------------------------------------------------------------------


def test_evaluate_precomputed_matches_the_head_on_feature_episodes(data: dict) -> None:
    torch.manual_seed(5)
    head = TRXHead(DIM, 8, FRAMES, cardinalities=(2, 3)).eval()
    randomise_norms(head)
    episodes = FeatureEpisodeDataset.like(data["dataset"], data["cache"])
    result = evaluate_precomputed(PrecomputedTRX(head, data["cache"]), episodes, tasks=range(3, 13), tasks_per_batch=4,
                                  progress=False)
    assert result.task_indices.tolist() == list(range(3, 13))
    for row, index in enumerate(range(3, 13)):
        episode = episodes[index]
        with torch.no_grad():
            predicted = head(episode.support, episode.support_labels, episode.query).logits.argmax(-1)
        assert result.predicted[row].tolist() == episode.class_indices[predicted].tolist()
        assert result.true_classes[row].tolist() == episode.query_class_indices.tolist()
        assert result.accuracies[row] == pytest.approx(float((predicted == episode.query_labels).float().mean()))


# ----------------------------------------------------------------------------- views of a cache of maps


@pytest.fixture(scope="module")
def maps_cache(data: dict, tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    """The backbone's (C, T, h, w) maps of the 12 videos, float32, 1 training view."""
    backbone = copy.deepcopy(data["backbone"])
    backbone.output = "maps"
    folder = tmp_path_factory.mktemp("maps") / "cache"
    return build_feature_cache_from_dataset(folder, data["dataset"], backbone, train_views=1, dtype="float32",
                                            shard_size=5, progress=False)


@pytest.mark.parametrize("output, grid", [("frames", 4), ("patches", 1), ("patches", None), ("positions", 4)])
def test_a_view_of_maps_gives_every_output_form_of_the_backbone(data: dict, maps_cache: FeatureCache, output, grid):
    backbone = copy.deepcopy(data["backbone"])
    backbone.output, backbone.patch_grid = output, grid
    view = CacheView(maps_cache, OutputForm.of(backbone))
    assert maps_cache.feature_shape == (DIM, FRAMES, 2, 2)  # 32 px -> 2 x 2
    for video in (0, 7, 11):
        clip = load_clip(data["dataset"].videos[video], FRAMES, False, ClipTransform(False, resize=SIZE, crop=SIZE))
        with torch.no_grad():
            expected = backbone(clip.unsqueeze(0))  # (1, ...) in the backbone's own form
        torch.testing.assert_close(view.features([video]), expected, rtol=1e-5, atol=1e-5)
    assert view.feature_shape == tuple(expected.shape[1:]) and view.num_views == 2
    torch.testing.assert_close(view.load_view(1)[3], OutputForm.of(backbone).apply(maps_cache.features([3], 1))[0])


def test_a_view_keeps_some_videos_with_their_own_classes(data: dict, maps_cache: FeatureCache):
    keys = [k for k in maps_cache.video_keys if k.startswith(("cherry/", "apple/"))][::-1]
    view = CacheView(maps_cache, OutputForm("frames")).subset(keys)
    assert view.video_keys == keys and view.class_names == ["apple", "cherry"]
    assert view.video_classes.tolist() == [1, 1, 1, 0, 0, 0]
    expected = OutputForm("frames").apply(maps_cache.features([maps_cache.video_keys.index(keys[1])]))
    torch.testing.assert_close(view.features([1]), expected)
    # tasks of the subset: the same as the video episodes of those videos
    videos = EpisodeDataset([v for v in data["dataset"].videos if v.key in keys], way=2, shot=2, query=1, frames=FRAMES,
                            train=False, num_tasks=5, seed=3, transform=ClipTransform(False, resize=SIZE, crop=SIZE),
                            progress=False)
    view = view.subset([v.key for v in videos.videos])
    features = FeatureEpisodeDataset.like(videos, view)
    assert [features[i].query_videos for i in range(5)] == [videos[i].query_videos for i in range(5)]
    with pytest.raises(KeyError, match="1 videos are not in the feature cache"):
        view.subset(["apple/v0", "fig/v9"])
    with pytest.raises(IndexError, match="video indices must be in 0..5"):
        view.features([6])


def test_only_a_cache_of_maps_can_be_seen_in_another_form(data: dict):
    with pytest.raises(ValueError, match=r"does not hold backbone maps .* cannot be seen as 'patches'"):
        CacheView(data["cache"], OutputForm("patches"))
    with pytest.raises(ValueError, match="unknown output form 'tokens'"):
        OutputForm("tokens")
    assert CacheView(data["cache"]).feature_shape == data["cache"].feature_shape  # as stored
