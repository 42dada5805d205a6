"""Check a prepared dataset against its split lists, and describe it.

:func:`verify_prepared` looks up every entry of every list under the prepared root exactly
as :func:`fsvid.data.resolve_split` does (so "found" here means found by the loader), opens
each video with the loader's reader (:func:`fsvid.data.open_video`, decord or JPEG folders),
counts its frames (a video file's count is checked against its container, and counted by
decoding when they disagree) and decodes the L frames that test-time sampling reads. Each
video is:

- ``ok``: readable, at least L frames;
- ``missing``: not under the root (near misses in letter case are named);
- ``unreadable``: cannot be opened, its frame count cannot be trusted, or the test-time
  frames cannot be decoded (or, according
  to the preparation log ``OUT/.fsvid/prepare_log.csv``, its raw video could not be decoded);
- ``too_short``: fewer than L frames (the default ``short_videos="drop"`` policy drops it).

The :class:`VerifyReport` gives a per-split summary (printed, with the expected sizes of the
standard lists), per-class counts and frame statistics (CSV), the per-video list (CSV) and a
plot (PNG): usable videos per class and the distribution of frames per video.
"""

from __future__ import annotations

import csv
import os
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fsvid.data.sampling import FrameSampling, sample_frame_indices
from fsvid.data.splits import resolve_split
from fsvid.data.video import VideoFileReader, container_frame_counts, decoded_frame_count, open_video
from fsvid.prepare.parallel import parallel_map
from fsvid.prepare.pipeline import META_DIR, read_prepare_log, read_split_files
from fsvid.prepare.splits import identify_split_file

STATUSES = ("ok", "missing", "unreadable", "too_short")
#: Videos a class needs for the default 5-shot tasks with one query.
_TASK_VIDEOS = 6
_SHOW = 10


@dataclass(frozen=True)
class VideoCheck:
    """One split entry as found (or not) under the prepared root."""

    split: str
    class_name: str
    video_id: str
    status: str
    frames: int | None
    path: str
    message: str = ""

    @property
    def key(self) -> str:
        return f"{self.class_name}/{self.video_id}"


def _check_video(job: tuple[str, int, str]) -> tuple[int | None, str, str]:
    """(frames, error message, note) of one prepared video: open, count (checked against the
    container, see :func:`_checked_count`), decode the test frames."""
    path, frames, sampling = job
    count: int | None = None
    try:
        reader = open_video(path)
        count = len(reader)
        note, error = _checked_count(reader)
        if error:
            return count, error, ""
        reader.read(sample_frame_indices(count, frames, train=False, scheme=sampling).tolist())
    except Exception as error:  # VideoReadError, decord/PyAV errors, a bad JPEG
        text = str(error).strip().splitlines()
        return count, f"{type(error).__name__}: {text[0] if text else ''}", ""
    return count, "", note


def _checked_count(reader) -> tuple[str, str]:
    """(note, error) on the reader's frame count, which is not trusted unchecked.

    A frame folder's count is its files. A video file's count is compared with the number of
    frames its container lists and the number its duration implies (edit lists applied); when
    those disagree (by more than 1 frame or 1%) the frames are counted by decoding with PyAV,
    and a reader count that differs from the decoded count is an error.
    """
    if not isinstance(reader, VideoFileReader):
        return "", ""
    count = len(reader)
    listed, implied = container_frame_counts(reader.path)
    if reader.decoder == "pyav":
        return f"frames counted by decoding with PyAV (the container lists {listed})", ""
    if implied is None or abs(implied - count) <= max(1, count // 100):
        return "", ""
    decoded = decoded_frame_count(reader.path)
    if decoded == count:
        return f"frame count {count} checked by decoding (the duration implies {implied})", ""
    return "", (f"frame count unreliable: the reader finds {count} frames, the container lists {listed}, "
                f"{decoded} decode; re-encode the video (e.g. without an edit list)")


def _why_missing(root: Path, class_name: str, video_id: str, listings: dict[str, dict[str, str] | None]) -> str:
    """Say whether the class folder exists and whether a name differs only in case."""
    if class_name not in listings:
        folder = root / class_name
        if folder.is_dir():
            with os.scandir(folder) as it:
                listings[class_name] = {os.path.splitext(e.name)[0] if e.is_file() else e.name: e.name for e in it}
        else:
            listings[class_name] = None
    names = listings[class_name]
    if names is None:
        near = [d for d in os.listdir(root) if d.lower() == class_name.lower()] if root.is_dir() else []
        return f"no class folder {class_name!r}" + (f" ({near[0]!r} differs only in case)" if near else "")
    near = [n for stem, n in names.items() if stem.lower() == video_id.lower()]
    if near:
        return f"not found; {near[0]!r} differs only in case (names are matched exactly)"
    return "not found"


@dataclass
class VerifyReport:
    """The result of :func:`verify_prepared`; ``videos`` holds one :class:`VideoCheck` per entry."""

    out_root: Path
    frames: int
    split_files: dict[str, Path]
    standard: dict[str, str]
    videos: list[VideoCheck]

    @property
    def ok(self) -> bool:
        """True when every listed video is usable."""
        return all(v.status == "ok" for v in self.videos)

    def problems(self) -> list[VideoCheck]:
        return [v for v in self.videos if v.status != "ok"]

    def class_rows(self) -> list[dict[str, object]]:
        """Per split and class: counts by status and frame statistics of readable videos."""
        groups: dict[tuple[str, str], list[VideoCheck]] = {}
        for video in self.videos:
            groups.setdefault((video.split, video.class_name), []).append(video)
        rows = []
        for (split, class_name), videos in groups.items():
            frames = [v.frames for v in videos if v.frames is not None and v.status in ("ok", "too_short")]
            row: dict[str, object] = {"split": split, "class": class_name, "listed": len(videos)}
            row.update({s: sum(v.status == s for v in videos) for s in STATUSES})
            row.update(_frame_stats(frames))
            rows.append(row)
        return rows

    def split_rows(self) -> list[dict[str, object]]:
        """Per split: classes, videos by status, expected sizes of a standard list."""
        rows = []
        classes = self.class_rows()
        for split, path in self.split_files.items():
            videos = [v for v in self.videos if v.split == split]
            mine = [c for c in classes if c["split"] == split]
            frames = [v.frames for v in videos if v.frames is not None and v.status in ("ok", "too_short")]
            row: dict[str, object] = {
                "split": split, "file": str(path), "standard": self.standard.get(split, ""),
                "classes": len(mine), "listed": len(videos),
            }
            row.update({s: sum(v.status == s for v in videos) for s in STATUSES})
            row["min_ok_per_class"] = min((int(c["ok"]) for c in mine), default=0)
            row.update(_frame_stats(frames))
            rows.append(row)
        return rows

    def format(self) -> str:
        """The per-split table, classes short of videos and the first problems."""
        header = f"{'split':10} {'classes':>7} {'listed':>7} {'ok':>7} {'missing':>7} {'unread.':>7} " \
                 f"{'short':>7} {'frames min/median/max':>22}  standard list"
        lines = [f"Verified {self.out_root} (clip length L = {self.frames})", header, "-" * len(header)]
        for row in self.split_rows():
            frames = "-" if row["frames_min"] == "" else \
                f"{row['frames_min']}/{row['frames_median']}/{row['frames_max']}"
            lines.append(f"{str(row['split'])[:10]:10} {row['classes']:>7} {row['listed']:>7} {row['ok']:>7} "
                         f"{row['missing']:>7} {row['unreadable']:>7} {row['too_short']:>7} {frames:>22}  "
                         f"{row['standard'] or '-'}")
        short = [c for c in self.class_rows() if int(c["ok"]) < _TASK_VIDEOS]
        if short:
            listed = ", ".join(f"{c['split']}/{c['class']} ({c['ok']})" for c in short[:_SHOW])
            lines.append(f"{len(short)} classes have fewer than {_TASK_VIDEOS} usable videos "
                         f"(5-shot tasks with 1 query need {_TASK_VIDEOS}): {listed}")
        problems = self.problems()
        if problems:
            lines.append(f"Problems ({len(problems)}):")
            for p in problems[:_SHOW]:
                frames = f" ({p.frames} frames)" if p.status == "too_short" else ""
                lines.append(f"  {p.status:10} {p.split}: {p.key}{frames}" + (f": {p.message}" if p.message else ""))
            if len(problems) > _SHOW:
                lines.append(f"  ... and {len(problems) - _SHOW} more (see the videos CSV)")
        else:
            lines.append("Every listed video is present, readable and long enough.")
        return "\n".join(lines)

    def write(self, report_dir: str | os.PathLike | None = None, plot: bool = True) -> dict[str, Path]:
        """Write ``verify_splits.csv``, ``verify_classes.csv``, ``verify_videos.csv`` and
        ``verify_stats.png`` to ``report_dir`` (default ``OUT/.fsvid``); returns their paths."""
        folder = Path(report_dir) if report_dir is not None else self.out_root / META_DIR
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "splits": _write_csv(folder / "verify_splits.csv", self.split_rows()),
            "classes": _write_csv(folder / "verify_classes.csv", self.class_rows()),
            "videos": _write_csv(folder / "verify_videos.csv", [asdict(v) for v in self.videos]),
        }
        if plot:
            paths["plot"] = self.plot(folder / "verify_stats.png")
        return paths

    def plot(self, path: str | os.PathLike) -> Path:
        """PNG: usable videos per class (top) and frames per video (bottom), one column per split."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        splits = list(self.split_files)
        fig, axes = plt.subplots(2, len(splits), figsize=(4.5 * len(splits), 6.5), squeeze=False)
        classes = self.class_rows()
        for column, split in enumerate(splits):
            mine = sorted((c for c in classes if c["split"] == split), key=lambda c: -int(c["ok"]))
            top, bottom = axes[0, column], axes[1, column]
            top.bar(range(len(mine)), [int(c["ok"]) for c in mine], color="tab:blue", label="ok")
            top.bar(range(len(mine)), [int(c["listed"]) - int(c["ok"]) for c in mine],
                    bottom=[int(c["ok"]) for c in mine], color="tab:red", label="missing/unusable")
            top.set_title(f"{split}: {len(mine)} classes")
            if len(mine) <= 30:
                top.set_xticks(range(len(mine)), [str(c["class"])[:24] for c in mine], rotation=90, fontsize="x-small")
            else:
                top.set_xticks([])
                top.set_xlabel("classes, sorted by usable videos")
            top.yaxis.get_major_locator().set_params(integer=True)
            top.set_ylabel("videos")
            top.legend(fontsize="small")
            frames = [v.frames for v in self.videos if v.split == split and v.frames is not None]
            if frames:
                bottom.hist(frames, bins=min(50, max(5, len(set(frames)))), color="tab:gray")
                bottom.axvline(self.frames, color="tab:red", linestyle="--", label=f"L = {self.frames}")
                bottom.legend(fontsize="small")
            bottom.yaxis.get_major_locator().set_params(integer=True)
            bottom.set_xlabel("frames per video")
            bottom.set_ylabel("videos")
        fig.suptitle(str(self.out_root))
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _frame_stats(frames: Sequence[int]) -> dict[str, object]:
    if not frames:
        return {"frames_min": "", "frames_median": "", "frames_mean": "", "frames_max": ""}
    return {"frames_min": min(frames), "frames_median": int(statistics.median(frames)),
            "frames_mean": round(statistics.fmean(frames), 1), "frames_max": max(frames)}


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def verify_prepared(
    out_root: str | os.PathLike,
    split_files: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    *,
    frames: int = 8,
    sampling: FrameSampling = "trx",
    workers: int = 1,
    progress: bool = True,
) -> VerifyReport:
    """Check every entry of ``split_files`` under the prepared ``out_root`` (module docstring).

    ``frames`` is the clip length L (the too-short threshold and the number of test-time
    frames decoded), ``sampling`` the scheme choosing them. Raises ``FileNotFoundError`` when
    ``out_root`` is not a folder.
    """
    root = Path(out_root)
    if not root.is_dir():
        raise FileNotFoundError(f"prepared dataset folder {root} does not exist")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    splits = read_split_files(split_files)
    paths = dict(split_files) if isinstance(split_files, Mapping) else None
    if paths is None:
        paths = {name: Path(p) for name, p in zip(splits, split_files)}
    standard = {}
    for name, path in paths.items():
        known = identify_split_file(path)
        standard[name] = f"{known[0].name} {known[1]}" if known else ""

    log = read_prepare_log(root)  # why a video was not prepared, when known
    checks: list[VideoCheck] = []
    jobs: list[tuple[str, int, str]] = []
    slots: list[int] = []
    for split, entries in splits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # missing entries are reported below
            found = {s.key: s for s in resolve_split(entries, root, on_missing="skip", split_name=split)}
        listings: dict[str, dict[str, str] | None] = {}
        for entry in entries:
            source = found.get(entry.key)
            if source is None:
                status, reason = "missing", _why_missing(root, entry.class_name, entry.video_id, listings)
                earlier = log.get(entry.key, {})
                if earlier.get("status") == "unreadable":
                    status, reason = "unreadable", f"raw video unreadable, not prepared: {earlier.get('note', '')}"
                elif earlier.get("status") == "missing":
                    reason = f"not in the raw download: {earlier.get('note', '')}"
                checks.append(VideoCheck(split, entry.class_name, entry.video_id, status, None, "", reason))
                continue
            slots.append(len(checks))
            checks.append(VideoCheck(split, entry.class_name, entry.video_id, "ok", None, str(source.path)))
            jobs.append((str(source.path), frames, sampling))

    results = parallel_map(_check_video, jobs, workers, desc="verifying", progress=progress)
    for slot, (count, error, note) in zip(slots, results):
        c = checks[slot]
        status = "unreadable" if error else ("too_short" if count is not None and count < frames else "ok")
        checks[slot] = VideoCheck(c.split, c.class_name, c.video_id, status, count, c.path, error or note)
    return VerifyReport(root, frames, {k: Path(v) for k, v in paths.items()}, standard, checks)
