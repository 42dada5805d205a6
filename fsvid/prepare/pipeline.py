"""Prepare a benchmark: split lists + raw download -> ``OUT/<class_folder>/<video_id>.mp4``.

:func:`prepare_dataset` does, in order:

1. read the split lists (:func:`fsvid.data.read_split`);
2. find every listed video in the raw download (:func:`fsvid.prepare.layouts.index_raw_videos`);
   missing ones and near misses in letter case are reported, not fatal; for SSv2 the lists
   are checked against the label files when they are found;
3. convert each video not done yet (:func:`fsvid.prepare.convert.convert_video`) in
   ``workers`` processes with a progress bar; an unreadable video is reported and skipped;
4. write ``OUT/.fsvid/prepare.json`` (the output options; a second run with other options is
   refused, so one folder never mixes two preparations), ``OUT/.fsvid/prepare_log.csv`` (one
   row per listed video: status, frames, size, note; kept across runs) and
   ``OUT/.fsvid/frame_counts.json`` (``{"class/video_id": frames}`` of the written videos).

Idempotent and resumable: a video whose output exists under its final name is done (outputs
are renamed into place only when complete), so running again converts only what is left and
``.partial-`` leftovers of an interrupted run are removed first.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fsvid.data.splits import SplitEntry, read_split
from fsvid.prepare.convert import (
    PARTIAL_PREFIX,
    ConvertResult,
    OutputOptions,
    convert_video,
    ffmpeg_path,
    output_path,
    remove_output,
)
from fsvid.prepare.layouts import (
    RawIndex,
    RawMiss,
    check_ssv2_labels,
    find_ssv2_label_files,
    get_layout,
    index_raw_videos,
    load_ssv2_classes,
)
from fsvid.prepare.parallel import parallel_map
from fsvid.prepare.splits import split_name_of

#: Folder inside OUT holding fsvid's bookkeeping and reports (hidden from class listings).
META_DIR = ".fsvid"
LOG_FIELDS = ("key", "split", "source", "status", "frames_in", "frames_out", "width", "height", "fps", "note")
#: How many problems a summary lists by name.
_SHOW = 10


def read_split_files(
    split_files: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
) -> dict[str, list[SplitEntry]]:
    """``{split name: entries}``; a sequence of files is named by :func:`split_name_of`."""
    if not isinstance(split_files, Mapping):
        named: dict[str, str | os.PathLike] = {}
        for path in split_files:
            name = split_name_of(path)
            if name in named:
                name = Path(path).stem
            named[name] = path
        split_files = named
    if not split_files:
        raise ValueError("no split lists given")
    return {name: read_split(path) for name, path in split_files.items()}


@dataclass
class PrepareSummary:
    """What a :func:`prepare_dataset` run found and did."""

    title: str
    out_root: Path
    options: OutputOptions
    listed: dict[str, int]
    converted: list[ConvertResult] = field(default_factory=list)
    done_before: list[str] = field(default_factory=list)
    missing: list[RawMiss] = field(default_factory=list)
    unreadable: list[ConvertResult] = field(default_factory=list)
    truncated: list[ConvertResult] = field(default_factory=list)
    too_short: list[ConvertResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    label_problems: list[str] = field(default_factory=list)
    min_frames: int = 8
    dry_run: bool = False

    @property
    def log_path(self) -> Path:
        return self.out_root / META_DIR / "prepare_log.csv"

    def format(self) -> str:
        """A short report for the terminal."""
        o = self.options
        size = "raw size" if o.short_side is None else (
            f"{o.short_side}x{o.short_side}" if o.square else f"shorter side {o.short_side}")
        kept = f", only the {o.keep_frames} test-time frames" if o.keep_frames else ""
        total = sum(self.listed.values())
        per_split = ", ".join(f"{k} {v}" for k, v in self.listed.items())
        near = sum("differs only in case" in m.reason for m in self.missing)
        missing_by_split = ", ".join(f"{k} {sum(m.split == k for m in self.missing)}" for k in self.listed)
        lines = [
            f"{'Dry run for' if self.dry_run else 'Prepared'} {self.title} -> {self.out_root} "
            f"({o.format}, {size}{kept})",
            f"  listed        {total:7d}  ({per_split})",
            f"  converted now {len(self.converted):7d}",
            f"  done earlier  {len(self.done_before):7d}",
            f"  missing       {len(self.missing):7d}" + (f"  ({near} differ only in letter case)" if near else "")
            + (f"  (by split: {missing_by_split})" if len(self.listed) > 1 and self.missing else ""),
            f"  unreadable    {len(self.unreadable):7d}",
            f"  truncated     {len(self.truncated):7d}  (decoding stopped early; frames so far kept)",
            f"  too short     {len(self.too_short):7d}  (fewer than {self.min_frames} frames: dropped at load time)",
        ]
        if self.dry_run:
            lines[2] = f"  would convert {len(self.converted):7d}"
        problems = [f"  missing     {m.entry.key} ({m.split} line {m.entry.line}): {m.reason}" for m in self.missing]
        problems += [f"  unreadable  {r.key}: {r.message}" for r in self.unreadable]
        problems += [f"  truncated   {r.key}: {r.message}" for r in self.truncated]
        problems += [f"  too short   {r.key}: {r.frames_out} frames" for r in self.too_short]
        if problems:
            more = f"\n  ... and {len(problems) - _SHOW} more" if len(problems) > _SHOW else ""
            lines.append("Problems:\n" + "\n".join(problems[:_SHOW]) + more)
        if self.label_problems:
            lines.append("SSv2 label check:\n" + "\n".join(f"  {p}" for p in self.label_problems))
        if self.notes:
            lines.append(f"Notes ({len(self.notes)}):\n" + "\n".join(f"  {n}" for n in self.notes[:_SHOW]))
        if not self.dry_run:
            lines.append(f"Per-video log: {self.log_path}")
        return "\n".join(lines)


def _check_settings(out: Path, dataset: str, options: OutputOptions, overwrite: bool) -> None:
    """Refuse to mix two preparations with different output options in one folder."""
    path = out / META_DIR / "prepare.json"
    wanted = {"dataset": dataset, "output": options.output_settings()}
    if path.is_file() and not overwrite:
        try:
            with open(path, encoding="utf-8") as handle:
                previous = json.load(handle)
            if not isinstance(previous, dict):
                raise ValueError(f"expected a JSON object, got {type(previous).__name__}")
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(
                f"{path} (the options {out} was prepared with) is damaged: {error}. Use another output folder, "
                "or overwrite=True (--overwrite) to convert every video again"
            ) from None
        differ = [f"{k}: {previous.get('output', {}).get(k)!r} before, {v!r} now"
                  for k, v in wanted["output"].items() if previous.get("output", {}).get(k) != v]
        if previous.get("dataset") != dataset:
            differ.insert(0, f"dataset: {previous.get('dataset')!r} before, {dataset!r} now")
        if differ:
            raise ValueError(
                f"{out} was prepared with other options ({'; '.join(differ)}). Use another output folder, "
                "the same options, or overwrite=True (--overwrite) to convert every video again"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(wanted, handle, indent=2)


def _remove_partials(out: Path, class_names: set[str]) -> int:
    """Delete ``.partial-`` leftovers of an interrupted run in the class folders."""
    removed = 0
    for name in class_names:
        folder = out / name
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            leftovers = [Path(e.path) for e in it if e.name.startswith(PARTIAL_PREFIX)]
        for path in leftovers:
            remove_output(path)
            removed += 1
    return removed


def read_prepare_log(out_root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The rows of ``OUT/.fsvid/prepare_log.csv`` by ``class/video_id`` (empty if absent)."""
    return _read_log(Path(out_root) / META_DIR / "prepare_log.csv")


def _read_log(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "key" not in reader.fieldnames:
                raise ValueError(f"no 'key' column (columns: {reader.fieldnames})")
            return {row["key"]: row for row in reader}
    except (ValueError, csv.Error) as error:  # UnicodeDecodeError too
        raise ValueError(f"preparation log {path} is damaged ({error}); move it away to prepare or "
                         "verify without it") from None


def _write_log(path: Path, rows: dict[str, dict[str, object]]) -> None:
    partial = path.with_name(PARTIAL_PREFIX + path.name)
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow({k: rows[key].get(k, "") for k in LOG_FIELDS})
    os.replace(partial, path)


def _convert_job(job: tuple[str, str, str, OutputOptions]) -> ConvertResult:
    """One video, in a worker process."""
    source, dest, key, options = job
    return convert_video(source, dest, options, key=key)


def prepare_dataset(
    dataset: str,
    raw_root: str | os.PathLike,
    out_root: str | os.PathLike,
    split_files: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    options: OutputOptions = OutputOptions(),
    *,
    min_frames: int = 8,
    workers: int = 1,
    overwrite: bool = False,
    labels_dir: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare the videos of ``split_files`` from the raw ``dataset`` download (module docstring).

    Args:
        dataset: ``"ssv2"``, ``"kinetics"``, ``"hmdb"`` or ``"ucf"`` (the raw layout).
        raw_root: the official download, extracted (see :data:`fsvid.prepare.layouts.LAYOUTS`).
        out_root: the prepared dataset, the ``data_root`` of ``EpisodeDataset.from_split``.
        split_files: ``{"train": path, ...}`` or a list of paths (named by file name).
        options: output format, size, frames kept, decoder (:class:`OutputOptions`).
        min_frames: the clip length L; shorter videos are reported as too short.
        workers: processes converting videos in parallel.
        overwrite: convert every video again (and accept new options).
        labels_dir: SSv2 only: folder of the label JSON files (default: looked for in
            ``raw_root`` and ``raw_root/labels``; the check is skipped when absent).
        dry_run: index and report only, write nothing.
        progress: tqdm progress bars.
    """
    layout = get_layout(dataset)
    if options.keep_frames is not None and options.keep_frames < min_frames:
        raise ValueError(f"keep_frames={options.keep_frames} is fewer than the clip length min_frames={min_frames}: "
                         "every video would be too short")
    if options.decoder == "ffmpeg":
        ffmpeg_path()  # fail now, not once per video
    raw, out = Path(raw_root).resolve(), Path(out_root).resolve()
    if out == raw or raw in out.parents:
        raise ValueError(f"the output folder {out_root} must not be inside the raw download {raw_root} "
                         "(its videos would be taken for raw ones)")
    splits = read_split_files(split_files)
    index: RawIndex = index_raw_videos(layout, raw_root, splits, progress=progress)
    out = Path(out_root)
    summary = PrepareSummary(layout.title, out, options, {k: len(v) for k, v in splits.items()},
                             missing=list(index.misses), min_frames=min_frames, dry_run=dry_run)
    summary.notes = [f"{m.entry.key}: {m.note}" for m in index.matches if m.note]

    if dataset == "ssv2":
        label_files = find_ssv2_label_files(labels_dir, raw_root)
        if labels_dir is not None and not label_files:
            raise FileNotFoundError(f"no SSv2 label files (something-something-v2-train.json, "
                                    f"-validation.json, or labels/train.json, validation.json) in {labels_dir}")
        if label_files:
            entries = [e for rows in splits.values() for e in rows]
            summary.label_problems = check_ssv2_labels(entries, load_ssv2_classes(label_files)).problems()
        else:
            summary.notes.append("SSv2 label files not found: the lists were not checked against the labels")

    jobs: list[tuple[str, str, str, OutputOptions]] = []
    matched: dict[str, tuple[str, Path]] = {}
    for match in index.matches:
        key = match.entry.key
        if key in matched:
            continue  # listed in two splits: prepare once
        matched[key] = (match.split, match.source)
        dest = output_path(out, match.entry.class_name, match.entry.video_id, options.format)
        if dest.exists() and not overwrite:
            summary.done_before.append(key)
        else:
            jobs.append((str(match.source), str(dest), key, options))
    if dry_run:
        summary.converted = [ConvertResult(key, "ok") for _, _, key, _ in jobs]
        return summary

    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, dataset, options, overwrite)
    _remove_partials(out, {e.class_name for rows in splits.values() for e in rows})
    if overwrite:  # also the other format's output, so that no stale copy is left beside
        for _, dest, key, _ in jobs:
            class_name, video_id = key.split("/")
            for fmt in ("mp4", "frames"):
                remove_output(output_path(out, class_name, video_id, fmt))

    log_path = summary.log_path
    log: dict[str, dict[str, object]] = dict(_read_log(log_path))
    # If this is interrupted, the videos finished so far are in place under their final names
    # and the next run counts them as done (with a "done before the log" row).
    results = parallel_map(_convert_job, jobs, workers, desc=f"preparing {layout.title}", progress=progress)
    for result in results:
        split, source = matched[result.key]
        log[result.key] = {"key": result.key, "split": split, "source": source, "status": result.status,
                           "frames_in": result.frames_in, "frames_out": result.frames_out, "width": result.width,
                           "height": result.height, "fps": round(result.fps, 3), "note": result.message}
        if result.status == "unreadable":
            summary.unreadable.append(result)
            continue
        summary.converted.append(result)
        if result.status == "truncated":
            summary.truncated.append(result)
        if result.frames_out < min_frames:
            summary.too_short.append(result)
    for key in summary.done_before:
        if key not in log:
            split, source = matched[key]
            log[key] = {"key": key, "split": split, "source": source, "status": "ok", "note": "done before the log"}
    for miss in index.misses:
        log[miss.entry.key] = {"key": miss.entry.key, "split": miss.split, "status": "missing", "note": miss.reason}
    _write_log(log_path, log)

    counts = {k: int(row["frames_out"]) for k, row in log.items()
              if row.get("status") in ("ok", "truncated") and str(row.get("frames_out", "")).isdigit()}
    with open(out / META_DIR / "frame_counts.json", "w", encoding="utf-8") as handle:
        json.dump(dict(sorted(counts.items())), handle, indent=0)
    return summary
