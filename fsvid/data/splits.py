"""Benchmark split lists: parse ``class_folder/video_id`` lines and find the videos on disk.

Every few-shot video benchmark is released as three text files (train / val / test), one video
per line, written ``class_folder/video_id`` with no extension and no label column. The five
standard lists differ only in what the two parts look like:

======================  ===================================================================
``ssv2_OTAM``           anonymised class folders: ``train8/78687``
``ssv2_CMN``            the SSv2 label text as class: ``Pouring something into something/51958``
``kinetics_CMN``        class names with spaces: ``air drumming/-VtLx-mcPds_000012_000022``
``hmdb_ARN``            ids with capitals and punctuation: ``cartwheel/(Rad)Schlag_die_Bank!_...``
``ucf_ARN``             CamelCase classes and ids: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01``
======================  ===================================================================

:func:`read_split` turns a list into :class:`SplitEntry` rows (blank lines are skipped, a
UTF-8 byte order mark is dropped; a malformed line, such as one with a label column
``class/video_id 3``, or bytes that are not UTF-8 are an error naming the file and the line). :func:`resolve_split` finds
each entry under a data root that holds, per class folder, either a video file
``class/video_id.{mp4,webm,avi,mkv}`` or a folder of extracted frames ``class/video_id/*.jpg``.
Matching is case-sensitive on every file system (the released TRX loader lower-cases the
lines, which breaks on case-sensitive disks for HMDB and UCF); a near miss that differs only
in case is pointed out in the error message.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: Extensions of video files, in the order they are tried when several exist.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".avi", ".mkv")
#: Extensions of frame images inside a frame folder (compared lower-cased).
FRAME_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg")

#: How many missing entries an error or warning message lists by name.
_SHOW = 5


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split list: ``class_name/video_id``, found at ``line`` (1-based)."""

    class_name: str
    video_id: str
    line: int

    @property
    def key(self) -> str:
        """``class_name/video_id``, the line as written."""
        return f"{self.class_name}/{self.video_id}"


@dataclass(frozen=True)
class VideoSource:
    """A split entry found on disk.

    ``kind`` is ``"video"`` for a video file (read with decord) or ``"frames"`` for a folder
    of JPEG frames. ``num_frames`` is ``None`` until counted (see
    :func:`fsvid.data.video.count_frames`).
    """

    class_name: str
    video_id: str
    path: Path
    kind: Literal["video", "frames"]
    num_frames: int | None = None

    @property
    def key(self) -> str:
        """``class_name/video_id``, as in the split list."""
        return f"{self.class_name}/{self.video_id}"


def parse_split_lines(lines: Iterable[str], source: str = "<lines>") -> list[SplitEntry]:
    """Parse ``class_folder/video_id`` lines; ``source`` names the file in error messages.

    Leading and trailing whitespace (including ``\\r`` of Windows line ends) is removed, blank
    lines are skipped, spaces inside a class name are kept. Raises ``ValueError`` naming
    ``source`` and the 1-based line number for a line without exactly one ``/``, with an
    empty class or video id, with a second column (a tab, or a number after a space: a label
    column), or repeating an earlier line.
    """
    entries: list[SplitEntry] = []
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        where = f"{source}, line {number}"
        if text.count("/") != 1:
            what = "no '/'" if "/" not in text else f"{text.count('/')} '/' characters"
            raise ValueError(
                f"{where}: expected 'class_folder/video_id', got {text!r} ({what})"
            )
        class_name, video_id = (part.strip() for part in text.split("/"))
        extra = _extra_column(video_id)
        if extra is not None:
            raise ValueError(
                f"{where}: {text!r} has an extra column {extra!r} after the video id; a split list has one "
                "column, 'class_folder/video_id' (no label column: the class is the folder)"
            )
        if not class_name or not video_id:
            empty = "class folder" if not class_name else "video id"
            raise ValueError(f"{where}: empty {empty} in {text!r}")
        key = f"{class_name}/{video_id}"
        if key in first_seen:
            raise ValueError(f"{where}: {key!r} repeats line {first_seen[key]}")
        first_seen[key] = number
        entries.append(SplitEntry(class_name, video_id, number))
    return entries


def _extra_column(video_id: str) -> str | None:
    """The second column of ``video_id`` when the line carries one (a tab, or a number after a
    space: ``v0 3`` is video ``v0`` with label 3), else None. Spaces inside ids are kept."""
    if "\t" in video_id:
        return video_id.split("\t", 1)[1].strip()
    head, _, tail = video_id.rpartition(" ")
    return tail if head and tail.lstrip("+-").isdigit() else None


def read_split(path: str | os.PathLike) -> list[SplitEntry]:
    """Read a split list file (UTF-8, a byte order mark is dropped), see :func:`parse_split_lines`.

    Raises ``FileNotFoundError`` when the file does not exist and ``ValueError`` (with file
    and line number) for a malformed line or bytes that are not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        line = data[: start + error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 (byte {data[start + error.start]:#04x}); split lists are "
            "UTF-8 text: re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return parse_split_lines(text.split("\n"), source=str(path))


def split_classes(entries: Iterable[SplitEntry | VideoSource]) -> list[str]:
    """The distinct class names, sorted: position ``k`` is the global class index ``k``.

    Sorting (rather than order of appearance) makes the index independent of how the list
    happens to be ordered, like the released TRX code which sorts its class folders.
    """
    return sorted({entry.class_name for entry in entries})


def _is_frame(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in FRAME_EXTENSIONS


def resolve_split(
    entries: Sequence[SplitEntry],
    data_root: str | os.PathLike,
    on_missing: Literal["error", "skip"] = "error",
    split_name: str = "split list",
) -> list[VideoSource]:
    """Find every entry under ``data_root``; returns the found ones in list order.

    For an entry ``class/video_id`` a frame folder ``data_root/class/video_id/`` is used if
    it exists, otherwise the first of ``data_root/class/video_id{.mp4,.webm,.avi,.mkv}``.
    Names are compared exactly (each class folder is listed once, so this is also fast and
    case-sensitive even on case-insensitive disks).

    Missing entries raise ``FileNotFoundError`` with their count, the first few and the
    directory searched; with ``on_missing="skip"`` they are left out with a warning.
    ``split_name`` names the list in those messages.
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a directory (needed for {split_name})")

    class_dirs = set(os.listdir(root))
    listings: dict[str, dict[str, bool]] = {}  # class -> {name: is_dir}

    def listing(class_name: str) -> dict[str, bool]:
        if class_name not in listings:
            names: dict[str, bool] = {}
            if class_name in class_dirs and (root / class_name).is_dir():
                with os.scandir(root / class_name) as it:
                    for item in it:
                        names[item.name] = item.is_dir()
            listings[class_name] = names
        return listings[class_name]

    found: list[VideoSource] = []
    missing: list[SplitEntry] = []
    for entry in entries:
        names = listing(entry.class_name)
        if names.get(entry.video_id, False):
            path, kind = root / entry.class_name / entry.video_id, "frames"
        else:
            ext = next((e for e in VIDEO_EXTENSIONS if (entry.video_id + e) in names), None)
            if ext is None:
                missing.append(entry)
                continue
            path, kind = root / entry.class_name / (entry.video_id + ext), "video"
        found.append(VideoSource(entry.class_name, entry.video_id, path, kind))

    if missing:
        message = _missing_message(missing, len(entries), root, split_name, class_dirs, listings)
        if on_missing == "error":
            raise FileNotFoundError(message + " (pass on_missing='skip' to leave them out)")
        warnings.warn(message + "; skipping them", stacklevel=2)
    return found


def _missing_message(
    missing: list[SplitEntry],
    total: int,
    root: Path,
    split_name: str,
    class_dirs: set[str],
    listings: dict[str, dict[str, bool]],
) -> str:
    """Count, first few (with line numbers) and a hint for near misses in letter case."""
    shown = []
    for entry in missing[:_SHOW]:
        hint = ""
        if entry.class_name not in class_dirs:
            near = [d for d in class_dirs if d.lower() == entry.class_name.lower()]
            hint = f" (no class folder; differs in case from {near[0]!r})" if near else " (no class folder)"
        else:
            stems = {os.path.splitext(n)[0] if not is_dir else n: n
                     for n, is_dir in listings[entry.class_name].items()}
            near = [n for s, n in stems.items() if s.lower() == entry.video_id.lower()]
            if near:
                hint = f" (differs in case from {near[0]!r})"
            elif os.path.splitext(entry.video_id)[1].lower() in VIDEO_EXTENSIONS:
                hint = " (written with its extension: split lists give video ids without one)"
        shown.append(f"{entry.key!r} (line {entry.line}){hint}")
    more = f", ... and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
    return (
        f"{len(missing)} of {total} entries of {split_name} not found under {root}: "
        f"{', '.join(shown)}{more}. Looked for class/video_id{{{','.join(VIDEO_EXTENSIONS)}}} "
        f"or a frame folder class/video_id/*.jpg, with exact letter case"
    )
