"""Split lists: the five benchmark line formats, malformed lines, resolving entries on disk."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from fsvid.data.splits import VideoSource, parse_split_lines, read_split, resolve_split, split_classes

SHARED_SPLITS = Path(__file__).resolve().parents[2] / "shared" / "splits"

# one line in the style of each benchmark list, and the (class, video id) it must give
FIVE_FORMATS = [
    ("train8/78687", ("train8", "78687")),  # ssv2_OTAM: anonymised classes
    ("Twisting (wringing) something wet until water comes out/88644",
     ("Twisting (wringing) something wet until water comes out", "88644")),  # ssv2_CMN
    ("air drumming/-VtLx-mcPds_000012_000022", ("air drumming", "-VtLx-mcPds_000012_000022")),  # kinetics_CMN
    ("cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0",
     ("cartwheel", "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0")),  # hmdb_ARN
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01")),  # ucf_ARN
]


def test_five_formats_parse_exactly(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("\n".join(line for line, _ in FIVE_FORMATS) + "\n", encoding="utf-8")
    entries = read_split(path)
    assert [(e.class_name, e.video_id) for e in entries] == [parsed for _, parsed in FIVE_FORMATS]
    assert [e.line for e in entries] == [1, 2, 3, 4, 5]
    assert [e.key for e in entries] == [line for line, _ in FIVE_FORMATS]


def test_blank_lines_and_windows_line_ends_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\r\nair drumming/abc_1\r\n   \r\n\nApplyLipstick/v_A_g01\r\n\n")
    entries = read_split(path)
    assert [(e.class_name, e.video_id, e.line) for e in entries] == [
        ("air drumming", "abc_1", 2),
        ("ApplyLipstick", "v_A_g01", 5),
    ]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("no_slash_here", "no '/'"),
        ("/78687", "empty class folder"),
        ("train8/", "empty video id"),
        ("  /  ", "empty class folder"),
        ("a/b/c", "2 '/' characters"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str, reason: str) -> None:
    path = tmp_path / "trainlist03.txt"
    path.write_text(f"ok/1\n\n{bad}\nok/2\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_split(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and reason in message


def test_repeated_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("a/1\nb/2\na/1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3: 'a/1' repeats line 1"):
        read_split(path)


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_split(tmp_path / "nope.txt")


def test_split_classes_sorted_unique() -> None:
    entries = parse_split_lines(["b/1", "a/2", "b/3", "C/4"])
    assert split_classes(entries) == ["C", "a", "b"]


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_resolve_finds_video_files_and_frame_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "air drumming" / "vid_Frames").mkdir(parents=True)
    _touch(root / "air drumming" / "vid_Frames" / "img_00001.jpg")
    for stem, ext in [("a", ".mp4"), ("b", ".webm"), ("c", ".avi"), ("d", ".mkv")]:
        _touch(root / "Cls" / (stem + ext))
    # both a frame folder and a video file: the folder wins; two videos: extension order
    (root / "Cls" / "both").mkdir()
    _touch(root / "Cls" / "both.mp4")
    _touch(root / "Cls" / "two.webm")
    _touch(root / "Cls" / "two.mp4")
    entries = parse_split_lines(["air drumming/vid_Frames", "Cls/a", "Cls/b", "Cls/c", "Cls/d", "Cls/both", "Cls/two"])
    found = resolve_split(entries, root)
    assert [(s.key, s.kind, s.path) for s in found] == [
        ("air drumming/vid_Frames", "frames", root / "air drumming" / "vid_Frames"),
        ("Cls/a", "video", root / "Cls" / "a.mp4"),
        ("Cls/b", "video", root / "Cls" / "b.webm"),
        ("Cls/c", "video", root / "Cls" / "c.avi"),
        ("Cls/d", "video", root / "Cls" / "d.mkv"),
        ("Cls/both", "frames", root / "Cls" / "both"),
        ("Cls/two", "video", root / "Cls" / "two.mp4"),
    ]
    assert all(isinstance(s, VideoSource) and s.num_frames is None for s in found)


def test_resolve_is_case_sensitive_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _touch(root / "ApplyEyeMakeup" / "v_applyeyemakeup_g01_c01.mp4")
    _touch(root / "brush_hair" / "April_09.mp4")
    entries = parse_split_lines(["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "Brush_Hair/April_09"])
    with pytest.raises(FileNotFoundError) as info:
        resolve_split(entries, root, split_name="ucf.txt")
    message = str(info.value)
    assert "2 of 2 entries of ucf.txt not found under" in message and str(root) in message
    assert "differs in case from 'v_applyeyemakeup_g01_c01.mp4'" in message
    assert "no class folder; differs in case from 'brush_hair'" in message


def test_missing_entries_error_lists_count_first_few_and_directory(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _touch(root / "k" / "v0.mp4")
    _touch(root / "k" / "v1.mp4")
    entries = parse_split_lines(["k/v0", "k/v1"] + [f"k/gone{i}" for i in range(8)])
    with pytest.raises(FileNotFoundError) as info:
        resolve_split(entries, root, split_name="testlist.txt")
    message = str(info.value)
    assert f"8 of 10 entries of testlist.txt not found under {root}" in message
    assert "'k/gone0' (line 3)" in message and "'k/gone4' (line 7)" in message
    assert "gone5" not in message and "and 3 more" in message
    assert "on_missing='skip'" in message


def test_missing_entries_skipped_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _touch(root / "k" / "v0.mp4")
    entries = parse_split_lines(["k/v0", "k/gone", "nope/x"])
    with pytest.warns(UserWarning, match=r"2 of 3 entries .* not found"):
        found = resolve_split(entries, root, on_missing="skip")
    assert [s.key for s in found] == ["k/v0"]


def test_resolve_bad_arguments(tmp_path: Path) -> None:
    entries = parse_split_lines(["k/v0"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_split(entries, tmp_path / "absent")
    with pytest.raises(ValueError, match="on_missing"):
        resolve_split(entries, tmp_path, on_missing="ignore")  # type: ignore[arg-type]


# classes / videos per split, METHODS.md "Benchmarks and splits"
REAL_SPLITS = {
    "ssv2_OTAM": ("07", (64, 67013), (12, 1926), (24, 2857)),
    "ssv2_CMN": ("03", (64, 6400), (12, 1200), (24, 2400)),
    "kinetics_CMN": ("03", (64, 6400), (12, 1200), (24, 2400)),
    "hmdb_ARN": ("03", (31, 4280), (10, 1194), (10, 1292)),
    "ucf_ARN": ("03", (70, 9154), (10, 1421), (21, 2745)),
}


@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="shared/splits not available")
@pytest.mark.parametrize("benchmark", sorted(REAL_SPLITS))
def test_real_split_lists_match_the_table(benchmark: str) -> None:
    number, *expected = REAL_SPLITS[benchmark]
    classes_per_split = []
    for name, (n_classes, n_videos) in zip(["train", "val", "test"], expected):
        entries = read_split(SHARED_SPLITS / benchmark / f"{name}list{number}.txt")
        assert (len(split_classes(entries)), len(entries)) == (n_classes, n_videos), name
        classes_per_split.append(set(split_classes(entries)))
    train, val, test = classes_per_split
    assert not (train & val) and not (train & test) and not (val & test)


@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="shared/splits not available")
def test_real_split_lists_keep_spaces_and_capitals() -> None:
    kinetics = read_split(SHARED_SPLITS / "kinetics_CMN" / "trainlist03.txt")
    assert kinetics[0].class_name == "air drumming"
    ucf = read_split(SHARED_SPLITS / "ucf_ARN" / "trainlist03.txt")
    assert ucf[0].key == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01"
    otam = read_split(SHARED_SPLITS / "ssv2_OTAM" / "trainlist07.txt")
    assert otam[0].key == "train8/78687"
