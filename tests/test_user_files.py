"""A careful user's files: damaged descriptions named, generated data never deleted under a
running job, outputs never overwritten without being asked, interrupted commands leave nothing
that reads as complete. (The issue's own cases: test_engine_faults, test_bad_data_files,
test_bad_config_files.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsvid.config import load_config
from fsvid.data.synthetic import SyntheticConfig, generate_synthetic_dataset

from engine_helpers import fsvid_home, reference_run, tiny_dataset  # noqa: F401  (fixtures)

#: A synthetic dataset of 6 classes x 2 videos x 4 frames of 16x16 px: rendered in about a second.
SMALL = ["data.synthetic_classes=6", "data.synthetic_videos_per_class=2", "data.synthetic_frames=4",
         "data.synthetic_size=16"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and its modification time (ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- synthetic data


@pytest.mark.parametrize("content", [b'{"config": {"frames": 4', "[1, 2]".encode(), b"\xff\xfe\x00garbage"],
                         ids=["truncated", "a list", "not utf-8"])
def test_a_damaged_dataset_json_is_named_with_its_cause(tmp_path, content):
    meta = tmp_path / "dataset.json"
    meta.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{meta} is not a synthetic dataset description \(\w+Error: .+\)"):
        generate_synthetic_dataset(tmp_path, SyntheticConfig(num_classes=2, videos_per_class=1, frames=2, size=16),
                                   progress=False, workers=1)
    assert meta.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json"]


def test_other_synthetic_settings_never_regenerate_a_dataset_in_use(fsvid_home):  # noqa: F811
    from fsvid.engine.data import locate_data, synthetic_root

    first = load_config("synthetic_trx", SMALL)
    location = locate_data(first, progress=False)
    root = synthetic_root(first)
    assert location.video_root == root / "videos" and root.parent == fsvid_home / "synthetic"
    assert root.name.startswith("6c-2v-4f-16px-seed0-")
    before = snapshot(root)
    # same settings: used as they are, nothing rendered again
    assert locate_data(load_config("synthetic_trx", SMALL), progress=False) == location and snapshot(root) == before
    # other settings (a second job started while the first trains): another folder; the first one intact
    other = load_config("synthetic_trx", [*SMALL, "data.synthetic_frames=6"])
    other_location = locate_data(other, progress=False)
    assert other_location.video_root.parent != root and other_location.video_root.is_dir()
    assert snapshot(root) == before
    assert sorted(p.name for p in (fsvid_home / "synthetic").iterdir()) == sorted([root.name, synthetic_root(other).name])


def test_a_dataset_generated_in_the_old_default_folder_is_still_used(fsvid_home):  # noqa: F811
    from fsvid.engine.data import locate_data, synthetic_config

    config = load_config("synthetic_trx", SMALL)
    legacy = fsvid_home / "synthetic"
    generate_synthetic_dataset(legacy, synthetic_config(config), progress=False, workers=1)
    before = snapshot(legacy)
    assert locate_data(config, progress=False).video_root == legacy / "videos"
    assert snapshot(legacy) == before
    # other settings: a folder of their own beside the old dataset, which stays as it was
    other = locate_data(load_config("synthetic_trx", [*SMALL, "data.synthetic_seed=1"]), progress=False)
    assert other.video_root.parent.parent == legacy
    assert {k: v for k, v in snapshot(legacy).items() if k in before} == before


# ----------------------------------------------------------------------------- backbone weights


@pytest.mark.parametrize("command", ["train", "evaluate", "cache"])
def test_a_missing_backbone_weights_file_is_named_before_any_data_are_made(command, tmp_path, capsys, fsvid_home):  # noqa: F811
    from fsvid.cli import main

    data = tmp_path / "data"
    weights = tmp_path / "gone" / "resnet_backbone.pt"
    overrides = [*SMALL, f"data.root={data}", f"output_dir={tmp_path / 'run'}", f"model.backbone_weights={weights}"]
    extra = ["--untrained"] if command == "evaluate" else []
    assert main([command, "--config", "synthetic_trx", *overrides, *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert f"model.backbone_weights: {weights} does not exist" in err and "Traceback" not in err
    assert not data.exists() and not (tmp_path / "run").exists()  # found before generating or writing anything
    weights.parent.mkdir()
    assert main([command, "--config", "synthetic_trx", *overrides[:-1], f"model.backbone_weights={weights.parent}",
                 *extra, "-q"]) == 2
    assert f"model.backbone_weights: {weights.parent} is a folder, not a weights file" in capsys.readouterr().err


def test_named_weights_are_not_taken_for_files():
    from fsvid.backbones import weights_file

    assert weights_file("resnet50", "IMAGENET1K_V1") is None and weights_file("resnet50", "imagenet") is None
    assert weights_file("r3d_18", "KINETICS400_V1") is None and weights_file("small_cnn", None) is None
    assert weights_file("resnet50", "~/w.pth") == Path.home() / "w.pth"
    assert weights_file("small_cnn", "IMAGENET1K_V1") == Path("IMAGENET1K_V1")  # no named weights there


def test_a_trained_run_evaluates_after_its_starting_weights_moved(reference_run, tmp_path, fsvid_home):  # noqa: F811
    import shutil

    import torch

    from fsvid.engine.checkpoint import atomic_save, load_checkpoint
    from fsvid.engine.runs import load_trained_model

    folder = tmp_path / "run"
    shutil.copytree(reference_run, folder)
    checkpoint = load_checkpoint(folder / "best.pt")
    checkpoint["config"]["model"]["backbone_weights"] = str(tmp_path / "moved_away.pt")  # trained from a file since moved
    atomic_save(checkpoint, folder / "best.pt")
    model, config = load_trained_model(folder)
    assert config.model.backbone_weights == str(tmp_path / "moved_away.pt")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["model"].items())  # the checkpoint's weights


# ----------------------------------------------------------------------------- fsvid convert

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _released_trx(tmp_path: Path) -> tuple[Path, Path]:
    """A released TRX checkpoint (the fixture's state dict) and its sizes file."""
    import json

    import torch

    fixture = torch.load(SHARED / "fixtures" / "official" / "trx_public.pt", weights_only=True)
    released = tmp_path / "released.pth"
    torch.save({"model_state_dict": fixture["official_state_dict"]}, released)
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({k: fixture["config"][k] for k in ("L", "D", "Dout", "temp_set")}))
    return released, sizes


def test_convert_never_overwrites_a_file_unasked(tmp_path, capsys):
    from fsvid.cli import main

    sizes = tmp_path / "sizes.json"
    sizes.write_text('{"L": 8, "D": 16, "Dout": 16, "temp_set": [2]}')
    damaged = tmp_path / "released.pth"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    out = tmp_path / "head.pt"
    out.write_bytes(b"the user's own file")
    assert main(["convert", "trx", str(damaged), "--config", str(sizes), "--out", str(out)]) == 2
    assert f"{out} exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"the user's own file"
    # with --overwrite, a conversion that fails leaves the old file as it was
    assert main(["convert", "trx", str(damaged), "--config", str(sizes), "--out", str(out), "--overwrite"]) == 1
    assert "not a released trx checkpoint fsvid can read safely" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's own file" and sorted(p.name for p in tmp_path.iterdir()) == [
        "head.pt", "released.pth", "sizes.json"]  # no temporary file left either
    for bad, message in ((tmp_path, "is a folder"), (damaged, "would overwrite the released checkpoint"),
                         (tmp_path / "no_such_folder" / "h.pt", "does not exist")):
        assert main(["convert", "trx", str(damaged), "--config", str(sizes), "--out", str(bad), "--overwrite"]) == 2
        assert message in capsys.readouterr().err
    assert damaged.read_bytes() == b"PK\x03\x04 cut short"


@pytest.mark.skipif(not (SHARED / "fixtures" / "official" / "trx_public.pt").exists(), reason="needs ../shared fixtures")
def test_convert_replaces_its_outputs_with_overwrite(tmp_path, capsys):
    import torch

    from fsvid.cli import main

    released, sizes = _released_trx(tmp_path)
    out = tmp_path / "head.pt"
    out.write_bytes(b"old")
    assert main(["convert", "trx", str(released), "--config", str(sizes), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    written = torch.load(out, weights_only=True)
    assert isinstance(written, dict) and all(isinstance(v, torch.Tensor) for v in written.values())
    assert main(["convert", "trx", str(released), "--config", str(sizes), "--out", str(out)]) == 2  # now it exists
    assert f"{out} exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a careful user's sweep


def _copy_run(reference: Path, tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "run é 1"  # a space and a non-ASCII letter, as users name folders
    shutil.copytree(reference, folder)
    return folder


def _interrupt_backbone_after(monkeypatch, calls: int) -> None:
    """Ctrl-C arrives while the small CNN runs for the ``calls + 1``-th time."""
    from fsvid.backbones.small_cnn import SmallCNN

    original, seen = SmallCNN.forward_maps, []

    def forward_maps(self, clips):
        seen.append(1)
        if len(seen) > calls:
            raise KeyboardInterrupt
        return original(self, clips)

    monkeypatch.setattr(SmallCNN, "forward_maps", forward_maps)


def test_evaluate_takes_a_run_folders_checkpoint_file(reference_run, tmp_path, capsys, fsvid_home):  # noqa: F811
    from fsvid.cli import main

    folder = _copy_run(reference_run, tmp_path)
    assert main(["evaluate", str(folder / "last.pt"), "-q"]) == 0
    assert f"results: {folder / 'eval_test.json'}" in capsys.readouterr().out
    import json

    assert json.loads((folder / "eval_test.json").read_text())["meta"]["checkpoint"] == "last"
    other = tmp_path / "weights.pt"
    other.write_bytes((folder / "best.pt").read_bytes())
    assert main(["evaluate", str(other), "-q"]) == 1
    assert f"{other} is a file, not a run folder" in capsys.readouterr().err
    empty = folder / "best.pt"
    empty.write_bytes(b"")
    assert main(["evaluate", str(folder), "-q"]) == 1
    assert f"this is not a checkpoint fsvid can read safely: {empty} (an empty file)" in capsys.readouterr().err


def test_ctrl_c_during_evaluate_leaves_the_previous_results(reference_run, tmp_path, capsys, monkeypatch,
                                                            fsvid_home):  # noqa: F811
    from fsvid.cli import main

    folder = _copy_run(reference_run, tmp_path)
    assert main(["evaluate", str(folder), "-q"]) == 0
    before = {name: (folder / name).read_bytes() for name in ("eval_test.json", "eval_test_tasks.npy")}
    with monkeypatch.context() as patch:
        _interrupt_backbone_after(patch, 3)
        assert main(["evaluate", str(folder), "-q", "--tasks", "5"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_an_evaluation_stopped_between_its_two_files_is_not_read_as_complete(reference_run, tmp_path, capsys,
                                                                             monkeypatch, fsvid_home):  # noqa: F811
    import fsvid.engine.evaluate as evaluate
    from fsvid.cli import main

    folder = _copy_run(reference_run, tmp_path)
    assert main(["evaluate", str(folder), "-q"]) == 0
    old_summary = (folder / "eval_test.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # after eval_test_tasks.npy, before eval_test.json

    monkeypatch.setattr(evaluate, "atomic_write_text", interrupted)
    assert main(["evaluate", str(folder), "-q", "--tasks", "5"]) == 130
    assert (folder / "eval_test.json").read_bytes() == old_summary  # the old summary, now beside new accuracies
    capsys.readouterr()
    assert main(["compare", str(folder), str(folder)]) == 2  # 5 new accuracies under a summary of 6 tasks
    err = capsys.readouterr().err
    assert f"{folder / 'eval_test_tasks.npy'} hold a float64 array of shape (5,), expected 6" in err
    # the same number of tasks, other accuracies (e.g. of the other checkpoint): the recorded SHA-256 tells
    import numpy as np

    np.save(folder / "eval_test_tasks.npy", np.linspace(0, 1, 6))
    assert main(["compare", str(folder), str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'eval_test_tasks.npy'} are not those of eval_test.json" in err and "evaluate the run again" in err


def test_ctrl_c_during_cache_leaves_nothing_that_reads_as_complete(reference_run, tmp_path, capsys, monkeypatch,
                                                                   fsvid_home):  # noqa: F811
    import torch

    from fsvid.cli import main
    from fsvid.features import FeatureCache

    folder = _copy_run(reference_run, tmp_path)
    with monkeypatch.context() as patch:
        _interrupt_backbone_after(patch, 2)
        assert main(["cache", str(folder), "--splits", "test", "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    (cache_folder,) = (folder / "cache").iterdir()
    with pytest.raises((FileNotFoundError, ValueError)):
        FeatureCache(cache_folder)  # unfinished: refused, never read as a complete cache
    assert main(["cache", str(folder), "--splits", "test", "-q"]) == 0  # finished on the next call
    finished = FeatureCache(cache_folder)
    assert main(["cache", str(folder), "--splits", "test", "-q", "--out", str(tmp_path / "fresh")]) == 0
    (fresh,) = (tmp_path / "fresh").iterdir()
    assert torch.equal(finished.load_view(0), FeatureCache(fresh).load_view(0))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    capsys.readouterr()
    assert main(["cache", str(folder), "--out", str(empty), "-q"]) == 2
    assert f"--out {empty} is a file" in capsys.readouterr().err


def test_a_config_folder_and_a_file_given_as_output_folder_are_named(tmp_path, capsys):
    from fsvid.cli import main
    from fsvid.demo import main as demo_main

    assert main(["train", "--config", str(tmp_path)]) == 2
    assert f"config file {tmp_path} is a folder, not a YAML file" in capsys.readouterr().err
    file = tmp_path / "results.txt"
    file.write_text("mine")
    assert demo_main(["--output", str(file), "--quick"]) == 2
    assert f"--output {file} is a file" in capsys.readouterr().err and file.read_text() == "mine"


def test_synthetic_never_writes_into_another_datasets_folder(tmp_path, capsys):
    from fsvid.cli import main

    real = tmp_path / "ucf101"
    (real / "splits").mkdir(parents=True)
    (real / "splits" / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
    assert main(["synthetic", str(real), "--classes", "3", "--videos-per-class", "1", "--frames", "2",
                 "--size", "16", "--quiet"]) == 1
    assert f"{real} already holds splits/ but no synthetic dataset" in capsys.readouterr().err
    assert sorted(p.name for p in real.rglob("*")) == ["splits", "trainlist01.txt"]
    assert (real / "splits" / "trainlist01.txt").read_text() == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
    assert main(["synthetic", str(real / "splits" / "trainlist01.txt"), "--quiet"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_an_interrupted_synthetic_generation_is_redone(tmp_path, monkeypatch):
    import fsvid.data.synthetic.dataset as dataset

    config = SyntheticConfig(num_classes=3, videos_per_class=2, frames=2, size=16)
    real_write = dataset._write_mp4
    written = []

    def write_then_interrupt(path, clip, config):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, clip, config)

    monkeypatch.setattr(dataset, "_write_mp4", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_dataset(tmp_path, config, progress=False, workers=1)
    assert not (tmp_path / "dataset.json").exists() and (tmp_path / "videos").is_dir()
    monkeypatch.setattr(dataset, "_write_mp4", real_write)
    generate_synthetic_dataset(tmp_path, config, progress=False, workers=1)  # its own leftovers: redone, not refused
    assert (tmp_path / "dataset.json").is_file() and not (tmp_path / dataset.GENERATING).exists()
    assert len(list((tmp_path / "videos").rglob("*.mp4"))) == 6


def test_notebook_command_errors_name_the_file_without_a_traceback(tmp_path, capsys):
    from fsvid.cli import main
    from fsvid.notebooks import read_metrics

    assert main(["notebook", "run", "no_such_notebook"]) == 1
    err = capsys.readouterr().err
    assert "no notebook called 'no_such_notebook'" in err and "Traceback" not in err
    binary = tmp_path / "params.yaml"
    binary.write_bytes(b"seed: 1\n\x80\x81")
    assert main(["notebook", "run", "00_quickstart", "--parameters", str(binary)]) == 1
    assert f"parameter file {binary}, line 2: not UTF-8 text" in capsys.readouterr().err
    not_a_notebook = tmp_path / "x.ipynb"
    not_a_notebook.write_text("")
    assert main(["notebook", "clear", str(not_a_notebook)]) == 1
    assert f"{not_a_notebook} is not a notebook fsvid can read (NotJSONError" in capsys.readouterr().err
    metrics = tmp_path / "m.metrics.json"
    metrics.write_text('{"accuracy": 0.5')  # a kernel killed while writing
    with pytest.raises(ValueError, match=rf"the notebook's metrics file {metrics} is damaged"):
        read_metrics(metrics)
    assert read_metrics(tmp_path / "none.json") == {}


def test_a_results_csv_path_that_is_a_folder_is_named(tmp_path):
    from fsvid.experiments.results import read_csv

    with pytest.raises(ValueError, match=rf"{tmp_path} is a folder, not a sweep results CSV"):
        read_csv(tmp_path)


def test_a_cache_index_that_is_not_utf8_is_named(tmp_path):
    from fsvid.features import FeatureCache

    (tmp_path / "index.json").write_bytes(b'{"format": 1, "note": "\xff"}')
    with pytest.raises(ValueError, match=rf"{tmp_path / 'index.json'} is not valid JSON"):
        FeatureCache(tmp_path)


def test_the_printed_evaluate_command_quotes_a_folder_with_spaces(tiny_dataset, tmp_path, capsys, fsvid_home):  # noqa: F811
    import shlex

    from fsvid.cli import main
    from engine_helpers import TINY_RUN

    folder = tmp_path / "my runs" / "trx é"
    assert main(["train", "--config", "synthetic_trx", *TINY_RUN, f"data.root={tiny_dataset}", f"output_dir={folder}",
                 "train.tasks=2", "train.val_every=0", "--quiet"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("evaluate it with: "))
    assert shlex.split(line.removeprefix("evaluate it with: ")) == ["fsvid", "evaluate", str(folder)]
