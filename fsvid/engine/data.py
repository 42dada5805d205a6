"""From a run configuration to episode datasets: where the videos and split lists are.

- ``data.dataset: synthetic`` uses the generated dataset (``$FSVID_HOME/synthetic`` unless
  ``data.root`` says otherwise), generating it on first use;
- any other dataset reads videos or frame folders under ``data.root`` and the split lists
  ``{train,val,test}list<split_id>.txt`` in ``data.split_dir`` (default ``<root>/splits`` when
  it exists, else ``$FSVID_HOME/splits/<dataset>``, where ``data_scripts/get_splits.py`` puts
  the standard lists), as prepared by ``data_scripts/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fsvid.config import RunConfig
from fsvid.data import EpisodeDataset, read_split, split_classes
from fsvid.paths import default_synthetic_root

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataLocation:
    """Where a run's videos and split lists are."""

    video_root: Path
    split_dir: Path
    split_id: str

    def split_file(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.split_dir / f"{split}list{self.split_id}.txt"


def synthetic_config(config: RunConfig):
    """The :class:`~fsvid.data.synthetic.SyntheticConfig` that ``config.data`` asks for."""
    from fsvid.data.synthetic import SyntheticConfig

    data = config.data
    return SyntheticConfig(
        num_classes=data.synthetic_classes,
        videos_per_class=data.synthetic_videos_per_class,
        frames=data.synthetic_frames,
        size=data.synthetic_size,
        seed=data.synthetic_seed,
    )


def locate_data(config: RunConfig, generate: bool = True, progress: bool = True) -> DataLocation:
    """Find (and for the synthetic dataset, generate when missing) the run's data."""
    data = config.data
    if data.dataset == "synthetic":
        from fsvid.data.synthetic import generate_synthetic_dataset

        root = Path(data.root).expanduser() if data.root else default_synthetic_root()
        if generate:
            # the default root holds derived data that fsvid manages: regenerate it when the
            # settings (or the generator) changed; a root the user chose is never overwritten
            generate_synthetic_dataset(
                root, synthetic_config(config), progress=progress, overwrite=data.root is None
            )
        elif not (root / "dataset.json").exists():
            raise FileNotFoundError(
                f"no synthetic dataset at {root}; generate it with `fsvid synthetic {root}`"
            )
        split_dir = Path(data.split_dir).expanduser() if data.split_dir else root / "splits"
        return DataLocation(root / "videos", split_dir, data.split_id)
    if data.root is None:
        raise FileNotFoundError(
            f"data.root is not set for dataset {data.dataset!r}: prepare the videos with data_scripts/ "
            "(see README.md, 'Real benchmarks') and pass data.root=/path/to/prepared/videos"
        )
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} is not a folder (dataset {data.dataset!r})")
    if data.split_dir:
        split_dir = Path(data.split_dir).expanduser()
    elif (root / "splits").is_dir():
        split_dir = root / "splits"
    else:  # where data_scripts/get_splits.py puts a standard benchmark's lists
        from fsvid.prepare.splits import default_splits_root

        split_dir = default_splits_root() / data.dataset
    location = DataLocation(root, split_dir, data.split_id)
    missing = [str(location.split_file(s)) for s in SPLITS if not location.split_file(s).is_file()]
    if missing:
        raise FileNotFoundError(
            f"split lists not found: {', '.join(missing)}; get them with data_scripts/get_splits.py "
            "and set data.split_dir (and data.split_id, e.g. 03 or 07)"
        )
    return location


def split_class_names(location: DataLocation, split: str) -> list[str]:
    """All classes of a split, sorted: position k is the global class index k."""
    return split_classes(read_split(location.split_file(split)))


def global_class_count(config: RunConfig, location: DataLocation) -> int:
    """Outputs of MASTAF's global classifier (``model.global_classes``): the training classes,
    or every class of the train, val and test lists (the released code: one output per class
    folder of the dataset, ``--train_num_classes 51`` for HMDB). Targets stay the index among
    the training classes; with ``all`` the other outputs are never a target (they only enter
    the softmax), as in the released code."""
    if config.model.global_classes == "train":
        return len(split_class_names(location, "train"))
    return len({name for split in SPLITS for name in split_class_names(location, split)})


def episode_dataset(
    config: RunConfig,
    split: str,
    num_tasks: int,
    seed: int,
    train: bool,
    location: DataLocation | None = None,
    progress: bool = True,
) -> EpisodeDataset:
    """Episodes of ``split``: training-style (random frames, crops, ``task.query`` queries)
    when ``train``, else test-style (deterministic, ``task.test_query`` queries)."""
    location = location or locate_data(config, progress=progress)
    data, task = config.data, config.task
    return EpisodeDataset.from_split(
        location.split_file(split),
        location.video_root,
        way=task.way,
        shot=(task.train_shot or task.shot) if train else task.shot,
        query=task.query if train else task.test_query,
        frames=data.frames,
        train=train,
        num_tasks=num_tasks,
        seed=seed,
        resize=data.resize,
        crop=data.crop,
        flip=data.flip,
        normalize=data.normalize,
        sampling=data.sampling,
        short_videos=data.short_videos,
        on_missing=data.on_missing,
        progress=progress,
        memory_bytes=data.memory_mb * 1024**2,
        train_crop=data.train_crop,
        query_sampling=task.query_sampling,
        jitter_test_frames=data.test_sampling == "jittered",
    )


def time_reversed_pairs(config: RunConfig, split: str = "test") -> list[tuple[str, str]]:
    """The synthetic dataset's time-reversed class pairs within ``split`` (empty otherwise)."""
    if config.data.dataset != "synthetic":
        return []
    root = Path(config.data.root).expanduser() if config.data.root else default_synthetic_root()
    path = root / "dataset.json"
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"synthetic dataset description {path} is damaged ({error!r}); generate the dataset "
                         f"again (`fsvid synthetic {root}` in a new folder)") from None
    pairs = set()
    for entry in classes if isinstance(classes, list) else [dict(name=k, **v) for k, v in classes.items()]:
        if entry.get("split") == split and entry.get("twin"):
            pairs.add(tuple(sorted((entry["name"], entry["twin"]))))
    return sorted(pairs)
