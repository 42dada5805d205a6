"""Episodic training: results on disk, exact resume after SIGKILL, divergence, several processes."""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_helpers import (  # noqa: F401 (fixtures)
    fsvid_home,
    one_thread,
    reference_run,
    subprocess_env,
    tiny_config,
    tiny_dataset,
    write_config,
)
from fsvid.config import ConfigError, load_config
from fsvid.engine import TrainingDiverged, load_checkpoint, train
import fsvid.engine.training as train_module


def read_metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def assert_same_tensors(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers are exactly equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ----------------------------------------------------------------------------- one uninterrupted run


def test_a_run_writes_config_metrics_summary_and_checkpoints(reference_run):
    config = load_config(reference_run / "config.yaml")
    assert config.train.tasks == 11 and config.output_dir == str(reference_run)

    rows = read_metrics(reference_run)
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    # 2 tasks per step, the last step holds task 10 only; validation every 8 tasks and at the end
    assert [int(r["task"]) for r in train_rows] == [2, 4, 6, 8, 10, 11]
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["task"]) for r in val_rows] == [8, 11]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in train_rows)
    # 3-way 1-query tasks: a step of 2 tasks classifies 6 queries, so accuracy is k/6 (k/3 for the last)
    assert all(round(float(r["accuracy"]) * 6 / 100, 6).is_integer() for r in train_rows)
    # 4 validation tasks of 3 queries: accuracies are multiples of 100/12
    assert all(round(float(r["accuracy"]) * 12 / 100, 6).is_integer() for r in val_rows)

    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["tasks"] == 11 and summary["steps"] == 6

    last = load_checkpoint(reference_run / "last.pt")
    assert last["state"]["task"] == 11 and len(last["state"]["history"]) == len(rows)
    best = load_checkpoint(reference_run / "best.pt")
    # best.pt is chosen on validation: the first validation with the highest accuracy
    best_row = max(val_rows, key=lambda r: float(r["accuracy"]))
    assert best["task"] == int(best_row["task"]) == summary["best_task"]
    assert best["val_accuracy"] == pytest.approx(float(best_row["accuracy"]))
    if best["task"] == 11:
        assert_same_tensors(best["model"], last["model"])


def test_resume_refuses_another_model_configuration(reference_run, tmp_path, fsvid_home, tiny_dataset):
    folder = tmp_path / "run"
    shutil.copytree(reference_run, folder)
    before = (folder / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"model\.projection_dim: 8 -> 16"):
        train(tiny_config(tiny_dataset, folder, "model.projection_dim=16"), progress=False)
    assert (folder / "last.pt").read_bytes() == before


# ----------------------------------------------------------------------------- crash and resume


CHILD = """
import sys, time, torch
torch.set_num_threads(1)
import fsvid.engine.training as t
from fsvid.config import load_config
original = t.task_loss
def task_loss(config, output, episode):
    if episode.task_index == 7:   # inside step 4, after the metrics row of task 6: wait to be killed
        time.sleep(300)
    return original(config, output, episode)
t.task_loss = task_loss
t.train(load_config(sys.argv[1]), progress=False)
"""


def test_run_killed_with_sigkill_resumes_exactly(reference_run, tiny_dataset, tmp_path, fsvid_home, one_thread):
    folder = tmp_path / "run"
    config = tiny_config(tiny_dataset, folder)
    config_file = write_config(config, tmp_path / "config.yaml")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config_file)],
        env=subprocess_env(fsvid_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # until last.pt exists and a task beyond it is in the metrics
            if child.poll() is not None:
                pytest.fail(f"training stopped early: {child.stderr.read().decode()[-2000:]}")
            if (folder / "last.pt").exists() and (folder / "metrics.csv").exists():
                if any(r["task"] == "6" for r in read_metrics(folder)):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("training did not reach task 6 in time")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert load_checkpoint(folder / "last.pt")["state"]["task"] == 4
    assert [r["task"] for r in read_metrics(folder)] == ["2", "4", "6"]  # a row beyond the checkpoint

    with pytest.warns(RuntimeWarning, match=rf"taking over the lock of pid {child.pid} .*no longer running"):
        result = train(config, progress=False)  # resumes from last.pt at task 4
    assert result.tasks == 11

    resumed, reference = load_checkpoint(folder / "last.pt"), load_checkpoint(reference_run / "last.pt")
    assert_same_tensors(resumed["model"], reference["model"], "model")
    assert_same_tensors(resumed["optimizer"], reference["optimizer"], "optimizer")
    assert_same_tensors(resumed["scheduler"], reference["scheduler"], "scheduler")
    assert_same_tensors(
        load_checkpoint(folder / "best.pt")["model"], load_checkpoint(reference_run / "best.pt")["model"], "best"
    )
    assert without_time(read_metrics(folder)) == without_time(read_metrics(reference_run))
    assert json.loads((folder / "summary.json").read_text())["status"] == "finished"


# ----------------------------------------------------------------------------- divergence


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, fsvid_home, monkeypatch, one_thread):
    folder = tmp_path / "run"
    original = train_module.task_loss
    snapshot = {}

    def poisoned(config, output, episode):
        loss = original(config, output, episode)
        if episode.task_index >= 6:
            snapshot.setdefault("last.pt", (folder / "last.pt").read_bytes())
            return loss * float("nan")
        return loss

    monkeypatch.setattr(train_module, "task_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss of task 6 .*not finite.*last\.pt \(task 4\)"):
        train(tiny_config(tiny_dataset, folder), progress=False)

    assert (folder / "last.pt").read_bytes() == snapshot["last.pt"]  # untouched by the diverged step
    last = load_checkpoint(folder / "last.pt")
    assert last["state"]["task"] == 4
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert [r["task"] for r in read_metrics(folder)] == ["2", "4", "6"]  # the step of tasks 6-7 is not logged
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "diverged" and "task 6" in summary["message"]
    assert not list(folder.glob(".*tmp*"))


def test_huge_learning_rate_raises_training_diverged(tiny_dataset, tmp_path, fsvid_home, one_thread):
    config = tiny_config(
        tiny_dataset, tmp_path / "run", "train.optimizer=sgd", "train.lr=1000000.0", "train.val_every=0", "train.tasks=8"
    )
    with pytest.raises(TrainingDiverged, match="not finite"):
        train(config, progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"


# ----------------------------------------------------------------------------- several processes


def test_two_processes_follow_the_single_process_trajectory(reference_run, tiny_dataset, tmp_path, fsvid_home):
    folder = tmp_path / "ddp"
    config_file = write_config(tiny_config(tiny_dataset, folder), tmp_path / "config.yaml")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "fsvid.cli", "train", "--config", str(config_file), "--quiet",
    ]
    done = subprocess.run(command, env=subprocess_env(fsvid_home), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    assert not (folder / "train.lock").exists()  # rank 0 held the folder (rank 1 is no rival) and released it
    two = [r for r in read_metrics(folder) if r["split"] == "train"]
    one = [r for r in read_metrics(reference_run) if r["split"] == "train"]
    assert [(r["task"], r["step"], r["lr"]) for r in two] == [(r["task"], r["step"], r["lr"]) for r in one]
    for a, b in zip(two, one):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5, abs=1e-6)
        assert float(a["accuracy"]) == pytest.approx(float(b["accuracy"]))
    # the same updates: parameters agree up to float rounding (BatchNorm running statistics,
    # buffers, follow rank 0's tasks only and are not compared)
    two_model = load_checkpoint(folder / "last.pt")["model"]
    one_model = load_checkpoint(reference_run / "last.pt")["model"]
    with torch.no_grad():
        from fsvid.engine.runs import load_trained_model

        model, _ = load_trained_model(reference_run, "last")
    for name, _ in model.named_parameters():
        torch.testing.assert_close(two_model[name], one_model[name], rtol=1e-4, atol=1e-5, msg=name)
