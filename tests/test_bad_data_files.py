"""Split lists and video files as users really have them: each fault is named with its file
(and line), nothing is silently misread.

The two odd video files (an mp4 cut by stream copy, whose edit list hides the pre-roll, and a
WebM without duration or cues) are made with PyAV by :func:`data_helpers.write_video`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_helpers import decode_index, index_frames, write_split, write_video
from prepare_helpers import write_raw_video
from fsvid.data.splits import read_split, resolve_split
from fsvid.data.video import VideoFileReader, container_frame_counts, count_video_frames, read_frames
from fsvid.prepare.verify import verify_prepared

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- split lists


@pytest.mark.parametrize("line", ["a/v1 3", "a/v1\t3", "a/v1  3", "a/v1\tlabel"])
def test_a_label_column_is_named_as_an_extra_column(tmp_path: Path, line: str) -> None:
    path = write_split(tmp_path / "trainlist01.txt", ["a/v0", line, "b/v0"])
    with pytest.raises(ValueError) as raised:
        read_split(path)
    message = str(raised.value)
    assert f"{path}, line 2" in message
    assert "extra column" in message and "'class_folder/video_id'" in message


def test_spaces_inside_a_video_id_are_still_an_id(tmp_path: Path) -> None:
    path = write_split(tmp_path / "list.txt", ["air drumming/my clip", "a/v 2b"])
    assert [e.video_id for e in read_split(path)] == ["my clip", "v 2b"]


def test_a_byte_order_mark_is_not_part_of_the_first_class(tmp_path: Path) -> None:
    path = tmp_path / "trainlist01.txt"
    path.write_bytes("a/v0\r\na/v1\r\nb/v0\r\n".encode("utf-8-sig"))
    entries = read_split(path)
    assert [e.key for e in entries] == ["a/v0", "a/v1", "b/v0"]
    assert [e.line for e in entries] == [1, 2, 3]


def test_a_list_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "testlist01.txt"
    path.write_bytes("a/v0\nb/v1\ncaf\u00e9/v2\n".encode("latin-1"))
    with pytest.raises(ValueError) as raised:
        read_split(path)
    message = str(raised.value)
    assert f"{path}, line 3" in message and "not UTF-8" in message and "0xe9" in message
    assert not isinstance(raised.value, UnicodeDecodeError)


# ----------------------------------------------------------------------------- video files


def test_frames_hidden_by_an_edit_list_are_not_counted_or_returned(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut.mp4", index_frames(40, 24, 32), hidden=10)
    assert container_frame_counts(path) == (40, 30)  # the container lists the hidden frames too
    reader = VideoFileReader(path)
    assert len(reader) == 30 and count_video_frames(path) == 30
    shown = list(range(10, 40))  # what a player shows: frames 10..39 of what was encoded
    rng = np.random.default_rng(0)
    for _ in range(5):  # random order with repeats: decord got these wrong after seeks
        asked = rng.integers(0, 30, 8).tolist()
        assert decode_index(reader.read(asked)).tolist() == [shown[i] for i in asked]
    assert decode_index(reader.read([29])).tolist() == [39]
    with pytest.raises(IndexError, match="30 frames"):
        reader.read([30])


def test_a_plain_mp4_is_still_read_with_decord(tmp_path: Path) -> None:
    reader = VideoFileReader(write_video(tmp_path / "plain.mp4", index_frames(20, 24, 32)))
    assert reader.decoder == "decord" and len(reader) == 20


def test_a_webm_without_duration_or_cues_is_read_with_pyav(tmp_path: Path) -> None:
    path = write_video(tmp_path / "recording.webm", index_frames(20, 24, 32), live=True)
    assert container_frame_counts(path) == (None, None)
    reader = VideoFileReader(path)
    assert reader.decoder == "pyav" and len(reader) == 20
    assert decode_index(read_frames(path, [19, 0, 7, 7])).tolist() == [19, 0, 7, 7]


def test_verify_reports_the_decoded_count_of_a_cut_mp4(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    write_video(out / "a" / "cut.mp4", index_frames(40, 24, 32), hidden=10)
    write_video(out / "a" / "plain.mp4", index_frames(20, 24, 32))
    split = write_split(tmp_path / "testlist01.txt", ["a/cut", "a/plain"])
    report = verify_prepared(out, {"test": split}, frames=8, progress=False)
    by_id = {v.video_id: v for v in report.videos}
    assert by_id["cut"].status == "ok" and by_id["cut"].frames == 30
    assert "counted by decoding" in by_id["cut"].message and "lists 40" in by_id["cut"].message
    assert by_id["plain"].frames == 20 and by_id["plain"].message == ""


def test_verify_refuses_a_count_the_container_contradicts(tmp_path: Path, monkeypatch) -> None:
    # a file whose hidden frames decord's timestamps do not give away: verify still catches it
    import fsvid.data.video as video

    monkeypatch.setattr(video, "_hides_frames", lambda reader: False)
    out = tmp_path / "prepared"
    write_video(out / "a" / "cut.mp4", index_frames(40, 24, 32), hidden=10)
    split = write_split(tmp_path / "testlist01.txt", ["a/cut"])
    (check,) = verify_prepared(out, {"test": split}, frames=8, progress=False).videos
    assert check.status == "unreadable"
    assert "finds 40 frames" in check.message and "30 decode" in check.message


def test_resolve_finds_ids_after_a_bom(tmp_path: Path) -> None:
    write_video(tmp_path / "data" / "a" / "v0.mp4", index_frames(4, 24, 32))
    path = tmp_path / "list.txt"
    path.write_bytes("a/v0\n".encode("utf-8-sig"))
    (source,) = resolve_split(read_split(path), tmp_path / "data")
    assert source.class_name == "a"


# ----------------------------------------------------------------------------- prepare scripts


def test_offline_prepare_says_splits_from(tmp_path: Path, monkeypatch, capsys) -> None:
    import fsvid.prepare.cli as cli
    from fsvid.prepare.splits import get_splits

    def offline(url: str, dest: Path) -> None:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(cli, "get_splits", lambda *a, **k: get_splits(*a, **k, download=offline))
    raw = tmp_path / "raw"
    raw.mkdir()
    code = cli.main(["ucf", str(raw), str(tmp_path / "out"), "--splits", str(tmp_path / "splits"), "--no-progress"],
                    script="data_scripts/prepare_ucf.py")
    err = capsys.readouterr().err
    assert code == 2 and "--splits-from DIR" in err and "--from DIR" not in err.replace("--splits-from", "")
    assert not (tmp_path / "out").exists()  # nothing was started
    code = cli.main(["splits", str(tmp_path / "splits"), "--no-progress"])
    assert code == 2 and "(--from DIR)" in capsys.readouterr().err


def test_the_prepare_script_names_itself_in_usage_errors(tmp_path: Path) -> None:
    script = ROOT / "data_scripts" / "prepare_ucf.py"
    done = subprocess.run([sys.executable, str(script), "RAW"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "FSVID_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert f"usage: python {script}" in done.stderr and "error: the following arguments are required: OUT" in done.stderr
    assert "fsvid.prepare" not in done.stderr


@pytest.mark.parametrize("command, argv", [("splits", ["--benchmark", "x"]), ("verify", []), ("hmdb", [])])
def test_script_usage_errors_name_the_script(capsys, command: str, argv: list[str]) -> None:
    from fsvid.prepare.cli import main

    with pytest.raises(SystemExit) as exited:
        main([command, *argv], script="data_scripts/some_script.py")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "usage: python data_scripts/some_script.py [-h]" in err
    assert "fsvid.prepare" not in err


# ----------------------------------------------------------------------------- files fsvid wrote, damaged since


def test_a_damaged_preparation_log_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    write_video(out / "a" / "v0.mp4", index_frames(12, 24, 32))
    log = out / ".fsvid" / "prepare_log.csv"
    log.parent.mkdir()
    log.write_bytes("caf\u00e9,status\n".encode("latin-1"))
    split = write_split(tmp_path / "testlist01.txt", ["a/v0"])
    with pytest.raises(ValueError, match=rf"preparation log {log} is damaged"):
        verify_prepared(out, {"test": split}, progress=False)
    log.write_text("video,status\na/v0,ok\n")
    with pytest.raises(ValueError, match=rf"preparation log {log} is damaged \(no 'key' column"):
        verify_prepared(out, {"test": split}, progress=False)


def test_damaged_prepare_settings_name_the_file(tmp_path: Path, capsys) -> None:
    from fsvid.prepare.cli import main

    raw, out = tmp_path / "raw", tmp_path / "out"
    write_raw_video(raw / "UCF-101" / "A" / "v_A_g01_c01.avi", num_frames=12, codec="mjpeg")
    settings = out / ".fsvid" / "prepare.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"dataset": "ucf", "output": ')
    split = write_split(tmp_path / "trainlist01.txt", ["A/v_A_g01_c01"])
    code = main(["ucf", str(raw), str(out), "--split-file", str(split), "--no-progress", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and f"{settings} (the options {out} was prepared with) is damaged" in err
    assert settings.read_text() == '{"dataset": "ucf", "output": '  # left for the user to look at
    assert not (out / "A").exists()  # nothing converted


def test_an_ssv2_label_file_in_latin1_is_named(tmp_path: Path) -> None:
    from fsvid.prepare.layouts import load_ssv2_classes

    path = tmp_path / "something-something-v2-train.json"
    path.write_bytes('[{"id": "1", "template": "Pouring [something] caf\u00e9"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path} is not an SSv2 annotation file"):
        load_ssv2_classes({"train": path})


def test_a_damaged_synthetic_description_is_named(tmp_path: Path) -> None:
    from fsvid.config import load_config
    from fsvid.engine.data import time_reversed_pairs

    (tmp_path / "dataset.json").write_text('{"classes": [')
    with pytest.raises(ValueError, match=rf"synthetic dataset description {tmp_path / 'dataset.json'} is damaged"):
        time_reversed_pairs(load_config("synthetic_trx", [f"data.root={tmp_path}"]))


def test_an_id_written_with_its_extension_is_pointed_out(tmp_path: Path) -> None:
    write_video(tmp_path / "data" / "a" / "v0.mp4", index_frames(4, 24, 32))
    path = write_split(tmp_path / "list.txt", ["a/v0.mp4"])
    with pytest.raises(FileNotFoundError, match=r"'a/v0.mp4' \(line 1\) \(written with its extension"):
        resolve_split(read_split(path), tmp_path / "data")
