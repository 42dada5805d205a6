"""Data preparation of the real benchmarks (fsvid.prepare), on tiny fake raw datasets in each
official layout (tests/prepare_helpers.py): split lists fetched and checked, videos found,
converted, verified, and loaded as episodes."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsvid.data import EpisodeDataset, read_frames, read_split, split_classes, trx_frame_indices
from fsvid.prepare import (
    BENCHMARKS,
    SPLIT_SHA256,
    LayoutError,
    OutputOptions,
    SplitChecksumError,
    benchmark_split_files,
    check_ssv2_labels,
    convert_video,
    get_splits,
    identify_split_file,
    load_ssv2_classes,
    find_ssv2_label_files,
    index_raw_videos,
    output_size,
    prepare_dataset,
    verify_prepared,
    youtube_id,
)
from fsvid.prepare.layouts import LAYOUTS
from fsvid.prepare import convert as convert_module
from fsvid.prepare.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_helpers import (  # noqa: E402
    frame_indices,
    make_hmdb,
    make_kinetics,
    make_ssv2,
    make_ucf,
    write_raw_video,
    write_split,
)

SHARED_SPLITS = Path(__file__).resolve().parents[2] / "shared" / "splits"
REPO = Path(__file__).resolve().parents[1]
SMALL = dict(short_side=48)  # 80x60 raw -> 64x48 prepared


def _no_download(url: str, dest: Path) -> None:
    raise AssertionError(f"nothing should be downloaded, asked for {url}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- split lists --------------------------------------------------------------------------------

@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="shared/splits not available")
def test_get_splits_copies_the_standard_lists_and_they_have_the_expected_sizes(tmp_path):
    paths = get_splits(tmp_path, source=SHARED_SPLITS, download=_no_download, progress=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in paths) == sorted(SPLIT_SHA256)
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    # second run: everything present and correct, nothing copied or downloaded
    assert get_splits(tmp_path, download=_no_download, progress=False) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes
    for name, bench in BENCHMARKS.items():
        files = benchmark_split_files(name, tmp_path)
        for split, path in files.items():
            entries = read_split(path)
            assert (len(split_classes(entries)), len(entries)) == bench.expected[split], (name, split)
            assert identify_split_file(path) == (bench, split)


def test_get_splits_refuses_a_file_with_another_sum(tmp_path):
    source = tmp_path / "source"
    good, bad = b"a/1\nb/2\n", b"a/1\nb/3\n"
    (source / "toy_ARN").mkdir(parents=True)
    (source / "toy_ARN" / "trainlist03.txt").write_bytes(good)
    (source / "toy_ARN" / "testlist03.txt").write_bytes(bad)
    sums = {"toy_ARN/trainlist03.txt": _sha(good), "toy_ARN/testlist03.txt": _sha(good)}
    dest = tmp_path / "dest"
    with pytest.raises(SplitChecksumError) as info:
        get_splits(dest, source=source, checksums=sums, progress=False)
    message = str(info.value)
    assert "testlist03.txt" in message and _sha(good) in message and _sha(bad) in message
    assert (dest / "toy_ARN" / "trainlist03.txt").read_bytes() == good  # the good one landed
    assert not (dest / "toy_ARN" / "testlist03.txt").exists()  # the bad one did not
    assert [p.name for p in (dest / "toy_ARN").iterdir()] == ["trainlist03.txt"]  # no leftover


def test_get_splits_existing_file_with_another_sum_needs_overwrite(tmp_path):
    good = b"a/1\n"
    (tmp_path / "src" / "toy").mkdir(parents=True)
    (tmp_path / "src" / "toy" / "x.txt").write_bytes(good)
    (tmp_path / "dest" / "toy").mkdir(parents=True)
    (tmp_path / "dest" / "toy" / "x.txt").write_bytes(b"edited/1\n")
    sums = {"toy/x.txt": _sha(good)}
    with pytest.raises(SplitChecksumError, match="overwrite"):
        get_splits(tmp_path / "dest", source=tmp_path / "src", checksums=sums, progress=False)
    get_splits(tmp_path / "dest", source=tmp_path / "src", checksums=sums, overwrite=True, progress=False)
    assert (tmp_path / "dest" / "toy" / "x.txt").read_bytes() == good


def test_get_splits_download_path_checks_sums_and_explains_network_errors(tmp_path):
    good = b"c/9\n"
    sums = {"toy/x.txt": _sha(good)}
    asked = []

    def serve(content: bytes):
        def download(url: str, dest: Path) -> None:
            asked.append(url)
            dest.write_bytes(content)
        return download

    with pytest.raises(SplitChecksumError, match=r"raw\.githubusercontent\.com/tobyperrett/trx/main/splits/toy/x\.txt"):
        get_splits(tmp_path, checksums=sums, download=serve(b"<html>404</html>"), progress=False)
    assert not (tmp_path / "toy" / "x.txt").exists()
    get_splits(tmp_path, checksums=sums, download=serve(good), progress=False)
    assert (tmp_path / "toy" / "x.txt").read_bytes() == good

    def offline(url: str, dest: Path) -> None:
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(ConnectionError, match="splits/ folder by other means"):
        get_splits(tmp_path / "other", checksums=sums, download=offline, progress=False)


def test_benchmark_split_files_says_how_to_fetch_missing_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="get_splits.py"):
        benchmark_split_files("ucf_ARN", tmp_path)


# --- conversion of one video --------------------------------------------------------------------

def test_output_size_keeps_aspect_and_even_sides():
    assert output_size(80, 60, 48) == (64, 48)
    assert output_size(320, 240, 256) == (342, 256)  # UCF/HMDB frames
    assert output_size(240, 320, 256) == (256, 342)  # portrait
    assert output_size(1280, 720, 256) == (456, 256)
    assert output_size(427, 240, 256, square=True) == (256, 256)
    assert output_size(427, 241, None) == (426, 240)


def test_convert_keeps_every_frame_once_and_resizes(tmp_path):
    raw = write_raw_video(tmp_path / "raw.webm", num_frames=20, fps=12)
    result = convert_video(raw, tmp_path / "out.mp4", OutputOptions(**SMALL), key="c/raw")
    assert (result.status, result.frames_in, result.frames_out, result.width, result.height) == ("ok", 20, 20, 64, 48)
    assert result.fps == pytest.approx(12.0)
    clip = read_frames(tmp_path / "out.mp4", list(range(20)))  # (20, 3, 48, 64)
    assert tuple(clip.shape) == (20, 3, 48, 64)
    np.testing.assert_array_equal(frame_indices(clip), np.arange(20))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_convert_reports_a_decoder_failure_part_way_as_truncated(tmp_path, monkeypatch):
    real = convert_module._decode_pyav

    def failing(path, width, height):
        for i, frame in enumerate(real(path, width, height)):
            if i == 9:
                raise OSError("corrupt packet")
            yield frame

    monkeypatch.setattr(convert_module, "_decode_pyav", failing)
    raw = write_raw_video(tmp_path / "raw.avi", num_frames=16)
    result = convert_video(raw, tmp_path / "out", OutputOptions(format="frames", **SMALL))
    assert (result.status, result.frames_out) == ("truncated", 9)
    assert "after 9 frames" in result.message and "corrupt packet" in result.message
    assert sorted(os.listdir(tmp_path / "out")) == [f"{i:06d}.jpg" for i in range(1, 10)]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is not on PATH")
def test_ffmpeg_decoder_gives_the_frames_pyav_gives(tmp_path):
    raw = write_raw_video(tmp_path / "raw.webm", num_frames=16)
    by_pyav = convert_video(raw, tmp_path / "pyav", OutputOptions(format="frames", **SMALL))
    by_ffmpeg = convert_video(raw, tmp_path / "ffmpeg", OutputOptions(format="frames", decoder="ffmpeg", **SMALL))
    assert (by_ffmpeg.status, by_ffmpeg.frames_out, by_ffmpeg.width, by_ffmpeg.height) == ("ok", 16, 64, 48)
    assert (by_pyav.frames_out, by_pyav.width, by_pyav.height) == (16, 64, 48)
    np.testing.assert_array_equal(frame_indices(read_frames(tmp_path / "ffmpeg", range(16))), np.arange(16))


def test_ffmpeg_decoder_without_the_program_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(convert_module.shutil, "which", lambda name: None)
    fake = make_ucf(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ffmpeg.*--decoder pyav"):
        prepare_dataset("ucf", fake.raw, tmp_path / "out", fake.splits, OutputOptions(decoder="ffmpeg"), progress=False)


# --- SSv2 ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    """The fake SSv2 download, prepared once with the OTAM-style lists (mp4)."""
    tmp = tmp_path_factory.mktemp("ssv2")
    otam, cmn = make_ssv2(tmp)
    out = tmp / "ssv2_OTAM"
    summary = prepare_dataset("ssv2", otam.raw, out, otam.splits, OutputOptions(**SMALL), progress=False)
    return otam, cmn, out, summary


def test_ssv2_otam_videos_land_in_the_anonymised_class_folders(ssv2):
    otam, _, out, summary = ssv2
    assert len(summary.converted) == len(otam.frames) == 12
    assert [m.entry.key for m in summary.missing] == otam.missing == ["test0/999999"]
    assert [r.key for r in summary.unreadable] == otam.corrupt == ["test1/424242"]
    assert "cannot open" in summary.unreadable[0].message
    assert summary.label_problems == ["1 videos not in the train/validation label files: test0/999999"]
    for key, n in otam.frames.items():
        clip = read_frames(out / f"{key}.mp4", list(range(n)))
        assert tuple(clip.shape[1:]) == (3, 48, 64), key
        np.testing.assert_array_equal(frame_indices(clip), np.arange(n))
    text = summary.format()
    assert "missing" in text and "test0/999999" in text and "unreadable" in text


def test_ssv2_verify_report_table_csv_and_plot(ssv2, tmp_path):
    otam, _, out, _ = ssv2
    report = verify_prepared(out, otam.splits, frames=8, progress=False)
    status = {v.key: v.status for v in report.videos}
    assert status["test0/999999"] == "missing"
    assert status["test1/424242"] == "unreadable"  # from the preparation log
    assert all(status[k] == "ok" for k in otam.frames)
    assert not report.ok
    rows = {r["split"]: r for r in report.split_rows()}
    assert (rows["train"]["classes"], rows["train"]["listed"], rows["train"]["ok"]) == (2, 6, 6)
    test = rows["test"]
    assert (test["listed"], test["ok"], test["missing"], test["unreadable"]) == (8, 6, 1, 1)
    assert (rows["test"]["frames_min"], rows["test"]["frames_max"]) == (14, 15)
    paths = report.write(tmp_path / "reports")
    with open(paths["classes"], newline="") as handle:
        classes = {(r["split"], r["class"]): r for r in csv.DictReader(handle)}
    assert classes[("test", "test1")]["unreadable"] == "1" and classes[("test", "test1")]["ok"] == "3"
    assert classes[("train", "train0")]["frames_median"] == "12"
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = report.format()
    assert "test1/424242" in table and "fewer than 6 usable videos" in table


def test_ssv2_prepared_data_loads_as_episodes_with_the_test_time_frames(ssv2):
    otam, _, out, _ = ssv2
    with pytest.warns(UserWarning, match="2 of 8 entries"):
        dataset = EpisodeDataset.from_split(otam.splits["test"], out, way=2, shot=1, query=2, frames=8, train=False,
                                            num_tasks=2, resize=None, crop=48, on_missing="skip", progress=False)
    episode = dataset[0]
    assert tuple(episode.support.shape) == (2, 8, 3, 48, 48)
    assert sorted(episode.class_names) == ["test0", "test1"]
    for clip, key in zip(episode.query, episode.query_videos):
        n = otam.frames[key]
        np.testing.assert_array_equal(frame_indices(clip), trx_frame_indices(n, 8, train=False))


def test_ssv2_rerun_is_idempotent_and_resumes_after_an_interruption(ssv2):
    otam, _, out, _ = ssv2
    outputs = sorted(out.glob("*/*.mp4"))
    mtimes = [p.stat().st_mtime_ns for p in outputs]
    again = prepare_dataset("ssv2", otam.raw, out, otam.splits, OutputOptions(**SMALL), progress=False)
    assert (len(again.converted), len(again.done_before)) == (0, 12)
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes
    # an interrupted run: one video never renamed into place, a half-written leftover
    (out / "train0" / "1000.mp4").unlink()
    (out / "train0" / ".partial-1000.mp4").write_bytes(b"half a video")
    resumed = prepare_dataset("ssv2", otam.raw, out, otam.splits, OutputOptions(**SMALL), progress=False)
    assert [r.key for r in resumed.converted] == ["train0/1000"]
    assert not (out / "train0" / ".partial-1000.mp4").exists()
    np.testing.assert_array_equal(frame_indices(read_frames(out / "train0" / "1000.mp4", range(12))), np.arange(12))


def test_ssv2_other_options_into_the_same_folder_are_refused(ssv2):
    otam, _, out, _ = ssv2
    with pytest.raises(ValueError, match=r"prepared with other options \(format: 'mp4' before, 'frames' now"):
        prepare_dataset("ssv2", otam.raw, out, otam.splits, OutputOptions(format="frames", **SMALL), progress=False)


def test_ssv2_labels_decode_otam_folders_and_check_cmn_classes(ssv2):
    otam, cmn, _, _ = ssv2
    classes = load_ssv2_classes(find_ssv2_label_files(otam.raw))
    otam_check = check_ssv2_labels([e for p in otam.splits.values() for e in read_split(p)], classes)
    assert otam_check.templates["train0"] == {"Pushing something from left to right": 3}
    assert otam_check.templates["test0"] == {"Twisting (wringing) something wet until water comes out": 3}
    assert otam_check.mismatches == [] and otam_check.mixed == []
    # the CMN class folders are the bracket-free templates: they agree with the labels
    cmn_entries = [e for p in cmn.splits.values() for e in read_split(p)]
    assert check_ssv2_labels(cmn_entries, classes).mismatches == []
    # a video listed under the wrong label text is caught
    wrong = write_split(cmn.splits["train"].with_name("wrong.txt"), ["Pushing something from left to right/1021"])
    check = check_ssv2_labels(read_split(wrong), classes)
    assert check.mismatches == [("Pushing something from left to right/1021",
                                 "Putting number of something onto something")]
    dry = prepare_dataset("ssv2", cmn.raw, cmn.raw.parent / "unused", [wrong], dry_run=True, progress=False)
    assert "listed under another class" in dry.label_problems[0]
    assert not (cmn.raw.parent / "unused").exists()


def test_ssv2_wrong_root_and_layout_errors(tmp_path):
    split = write_split(tmp_path / "testlist07.txt", ["test0/1000"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_dataset("ssv2", tmp_path / "nowhere", tmp_path / "out", [split], progress=False)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "20bn-something-something-v2-00").write_bytes(b"part")
    with pytest.raises(LayoutError, match=r"no \.webm files under .*20bn-something-something-v2/<id>\.webm"):
        prepare_dataset("ssv2", tmp_path / "raw", tmp_path / "out", [split], progress=False)
    write_raw_video(tmp_path / "raw" / "20bn-something-something-v2" / "5.webm", num_frames=3)
    with pytest.raises(LayoutError, match="none of the 1 videos"):
        prepare_dataset("ssv2", tmp_path / "raw", tmp_path / "out", [split], progress=False)


# --- Kinetics -----------------------------------------------------------------------------------

def test_kinetics_frames_keep_only_the_test_time_frames(tmp_path):
    fake = make_kinetics(tmp_path)
    out = tmp_path / "kinetics_CMN"
    options = OutputOptions(format="frames", keep_frames=8, **SMALL)
    summary = prepare_dataset("kinetics", fake.raw, out, fake.splits, options, progress=False)
    assert len(summary.converted) == 12
    assert [m.entry.key for m in summary.missing] == fake.missing
    assert any("matched by YouTube id" in n and "_000100_000110.mp4" in n for n in summary.notes)
    assert any("2 files named" in n and "replacement_for_corrupted_k400" in n for n in summary.notes)
    assert summary.unreadable == []  # the corrupt train/ copy was not used
    kept = trx_frame_indices(18, 8, train=False)  # the frames test-time sampling reads of 18
    for key in fake.frames:
        folder = out / key
        assert sorted(os.listdir(folder)) == [f"{i:06d}.jpg" for i in range(1, 9)], key
        np.testing.assert_array_equal(frame_indices(read_frames(folder, range(8))), kept)
    assert (out / "air drumming").is_dir()  # class names with spaces, from the lists
    with pytest.warns(UserWarning):
        dataset = EpisodeDataset.from_split(fake.splits["test"], out, way=2, shot=2, query=1, frames=8, train=False,
                                            num_tasks=1, resize=None, crop=48, on_missing="skip", progress=False)
    episode = dataset[0]
    for clip in episode.query:  # reading the 8 kept frames at test time gives the same frames
        np.testing.assert_array_equal(frame_indices(clip), kept)


def test_kinetics_youtube_id_fallback_needs_a_single_clip(tmp_path):
    assert youtube_id("-VtLx-mcPds_000012_000022") == "-VtLx-mcPds"
    assert youtube_id("a_b_c_000001_000011") == "a_b_c"
    assert youtube_id("-VtLx-mcPds") == "-VtLx-mcPds"
    for name in ("AAAAAAAAAAA_000001_000011", "AAAAAAAAAAA_000020_000030", "BBBBBBBBBBB.mp4"):
        (tmp_path / (name if name.endswith(".mp4") else name + ".mp4")).touch()
    split = write_split(tmp_path / "list.txt", ["c/AAAAAAAAAAA_000050_000060", "c/BBBBBBBBBBB_000005_000015"])
    index = index_raw_videos(LAYOUTS["kinetics"], tmp_path, {"test": read_split(split)}, progress=False)
    assert [(m.entry.video_id, m.source.name) for m in index.matches] == [("BBBBBBBBBBB_000005_000015", "BBBBBBBBBBB.mp4")]
    [miss] = index.misses
    assert "2 clips of YouTube id 'AAAAAAAAAAA'" in miss.reason


# --- HMDB51 -------------------------------------------------------------------------------------

def test_hmdb_odd_names_and_a_case_near_miss(tmp_path):
    fake = make_hmdb(tmp_path)
    out = tmp_path / "hmdb_ARN"
    summary = prepare_dataset("hmdb", fake.raw, out, fake.splits, OutputOptions(**SMALL), progress=False)
    assert len(summary.converted) == 11
    assert (out / "cartwheel" / "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.mp4").is_file()
    assert (out / "fencing" / "Die_Another_Day_-_Fencing_Scene_Part_1_[HD]_fencing_f_cm_np2_le_goo_0.mp4").is_file()
    assert (out / "kick_ball" / "Amazing_Soccer_#2_kick_ball_f_cm_np1_ba_bad_5.mp4").is_file()
    [miss] = summary.missing
    assert miss.entry.key == fake.missing[0]
    assert "fencing_training_fencing_f_cm_np2_ri_bad_1.avi differs only in case" in miss.reason
    assert "differ only in letter case" in summary.format()
    report = verify_prepared(out, fake.splits, frames=8, progress=False)
    assert [(v.key, v.status) for v in report.problems()] == [(fake.missing[0], "missing")]
    with pytest.warns(UserWarning, match="1 of 6 entries"):
        dataset = EpisodeDataset.from_split(fake.splits["test"], out, way=2, shot=1, query=1, frames=8, train=False,
                                            num_tasks=1, resize=None, crop=48, on_missing="skip", progress=False)
    assert tuple(dataset[0].query.shape) == (2, 8, 3, 48, 48)


def test_hmdb_archives_not_extracted_is_explained(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "hmdb51_org.rar").write_bytes(b"Rar!")
    split = write_split(tmp_path / "trainlist03.txt", ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0"])
    with pytest.raises(LayoutError, match=r"unrar x hmdb51_org\.rar.*extract them first"):
        prepare_dataset("hmdb", tmp_path / "raw", tmp_path / "out", [split], progress=False)


# --- UCF101 and the command line ----------------------------------------------------------------

def test_ucf_in_worker_processes_reports_a_too_short_video(tmp_path):
    fake = make_ucf(tmp_path, short_frames=5)
    out = tmp_path / "ucf_ARN"
    summary = prepare_dataset("ucf", fake.raw, out, fake.splits, OutputOptions(**SMALL), workers=2, progress=False)
    assert sorted(r.key for r in summary.converted) == sorted(fake.frames)
    assert [r.key for r in summary.too_short] == ["HandstandWalking/v_HandstandWalking_g09_c01"]
    report = verify_prepared(out, fake.splits, frames=8, workers=2, progress=False)
    assert [(v.key, v.status, v.frames) for v in report.problems()] == [
        ("HandstandWalking/v_HandstandWalking_g09_c01", "too_short", 5)]
    with pytest.warns(UserWarning, match="dropping 1 of 6 videos shorter than 8 frames"):
        dataset = EpisodeDataset.from_split(fake.splits["test"], out, way=2, shot=1, query=1, frames=8, train=False,
                                            num_tasks=1, resize=None, crop=48, progress=False)
    assert len(dataset.videos) == 5


def test_cli_prepares_verifies_and_reports_bad_input(tmp_path, capsys):
    fake = make_ucf(tmp_path, short_frames=14)
    out = tmp_path / "ucf_ARN"
    files = [str(fake.splits["train"]), str(fake.splits["test"])]
    common = ["--short-side", "48", "--workers", "1", "--no-progress"]
    assert main(["ucf", str(fake.raw), str(out), "--split-file", files[0], "--split-file", files[1], *common]) == 0
    printed = capsys.readouterr().out
    assert "converted now      12" in printed and "Every listed video is present" in printed
    assert (out / ".fsvid" / "verify_stats.png").is_file()
    assert (out / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.mp4").is_file()
    # --strict fails when a listed video is missing
    (out / "ApplyLipstick" / "v_ApplyLipstick_g08_c01.mp4").unlink()
    assert main(["verify", str(out), "--split-file", files[0], "--strict", "--workers", "1", "--no-progress"]) == 1
    assert main(["verify", str(out), "--no-progress"]) == 2
    assert "--benchmark NAME or --split-file" in capsys.readouterr().err
    assert main(["ucf", str(tmp_path / "nowhere"), str(out), "--split-file", files[0], *common]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="shared/splits not available")
def test_cli_fetches_the_standard_lists_and_finds_videos_by_their_real_names(tmp_path, capsys):
    fake = make_hmdb(tmp_path)
    real = {e.key for p in (SHARED_SPLITS / "hmdb_ARN").glob("*.txt") for e in read_split(p)}
    present = real & set(fake.frames)  # the fake videos named like real HMDB51 videos
    assert len(present) >= 3
    splits = tmp_path / "lists"
    assert main(["hmdb", str(fake.raw), str(tmp_path / "out"), "--splits", str(splits),
                 "--splits-from", str(SHARED_SPLITS), "--dry-run", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "listed           6766  (train 4280, val 1194, test 1292)" in printed
    assert f"would convert {len(present):7d}" in printed
    assert sorted(p.name for p in (splits / "hmdb_ARN").iterdir()) == ["testlist03.txt", "trainlist03.txt",
                                                                      "vallist03.txt"]
    assert not (tmp_path / "out").exists()


def test_scripts_are_thin_wrappers_with_help():
    result = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_ucf.py"), "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "UCF-101/<Class>/v_<Class>_gXX_cXX.avi" in result.stdout and "--keep-frames" in result.stdout
