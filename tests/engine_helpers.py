"""Shared pieces of the engine and CLI tests: a tiny synthetic dataset, a tiny run config.

The dataset (24 classes x 6 videos x 12 frames of 32x32 px, about 150 short mp4 files) is
generated once per test session. The run config trains TRX on 3-way 1-shot tasks of
4 frames with a small CNN, 2 tasks per optimiser step, in a second or two per step.

Import the fixtures into a test module with ``from engine_helpers import tiny_dataset, ...``.
Torch runs on one thread in these tests: results must not depend on the thread count
(bit-exact comparisons between processes), and the machines running them are shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fsvid.config import RunConfig, load_config, to_dict
from fsvid.data.synthetic import SyntheticConfig, generate_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]

TINY_DATASET = {"num_classes": 24, "videos_per_class": 6, "frames": 12, "size": 32}

#: 11 tasks = 5 full steps of 2 and a last step of 1 (with 2 processes, rank 1 has no task in it);
#: last.pt at tasks 4, 8 and 11; validation at 8 and 11.
TINY_RUN = [
    "name=tiny",
    "data.synthetic_classes=24",
    "data.synthetic_videos_per_class=6",
    "data.synthetic_frames=12",
    "data.synthetic_size=32",
    "data.resize=32",
    "data.crop=32",
    "data.frames=4",
    "task.way=3",
    "task.shot=1",
    "task.query=1",
    "model.method=trx",
    "model.feature_dim=8",
    "model.projection_dim=8",
    "model.cardinalities=[2]",
    "train.tasks=11",
    "train.tasks_per_step=2",
    "train.optimizer=adam",
    "train.lr=0.001",
    "train.val_every=8",
    "train.val_tasks=4",
    "train.checkpoint_every=4",
    "train.device=cpu",
    "eval.tasks=6",
]


def tiny_config(dataset: Path, output_dir: Path, *overrides: str) -> RunConfig:
    """The tiny run on ``dataset``, writing to ``output_dir``, with extra ``overrides``."""
    return load_config(None, [*TINY_RUN, f"data.root={dataset}", f"output_dir={output_dir}", *overrides])


def write_config(config: RunConfig, path: Path) -> Path:
    """``config`` as a YAML file (for the CLI and subprocesses)."""
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return path


def subprocess_env(home: Path) -> dict[str, str]:
    """Environment for a child Python: the same package, ``FSVID_HOME``, one thread."""
    env = dict(os.environ)
    env.update(
        FSVID_HOME=str(home),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def run_python(code: str, home: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -c code`` and return the finished process (stdout/stderr captured)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(home), capture_output=True, text=True, timeout=timeout, **kwargs
    )


# Session fixtures imported into several test modules get one fixture definition per module;
# this cache makes them run once per session all the same.
_ONCE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic dataset's root folder (generated once per session)."""
    if "dataset" not in _ONCE:
        root = tmp_path_factory.mktemp("engine_data") / "synthetic"
        generate_synthetic_dataset(root, SyntheticConfig(**TINY_DATASET), progress=False, workers=1)
        _ONCE["dataset"] = root
    return _ONCE["dataset"]


@pytest.fixture
def fsvid_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$FSVID_HOME`` in a temporary folder, so that nothing is written to the real one."""
    home = tmp_path / "fsvid_home"
    monkeypatch.setenv("FSVID_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reference_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run trained once, uninterrupted, in one process (shared by several tests).

    Tests must not modify its folder; copy it first.
    """
    from fsvid.engine import train

    if "reference" in _ONCE:
        return _ONCE["reference"]
    folder = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FSVID_HOME", str(folder.parent / "fsvid_home"))
            train(tiny_config(tiny_dataset, folder), progress=False)
    finally:
        torch.set_num_threads(threads)
    _ONCE["reference"] = folder
    return folder
