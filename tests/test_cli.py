"""The ``fsvid`` command line: subcommands, and clean errors for bad configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine_helpers import fsvid_home, one_thread, subprocess_env, tiny_config, tiny_dataset, write_config  # noqa: F401
from fsvid.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_presets_are_listed_and_shown(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and "synthetic_trx" in out
    code, out, _ = run_cli(capsys, "presets", "synthetic_trx")
    assert code == 0 and "method: trx" in out and "tasks_per_step: 4" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "synthetic_trx", "train.learning_rate=0.1"], "valid keys in train: amp, "),
        (["train", "--config", "synthetic_trx", "model.method=otam"], "not one of prototype, trx, strm, mastaf"),
        (["train", "--config", "synthetic_trx", "task.way=ten"], "task.way: expected an integer"),
        (["train", "--config", "no_such_preset"], "unknown preset 'no_such_preset'; presets: "),
        (["train", "--config", "missing.yaml"], "missing.yaml does not exist"),
        (["train", "--config", "synthetic_trx", "train.lr"], "expected key=value overrides"),
        (["evaluate"], "give one run folder"),
    ],
)
def test_bad_configuration_exits_2_with_the_valid_choices(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_console_script_prints_errors_without_a_traceback(tmp_path):
    script = Path(sys.executable).parent / "fsvid"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fsvid.cli"]
    done = subprocess.run([*command, "train", "--config", "synthetic_trx", "optim.lr=1"],
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown key optim" in done.stderr and "Traceback" not in done.stderr


def test_synthetic_generates_a_dataset(capsys, tmp_path):
    root = tmp_path / "synthetic"
    code, out, _ = run_cli(capsys, "synthetic", str(root), "--classes", "3", "--videos-per-class", "2",
                           "--frames", "4", "--size", "32", "--workers", "1", "-q")
    assert code == 0 and (root / "dataset.json").is_file()
    meta = json.loads((root / "dataset.json").read_text())
    assert len(meta["classes"]) == 3 and len(meta["videos"]) == 6
    code, _, err = run_cli(capsys, "synthetic", str(tmp_path / "x"), "--classes", "no_such_class", "-q")
    assert code == 2 and "unknown synthetic class" in err


def test_train_evaluate_compare(capsys, tiny_dataset, tmp_path, fsvid_home, one_thread):
    run = tmp_path / "run"
    config = write_config(
        tiny_config(tiny_dataset, run, "train.tasks=4", "train.val_every=0"), tmp_path / "config.yaml"
    )
    code, out, err = run_cli(capsys, "train", "--config", str(config), "eval.tasks=3", "--quiet")
    assert code == 0, err
    assert (run / "best.pt").is_file() and (run / "config.yaml").is_file() and f"run folder {run}" in out

    code, out, _ = run_cli(capsys, "evaluate", str(run), "--tasks", "3", "--per-class", "-q")
    assert code == 0 and "test accuracy" in out and "(95% CI, 3 tasks, 3-way 1-shot, seed 1234)" in out
    saved = json.loads((run / "eval_test.json").read_text())
    assert saved["tasks"] == 3 and f"{saved['accuracy']:.2f}" in out

    code, out, _ = run_cli(capsys, "compare", str(run), str(run), "--json")
    result = json.loads(out)
    assert code == 0 and result["difference"] == 0.0 and result["ties"] == 3

    code, _, err = run_cli(capsys, "train", "--config", str(config), "model.projection_dim=16", "--quiet")
    assert code == 2 and "model.projection_dim: 8 -> 16" in err  # refused resume, no traceback


@pytest.mark.skipif(not (SHARED / "fixtures" / "official" / "trx_public.pt").exists(), reason="needs ../shared fixtures")
def test_convert_writes_a_head_equal_to_the_released_code(capsys, tmp_path):
    fixture = torch.load(SHARED / "fixtures" / "official" / "trx_public.pt", weights_only=True)
    released = tmp_path / "released.pth"
    torch.save({"model_state_dict": fixture["official_state_dict"]}, released)
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({k: fixture["config"][k] for k in ("L", "D", "Dout", "temp_set")}))
    out = tmp_path / "trx_head.pt"
    code, printed, err = run_cli(capsys, "convert", "trx", str(released), "--config", str(sizes), "--out", str(out))
    assert code == 0, err
    from fsvid.convert import build_official_head

    head = build_official_head("trx", fixture["config"])
    head.load_state_dict(torch.load(out, weights_only=True))
    head.eval()
    with torch.no_grad():
        logits = head(fixture["support"], fixture["support_labels"], fixture["query"]).logits
    torch.testing.assert_close(logits, fixture["logits"], rtol=1e-4, atol=1e-5)

    code, _, err = run_cli(capsys, "convert", "trx", str(released), "--config", str(tmp_path / "none.json"),
                           "--out", str(out))
    assert code == 2 and "none.json does not exist" in err


@pytest.mark.parametrize(
    "command, expected",
    [
        ("demo", "usage: fsvid demo"),
        ("prepare", "usage: python -m fsvid.prepare"),
        ("sweep", "usage: fsvid sweep"),
        ("notebook", "usage: python -m fsvid.notebooks"),
    ],
)
def test_demo_and_prepare_are_forwarded_with_their_own_options(command, expected, capsys):
    from fsvid.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert expected in capsys.readouterr().out
