"""The notebook series: the committed notebooks' structure, ``fsvid.notebooks`` (parameters,
configurations, the papermill runner, clearing outputs), the parameter files, and every
notebook executed through papermill with non-default parameters.

nbval runs the notebooks at their defaults (``pytest --nbval-lax notebooks/``); the papermill
runs here use other parameters and check that they reached the notebook (its metrics JSON).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import yaml

from fsvid import notebooks as nbs
from fsvid.config import ConfigError, load_config, to_dict
from fsvid.engine.data import time_reversed_pairs

SERIES = [
    "00_quickstart",
    "01_data_and_splits",
    "02_backbones",
    "03_trm_tuples",
    "04_strm_enrichment",
    "05_mastaf_attention_fusion",
    "06_losses",
    "07_training",
    "08_ablations",
    "09_visualisations",
]
PAPER_FILES = {  # parameter file: (dataset, split id, method, shot, learning rate, training tasks)
    "trx_ssv2_full": ("ssv2_OTAM", "07", "trx", 5, 1e-3, 75_000),
    "strm_ssv2_full": ("ssv2_OTAM", "07", "strm", 5, 1e-3, 75_000),
    "strm_kinetics": ("kinetics_CMN", "03", "strm", 5, 1e-4, 10_000),
    "strm_hmdb": ("hmdb_ARN", "03", "strm", 5, 1e-4, 10_000),
    "strm_ucf": ("ucf_ARN", "03", "strm", 5, 1e-4, 10_000),
    "mastaf_hmdb": ("hmdb_ARN", "03", "mastaf", 1, 1e-2, 128_000),
    "mastaf_ucf": ("ucf_ARN", "03", "mastaf", 1, 1e-2, 128_000),
    "mastaf_ssv2_full": ("ssv2_OTAM", "07", "mastaf", 1, 1e-2, 128_000),
}
SHARED = Path(__file__).resolve().parents[2] / "shared"
#: The notebooks with ipywidgets viewers, hence an ``interactive`` parameter.
WIDGET_NOTEBOOKS = {"01_data_and_splits", "03_trm_tuples", "04_strm_enrichment", "05_mastaf_attention_fusion", "09_visualisations"}
#: Largest committed notebook and largest stored output (checked text only: a few lines each).
MAX_NOTEBOOK_BYTES, MAX_OUTPUT_CHARS = 60_000, 2_000


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# ----------------------------------------------------------------------------- the committed notebooks


def test_the_series_is_complete_and_in_reading_order() -> None:
    assert [p.stem for p in nbs.list_notebooks()] == SERIES


@pytest.mark.parametrize("name", SERIES)
def test_committed_notebook_structure(name: str) -> None:
    notebook = _read(nbs.find_notebook(name))
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"] == {"display_name": "Python 3 (fsvid)", "language": "python", "name": nbs.KERNEL_NAME}
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    parameters = nbs.notebook_parameters(name)
    assert parameters["metrics_path"] is None and "seed" in parameters
    sources = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    if name in WIDGET_NOTEBOOKS:  # widgets off by default, and the static branch says how to turn them on
        assert parameters["interactive"] is False
        assert sources.count("if interactive:") == sources.count("set interactive = True") >= 1
        assert "**Slider here.**" in "".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    else:
        assert "interactive" not in parameters and "interactive" not in sources, "no widget, no interactive parameter"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert any("fsvid" in c.source for c in code), "the notebook imports fsvid"
    assert any("$" in c.source for c in notebook.cells if c.cell_type == "markdown"), "prose with equations"
    assert any("save_metrics(" in c.source for c in code), "the notebook saves its metrics"
    checked = [c for c in code if nbs.CHECK_OUTPUT_MARK in c.source]
    assert checked, "at least one cell whose output nbval compares"
    for cell in code:
        if cell in checked:
            assert cell.outputs and cell.execution_count is not None, "a checked cell needs its stored output"
            for output in cell.outputs:  # text only: no images, no stderr, no errors
                assert output.output_type in ("stream", "execute_result", "display_data")
                assert output.get("name", "stdout") == "stdout"
                assert set(output.get("data", {})) <= {"text/plain"}
        else:
            assert cell.outputs == [] and cell.execution_count is None, "outputs are cleared except in checked cells"


def test_every_notebook_has_its_own_numbered_name() -> None:
    assert nbs.find_notebook("07") == nbs.find_notebook("training") == nbs.find_notebook("07_training")
    assert nbs.find_notebook(str(nbs.find_notebook("03"))).name == "03_trm_tuples.ipynb"
    with pytest.raises(FileNotFoundError, match="00_quickstart"):
        nbs.find_notebook("no_such_notebook")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nbs.find_notebook("missing.ipynb")


# ----------------------------------------------------------------------------- parameters and configs


def test_read_parameters_from_dicts_and_files(tmp_path: Path) -> None:
    assert nbs.read_parameters(None) == {}
    assert nbs.read_parameters({"a": 1}) == {"a": 1}
    path = tmp_path / "p.yaml"
    path.write_text("way: 2\noverrides: [task.shot=1]\n")
    assert nbs.read_parameters(path) == {"way": 2, "overrides": ["task.shot=1"]}
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        nbs.read_parameters(path)
    path.write_text("not an identifier: 1\n")
    with pytest.raises(ValueError, match="identifiers"):
        nbs.read_parameters(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nbs.read_parameters(tmp_path / "missing.yaml")
    # relative paths are also looked up in notebooks/
    assert nbs.read_parameters("params/strm_hmdb.yaml")["name"] == "strm_hmdb"


def test_notebook_config_uses_the_small_synthetic_set_unless_told_otherwise(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FSVID_HOME", str(tmp_path))
    small = nbs.notebook_config(overrides=["task.way=3"])
    assert small.data.root == str(tmp_path / "synthetic_small") and small.task.way == 3
    assert (small.data.synthetic_videos_per_class, small.data.synthetic_frames, small.data.synthetic_size) == (8, 16, 64)
    assert nbs.notebook_config(overrides=["data.synthetic_frames=24"]).data.synthetic_frames == 24  # overrides win
    assert nbs.notebook_config(small_data=False).data.root is None
    real = nbs.notebook_config(overrides=["data.dataset=hmdb_ARN"])
    assert real.data.root is None and real.data.synthetic_videos_per_class == load_config().data.synthetic_videos_per_class


def test_training_config_shortcuts() -> None:
    config = nbs.training_config(
        None, ["model.method=trx", "train.lr=0.5"], small_data=False,
        method="strm", lr=0.01, split_dir="/splits/01", data_root=None, way=3, name="x",
    )
    assert (config.model.method, config.train.lr, config.task.way, config.name) == ("strm", 0.01, 3, "x")
    assert config.data.split_dir == "/splits/01" and config.data.root is None
    assert nbs.training_config(None, ['data.split_id="07"']).data.split_id == "07"
    with pytest.raises(ValueError, match="unknown training parameters"):
        nbs.training_config(None, [], epochs=3)
    with pytest.raises(ConfigError):
        nbs.training_config(None, [], method="resnet")


@pytest.mark.parametrize("stem", sorted(PAPER_FILES))
def test_paper_parameter_files_give_the_papers_settings(stem: str) -> None:
    path = nbs.notebooks_dir() / "params" / f"{stem}.yaml"
    parameters = nbs.read_parameters(path)
    assert set(parameters) <= set(nbs.notebook_parameters("07_training")), "only 07_training parameters"
    shortcuts = {k: v for k, v in parameters.items() if k in nbs.TRAINING_SHORTCUTS}
    config = nbs.training_config(parameters.get("preset"), parameters["overrides"], parameters.get("small_data", True), **shortcuts)
    dataset, split_id, method, shot, lr, tasks = PAPER_FILES[stem]
    assert (config.data.dataset, config.data.split_id, config.model.method) == (dataset, split_id, method)
    assert (config.task.way, config.task.shot, config.train.lr, config.train.tasks) == (5, shot, lr, tasks)
    assert config.train.optimizer == "sgd" and config.train.momentum == 0.0 and config.data.crop == 224
    assert parameters["resume"] is True and config.name == stem
    if method == "mastaf":
        assert (config.data.frames, config.train.tasks_per_step, config.model.backbone) == (16, 64, "r3d50")
        assert config.model.global_task and config.model.global_weight == 0.5 and config.model.alpha == 1.0
    else:
        # training queries as the released scripts: TRX 5 (default, README), STRM 4, STRM Kinetics 5
        queries = 5 if stem in ("trx_ssv2_full", "strm_kinetics") else 4
        assert (config.data.frames, config.train.tasks_per_step, config.task.query) == (8, 16, queries)
        assert config.model.projection_dim == 1152 and config.model.backbone == "resnet50"
        assert config.model.cardinalities == ([2, 3] if method == "trx" else [2])
        assert config.train.loss_reduction == "sum"


#: What a paper parameter file may add to its preset: how the notebook runs, never a setting.
NOTEBOOK_ONLY = {"preset", "overrides", "small_data", "resume", "threads", "name"}


@pytest.mark.parametrize("stem", sorted(PAPER_FILES))
def test_paper_parameter_files_name_their_preset_and_resolve_to_it(stem: str) -> None:
    """A parameter file names its preset and restates none of its settings, so the notebook
    route and ``fsvid train <preset>`` run the same configuration (they drifted apart when the
    files restated every setting as overrides)."""
    parameters = nbs.read_parameters(nbs.notebooks_dir() / "params" / f"{stem}.yaml")
    assert parameters["preset"] == stem
    assert set(parameters) <= NOTEBOOK_ONLY, f"{stem}.yaml sets {sorted(set(parameters) - NOTEBOOK_ONLY)}"
    assert parameters["overrides"] == [] and parameters["name"] == stem
    shortcuts = {k: v for k, v in parameters.items() if k in nbs.TRAINING_SHORTCUTS}
    via_notebook = nbs.training_config(parameters["preset"], parameters["overrides"], parameters["small_data"], **shortcuts)
    assert to_dict(via_notebook) == to_dict(load_config(stem))


def test_ablation_parameter_file_names_a_valid_base_and_sweep() -> None:
    parameters = nbs.read_parameters(nbs.notebooks_dir() / "params" / "strm_ablations_ssv2.yaml")
    assert set(parameters) <= set(nbs.notebook_parameters("08_ablations"))
    base = nbs.read_parameters(parameters["base"])
    assert set(parameters["sweep"]) == {"TRM", "PLE+TRM", "FLE+TRM", "PLE+FLE+TRM", "STRM"}
    for changes in parameters["sweep"].values():
        config = nbs.training_config(base["preset"], [*base["overrides"], *changes], small_data=False)
        assert config.model.method == "strm" and config.name == "strm_ssv2_full"
    assert parameters["reference"] in parameters["sweep"]


def test_save_metrics_writes_plain_json(tmp_path: Path) -> None:
    metrics = {"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": (np.int64(3), Path("/x")), "d": math.nan}
    path = tmp_path / "m" / "metrics.json"
    plain = nbs.save_metrics(metrics, path)
    assert plain == {"a": 0.5, "b": [1, 2], "c": [3, "/x"], "d": None}
    assert json.loads(path.read_text()) == plain
    assert nbs.save_metrics({"x": 1}, None) == {"x": 1}


# ----------------------------------------------------------------------------- the runner


def test_run_notebook_refuses_unknown_parameters_and_output_inside_notebooks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no parameter epochs.*its parameters: .*train_tasks"):
        nbs.run_notebook("00_quickstart", {"epochs": 3}, tmp_path)
    with pytest.raises(ValueError, match="inside"):
        nbs.run_notebook("00_quickstart", {}, nbs.notebooks_dir() / "runs")
    assert not (nbs.notebooks_dir() / "runs").exists()


def test_clear_outputs_keeps_only_checked_text(tmp_path: Path) -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    checked = new_code_cell(f"{nbs.CHECK_OUTPUT_MARK}\nprint(1)", execution_count=3)
    checked.outputs = [
        new_output("stream", name="stdout", text="1\n"),
        new_output("stream", name="stderr", text="warning\n"),
        new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"}),
    ]
    plain = new_code_cell("print(2)", execution_count=4)
    plain.outputs = [new_output("stream", name="stdout", text="2\n")]
    path = tmp_path / "n.ipynb"
    nbformat.write(new_notebook(cells=[checked, plain], metadata={"papermill": {"x": 1}}), path)
    assert nbs.clear_outputs(path) is True
    notebook = _read(path)
    first, second = notebook.cells
    assert [o.output_type for o in first.outputs] == ["stream", "display_data"]
    assert first.outputs[0].text == "1\n" and set(first.outputs[1].data) == {"text/plain"}
    assert second.outputs == [] and second.execution_count is None and "papermill" not in notebook.metadata
    assert first.execution_count == 3  # nbval skips checked cells without one
    assert nbs.clear_outputs(path) is False  # idempotent
    assert nbs.clear_outputs(path, keep_checked=False) is True and _read(path).cells[0].outputs == []


def test_committed_notebooks_are_already_cleared(tmp_path: Path) -> None:
    for path in nbs.list_notebooks():
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        assert nbs.clear_outputs(copy) is False, f"{path.name}: run `python -m fsvid.notebooks clear {path}`"


@pytest.mark.parametrize("name", SERIES)
def test_committed_notebooks_are_small_sources(name: str) -> None:
    """A notebook saved after Run All (images, widget state: megabytes) must not be committed:
    only the checked cells' short text outputs stay (``make notebooks-clear``)."""
    path = nbs.find_notebook(name)
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{path.name} is {size:,} bytes: clear it with `make notebooks-clear`"
    notebook = _read(path)
    assert "widgets" not in notebook.metadata, f"{path.name} stores widget state: `make notebooks-clear`"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            assert nbs.CHECK_OUTPUT_MARK in cell.source, f"{path.name} cell {index}: output of an unchecked cell"
            text = json.dumps(output)
            assert len(text) < MAX_OUTPUT_CHARS, f"{path.name} cell {index}: a {len(text):,}-character output"


def test_check_kernel_names_the_missing_kernel_and_how_to_install_it() -> None:
    assert nbs.check_kernel() == nbs.KERNEL_NAME == "fsvid"
    with pytest.raises(RuntimeError, match=r"no Jupyter kernel called 'no-such-kernel'.*ipykernel install --sys-prefix"):
        nbs.check_kernel("no-such-kernel")
    with pytest.raises(RuntimeError, match="no-such-kernel"):
        nbs.run_notebook("00_quickstart", {}, kernel_name="no-such-kernel")


# ----------------------------------------------------------------------------- every notebook, papermill


TINY_TRAINING = [
    "model.method=prototype", "task.way=2", "task.shot=1", "task.query=1", "data.frames=2",
    "data.resize=32", "data.crop=32", "model.feature_dim=16", "model.cardinalities=[2]", "train.tasks=8", "train.tasks_per_step=4",
    "train.optimizer=adam", "train.val_every=4", "train.val_tasks=4", "train.checkpoint_every=4", "eval.tasks=10",
]


def _parameters(name: str, tmp_path: Path) -> dict:
    """Non-default parameters for each notebook, small enough to run in seconds; the notebooks
    with ipywidgets viewers run with ``interactive=True`` (widgets are built without a frontend)."""
    return {
        "00_quickstart": {"method": "prototype", "way": 2, "shot": 1, "frames": 2, "train_tasks": 0},
        "01_data_and_splits": {"frames": 4, "task_index": 3, "interactive": True, "splits_dir": str(SHARED / "splits") if (SHARED / "splits").is_dir() else None},
        "02_backbones": {"image_size": 32, "frames": 4},
        "03_trm_tuples": {"seq_len": 6, "cardinalities": [2], "way": 2, "queries_per_class": 2, "interactive": True},
        "04_strm_enrichment": {"backbone": None, "seq_len": 4, "dim": 16, "way": 2, "queries_per_class": 2,
                               "interactive": True},  # random features (the defaults, a frozen backbone, run under nbval)
        "05_mastaf_attention_fusion": {"backbone": None, "time": 1, "height": 2, "width": 2, "way": 2, "queries_per_class": 2, "n_global": 5,
                                       "interactive": True},
        "06_losses": {"way": 2, "shot": 1, "queries_per_class": 3, "frames": 2},
        "07_training": {"preset": None, "overrides": TINY_TRAINING, "lr": 0.01, "name": "t07", "output_dir": str(tmp_path / "run"),
                        "above_chance": None},  # 8 tasks learn nothing: no check
        "08_ablations": {
            "base_parameters": {"preset": None, "overrides": TINY_TRAINING[:-5] + ["train.val_every=0", "eval.tasks=10"]},
            "sweep": {"euclidean": [], "cosine": ["model.prototype_distance=cosine"]},
            "sweep_dir": str(tmp_path / "sweep"), "reversal_tasks": 2, "above_chance": None, "expect_better": [],
        },
        "09_visualisations": {"backbone": None, "train_tasks": 4, "frames": 4, "crop": 32, "task_index": 1,
                              "interactive": True},  # the small CNN (the default, a frozen backbone, runs under nbval)
    }[name]


def _check_metrics(name: str, metrics: dict, tmp_path: Path) -> None:
    """The metrics show that the non-default parameters were used."""
    if name == "00_quickstart":
        assert metrics["scores_shape"] == [2, 2] and metrics["method"] == "prototype" and metrics["train_tasks"] == 0
    elif name == "01_data_and_splits":
        assert metrics["support_shape"][1] == 4 and metrics["task_index"] == 3
        assert metrics["split_sizes"] == {"train": 224, "val": 64, "test": 96}
        assert metrics["split_lists_checked"] == (15 if (SHARED / "splits").is_dir() else 0)
    elif name == "02_backbones":
        assert metrics["shapes"]["resnet50"]["maps"] == [2, 2048, 4, 1, 1]
        assert metrics["shapes"]["vit_b_16"]["patches"] == [2, 4, 16, 768]
        assert metrics["cache_feature_shape"] == [4, 1280] and metrics["cache_videos"] == 96  # frozen EfficientNet-Lite0
    elif name == "03_trm_tuples":
        assert metrics["logits_shape"] == [4, 2] and metrics["attention_shapes"] == [[4, 2, 15, 2, 15]]  # shot 2
        assert metrics["trx_sees_order"] and metrics["prototypes_blind"]
    elif name == "04_strm_enrichment":
        assert metrics["H_shape"] == [2 * 2 + 2 * 2, 4, 16]  # (supports + queries, L, D)
        assert metrics["frames_moved_by_ple"] == [0] and metrics["frames_moved_by_fle"] == 4
    elif name == "05_mastaf_attention_fusion":
        assert metrics["positions"] == 4 and metrics["logits_shape"] == [4, 2]
        assert metrics["global_logits_shape"] == [4, 5, 1, 2, 2] and metrics["fused"]
    elif name == "06_losses":
        assert metrics["ce_sum"] == pytest.approx(6 * metrics["ce_mean"], rel=1e-5)
        assert all(metrics["task_loss_checks"].values())
    elif name == "07_training":
        assert (metrics["method"], metrics["way"], metrics["tasks"], metrics["test_tasks"]) == ("prototype", 2, 8, 10)
        assert Path(metrics["run_dir"]) == tmp_path / "run"
        assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["lr"] == 0.01
    elif name == "08_ablations":
        assert set(metrics["runs"]) == {"euclidean", "cosine"}
        assert all(run["test_tasks"] == 10 for run in metrics["runs"].values())
        pairs = len(time_reversed_pairs(load_config(Path(metrics["runs"]["cosine"]["run_dir"]) / "config.yaml")))
        assert pairs >= 1 and {n: r["tasks"] for n, r in metrics["reversal"].items()} == {"euclidean": 2 * pairs, "cosine": 2 * pairs}
        other = ({"euclidean", "cosine"} - {metrics["reference"]}).pop()
        assert set(metrics["paired"]) == {other} and set(metrics["paired"][other]) == {"test", "reversal"}
        assert metrics["paired"][other]["reversal"]["tasks"] == 2 * pairs
        assert (tmp_path / "sweep" / "cosine" / "07_training.ipynb").is_file()
    elif name == "09_visualisations":
        assert metrics["task_index"] == 1 and metrics["cross_attention_shape"] == [3, 3, 4, 2, 2]
        assert metrics["patch_attention_shape"][1:] == [4, 16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("name", SERIES)
def test_notebook_runs_with_other_parameters(name: str, tmp_path: Path) -> None:
    parameter_file = tmp_path / f"{name}_small.yaml"
    parameter_file.write_text(yaml.safe_dump(_parameters(name, tmp_path)))
    run = nbs.run_notebook(name, parameter_file, tmp_path / "out", timeout=600)
    assert run.notebook == tmp_path / "out" / f"{name}-{name}_small.ipynb" and run.notebook.is_file()
    assert (tmp_path / "out" / f"{name}-{name}_small.metrics.json").is_file()
    executed = _read(run.notebook)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    if name == "08_ablations":  # the child kernels' log lines ("running over TCP without encryption") stay out
        assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
        table = next(o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
        header, _, reference, other = table.splitlines()
        assert header.endswith(" (paired) |") and other.count("|") == header.count("|")  # the columns of the second run
        assert "| reversed pairs (%) |" in header and header.endswith(" | reversed pairs vs cosine (paired) |")  # yaml sorts the sweep: cosine first
        assert "(no validation)" in reference and "-1.0" not in table  # validation is off in this sweep
    if _parameters(name, tmp_path).get("interactive"):
        widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert widgets, "interactive=True displays a widget"
    _check_metrics(name, run.metrics, tmp_path)


def test_a_failed_run_leaves_the_previous_run_and_its_metrics_intact(tmp_path: Path) -> None:
    source = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": nbs.KERNEL_NAME, "display_name": "fsvid",
                                                               "language": "python"}})
    parameters = nbformat.v4.new_code_cell("fail = False\nmetrics_path = None")
    parameters.metadata["tags"] = ["parameters"]
    source.cells = [parameters, nbformat.v4.new_code_cell(
        "from fsvid.notebooks import save_metrics\nassert not fail, 'asked to fail'\nsave_metrics({'fail': fail}, metrics_path)")]
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(source, notebook)
    out = tmp_path / "runs"
    first = nbs.run_notebook(notebook, {}, out)
    assert first.metrics == {"fail": False} and first.parameters["metrics_path"] == str(out / "tiny.metrics.json")
    before = (first.notebook.read_bytes(), (out / "tiny.metrics.json").read_bytes())
    with pytest.raises(nbs.NotebookError, match=r"asked to fail.*tiny\.failed\.ipynb.*tiny\.ipynb of the previous run is untouched"):
        nbs.run_notebook(notebook, {"fail": True}, out)
    assert (first.notebook.read_bytes(), (out / "tiny.metrics.json").read_bytes()) == before
    assert (out / "tiny.failed.ipynb").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["tiny.failed.ipynb", "tiny.ipynb", "tiny.metrics.json"]  # no hidden leftovers
