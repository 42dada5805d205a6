"""Configurations, result files and checkpoints as users really have them: each fault is a
clear message naming the file (and line or key) with the right exit status, before any work,
and nothing of the user's is touched."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fsvid.cli import main
from fsvid.config import ConfigError, load_config
from fsvid.engine.evaluate import EvalResult
from fsvid.engine.metrics import mean_and_ci
from fsvid.engine.runs import compare_runs


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_config_file_is_refused_not_read_as_the_defaults(tmp_path: Path, capsys, text: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file {path} is empty: it holds no settings"):
        load_config(path)
    code, out, err = run_cli(capsys, "train", "--config", str(path))
    assert code != 0 and "is empty" in err and path.read_text() == text
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_an_inherit_loop_names_the_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text(f"inherit: {b}\ntrain:\n  lr: 0.1\n")
    b.write_text(f"inherit: {c}\n")
    c.write_text(f"inherit: {b}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(a)
    assert str(raised.value) == f"'inherit' loops: {b.resolve()} -> {c.resolve()} -> {b.resolve()}"


def test_a_config_file_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: run\n# r\u00e9glages\ntrain:\n  lr: 0.1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {path}, line 2: not UTF-8 text \(byte 0xe9\)"):
        load_config(path)


def test_a_file_inheriting_itself_is_a_loop(tmp_path: Path) -> None:
    a = tmp_path / "self.yaml"
    a.write_text(f"inherit: {a}\n")
    with pytest.raises(ConfigError, match="'inherit' loops: .*self.yaml -> .*self.yaml"):
        load_config(a)


def test_inheriting_a_preset_still_works(tmp_path: Path) -> None:
    a = tmp_path / "mine.yaml"
    a.write_text("inherit: synthetic_trx\ntrain:\n  lr: 0.5\n")
    config = load_config(a)
    assert config.train.lr == 0.5 and config.model.method == "trx"


def test_no_validation_tasks_with_validation_on_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"train.val_tasks must be at least 1 while validation is on .*got 0"):
        load_config("synthetic_trx", ["train.val_tasks=0"])
    assert load_config("synthetic_trx", ["train.val_tasks=0", "train.val_every=0"]).train.val_tasks == 0


@pytest.mark.parametrize("override, message", [
    ("model.backbone=resnet99", "model.backbone: 'resnet99' is not one of resnet18, "),
    ("model.backbone=resnet50", "model.widths and model.coordinates apply to the small_cnn backbone only"),
])
def test_backbone_names_are_checked_in_the_config(override: str, message: str) -> None:
    extra = ["model.coordinates=true"] if override.endswith("resnet50") else []
    with pytest.raises(ConfigError, match=message):
        load_config("synthetic_trx", [override, *extra])


def test_unknown_backbone_exits_2_before_any_data(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FSVID_HOME", str(tmp_path / "home"))
    code, _, err = run_cli(capsys, "train", "--config", "synthetic_trx", "model.backbone=resnet99",
                           f"output_dir={tmp_path / 'run'}", "--quiet")
    assert code == 2 and "model.backbone: 'resnet99'" in err and "Traceback" not in err
    assert not (tmp_path / "home").exists() and not (tmp_path / "run").exists()  # nothing generated or written


def test_a_yaml_error_in_a_config_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lr: 0.1\n  tasks: [1, 2\nmodel:\n  method: trx\n")
    with pytest.raises(ConfigError, match=rf"config file {path}, line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_a_bad_key_in_a_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key train.learning_rate"):
        load_config(path)


def test_evaluate_on_a_hand_broken_run_config_exits_2(capsys, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.yaml"
    config.write_text("name: run\neval:\n  tasks: 10\n   seed: 3\n")
    before = config.read_bytes()
    code, _, err = run_cli(capsys, "evaluate", str(run), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert f"config file {config}, line 4" in err and "not valid YAML" in err
    assert config.read_bytes() == before


def test_convert_config_sizes_yaml_error_names_line(capsys, tmp_path: Path) -> None:
    sizes = tmp_path / "sizes.json"
    sizes.write_text('{"L": 8,\n "D": 16\n "Dout": 8}\n')  # a comma missing
    checkpoint = tmp_path / "c.pth"
    torch.save({}, checkpoint)
    code, _, err = run_cli(capsys, "convert", "trx", str(checkpoint), "--config", str(sizes), "--out",
                           str(tmp_path / "head.pt"))
    assert code == 2 and f"--config {sizes}, line 3" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- result files


def _evaluated_run(folder: Path, seed: int) -> Path:
    accuracies = np.random.default_rng(seed).uniform(0, 100, 20)
    EvalResult(accuracies, mean_and_ci(accuracies), ["a", "b"], np.eye(2, dtype=np.int64),
               {"split": "test", "seed": 1, "way": 2, "shot": 1, "query": 1, "tasks": 20}).save(folder, "eval_test")
    return folder


@pytest.mark.parametrize("damage, message", [
    ("json_cut", r"evaluation result .*eval_test.json is damaged \(JSONDecodeError: .*line \d+ column \d+"),
    ("json_keys", r"evaluation result .*eval_test.json is damaged \(KeyError: no 'class_names'\)"),
    ("npy_bytes", r"per-task accuracies .*eval_test_tasks.npy are damaged"),
    ("npy_short", r"per-task accuracies .*eval_test_tasks.npy hold a float64 array of shape \(5,\), expected 20"),
])
def test_compare_names_a_damaged_result_file(capsys, tmp_path: Path, damage: str, message: str) -> None:
    a, b = _evaluated_run(tmp_path / "a", 0), _evaluated_run(tmp_path / "b", 1)
    json_file, npy_file = b / "eval_test.json", b / "eval_test_tasks.npy"
    if damage == "json_cut":
        json_file.write_text(json_file.read_text()[:40])
    elif damage == "json_keys":
        json_file.write_text(json.dumps({"accuracy": 50, "tasks": 20}))
    elif damage == "npy_bytes":
        npy_file.write_bytes(b"\x93NUMPY garbage" * 3)
    else:
        np.save(npy_file, np.zeros(5))
    with pytest.raises(ValueError, match=message):
        compare_runs(a, b)
    code, _, err = run_cli(capsys, "compare", str(a), str(b))
    assert code == 2 and "Traceback" not in err and str(b) in err and "fsvid evaluate" in err


# ----------------------------------------------------------------------------- checkpoints


class _Planted:
    """Unpickling this would create the file ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["pickle", "malicious", "random"])
def test_convert_refuses_files_it_cannot_read_safely(capsys, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "released.pth"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"model_state_dict": {"w": _Planted(marker)}}))
    elif kind == "malicious":
        torch.save({"model_state_dict": {}, "payload": _Planted(marker)}, path)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"L": 8, "D": 16, "Dout": 8, "temp_set": [2]}))
    out = tmp_path / "head.pt"
    code, _, err = run_cli(capsys, "convert", "trx", str(path), "--config", str(sizes), "--out", str(out))
    assert code == 1 and "Traceback" not in err
    assert f"this is not a released trx checkpoint fsvid can read safely: {path}" in err
    why = {"pickle": "a plain Python pickle", "malicious": "Python objects", "random": "not a torch file"}[kind]
    assert why in err
    assert not marker.exists() and not out.exists()


def test_convert_of_a_list_names_the_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"L": 8, "D": 16, "Dout": 8, "temp_set": [2]}))
    code, _, err = run_cli(capsys, "convert", "trx", str(path), "--config", str(sizes), "--out", str(tmp_path / "h.pt"))
    assert code == 1 and f"{path}: expected a state dict" in err and "Traceback" not in err


def test_backbone_weights_that_are_not_safe_name_the_file(tmp_path: Path) -> None:
    from fsvid.backbones.weights import read_state_dict

    marker = tmp_path / "code_ran"
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": _Planted(marker)}, path)
    with pytest.raises(ValueError, match=rf"not a weights file fsvid can read safely: {path}"):
        read_state_dict(path)
    assert not marker.exists()


def test_an_override_that_is_not_yaml_names_the_override(capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--config", "synthetic_trx", "model.cardinalities=[2, 3")
    assert code == 2 and "override 'model.cardinalities=[2, 3': the value is not valid YAML" in err
    assert "synthetic_trx is not valid YAML" not in err and "Traceback" not in err
