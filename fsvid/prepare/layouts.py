"""The official download layout of each raw dataset, and finding a split's videos in it.

Every split line is ``class_folder/video_id``; the class folder of the prepared dataset is
always taken from the line, and the raw video is found by its id, wherever it lies under the
raw root (so class folders named differently in a download, or no class folders at all,
do not matter):

======== ========================================================  ===========================
dataset  official layout (under RAW)                               split line -> raw file
======== ========================================================  ===========================
ssv2     ``20bn-something-something-v2/<id>.webm`` + label JSONs    ``train8/78687`` -> ``78687.webm``
kinetics ``[<split>/][<class>/]<youtube_id>_<start>_<end>.mp4``     ``air drumming/-VtLx-mcPds_000012_000022``
                                                                   -> that name (``.mp4/.mkv/.webm``)
hmdb     ``<class>/<video>.avi`` (after unrar of every class)       ``cartwheel/(Rad)Schlag_...`` -> ``.avi``
ucf      ``UCF-101/<Class>/v_<Class>_gXX_cXX.avi``                  ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01``
======== ========================================================  ===========================

This is how the TRX author built his data (the extraction scripts of his
few-shot-action-recognition repository): for SSv2 the script reads each split line, takes
``<video_id>.webm`` from the flat 20BN folder and writes the frames to
``<class_folder>/<video_id>/``, so the anonymised OTAM folders (``train8``) and the CMN
label-text folders (``Pouring something into something``) both come from the lists, never from
the label files. The label files are used here only to check the lists (see
:func:`check_ssv2_labels`). For Kinetics the released loader matched videos on the 11-character
YouTube id alone; here the full ``<id>_<start>_<end>`` name is matched first and the YouTube
id is the fallback (a clip downloaded with other times, or saved as ``<id>.mp4``).

Names are matched exactly (letter case included); a file that differs only in case is
reported as a near miss, never used silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fsvid.data.splits import SplitEntry


class LayoutError(ValueError):
    """The raw root does not look like the dataset's official layout; the message says what
    was expected and how to get there."""


@dataclass(frozen=True)
class RawLayout:
    """What one raw dataset looks like as downloaded."""

    dataset: str
    title: str
    extensions: tuple[str, ...]
    layout: str
    how_to_get_there: str
    benchmarks: tuple[str, ...]
    match_youtube_id: bool = False


LAYOUTS: dict[str, RawLayout] = {
    layout.dataset: layout
    for layout in (
        RawLayout(
            "ssv2", "Something-Something-v2", (".webm",),
            "RAW/20bn-something-something-v2/<id>.webm (numbered files, e.g. 78687.webm)",
            "Join and extract the 20 archive parts: `cat 20bn-something-something-v2-?? | tar -xvzf -` "
            "and pass the folder that holds 20bn-something-something-v2/.",
            ("ssv2_OTAM", "ssv2_CMN"),
        ),
        RawLayout(
            "kinetics", "Kinetics-400", (".mp4", ".mkv", ".webm"),
            "RAW/[train/][<class>/]<youtube_id>_<start:06d>_<end:06d>.mp4 (e.g. -VtLx-mcPds_000012_000022.mp4)",
            "Download Kinetics-400 with the kinetics-dataset scripts (k400_downloader.sh then "
            "k400_extractor.sh) and pass the folder that holds the train/ val/ test/ folders.",
            ("kinetics_CMN",), match_youtube_id=True,
        ),
        RawLayout(
            "hmdb", "HMDB51", (".avi",),
            "RAW/<class>/<video>.avi (e.g. brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi)",
            "hmdb51_org.rar holds one .rar per class: `unrar x hmdb51_org.rar && for f in *.rar; "
            "do unrar x \"$f\"; done` (extract the class archives too).",
            ("hmdb_ARN",),
        ),
        RawLayout(
            "ucf", "UCF101", (".avi",),
            "RAW/UCF-101/<Class>/v_<Class>_gXX_cXX.avi (e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi)",
            "Extract UCF101.rar: `unrar x UCF101.rar` gives UCF-101/<Class>/*.avi.",
            ("ucf_ARN",),
        ),
    )
}

#: Archive extensions that mean "you have not extracted the download yet".
_ARCHIVES = (".rar", ".zip", ".tar", ".tgz", ".gz")
#: How many names a message lists.
_SHOW = 5


def get_layout(dataset: str) -> RawLayout:
    """The :class:`RawLayout` of ``"ssv2"``, ``"kinetics"``, ``"hmdb"`` or ``"ucf"``."""
    if dataset not in LAYOUTS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[dataset]


def youtube_id(video_id: str) -> str:
    """``-VtLx-mcPds_000012_000022`` -> ``-VtLx-mcPds`` (the id itself when there are no times)."""
    parts = video_id.rsplit("_", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0]
    return video_id


@dataclass(frozen=True)
class RawMatch:
    """Split entry ``entry`` of split ``split`` is the raw file ``source``; ``note`` tells
    how it was matched when not by its exact name (e.g. by YouTube id)."""

    entry: SplitEntry
    split: str
    source: Path
    note: str = ""


@dataclass(frozen=True)
class RawMiss:
    """Split entry not found; ``reason`` says what was looked for and any near miss."""

    entry: SplitEntry
    split: str
    reason: str


@dataclass
class RawIndex:
    """Where each split entry is in the raw download."""

    root: Path
    layout: RawLayout
    files: int
    matches: list[RawMatch] = field(default_factory=list)
    misses: list[RawMiss] = field(default_factory=list)

    @property
    def near_misses(self) -> list[RawMiss]:
        """Misses for which a file differing only in letter case exists."""
        return [m for m in self.misses if "differs only in case" in m.reason]


def scan_raw_videos(root: str | os.PathLike, layout: RawLayout, progress: bool = True) -> dict[str, list[Path]]:
    """``{file stem: [paths]}`` of every file under ``root`` whose extension (any case) is one
    of the layout's, hidden files and folders skipped.

    Raises ``FileNotFoundError`` for a missing root and :class:`LayoutError` when no such
    file exists, saying which layout was expected (and that archives need extracting when
    only archives are found).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"raw {layout.title} folder {root} does not exist or is not a directory")
    stems: dict[str, list[Path]] = defaultdict(list)
    archives: list[str] = []
    bar = tqdm(desc=f"scanning {root}", unit=" files", disable=not progress)
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            if ext in layout.extensions:
                stems[stem].append(Path(folder) / name)
                bar.update()
            elif ext in _ARCHIVES:
                archives.append(name)
    bar.close()
    if not stems:
        kinds = "/".join(layout.extensions)
        message = (f"no {kinds} files under {root}; expected the {layout.title} layout {layout.layout}. "
                   f"{layout.how_to_get_there}")
        if archives:
            message += f" Found only archives ({', '.join(sorted(archives)[:_SHOW])}): extract them first."
        raise LayoutError(message)
    return dict(stems)


def _same_class_folder(folder: str, class_name: str) -> bool:
    """Kinetics downloads name class folders with spaces or underscores, any case."""
    def norm(s: str) -> str:
        return s.replace("_", " ").strip().lower()
    return norm(folder) == norm(class_name)


def index_raw_videos(
    layout: RawLayout,
    raw_root: str | os.PathLike,
    entries_by_split: Mapping[str, Sequence[SplitEntry]],
    progress: bool = True,
) -> RawIndex:
    """Find the raw file of every split entry (see the module docstring for the rules).

    When several files share the stem (noted), one under a ``replacement*`` folder wins (the
    Kinetics-400 mirror's replacements for corrupted clips), then one in a folder named like
    the class, then the first in sorted order. Raises :class:`LayoutError` when the root holds
    videos of the right type but none of the listed ones: a wrong folder or wrong dataset.
    """
    stems = scan_raw_videos(raw_root, layout, progress=progress)
    lower: dict[str, list[str]] = defaultdict(list)
    by_youtube: dict[str, list[str]] = defaultdict(list)
    for stem in stems:
        lower[stem.lower()].append(stem)
        if layout.match_youtube_id:
            by_youtube[youtube_id(stem)].append(stem)
    root = Path(raw_root)
    index = RawIndex(root, layout, sum(len(p) for p in stems.values()))

    def pick(entry: SplitEntry, paths: list[Path]) -> tuple[Path, str]:
        if len(paths) == 1:
            return paths[0], ""

        def rank(path: Path) -> tuple[bool, bool, str]:
            folders = path.relative_to(root).parts[:-1]
            replaced = any(f.lower().startswith("replacement") for f in folders)
            return not replaced, not _same_class_folder(path.parent.name, entry.class_name), str(path)

        chosen = min(paths, key=rank)
        return chosen, f"{len(paths)} files named {chosen.name}; used {chosen}"

    def wanted(video_id: str) -> str:
        exts = layout.extensions
        return video_id + (exts[0] if len(exts) == 1 else "{" + ",".join(exts) + "}")

    for split, entries in entries_by_split.items():
        for entry in entries:
            vid = entry.video_id
            if vid in stems:
                source, note = pick(entry, stems[vid])
                index.matches.append(RawMatch(entry, split, source, note))
                continue
            if layout.match_youtube_id:
                same_video = by_youtube.get(youtube_id(vid), [])
                if len(same_video) == 1:
                    source, _ = pick(entry, stems[same_video[0]])
                    index.matches.append(RawMatch(entry, split, source, f"matched by YouTube id: {source.name}"))
                    continue
                if len(same_video) > 1:
                    index.misses.append(RawMiss(entry, split, f"no file {wanted(vid)}, and {len(same_video)} "
                                                f"clips of YouTube id {youtube_id(vid)!r}: "
                                                f"{', '.join(sorted(same_video)[:_SHOW])}"))
                    continue
            near = lower.get(vid.lower(), [])
            if near:
                reason = (f"no file {wanted(vid)}; {stems[near[0]][0]} differs only in case "
                          "(names are matched exactly)")
            else:
                reason = f"no file {wanted(vid)} under {raw_root}"
            index.misses.append(RawMiss(entry, split, reason))

    listed = sum(len(e) for e in entries_by_split.values())
    if listed and not index.matches:
        example = ", ".join(sorted(p[0].name for p in list(stems.values())[:3]))
        raise LayoutError(
            f"none of the {listed} videos of the split lists were found under {raw_root}, which holds "
            f"{index.files} {'/'.join(layout.extensions)} files (e.g. {example}). Expected the "
            f"{layout.title} layout {layout.layout}: is this the right folder and the right dataset?"
        )
    return index


# --- SSv2 label files ------------------------------------------------------------------------

#: Names of the SSv2 annotation files with a template per video id: the 20BN release, then
#: the Qualcomm ``labels/`` archive. (``labels.json``, class name -> index, is not needed.)
SSV2_LABEL_FILES: dict[str, tuple[str, ...]] = {
    "train": ("something-something-v2-train.json", "train.json"),
    "validation": ("something-something-v2-validation.json", "validation.json"),
}


def ssv2_class_name(template: str) -> str:
    """The SSv2 class name of a template: brackets removed, as in ``labels.json`` and the CMN
    lists (``Putting [number of] [something] onto [something]`` -> ``Putting number of something
    onto something``)."""
    return template.replace("[", "").replace("]", "")


def find_ssv2_label_files(*folders: str | os.PathLike | None) -> dict[str, Path]:
    """The SSv2 label files found in ``folders`` (and their ``labels/`` subfolders)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if folder is None:
            continue
        for where in (Path(folder), Path(folder) / "labels"):
            for kind, names in SSV2_LABEL_FILES.items():
                for name in names:
                    if kind not in found and (where / name).is_file():
                        found[kind] = where / name
    return found


def load_ssv2_classes(label_files: Mapping[str, Path]) -> dict[str, str]:
    """``{video id: class name}`` from the train and validation JSON files (lists of
    ``{"id", "label", "template", "placeholders"}``); the class name is the template without
    brackets (:func:`ssv2_class_name`). A malformed file raises ``ValueError`` naming it."""
    classes: dict[str, str] = {}
    for kind in ("train", "validation"):
        if kind not in label_files:
            continue
        path = label_files[kind]
        try:
            with open(path, encoding="utf-8") as handle:
                items = json.load(handle)
            for item in items:
                classes[str(item["id"])] = ssv2_class_name(item["template"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not an SSv2 annotation file (a JSON list of "
                             f"{{'id', 'template', ...}} entries): {error!r}") from error
    return classes


@dataclass
class LabelCheck:
    """SSv2 lists checked against the label files.

    ``templates``: per class folder of the lists, the count of each SSv2 class among its
    videos (for OTAM this decodes the anonymised ``train8`` folders). ``mismatches``: for
    label-text lists (CMN), ``(class/video, SSv2 class)`` pairs that disagree. ``mixed``: class
    folders holding videos of several SSv2 classes. ``unlabelled``: videos absent from the files.
    """

    templates: dict[str, Counter]
    mismatches: list[tuple[str, str]]
    mixed: list[str]
    unlabelled: list[str]

    def problems(self) -> list[str]:
        """Human-readable lines, empty when the lists agree with the label files."""
        lines = []
        if self.mismatches:
            shown = "; ".join(f"{k!r} is {t!r}" for k, t in self.mismatches[:_SHOW])
            lines.append(f"{len(self.mismatches)} videos listed under another class than their SSv2 label: {shown}")
        if self.mixed:
            lines.append(f"{len(self.mixed)} class folders mix several SSv2 classes: {', '.join(self.mixed[:_SHOW])}")
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled)} videos not in the train/validation label files: "
                         f"{', '.join(self.unlabelled[:_SHOW])}")
        return lines


def check_ssv2_labels(entries: Sequence[SplitEntry], video_classes: Mapping[str, str]) -> LabelCheck:
    """Compare split entries with the SSv2 label files (``video_classes`` from
    :func:`load_ssv2_classes`). Class folders that are SSv2 class names (the CMN lists) must
    match each video's label; anonymised folders (OTAM) must hold a single SSv2 class each."""
    known = set(video_classes.values())
    templates: dict[str, Counter] = defaultdict(Counter)
    mismatches, unlabelled = [], []
    for entry in entries:
        label = video_classes.get(entry.video_id)
        if label is None:
            unlabelled.append(entry.key)
            continue
        templates[entry.class_name][label] += 1
        if entry.class_name in known and entry.class_name != label:
            mismatches.append((entry.key, label))
    mixed = sorted(c for c, counts in templates.items() if len(counts) > 1)
    return LabelCheck(dict(templates), mismatches, mixed, unlabelled)
