"""Training faults a careless user meets ("Bad input, faults"): a bad configuration with
--no-resume, two trainings on one folder, a diverging run, a model-only last.pt, a full disk,
`fsvid cache --run`. Each test checks the message (file and cause) and that nothing was lost."""

from __future__ import annotations

import errno
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
from fsvid.cli import main
from fsvid.engine import TrainingDiverged, atomic_save, load_checkpoint, train
from fsvid.engine.checkpoint import CheckpointError, WriteError
from fsvid.engine.lock import LOCK_NAME, RunFolderBusy
import fsvid.engine.training as train_module


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(reference: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    return folder


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------- 13: --no-resume, bad config


@pytest.mark.parametrize(
    "override, exit_code, message",
    [  # a wrong name is a configuration error (exit 2, before any work); a missing file is found at the start
        ("model.backbone=resnet5O", 2, r"model.backbone: 'resnet5O' is not one of"),
        ("model.backbone_weights=MISSING", 1, r"weights file '.*missing_weights\.pt' not found"),
    ],
)
def test_no_resume_with_a_bad_configuration_keeps_the_old_run(
    override, exit_code, message, reference_run, tiny_dataset, tmp_path, fsvid_home, capsys, one_thread
):
    folder = copy_run(reference_run, tmp_path)
    before = snapshot(folder)
    config_file = write_config(tiny_config(tiny_dataset, folder), tmp_path / "config.yaml")
    override = override.replace("MISSING", str(tmp_path / "missing_weights.pt"))
    code = main(["train", "--config", str(config_file), override, "--no-resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == exit_code and re.search(message, err), err
    assert snapshot(folder) == before  # last.pt, best.pt, metrics.csv, summary.json, config.yaml untouched
    assert not (folder / LOCK_NAME).exists()  # released after the failure


def test_no_resume_moves_the_previous_run_aside_once_the_new_one_starts(reference_run, tiny_dataset, tmp_path,
                                                                        fsvid_home, one_thread):
    folder = copy_run(reference_run, tmp_path)
    (folder / "eval_test.json").write_text('{"old": true}')  # an evaluation of the old best.pt
    before = snapshot(folder)
    result = train(tiny_config(tiny_dataset, folder, "train.tasks=2", "train.val_every=0"), resume=False,
                   progress=False)
    assert result.tasks == 2
    assert snapshot(folder / "previous") == before  # every old file, unchanged, in previous/
    assert load_checkpoint(folder / "last.pt")["state"]["task"] == 2
    assert not (folder / "eval_test.json").exists()  # it described the old model
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt", "config.yaml", "last.pt", "metrics.csv", "previous", "summary.json"
    ]


# ----------------------------------------------------------------------------- 14: one training per folder


HOLD = """
import sys, time, torch
torch.set_num_threads(1)
import fsvid.engine.training as t
from fsvid.config import load_config
original = t.task_loss
def task_loss(config, output, episode):
    if episode.task_index == 2:   # after last.pt of task 2 is written: hold the folder
        print("holding", flush=True)
        time.sleep(300)
    return original(config, output, episode)
t.task_loss = task_loss
t.train(load_config(sys.argv[1]), progress=False)
"""


def test_a_second_training_on_a_busy_folder_is_refused_and_a_crashed_ones_lock_is_taken_over(
    tiny_dataset, tmp_path, fsvid_home, one_thread
):
    folder = tmp_path / "run"
    config = tiny_config(tiny_dataset, folder, "train.tasks=4", "train.checkpoint_every=2", "train.val_every=0")
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(write_config(config, tmp_path / "config.yaml"))],
                             env=subprocess_env(fsvid_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().decode().strip() == "holding", child.stderr.read().decode()[-2000:]
        before = snapshot(folder)
        lock = json.loads((folder / LOCK_NAME).read_text())
        assert lock["pid"] == child.pid and lock["host"] == socket.gethostname()
        with pytest.raises(RunFolderBusy, match=rf"{folder} is in use by another training \(pid {child.pid} on host "):
            train(config, progress=False)
        with pytest.raises(RunFolderBusy):
            train(config, resume=False, progress=False)
        assert snapshot(folder) == before  # neither attempt touched the folder
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # the holder crashed: its lock is stale, taken over with a warning naming it
    with pytest.warns(RuntimeWarning, match=rf"taking over the lock of pid {child.pid} .*no longer running"):
        result = train(config, progress=False)
    assert result.tasks == 4 and load_checkpoint(folder / "last.pt")["state"]["task"] == 4
    assert not (folder / LOCK_NAME).exists()  # released at the end


def test_a_lock_left_by_a_dead_process_is_taken_over(tiny_dataset, tmp_path, fsvid_home, one_thread):
    folder = tmp_path / "run"
    folder.mkdir()
    pid = dead_pid()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    with pytest.warns(RuntimeWarning, match=rf"pid {pid} on host .*no longer running"):
        train(tiny_config(tiny_dataset, folder, "train.tasks=2", "train.val_every=0"), progress=False)
    assert load_checkpoint(folder / "last.pt")["state"]["task"] == 2 and not (folder / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_refused_with_how_to_clear_it(tiny_dataset, tmp_path, fsvid_home):
    folder = tmp_path / "run"
    folder.mkdir()
    record = {"pid": 4242, "host": "other-node", "started": "2026-12-01 10:00:00 UTC", "torchrun_job": "job7",
              "world_size": 8}
    (folder / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(RunFolderBusy, match=r"pid 4242 on host other-node.*torchrun job job7 of 8 processes.*"
                                            rf"no longer running, delete {folder / LOCK_NAME}"):
        train(tiny_config(tiny_dataset, folder), progress=False)
    assert json.loads((folder / LOCK_NAME).read_text()) == record  # the holder's lock is left alone
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]


def test_the_lock_is_released_after_an_exception(tiny_dataset, tmp_path, fsvid_home, monkeypatch, one_thread):
    folder = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("broken data")

    monkeypatch.setattr(train_module, "episode_dataset", broken)
    with pytest.raises(RuntimeError, match="broken data"):
        train(tiny_config(tiny_dataset, folder), progress=False)
    assert not folder.exists()  # the lock and the folder it created are gone
    monkeypatch.undo()
    assert train(tiny_config(tiny_dataset, folder, "train.tasks=2", "train.val_every=0"), progress=False).tasks == 2


# ----------------------------------------------------------------------------- 15: divergence, truthfully


def test_weights_made_non_finite_by_an_update_are_never_checkpointed(tiny_dataset, tmp_path, fsvid_home, monkeypatch,
                                                                     one_thread):
    folder = tmp_path / "run"
    original = train_module.task_loss

    def late_gradients(config, output, episode):  # no gradient before task 4: SGD leaves the weights alone
        loss = original(config, output, episode)
        return loss if episode.task_index >= 4 else loss * 0.0

    monkeypatch.setattr(train_module, "task_loss", late_gradients)
    config = tiny_config(tiny_dataset, folder, "train.optimizer=sgd", "train.lr=3e38", "train.checkpoint_every=2",
                         "train.val_every=0", "train.tasks=8")
    with pytest.raises(TrainingDiverged, match=r"optimiser step 3 \(tasks 4-5, learning rate 3e\+38\) made the weights "
                                               r"non-finite.*last good checkpoint is .*last\.pt \(task 4\)\."):
        train(config, progress=False)
    last = load_checkpoint(folder / "last.pt")
    assert last["state"]["task"] == 4
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert not (folder / "best.pt").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "diverged" and "task 4" in summary["message"]


def test_an_overflowing_learning_rate_reports_that_no_checkpoint_is_good(tiny_dataset, tmp_path, fsvid_home,
                                                                         one_thread):
    folder = tmp_path / "run"
    config = tiny_config(tiny_dataset, folder, "train.optimizer=sgd", "train.lr=3e38", "train.checkpoint_every=2",
                         "train.val_every=0", "train.tasks=8")
    with pytest.raises(TrainingDiverged, match=r"optimiser step 1 .*non-finite.*none \(no last\.pt was written yet\)"):
        train(config, progress=False)
    assert not (folder / "last.pt").exists() and not (folder / "best.pt").exists()


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    files = train_module.RunFiles(tmp_path, enabled=True)
    atomic_save({"format": "fsvid-model-1", "model": {"w": torch.ones(3)}}, files.best)
    before = files.best.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"refusing to write .*best\.pt.*\(w\)"):
        files.save(files.best, {"format": "fsvid-model-1", "model": {"w": torch.tensor([1.0, float("inf"), 0.0])}})
    assert files.best.read_bytes() == before


def test_resume_refuses_a_last_pt_with_non_finite_weights(reference_run, tiny_dataset, tmp_path, fsvid_home):
    folder = copy_run(reference_run, tmp_path)
    checkpoint = load_checkpoint(folder / "last.pt")
    name = next(k for k, t in checkpoint["model"].items() if t.is_floating_point())
    checkpoint["model"][name] = torch.full_like(checkpoint["model"][name], float("nan"))
    checkpoint["state"]["task"] = 8
    atomic_save(checkpoint, folder / "last.pt")
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=rf"last\.pt holds non-finite weights \({name}\).*--no-resume"):
        train(tiny_config(tiny_dataset, folder), progress=False)
    assert snapshot(folder) == before


# ----------------------------------------------------------------------------- 16: model-only last.pt


def test_resume_from_a_model_only_checkpoint_names_the_file_and_what_it_lacks(reference_run, tiny_dataset, tmp_path,
                                                                             fsvid_home, capsys):
    folder = copy_run(reference_run, tmp_path)
    shutil.copy(folder / "best.pt", folder / "last.pt")
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=rf"{folder / 'last.pt'} is a model-only checkpoint.*lacks the optimiser, "
                                              r"learning-rate schedule, random states and progress.*--no-resume"):
        train(tiny_config(tiny_dataset, folder), progress=False)
    config_file = write_config(tiny_config(tiny_dataset, folder), tmp_path / "config.yaml")
    assert main(["train", "--config", str(config_file), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "model-only checkpoint" in err and "Traceback" not in err and "KeyError" not in err
    assert snapshot(folder) == before


def test_resume_from_an_unreadable_last_pt_says_how_to_start_again(reference_run, tiny_dataset, tmp_path, fsvid_home):
    folder = copy_run(reference_run, tmp_path)
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:300])  # a truncated copy
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=r"could not read checkpoint .*last\.pt.*cannot resume from it.*--no-resume"):
        train(tiny_config(tiny_dataset, folder), progress=False)
    assert snapshot(folder) == before


# ----------------------------------------------------------------------------- evaluation of bad checkpoints


def test_evaluating_a_diverged_checkpoint_is_refused(reference_run, tmp_path, fsvid_home):
    from fsvid.engine import evaluate_run

    folder = copy_run(reference_run, tmp_path)
    best = load_checkpoint(folder / "best.pt")
    name = next(k for k, t in best["model"].items() if t.is_floating_point())
    best["model"][name] = torch.full_like(best["model"][name], float("inf"))
    atomic_save(best, folder / "best.pt")
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=rf"best\.pt holds non-finite weights \({name}\)"):
        evaluate_run(folder, tasks=2, progress=False)
    assert snapshot(folder) == before


def test_an_untrained_evaluation_does_not_overwrite_a_trained_runs_files(reference_run, tiny_dataset, tmp_path,
                                                                         fsvid_home):
    from fsvid.engine import evaluate_config

    folder = copy_run(reference_run, tmp_path)
    before = snapshot(folder)
    config = tiny_config(tiny_dataset, folder, "model.method=prototype")
    with pytest.raises(ValueError, match=rf"{folder} holds a trained run \(last\.pt, best\.pt\).*overwrite its "
                                         r"config\.yaml and eval_test\.json"):
        evaluate_config(config, tasks=2, untrained=True, progress=False)
    assert snapshot(folder) == before


# ----------------------------------------------------------------------------- 17: a full disk


@pytest.mark.parametrize("failure", ["torch", "oserror"])
def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(failure, tmp_path, monkeypatch):
    path = atomic_save({"format": "fsvid-checkpoint-1", "state": {"task": 1}}, tmp_path / "last.pt")
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(64)
        if failure == "torch":
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 1024")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(total=10**9, used=10**9 - 4096, free=4096))
    with pytest.raises(WriteError, match=rf"could not write {path}: .*the disk is full \(0\.0 MiB free\); "
                                         r"last\.pt keeps its previous content") as raised:
        atomic_save({"format": "fsvid-checkpoint-1", "state": {"task": 2}}, path)
    if failure == "oserror":
        assert "no space left on device" in str(raised.value) and raised.value.errno == errno.ENOSPC
    else:
        assert "unexpected pos" in str(raised.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_full_disk_during_training_says_which_checkpoint_resumes(tiny_dataset, tmp_path, fsvid_home, monkeypatch,
                                                                   one_thread):
    folder = tmp_path / "run"
    real_save = torch.save
    saves = []

    def full_after_the_first_checkpoint(obj, handle, *args, **kwargs):
        if ".last.pt.tmp" in str(getattr(handle, "name", "")):
            saves.append(obj["state"]["task"])
            if len(saves) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_after_the_first_checkpoint)
    with pytest.raises(WriteError, match=rf"could not write {folder / 'last.pt'}: no space left on device.*; "
                                         r"last\.pt keeps its previous content: the checkpoint of task 4, from which "
                                         r"the run resumes \(the run stopped at task 8; free some space"):
        train(tiny_config(tiny_dataset, folder, "train.val_every=0"), progress=False)
    assert saves == [4, 8]
    assert load_checkpoint(folder / "last.pt")["state"]["task"] == 4
    assert not list(folder.glob(".*tmp*")) and not (folder / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- 18: fsvid cache --run


@pytest.mark.parametrize("form", ["--run", "positional"])
def test_cache_of_a_run_holds_the_runs_own_test_videos(form, reference_run, tiny_dataset, tmp_path, fsvid_home,
                                                       monkeypatch, capsys, one_thread):
    import fsvid.data.synthetic as synthetic
    from fsvid.features import FeatureCache
    from fsvid.engine.data import episode_dataset, locate_data
    from fsvid.engine.runs import load_trained_model

    folder = copy_run(reference_run, tmp_path)
    generate = synthetic.generate_synthetic_dataset
    roots = []

    def only_the_runs_dataset(root, *args, **kwargs):
        roots.append(Path(root))
        if Path(root) != tiny_dataset:
            raise RuntimeError(f"generated another dataset at {root}")
        return generate(root, *args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", only_the_runs_dataset)
    arguments = ["--run", str(folder)] if form == "--run" else [str(folder)]
    code = main(["cache", *arguments, "--splits", "test", "-q"])
    assert code == 0, capsys.readouterr().err
    assert set(roots) <= {tiny_dataset} and not (fsvid_home / "synthetic").exists()

    model, config = load_trained_model(folder)
    expected = episode_dataset(config, "test", 1, config.eval.seed, False, locate_data(config, generate=False), False)
    caches = list((folder / "cache").glob("test_*"))
    assert len(caches) == 1
    assert FeatureCache(caches[0]).video_keys == [video.key for video in expected.videos]
