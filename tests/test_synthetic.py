"""Tests for the synthetic motion dataset (fsvid.data.synthetic) and its CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fsvid.data.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticConfig,
    generate_synthetic_dataset,
    list_synthetic_classes,
    render_clip,
    select_classes,
    video_rng,
)

REPO = Path(__file__).resolve().parents[1]
BY_NAME = {c.name: c for c in SYNTHETIC_CLASSES}
# A tiny dataset: two twin pairs plus a class whose name has a space, in all three splits.
TINY_CLASSES = ("move_left_to_right", "move_right_to_left", "change colour", "cover", "uncover", "approach", "recede")
TINY = SyntheticConfig(classes=TINY_CLASSES, videos_per_class=3, frames=12, size=32)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_split(path: Path) -> list[tuple[str, str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cls, sep, vid = line.partition("/")
        assert sep and cls and vid and "/" not in vid, f"{path}:{number}: {line!r} is not class/video_id"
        assert not vid.endswith((".mp4", ".jpg")), f"{path}:{number}: has an extension"
        rows.append((cls, vid))
    return rows


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("syn") / "mp4", TINY, progress=False, workers=1)


# ---------------------------------------------------------------- the class table


def test_class_table_has_enough_classes_and_consistent_twins():
    names = [c.name for c in SYNTHETIC_CLASSES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert all("/" not in n and n == n.strip() and n for n in names)
    assert Counter(c.split for c in SYNTHETIC_CLASSES) == {"train": 28, "val": 8, "test": 12}
    assert all(c.description for c in SYNTHETIC_CLASSES)
    pairs = [c for c in SYNTHETIC_CLASSES if c.twin]
    assert len(pairs) >= 24  # most classes have a time-reversed twin
    for c in pairs:
        twin = BY_NAME[c.twin]
        assert twin.twin == c.name and twin.split == c.split
        # exactly one of the two is rendered as the other played backwards
        assert (c.reverses == twin.name) != (twin.reverses == c.name)
    assert all(c.reverses is None for c in SYNTHETIC_CLASSES if c.twin is None)
    assert list_synthetic_classes() == list(SYNTHETIC_CLASSES)


@pytest.mark.parametrize("n", [1, 3, 6, 7, 13, 48])
def test_select_classes_keeps_split_shares_and_twins(n):
    chosen = select_classes(SyntheticConfig(num_classes=n))
    names = {c.name for c in chosen}
    assert len(chosen) == n == len(names)
    if n >= 6:
        assert {c.split for c in chosen} == {"train", "val", "test"}
    # twins are taken together (only a lone left-over class may lack its twin)
    lonely = [c for c in chosen if c.twin and c.twin not in names]
    assert len(lonely) <= (n % 2)
    if n == 48:
        assert chosen == list(SYNTHETIC_CLASSES)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="no_such_class"):
        SyntheticConfig(classes=("approach", "no_such_class"))
    with pytest.raises(ValueError, match="even"):
        SyntheticConfig(size=33)
    assert SyntheticConfig(size=33, format="frames").size == 33
    with pytest.raises(ValueError, match="format"):
        SyntheticConfig(format="avi")
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticConfig(num_classes=0)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        render_clip("no_such_class", 0)
    assert SyntheticConfig.from_dict(TINY.to_dict()) == TINY


# ---------------------------------------------------------------- clips


def test_render_clip_shape_determinism_and_variation():
    cfg = SyntheticConfig(frames=10, size=40)
    clip = render_clip("rotate_clockwise", np.random.default_rng(3), cfg)
    assert clip.shape == (10, 40, 40, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, render_clip("rotate_clockwise", 3, cfg))  # same seed, same pixels
    other = render_clip("rotate_clockwise", 4, cfg)  # another video of the class
    assert np.abs(clip.astype(int) - other).mean() > 10
    assert np.abs(np.diff(clip.astype(int), axis=0)).mean() > 1  # frames change over time
    default = render_clip("approach", 0)
    assert default.shape == (24, 80, 80, 3)


@pytest.mark.parametrize("a", [c.name for c in SYNTHETIC_CLASSES if c.twin and c.reverses is None])
def test_twin_is_the_clip_played_backwards(a):
    b = BY_NAME[a].twin
    cfg = SyntheticConfig(frames=8, size=32)
    clip_a, clip_b = render_clip(a, 11, cfg), render_clip(b, 11, cfg)
    assert np.array_equal(clip_b, clip_a[::-1])
    # an order-blind statistic cannot tell them apart, the sequence can
    assert np.array_equal(clip_a.mean(0), clip_b.mean(0))
    assert not np.array_equal(clip_a, clip_b)


def _frame_features(name: str, seeds: range, cfg: SyntheticConfig) -> np.ndarray:
    """Per frame: mean and standard deviation of the grey image. (videos, T, 2)"""
    grey = np.stack([render_clip(name, s, cfg) for s in seeds]).astype(np.float32).mean(-1) / 255
    return np.stack([grey.mean((2, 3)), grey.std((2, 3))], -1)


def _standardised_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(x.mean(0) - y.mean(0)) / np.sqrt((x.var(0) + y.var(0)) / 2)


@pytest.mark.parametrize("a,b", [("approach", "recede"), ("appear", "disappear")])
def test_a_single_frame_does_not_reveal_which_twin(a, b):
    cfg = SyntheticConfig(frames=12, size=32)
    fa = _frame_features(a, range(40), cfg)  # independent videos for each twin
    fb = _frame_features(b, range(1000, 1040), cfg)
    # A frame drawn at random: the two classes' feature distributions match.
    pooled = _standardised_difference(fa.reshape(-1, 2), fb.reshape(-1, 2))
    assert (pooled < 0.4).all(), pooled
    # Whereas the first frame alone (size / visibility of the object) does differ: the
    # statistic can see a difference when there is one.
    first = _standardised_difference(fa[:, 0], fb[:, 0])
    assert first[1] > 0.6, first


# ---------------------------------------------------------------- the written dataset


def test_layout_splits_and_metadata(tiny_mp4):
    root = tiny_mp4
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["config"] == TINY.to_dict()
    splits = {s: read_split(root / "splits" / f"{s}list01.txt") for s in ("train", "val", "test")}
    classes = {s: {c for c, _ in rows} for s, rows in splits.items()}
    assert classes == {"train": {"move_left_to_right", "move_right_to_left", "change colour"},
                       "val": {"cover", "uncover"}, "test": {"approach", "recede"}}
    for s, rows in splits.items():
        assert len(rows) == 3 * len(classes[s]) == len(set(rows))
        for cls, vid in rows:
            assert (root / "videos" / cls / f"{vid}.mp4").is_file()
            assert " " not in vid
    info = {c["name"]: c for c in meta["classes"]}
    assert set(info) == set(TINY_CLASSES)
    assert info["approach"]["twin"] == "recede" and info["recede"]["twin"] == "approach"
    assert info["change colour"]["twin"] is None
    assert all(info[n]["split"] == BY_NAME[n].split and info[n]["description"] for n in info)
    assert len(meta["videos"]) == 21
    assert {(v["class"], v["video_id"]) for v in meta["videos"]} == {r for rows in splits.values() for r in rows}
    assert all((root / v["path"]).is_file() and v["frames"] == 12 for v in meta["videos"])


def test_mp4_reads_back_with_decord(tiny_mp4):
    decord = pytest.importorskip("decord")
    path = tiny_mp4 / "videos" / "change colour" / "change_colour_0001.mp4"
    reader = decord.VideoReader(str(path))
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert len(reader) == 12 and frames.shape == (12, 32, 32, 3)
    # the decoded video is the rendered clip, up to H.264 / yuv420p losses
    clip = render_clip("change colour", video_rng(TINY.seed, "change colour", 1), TINY)
    assert np.abs(frames.astype(int) - clip).mean() < 8
    other = render_clip("change colour", video_rng(TINY.seed, "change colour", 2), TINY)
    assert np.abs(frames.astype(int) - other).mean() > 12


def test_frame_folders(tmp_path):
    from PIL import Image

    cfg = SyntheticConfig(classes=("appear", "disappear"), videos_per_class=2, frames=6, size=30, format="frames")
    root = generate_synthetic_dataset(tmp_path / "frames", cfg, progress=False, workers=1)
    folder = root / "frames" / "disappear" / "disappear_0001"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:06d}.jpg" for i in range(1, 7)]
    decoded = np.stack([np.asarray(Image.open(folder / n).convert("RGB")) for n in names])
    assert decoded.shape == (6, 30, 30, 3)
    clip = render_clip("disappear", video_rng(cfg.seed, "disappear", 1), cfg)
    assert np.abs(decoded.astype(int) - clip).mean() < 8
    assert read_split(root / "splits" / "testlist01.txt") == [
        ("appear", "appear_0000"), ("appear", "appear_0001"), ("disappear", "disappear_0000"),
        ("disappear", "disappear_0001")]
    assert read_split(root / "splits" / "trainlist01.txt") == []
    assert not (root / "videos").exists()


def test_deterministic_files_whatever_the_workers(tmp_path, tiny_mp4):
    again = generate_synthetic_dataset(tmp_path / "again", TINY, progress=False, workers=2)
    assert file_hashes(again) == file_hashes(tiny_mp4)
    reseeded = SyntheticConfig(**{**TINY.to_dict(), "classes": TINY_CLASSES, "seed": 1})
    other = generate_synthetic_dataset(tmp_path / "other", reseeded, progress=False, workers=1)
    a, b = file_hashes(tiny_mp4), file_hashes(other)
    videos = [k for k in a if k.endswith(".mp4")]
    assert set(videos) == {k for k in b if k.endswith(".mp4")}
    assert all(a[k] != b[k] for k in videos)


def test_idempotent_and_config_mismatch(tmp_path):
    cfg = SyntheticConfig(classes=("fall", "toss_up"), videos_per_class=1, frames=4, size=32)
    root = generate_synthetic_dataset(tmp_path / "d", cfg, progress=False, workers=1)
    video = root / "videos" / "fall" / "fall_0000.mp4"
    video.write_bytes(b"marker")  # a second call with the same config must not rewrite it
    assert generate_synthetic_dataset(root, cfg, progress=False, workers=1) == root
    assert video.read_bytes() == b"marker"
    bigger = SyntheticConfig(classes=("fall", "toss_up"), videos_per_class=1, frames=6, size=32)
    with pytest.raises(ValueError, match="frames: 4 on disk vs 6 requested"):
        generate_synthetic_dataset(root, bigger, progress=False, workers=1)
    generate_synthetic_dataset(root, bigger, progress=False, workers=1, overwrite=True)
    assert json.loads((root / "dataset.json").read_text())["config"]["frames"] == 6
    assert video.read_bytes() != b"marker"


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_synthetic", REPO / "data_scripts" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_script(tmp_path, capsys):
    script = REPO / "data_scripts" / "make_synthetic.py"
    out = tmp_path / "cli"
    args = [str(out), "--classes", "6", "--videos-per-class", "2", "--frames", "5", "--size", "32",
            "--seed", "3", "--no-progress", "--workers", "1"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["config"]["num_classes"] == 6 and meta["config"]["seed"] == 3
    assert len(meta["videos"]) == 12
    assert sum(len(read_split(p)) for p in (out / "splits").iterdir()) == 12
    # in-process from here on (a subprocess pays the package import each time)
    main = _load_script().main
    assert main(args) == 0  # same config: nothing to do
    assert main(args + ["--frames", "6"]) == 2  # another config in the same folder is refused
    assert "overwrite" in capsys.readouterr().err
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "approach" in listed and "twin=recede" in listed
    names = main([str(tmp_path / "named"), "--classes", "appear,disappear", "--videos-per-class", "1",
                  "--frames", "4", "--size", "32", "--format", "frames", "--no-progress", "--workers", "1"])
    assert names == 0 and (tmp_path / "named" / "frames" / "disappear" / "disappear_0000" / "000004.jpg").is_file()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad"), "--size", "33"])  # odd size for mp4: argparse error
