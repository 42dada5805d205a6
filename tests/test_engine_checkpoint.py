"""Checkpoint files: atomic writes, a killed save, safe loading, random states."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from engine_helpers import subprocess_env
from fsvid.engine.checkpoint import (
    MODEL_FORMAT,
    TRAINING_FORMAT,
    atomic_save,
    load_checkpoint,
    random_states,
    remove_stale_temporaries,
    restore_random_states,
)


def checkpoint(value: float) -> dict:
    return {"format": TRAINING_FORMAT, "model": {"w": torch.full((64, 64), value)}, "state": {"task": int(value)}}


def test_atomic_save_round_trip_leaves_no_temporary_file(tmp_path):
    path = atomic_save(checkpoint(3.0), tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.full((64, 64), 3.0)) and loaded["state"]["task"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = atomic_save(checkpoint(1.0), tmp_path / "last.pt")
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(100)  # half a file on disk ...
        raise OSError("No space left on device")  # ... and the write fails

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_save(checkpoint(2.0), path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["state"]["task"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temporary file was removed


KILLED_SAVE = """
import sys, time, torch
from fsvid.engine.checkpoint import atomic_save
real_save = torch.save
def slow_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\\x03\\x04 half a checkpoint")
    handle.flush()
    time.sleep(300)   # killed here, in the middle of the write
torch.save = slow_save
atomic_save({"format": "fsvid-checkpoint-1", "state": {"task": 2}}, sys.argv[1])
"""


def test_a_save_killed_midway_keeps_the_previous_checkpoint(tmp_path):
    path = atomic_save(checkpoint(1.0), tmp_path / "last.pt")
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], env=subprocess_env(tmp_path / "home"),
                             stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not any(".tmp-" in p.name for p in tmp_path.iterdir()):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.time() < deadline, "the child never started its save"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".last.pt.tmp-")  # never named like a checkpoint
    assert path.read_bytes() == before and load_checkpoint(path)["state"]["task"] == 1
    assert remove_stale_temporaries(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    atomic_save(checkpoint(1.0), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="not a checkpoint fsvid can read safely: .*truncated.pt .*damaged"):
        load_checkpoint(truncated)
    with pytest.raises(RuntimeError, match=f"{tmp_path} is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
    foreign = tmp_path / "released.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(RuntimeError, match="not an fsvid checkpoint.*fsvid convert"):
        load_checkpoint(foreign)
    model_only = atomic_save({"format": MODEL_FORMAT, "model": {}}, tmp_path / "best.pt")
    assert load_checkpoint(model_only)["format"] == MODEL_FORMAT


def test_a_checkpoint_holding_python_objects_is_refused_without_unpickling_advice(tmp_path):
    from fractions import Fraction  # any class outside torch's allow-list: unpickling it could run code

    path = tmp_path / "pickled.pt"
    torch.save({"format": MODEL_FORMAT, "model": {}, "extra": Fraction(1, 3)}, path)
    with pytest.raises(RuntimeError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert f"this is not a checkpoint fsvid can read safely: {path} (it holds Python objects" in message
    assert "Fraction" in message and "weights_only=False" not in message and "weights_only" not in message


def test_random_states_survive_a_checkpoint_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    atomic_save({"format": TRAINING_FORMAT, "random_states": random_states()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_random_states(load_checkpoint(tmp_path / "rng.pt")["random_states"])  # weights_only load
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
