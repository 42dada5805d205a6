"""Episodes: composition, labels, frames read, determinism by (seed, task), DataLoader workers, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_helpers import decode_index, make_dataset, write_split
from fsvid.data import IMAGENET_MEAN, IMAGENET_STD, Episode, EpisodeDataset, TaskSampler, VideoReadError, split_classes
from fsvid.data.splits import parse_split_lines

CLASSES = {"air drumming": 4, "ApplyEyeMakeup": 4, "train8": 4, "Pouring (something)": 4, "zz": 3}


@pytest.fixture(scope="module")
def frames_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """19 JPEG-folder videos of 12 index-coded 24 x 32 frames, and their split list."""
    root = tmp_path_factory.mktemp("frames_data")
    lines = make_dataset(root / "data", CLASSES, num_frames=12, kind="frames")
    return write_split(root / "split.txt", lines), root / "data"


def small(split: Path, root: Path, **kwargs) -> EpisodeDataset:
    settings = dict(way=3, shot=2, query=1, frames=4, resize=24, crop=16, num_tasks=50, seed=3, progress=False)
    settings.update(kwargs)
    return EpisodeDataset.from_split(split, root, **settings)


def test_episode_composition(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    dataset = small(split, root, train=True)
    assert len(dataset) == 50
    all_classes = split_classes(parse_split_lines(split.read_text().splitlines()))
    for index in range(6):
        episode = dataset[index]
        assert isinstance(episode, Episode) and episode.task_index == index
        assert episode.support.shape == (6, 4, 3, 16, 16) and episode.support.dtype == torch.float32
        assert episode.query.shape == (3, 4, 3, 16, 16)
        assert episode.support_labels.dtype == torch.int64 and episode.query_labels.dtype == torch.int64
        assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert episode.query_labels.tolist() == [0, 1, 2]
        assert len(set(episode.class_names)) == 3
        assert episode.class_indices.tolist() == [all_classes.index(n) for n in episode.class_names]
        assert episode.query_class_indices.tolist() == episode.class_indices.tolist()
        # every clip comes from the class its label names, and no video is used twice
        for videos, labels in ((episode.support_videos, episode.support_labels), (episode.query_videos, episode.query_labels)):
            assert [v.rsplit("/", 1)[0] for v in videos] == [episode.class_names[y] for y in labels.tolist()]
        assert len(set(episode.support_videos) | set(episode.query_videos)) == 9


def test_test_time_clips_hold_the_expected_frames(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    episode = small(split, root, train=False)[0]
    # 12 frames, L = 4, test: start 1, end 10 -> floor(linspace(1, 10, 4)) = [1, 4, 7, 10]
    for clip in torch.cat([episode.support, episode.query]):
        assert decode_index(clip).tolist() == [1, 4, 7, 10]
    tsn = small(split, root, train=False, sampling="tsn")[0]
    assert decode_index(tsn.query[0]).tolist() == [1, 4, 7, 10]  # segment centres floor(1.5 + 3k)


def test_same_seed_same_tasks_other_index_or_seed_other_tasks(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    a, b = small(split, root, train=True), small(split, root, train=True)
    for index in (0, 7):
        x, y = a[index], b[index]
        assert x.support_videos == y.support_videos and x.query_videos == y.query_videos
        assert torch.equal(x.support, y.support) and torch.equal(x.query, y.query)
    tasks = {tuple(a.task(i).support.reshape(-1)) for i in range(20)}
    assert len(tasks) == 20
    other_seed = small(split, root, train=True, seed=4)
    assert [a.task(i).support.tolist() for i in range(5)] != [other_seed.task(i).support.tolist() for i in range(5)]


def test_composition_does_not_depend_on_clip_settings(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    a = small(split, root, train=False, frames=4, crop=16)
    b = small(split, root, train=True, frames=3, crop=24, sampling="tsn")
    for index in range(10):
        ta, tb = a.task(index), b.task(index)
        assert np.array_equal(ta.classes, tb.classes) and np.array_equal(ta.support, tb.support)
        assert np.array_equal(ta.query, tb.query)


def test_training_start_frame_jitter_covers_the_pad(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    dataset = small(split, root, train=True, way=5, shot=1, query=0)
    first_frames = set()
    for index in range(8):
        episode = dataset[index]
        first_frames |= {int(decode_index(clip)[0]) for clip in episode.support}
    assert first_frames == {0, 1, 2, 3, 4}  # pad = int(min(5, 4)) = 4: start ~ U{0..4}


def test_dataloader_workers_give_the_same_episodes(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    dataset = small(split, root, train=True, num_tasks=4)
    serial = list(DataLoader(dataset, batch_size=None, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=None, num_workers=2))
    resumed = list(DataLoader(dataset, batch_size=None, sampler=range(2, 4)))
    assert [e.task_index for e in parallel] == [0, 1, 2, 3]
    for x, y in zip(serial, parallel):
        assert isinstance(y, Episode) and x.support_videos == y.support_videos
        assert torch.equal(x.support, y.support) and torch.equal(x.query, y.query)
        assert torch.equal(x.class_indices, y.class_indices)
    assert [torch.equal(x.support, y.support) for x, y in zip(serial[2:], resumed)] == [True, True]


def test_mp4_videos_and_normalisation(tmp_path: Path) -> None:
    lines = make_dataset(tmp_path / "data", {"A": 2, "B": 2}, num_frames=10, kind="mp4", height=16, width=20)
    split = write_split(tmp_path / "split.txt", lines)
    dataset = EpisodeDataset.from_split(split, tmp_path / "data", way=2, shot=1, query=1, frames=3, train=False,
                                        resize=16, crop=16, num_tasks=2, progress=False)
    episode = dataset[1]
    assert episode.support.shape == (2, 3, 3, 16, 16)
    # 10 frames, L = 3, test: floor(linspace(1, 8, 3)) = [1, 4, 8]
    assert [decode_index(clip).tolist() for clip in episode.support] == [[1, 4, 8], [1, 4, 8]]
    normed = EpisodeDataset.from_split(split, tmp_path / "data", way=2, shot=1, query=1, frames=3, train=False,
                                       resize=16, crop=16, num_tasks=2, progress=False, normalize=True)[1]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(normed.support, (episode.support - mean) / std, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------


def test_class_with_too_few_videos_is_named_at_construction(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    with pytest.raises(ValueError, match=r"1 classes have fewer videos than shot \+ query = 2 \+ 2 = 4: 'zz' has 3"):
        small(split, root, shot=2, query=2)
    with pytest.raises(ValueError, match="6-way tasks need at least 6 classes, the split has 5"):
        small(split, root, way=6)
    with pytest.raises(ValueError, match="'b' has 0"):
        TaskSampler([0, 0, 0], ["a", "b"], way=2, shot=1, query=1)


def test_short_videos_dropped_with_a_warning_or_repeated(tmp_path: Path) -> None:
    counts = {"A/v0": 3, "B/v1": 2}
    lines = make_dataset(tmp_path / "data", {"A": 3, "B": 3}, num_frames=counts, kind="frames", height=16, width=16)
    split = write_split(tmp_path / "split.txt", lines)
    settings = dict(way=2, shot=1, query=1, frames=5, resize=16, crop=16, num_tasks=20, train=False, progress=False)
    with pytest.warns(UserWarning, match=r"dropping 2 of 6 videos shorter than 5 frames .*'A/v0' \(3 frames\), 'B/v1' \(2 frames\)"):
        dropped = EpisodeDataset.from_split(split, tmp_path / "data", short_videos="drop", **settings)
    assert {v.key for v in dropped.videos} == {"A/v1", "A/v2", "B/v0", "B/v2"}
    repeated = EpisodeDataset.from_split(split, tmp_path / "data", short_videos="repeat", **settings)
    assert len(repeated.videos) == 6 and all(v.num_frames is None for v in repeated.videos)  # nothing counted

    def keys(i: int) -> list[str]:
        task = repeated.task(i)
        return [repeated.videos[v].key for v in np.concatenate([task.support.ravel(), task.query.ravel()])]

    task = next(i for i in range(20) if "B/v1" in keys(i))
    episode = repeated[task]
    clips = dict(zip(episode.support_videos + episode.query_videos, torch.cat([episode.support, episode.query])))
    assert decode_index(clips["B/v1"]).tolist() == [0, 0, 0, 0, 1]  # floor(linspace(0, 1, 5))


def test_undecodable_video_is_named(tmp_path: Path) -> None:
    lines = make_dataset(tmp_path / "data", {"A": 2, "B": 2}, num_frames=6, kind="mp4", height=16, width=32)
    (tmp_path / "data" / "B" / "v1.mp4").write_bytes(b"\x00garbage" * 20)
    split = write_split(tmp_path / "split.txt", lines)
    settings = dict(way=2, shot=1, query=1, frames=4, resize=16, crop=16, num_tasks=20, train=False, progress=False)
    with pytest.raises(VideoReadError, match=r"B/v1\.mp4"):  # counting frames opens every video
        EpisodeDataset.from_split(split, tmp_path / "data", short_videos="drop", **settings)
    lazy = EpisodeDataset.from_split(split, tmp_path / "data", short_videos="repeat", **settings)
    with pytest.raises(VideoReadError, match=r"B/v1\.mp4"):
        for index in range(20):
            lazy[index]


def test_malformed_and_missing_entries_through_from_split(tmp_path: Path, frames_data: tuple[Path, Path]) -> None:
    _, root = frames_data
    bad = tmp_path / "bad.txt"
    bad.write_text("train8/v0\ntrain8 v1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2"):
        EpisodeDataset.from_split(bad, root, progress=False)
    listed = tmp_path / "missing.txt"
    present = [f"{c}/v{k}" for c in ("train8", "zz", "ApplyEyeMakeup") for k in range(3)]
    listed.write_text("\n".join(present + ["train8/v99", "Nope/v0", "applyeyemakeup/v0"]) + "\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=rf"3 of 12 entries of .*missing\.txt not found under {re.escape(str(root))}"):
        EpisodeDataset.from_split(listed, root, progress=False)
    # skipped: the classes left without videos are then too small for any task
    with pytest.warns(UserWarning, match="3 of 12 entries"), pytest.raises(
        ValueError, match=r"2 classes have fewer videos .*'Nope' has 0, 'applyeyemakeup' has 0"
    ):
        EpisodeDataset.from_split(listed, root, way=3, shot=2, query=1, on_missing="skip", progress=False)
    listed.write_text("\n".join(present + ["train8/v99"]) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"1 of 10 entries .*'train8/v99' \(line 10\)"):
        dataset = EpisodeDataset.from_split(listed, root, way=3, shot=2, query=1, frames=4, resize=24, crop=16,
                                            on_missing="skip", progress=False)
    assert dataset.class_names == ["ApplyEyeMakeup", "train8", "zz"] and len(dataset.videos) == 9
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]


def test_decoded_video_memory_gives_the_same_episodes_and_decodes_once(
    frames_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsvid.data.episodes as episodes

    split, root = frames_data
    plain = small(split, root, train=True, num_tasks=6)
    cached = small(split, root, train=True, num_tasks=6, memory_bytes=10**9)
    opened: list[str] = []
    real_open = episodes.open_video
    monkeypatch.setattr(episodes, "open_video", lambda path, **kw: opened.append(str(path)) or real_open(path, **kw))
    for index in range(6):
        a, b = plain[index], cached[index]
        assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    videos_used = {v for i in range(6) for v in cached[i].support_videos + cached[i].query_videos}
    opened.clear()
    for index in range(6):  # every video is in memory now: nothing is opened again
        cached[index]
    assert opened == [] and len(cached.memory) == len(videos_used)


def test_decoded_video_memory_respects_its_budget(frames_data: tuple[Path, Path]) -> None:
    split, root = frames_data
    one_video = 12 * 3 * 24 * 32  # 12 frames of 24 x 32 RGB
    dataset = small(split, root, train=False, num_tasks=3, memory_bytes=2 * one_video)
    reference = small(split, root, train=False, num_tasks=3)
    for index in range(3):
        assert torch.equal(dataset[index].support, reference[index].support)
    assert len(dataset.memory) == 2 and dataset.memory.used == 2 * one_video


def test_one_class_query_sampling_draws_the_queries_of_one_class(frames_data: tuple[Path, Path]) -> None:
    """``one_class`` (the released MASTAF sampler): every task holds Q queries, all of one of
    its classes; the support is the same as with ``per_class``; the choice is a pure function
    of (seed, task) and varies between tasks."""
    split, root = frames_data
    per_class = small(split, root, train=True, shot=1, query=2)
    one_class = small(split, root, train=True, shot=1, query=2, query_sampling="one_class")
    chosen = []
    for index in range(12):
        episode = one_class[index]
        assert episode.query.shape[0] == 2 and len(set(episode.query_labels.tolist())) == 1
        label = int(episode.query_labels[0])
        assert [v.rsplit("/", 1)[0] for v in episode.query_videos] == [episode.class_names[label]] * 2
        assert not set(episode.query_videos) & set(episode.support_videos)
        assert episode.support_videos == per_class[index].support_videos
        assert one_class.task(index).query.shape == (1, 2) and one_class.task(index).query_labels.tolist() == [label] * 2
        chosen.append(label)
    assert len(set(chosen)) > 1  # not always the first class
    again = small(split, root, train=True, shot=1, query=2, query_sampling="one_class")
    assert [again[i].query_videos for i in range(12)] == [one_class[i].query_videos for i in range(12)]
    with pytest.raises(ValueError, match="query_sampling"):
        TaskSampler([0, 1], ["a", "b"], 2, 1, 0, query_sampling="some")


def test_jittered_test_frames_are_training_style_and_seeded(frames_data: tuple[Path, Path]) -> None:
    """``jitter_test_frames`` (the released MASTAF loader): test clips take training-style
    random frame ends, seeded by the task (the transform stays the test one)."""
    split, root = frames_data
    fixed = small(split, root, train=False, resize=None, crop=24)
    jittered = small(split, root, train=False, resize=None, crop=24, jitter_test_frames=True)
    fixed_frames = [decode_index(c).tolist() for i in range(8) for c in fixed[i].support]
    jittered_frames = [decode_index(c).tolist() for i in range(8) for c in jittered[i].support]
    assert all(f == [1, 4, 7, 10] for f in fixed_frames)
    assert any(f != [1, 4, 7, 10] for f in jittered_frames)
    assert jittered_frames == [decode_index(c).tolist() for i in range(8) for c in jittered[i].support]  # seeded
    # the first clip of a task takes the frames a training clip of that task takes
    training = small(split, root, train=True, resize=None, crop=24)
    for index in range(8):
        assert decode_index(jittered[index].support[0]).tolist() == decode_index(training[index].support[0]).tolist()


def test_global_classifier_size_counts_train_or_all_classes(tmp_path: Path) -> None:
    """``model.global_classes``: ``train`` counts the training classes, ``all`` every class of
    the train, val and test lists (the released MASTAF: one output per class folder)."""
    from fsvid.config import load_config
    from fsvid.engine.data import DataLocation, global_class_count

    lists = {"train": ["a/1", "a/2", "b/1", "c/1"], "val": ["d/1", "e/1"], "test": ["f/1", "g/1", "h/1"]}
    for split, lines in lists.items():
        (tmp_path / f"{split}list03.txt").write_text("\n".join(lines) + "\n")
    location = DataLocation(tmp_path, tmp_path, "03")
    assert global_class_count(load_config("synthetic_mastaf"), location) == 3
    assert global_class_count(load_config("synthetic_mastaf", ["model.global_classes=all"]), location) == 8
