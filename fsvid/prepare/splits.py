"""The standard few-shot split lists: fetch them, check them, find them.

The five benchmarks every paper reports on are defined by three text files each (train /
val / test), released in the TRX repository's ``splits/`` folder (their sizes are in the
table below and in data_scripts/README.md). fsvid does not ship them: :func:`get_splits` downloads them from
``https://raw.githubusercontent.com/tobyperrett/trx/main/splits/<benchmark>/<file>`` or
copies them from a local folder, and checks every file against the sha256 sums below, so a
truncated download, a file edited by hand or a list from another release is caught before
it silently changes the benchmark.

======================  ==========================  ============  ==========  ===========
benchmark               what                        train         val         test
======================  ==========================  ============  ==========  ===========
``ssv2_OTAM``           SSv2-full (OTAM, list 07)   64 / 67,013   12 / 1,926  24 / 2,857
``ssv2_CMN``            SSv2-small (CMN)            64 / 6,400    12 / 1,200  24 / 2,400
``kinetics_CMN``        Kinetics-100 (CMN)          64 / 6,400    12 / 1,200  24 / 2,400
``hmdb_ARN``            HMDB51 (ARN)                31 / 4,280    10 / 1,194  10 / 1,292
``ucf_ARN``             UCF101 (ARN)                70 / 9,154    10 / 1,421  21 / 2,745
======================  ==========================  ============  ==========  ===========

(classes / videos per split.)
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fsvid.files import file_sha256
from fsvid.paths import fsvid_home

#: Where :func:`get_splits` downloads from: ``<TRX_SPLITS_URL>/<benchmark>/<file>``.
TRX_SPLITS_URL = "https://raw.githubusercontent.com/tobyperrett/trx/main/splits"

#: sha256 of every standard list as released in the TRX repository, by relative path.
SPLIT_SHA256: dict[str, str] = {
    "hmdb_ARN/testlist03.txt": "e2ce039f857287cb943a00d27ac6d2559a434e7bde5722d350c269253160d388",
    "hmdb_ARN/trainlist03.txt": "2524450b6d7b18775411361fbc366c30345d83516a2d6eec12b6af04c884ec88",
    "hmdb_ARN/vallist03.txt": "85458cf86f85354b411080f6aea3157c5831b1a3bf40fed24e4a2c7a17f8027c",
    "kinetics_CMN/testlist03.txt": "9c2351cf070ad7d052f1fb2885e5e4b246da7a38d06cb730bf7473eeb7173d09",
    "kinetics_CMN/trainlist03.txt": "d0cbdcaa6fd4a28c8a514e85dd47407a4124ba3d8187aadd0a41c47636d592ae",
    "kinetics_CMN/vallist03.txt": "e3144200327ce31bc5be0e1efb1107c6c7f2912c95eb2457095374b2c22bf74a",
    "ssv2_CMN/testlist03.txt": "4e8b9ae7446331c47ece4c342cfe4f67896b717f4dea92ffd7659e72baeeddd6",
    "ssv2_CMN/trainlist03.txt": "fd15c2eff0065ef3e70a3b4f364b9d7e1c1d2581ce73d22b83d0e4c91e799fb1",
    "ssv2_CMN/vallist03.txt": "aa280e1ece78dc248ae3bda9668bbc549d4837a8dc1e1699f13525d32c1ece43",
    "ssv2_OTAM/testlist07.txt": "83a1ac8e7c6f720c55dced1dc9deae1c11fb8271f8a3bb1f0952aed068646a1e",
    "ssv2_OTAM/trainlist07.txt": "886fdd2b9215328efaee7e73ae2ea8f5b3e99fd3732679481652bad1506df5c0",
    "ssv2_OTAM/vallist07.txt": "b9884e9e716fbb9a902121d797c0a43ec04517085eb6b36a2804e037db63d6eb",
    "ucf_ARN/testlist03.txt": "0887937010eee99ae3baf3178227ac35daebf6a35431b2df051fcf682b48bc31",
    "ucf_ARN/trainlist03.txt": "5513fc00bdba74ae84ee721fc1cc2bae0aa2d4fb7883b9b6f90387ca1a54ddb8",
    "ucf_ARN/vallist03.txt": "5482ce6d2f2db2568a8cd41158ab5a406fad36fcc9940c1811573937ad6bfc4f",
}


@dataclass(frozen=True)
class Benchmark:
    """One standard benchmark: its raw dataset, its three lists and their expected sizes.

    ``files`` maps the split name (``"train"``, ``"val"``, ``"test"``) to the file name in
    the benchmark's folder; ``expected`` maps it to ``(classes, videos)`` (the table above).
    """

    name: str
    dataset: str
    title: str
    files: Mapping[str, str]
    expected: Mapping[str, tuple[int, int]]

    def relative(self, split: str) -> str:
        """``<benchmark>/<file>`` of a split, the key of :data:`SPLIT_SHA256`."""
        return f"{self.name}/{self.files[split]}"


def _lists(number: str) -> dict[str, str]:
    return {split: f"{split}list{number}.txt" for split in ("train", "val", "test")}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("ssv2_OTAM", "ssv2", "SSv2-full (OTAM split)", _lists("07"),
                  {"train": (64, 67_013), "val": (12, 1_926), "test": (24, 2_857)}),
        Benchmark("ssv2_CMN", "ssv2", "SSv2-small (CMN split)", _lists("03"),
                  {"train": (64, 6_400), "val": (12, 1_200), "test": (24, 2_400)}),
        Benchmark("kinetics_CMN", "kinetics", "Kinetics-100 (CMN split)", _lists("03"),
                  {"train": (64, 6_400), "val": (12, 1_200), "test": (24, 2_400)}),
        Benchmark("hmdb_ARN", "hmdb", "HMDB51 (ARN split)", _lists("03"),
                  {"train": (31, 4_280), "val": (10, 1_194), "test": (10, 1_292)}),
        Benchmark("ucf_ARN", "ucf", "UCF101 (ARN split)", _lists("03"),
                  {"train": (70, 9_154), "val": (10, 1_421), "test": (21, 2_745)}),
    )
}


class SplitChecksumError(ValueError):
    """A split list whose sha256 differs from the released one; the message names the file,
    the expected and the actual sum."""


def default_splits_root() -> Path:
    """Where split lists are kept by default: ``$FSVID_HOME/splits``."""
    return fsvid_home() / "splits"


def split_url(relative: str) -> str:
    """Download address of ``<benchmark>/<file>`` in the TRX repository."""
    return f"{TRX_SPLITS_URL}/{relative}"


def check_sha256(path: str | os.PathLike, expected: str, what: str | None = None) -> None:
    """Raise :class:`SplitChecksumError` unless ``path`` has sha256 ``expected``.
    ``what`` says where the file came from (e.g. a URL) in the message."""
    actual = file_sha256(path)
    if actual != expected:
        origin = f" (from {what})" if what else ""
        raise SplitChecksumError(
            f"sha256 mismatch for split list {path}{origin}: expected {expected}, got {actual}. "
            "The file is not the released list (truncated download, edited, or another version)."
        )


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` (urllib, 60 s timeout)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as handle:
        shutil.copyfileobj(response, handle)


def _source_folder(source: Path) -> Path:
    """Accept the ``splits`` folder itself or a checkout of the TRX repository."""
    if not source.is_dir():
        raise FileNotFoundError(f"split source folder {source} does not exist")
    nested = source / "splits"
    if nested.is_dir() and not any((source / b).is_dir() for b in BENCHMARKS):
        return nested
    return source


def get_splits(
    dest: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    benchmarks: Iterable[str] | None = None,
    overwrite: bool = False,
    checksums: Mapping[str, str] = SPLIT_SHA256,
    download: Callable[[str, Path], None] = _download,
    progress: bool = True,
) -> list[Path]:
    """Put the standard split lists in ``dest`` (default ``$FSVID_HOME/splits``), checked.

    Each file ``<benchmark>/<file>`` of ``checksums`` (default: every standard list; restrict
    with ``benchmarks``) is copied from ``source/<benchmark>/<file>`` when ``source`` is given
    (the TRX repository's ``splits`` folder, or the repository itself), otherwise downloaded
    from :data:`TRX_SPLITS_URL` with ``download(url, path)``. Every file is written to a
    temporary name, its sha256 checked, then renamed: a bad file never lands in ``dest``.

    Idempotent: a file already in ``dest`` with the right sum is kept. One with another sum
    is an error unless ``overwrite`` (it may be a list edited on purpose). Every file is
    processed before :class:`SplitChecksumError` is raised naming all the bad ones; a missing
    source file raises ``FileNotFoundError``, a failed download ``ConnectionError``. Returns
    the paths of all the requested files.
    """
    root = Path(dest) if dest is not None else default_splits_root()
    wanted = set(benchmarks) if benchmarks is not None else None
    if wanted is not None:
        for name in wanted:
            _benchmark(name)
    items = sorted((rel, sha) for rel, sha in checksums.items() if wanted is None or rel.split("/")[0] in wanted)
    src = _source_folder(Path(source)) if source is not None else None
    paths, bad = [], []
    for rel, expected in tqdm(items, desc="split lists", unit="file", disable=not progress):
        target = root / rel
        paths.append(target)
        try:
            _get_one(rel, expected, target, src, overwrite, download)
        except SplitChecksumError as error:  # check the other files too, then report them all
            bad.append(str(error))
    if bad:
        raise SplitChecksumError("\n".join(bad))
    return paths


def _get_one(rel: str, expected: str, target: Path, src: Path | None, overwrite: bool,
             download: Callable[[str, Path], None]) -> None:
    """Put one checked list at ``target`` (see :func:`get_splits`)."""
    if target.is_file():
        actual = file_sha256(target)
        if actual == expected:
            return
        if not overwrite:
            raise SplitChecksumError(
                f"sha256 mismatch for existing split list {target}: expected {expected}, got {actual}. "
                "Pass overwrite=True (--overwrite) to replace it with the released list."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{target.name}")
    try:
        if src is not None:
            origin = src / rel
            if not origin.is_file():
                raise FileNotFoundError(
                    f"{origin} not found: the source folder must hold <benchmark>/<file> like the TRX "
                    f"repository's splits/ folder (e.g. {src / 'ssv2_OTAM' / 'trainlist07.txt'})"
                )
            shutil.copyfile(origin, partial)
            what = str(origin)
        else:
            what = split_url(rel)
            try:
                download(what, partial)
            except OSError as error:  # urllib's URLError, timeouts, HTTP errors
                raise ConnectionError(
                    f"could not download {what}: {error}. Without network access, copy the TRX "
                    "repository's splits/ folder by other means and give it as the source folder"
                ) from error
        check_sha256(partial, expected, what)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def benchmark_split_files(
    benchmark: str,
    splits_root: str | os.PathLike | None = None,
    verify: bool = True,
) -> dict[str, Path]:
    """``{"train": path, "val": path, "test": path}`` of a standard benchmark under
    ``splits_root`` (default ``$FSVID_HOME/splits``), sums checked when ``verify``.

    A missing file raises ``FileNotFoundError`` saying how to fetch it.
    """
    bench = _benchmark(benchmark)
    root = Path(splits_root) if splits_root is not None else default_splits_root()
    files = {}
    for split in bench.files:
        rel = bench.relative(split)
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"split list {path} not found. Fetch the lists with "
                f"`python data_scripts/get_splits.py {root}` (downloads them) or "
                f"`python data_scripts/get_splits.py {root} --from /path/to/trx/splits`"
            )
        if verify:
            check_sha256(path, SPLIT_SHA256[rel])
        files[split] = path
    return files


def identify_split_file(path: str | os.PathLike) -> tuple[Benchmark, str] | None:
    """``(benchmark, split)`` when ``path`` is byte-identical to a standard list, else None."""
    digest = file_sha256(path)
    for rel, sha in SPLIT_SHA256.items():
        if sha == digest:
            name, file = rel.split("/")
            bench = BENCHMARKS[name]
            split = next(s for s, f in bench.files.items() if f == file)
            return bench, split
    return None


def split_name_of(path: str | os.PathLike) -> str:
    """A short name for a split file: ``trainlist07.txt`` -> ``train``, else the stem."""
    stem = Path(path).stem
    for split in ("train", "val", "test"):
        if stem.startswith(f"{split}list"):
            return split
    return stem
