"""Data preparation for the real benchmarks: SSv2, Kinetics-100, HMDB51, UCF101.

From the official downloads to the layout :mod:`fsvid.data` reads, checked:

1. :mod:`fsvid.prepare.splits`: fetch the standard split lists (TRX repository) or copy them
   from a folder, every file checked against its sha256 (:func:`get_splits`,
   :func:`benchmark_split_files`, :data:`BENCHMARKS` with the expected sizes).
2. :mod:`fsvid.prepare.layouts`: each dataset's official layout (:data:`LAYOUTS`) and
   finding every listed video in it by id, exactly, with near misses in letter case reported
   (:func:`index_raw_videos`); the SSv2 lists checked against the label files.
3. :mod:`fsvid.prepare.convert`: one video decoded (PyAV, or the ffmpeg program), resized to
   256 on the shorter side, written as H.264 mp4 or JPEG frames, optionally only the L
   test-time frames, atomically (:func:`convert_video`, :class:`OutputOptions`).
4. :mod:`fsvid.prepare.pipeline`: the whole benchmark, in parallel, idempotent and resumable,
   with a per-video log (:func:`prepare_dataset`).
5. :mod:`fsvid.prepare.verify`: missing, unreadable and too-short videos per split and class,
   and dataset statistics as a table, CSV files and a plot (:func:`verify_prepared`).

The command line (:mod:`fsvid.prepare.cli`, ``python -m fsvid.prepare``) and the scripts in
``data_scripts/`` are thin layers over these functions. Typical use::

    from fsvid.prepare import benchmark_split_files, get_splits, prepare_dataset, verify_prepared

    get_splits("splits")                                    # or get_splits("splits", source="trx/splits")
    lists = benchmark_split_files("hmdb_ARN", "splits")     # {"train": ..., "val": ..., "test": ...}
    summary = prepare_dataset("hmdb", "/data/raw/hmdb51", "/data/hmdb51", lists, workers=8)
    print(summary.format())
    report = verify_prepared("/data/hmdb51", lists, frames=8, workers=8)
    print(report.format()); report.write()
"""

from fsvid.prepare.convert import ConvertResult, OutputOptions, convert_video, output_path, output_size
from fsvid.prepare.layouts import (
    LAYOUTS,
    LabelCheck,
    LayoutError,
    RawIndex,
    RawLayout,
    RawMatch,
    RawMiss,
    check_ssv2_labels,
    find_ssv2_label_files,
    index_raw_videos,
    load_ssv2_classes,
    ssv2_class_name,
    youtube_id,
)
from fsvid.prepare.pipeline import META_DIR, PrepareSummary, prepare_dataset, read_prepare_log, read_split_files
from fsvid.prepare.splits import (
    BENCHMARKS,
    SPLIT_SHA256,
    TRX_SPLITS_URL,
    Benchmark,
    SplitChecksumError,
    benchmark_split_files,
    default_splits_root,
    get_splits,
    identify_split_file,
)
from fsvid.prepare.verify import VerifyReport, VideoCheck, verify_prepared

__all__ = [
    "ConvertResult",
    "OutputOptions",
    "convert_video",
    "output_path",
    "output_size",
    "LAYOUTS",
    "LabelCheck",
    "LayoutError",
    "RawIndex",
    "RawLayout",
    "RawMatch",
    "RawMiss",
    "check_ssv2_labels",
    "find_ssv2_label_files",
    "index_raw_videos",
    "load_ssv2_classes",
    "ssv2_class_name",
    "youtube_id",
    "META_DIR",
    "PrepareSummary",
    "prepare_dataset",
    "read_prepare_log",
    "read_split_files",
    "BENCHMARKS",
    "SPLIT_SHA256",
    "TRX_SPLITS_URL",
    "Benchmark",
    "SplitChecksumError",
    "benchmark_split_files",
    "default_splits_root",
    "get_splits",
    "identify_split_file",
    "VerifyReport",
    "VideoCheck",
    "verify_prepared",
]
