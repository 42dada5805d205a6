"""Sweeps: definitions, expansion into runs, shared runs, skip-on-resume, the results CSV, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fsvid.config import ConfigError, to_dict
from fsvid.experiments import cli, running
from fsvid.experiments.definitions import SWEEPS, SYNTHETIC_REPRODUCTION, expand, plan, slug
from fsvid.experiments.published import PUBLISHED, PUBLISHED_TABLES, PublishedTable, index_tables, published
from fsvid.experiments.results import CSV_FIELDS, read_csv, write_rows
from fsvid.experiments.running import run_status, run_sweep

from engine_helpers import TINY_RUN, fsvid_home, tiny_dataset  # noqa: F401  (fixtures)


# ----------------------------------------------------------------------------- definitions


def test_every_published_number_names_a_variant_of_its_sweep():
    for sweep, datasets in PUBLISHED.items():
        names = {v.name for v in SWEEPS[sweep].variants}
        for dataset, table in datasets.items():
            assert set(table) <= names, (sweep, dataset, set(table) - names)


def test_published_numbers_match_methods_md():
    assert PUBLISHED["strm_components"]["ssv2_OTAM"] == {
        "TRM": 62.1, "PLE+TRM": 63.7, "FLE+TRM": 65.3, "PLE+FLE+TRM": 66.8, "STRM": 68.1
    }
    assert PUBLISHED["strm_cardinalities"]["kinetics_CMN"]["{2,3,4}"] == 86.1
    assert PUBLISHED["strm_cardinalities"]["ssv2_OTAM"]["{1}"] == 67.2
    assert PUBLISHED["strm_mechanisms"]["ssv2_OTAM"]["MLP/MLP"] == 65.0
    assert PUBLISHED["mastaf_ablations"]["ucf_ARN"]["NoRes"] == 88.9
    assert published("strm_joint", "ssv2_OTAM", "Jnt-ST (2 l)") == 65.8
    assert published("strm_joint", "synthetic", "Jnt-ST (2 l)") is None


def test_published_tables_name_their_source_and_are_not_given_twice():
    assert all(table.source and table.accuracies for table in PUBLISHED_TABLES)
    assert {(t.sweep, t.dataset) for t in PUBLISHED_TABLES} == {(s, d) for s, tables in PUBLISHED.items() for d in tables}
    twice = [PublishedTable("strm_joint", "ssv2_OTAM", "STRM Table 3", {"TRM": 62.1}),
             PublishedTable("strm_joint", "ssv2_OTAM", "another", {"TRM": 60.0})]
    with pytest.raises(ValueError, match="strm_joint.*ssv2_OTAM.*given twice: 'STRM Table 3' and 'another'"):
        index_tables(twice)


def test_slug_makes_folder_names():
    assert slug("{2,3}") == "2_3"
    assert slug("PLE+FLE+TRM") == "PLE_FLE_TRM"
    assert slug("SA/MLP") == "SA_MLP"
    assert slug("STRM K=10") == "STRM_K10"
    assert slug("lambda=0.05") == "lambda0.05"
    for sweep in SWEEPS.values():  # no two variants of a sweep share a folder
        assert len({slug(v.name) for v in sweep.variants}) == len(sweep.variants), sweep.name


# ----------------------------------------------------------------------------- expansion


def test_expand_cardinalities_at_synthetic_scale(tmp_path):
    runs = expand("strm_cardinalities", "synthetic", output=tmp_path)
    assert [r.variant for r in runs] == ["{1}", "{2}", "{3}", "{4}", "{2,3}", "{2,4}", "{3,4}", "{2,3,4}"]
    assert [r.config.model.cardinalities for r in runs] == [[1], [2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4]]
    for run in runs:
        assert run.config.model.method == "strm"
        assert run.config.data.dataset == "synthetic"
        assert run.config.train.tasks == 600 and run.config.eval.tasks == 300  # the synthetic budget
        assert run.run_dir == tmp_path / "strm_cardinalities" / slug(run.variant)
        assert Path(run.config.output_dir) == run.run_dir
        assert run.config.name == f"strm_cardinalities-{slug(run.variant)}"
        assert run.base == "synthetic_strm"


def test_expand_full_scale_uses_the_paper_presets(tmp_path):
    runs = {r.variant: r for r in expand("strm_components", "full", output=tmp_path)}
    trm, strm = runs["TRM"].config, runs["STRM"].config
    assert trm.data.dataset == "ssv2_OTAM" and trm.train.tasks == 75000 and trm.eval.tasks == 10000
    assert (trm.model.use_ple, trm.model.use_fle, trm.model.use_qc) == (False, False, False)
    assert (strm.model.use_ple, strm.model.use_fle, strm.model.use_qc) == (True, True, True)
    assert runs["FLE+TRM"].config.model.use_ple is False and runs["FLE+TRM"].config.model.use_fle is True
    # Table 1: each benchmark row has its own preset; the synthetic rows do not exist at full scale
    table1 = {r.variant: r.config for r in expand("strm_table1", "full", output=tmp_path)}
    assert "STRM" not in table1
    assert table1["STRM (HMDB)"].data.dataset == "hmdb_ARN" and table1["STRM (HMDB)"].train.lr == 1e-4
    assert table1["TRX (Kinetics)"].model.method == "trx" and table1["TRX (Kinetics)"].model.cardinalities == [2, 3]


def test_expand_base_variants_and_overrides(tmp_path):
    runs = expand("strm_cardinalities", "full", variants=["{2}", "{1}"], base="strm_kinetics",
                  overrides=["train.tasks=100"], output=tmp_path)
    assert [r.variant for r in runs] == ["{1}", "{2}"]  # the sweep's order
    assert all(r.config.data.dataset == "kinetics_CMN" and r.config.train.tasks == 100 for r in runs)
    shots = {r.variant: r.config for r in expand("strm_shots", "synthetic", variants=["STRM K=1", "TRX K=3"])}
    assert shots["STRM K=1"].task.shot == 1 and shots["STRM K=1"].task.train_shot == 1
    assert shots["TRX K=3"].task.shot == 3 and shots["TRX K=3"].model.method == "trx"
    with pytest.raises(KeyError, match="no variant 'K=7'"):
        expand("strm_shots", "synthetic", variants=["K=7"])
    with pytest.raises(KeyError, match="unknown sweep"):
        expand("strm_nothing")
    with pytest.raises(ConfigError, match="unknown base preset"):
        expand("strm_joint", base="no_such_preset")
    with pytest.raises(ValueError, match="scale must be one of"):
        expand("strm_joint", scale="huge")
    with pytest.raises(ConfigError, match="model.cardinalities"):  # an override the config refuses
        expand("strm_joint", overrides=["model.cardinalities=[9]"])


def test_every_synthetic_variant_builds_its_model(tmp_path):
    """Each synthetic variant's configuration builds, and the head switches follow the overrides."""
    from fsvid.models import build_model

    heads = {}
    for sweep in SWEEPS.values():
        for run in expand(sweep, "synthetic", output=tmp_path):
            torch.manual_seed(0)
            model = build_model(run.config, n_global=28)
            heads[run.label] = model.head
    trm = heads["strm_components/TRM"]
    assert trm.patch_enrichment is None and trm.frame_enrichment is None and trm.query_class is None
    assert type(heads["strm_mechanisms/MLP/SA"].patch_enrichment).__name__ == "MLPMixerEnrichment"
    assert type(heads["strm_mechanisms/MLP/SA"].frame_enrichment).__name__ == "SelfAttentionEnrichment"
    assert len(heads["strm_joint/Jnt-ST (2 l)"].joint_enrichment) == 2
    assert heads["strm_tuples/20%"].temporal_relation.cross_transformers[0].num_kept == round(0.2 * 28)
    assert heads["mastaf_ablations/No-Global"].global_classifier is None
    assert heads["mastaf_ablations/NoML-Mean"].kernel == "uniform"
    assert heads["mastaf_ablations/NoRes"].residual is False
    assert heads["mastaf_scores/Neighbor"].scores == "neighbor"
    assert heads["strm_lambda/lambda=0.4"].qc_test_weight == 0.4


def test_identical_runs_are_shared(tmp_path):
    runs = plan(SYNTHETIC_REPRODUCTION, output=tmp_path)
    by_label = {r.label: r for r in runs}
    owner = by_label["strm_table1/STRM"]
    for label in ("strm_components/STRM", "strm_cardinalities/{2}", "strm_mechanisms/SA/MLP", "strm_class_gain/STRM"):
        assert by_label[label].shared_with == "strm_table1/STRM"
        assert by_label[label].run_dir == owner.run_dir
    assert by_label["strm_mechanisms/TRM"].shared_with == "strm_components/TRM"
    assert by_label["strm_shots/STRM K=5"].shared_with == ""  # trained with 5 shots, not 2: another run
    assert owner.shared_with == "" and len({r.key for r in runs}) == len([r for r in runs if not r.shared_with])


# ----------------------------------------------------------------------------- running and resuming


def _fake_engine(monkeypatch, calls):
    """Replace training and evaluation by functions that write the files a real run writes."""
    import fsvid.engine as engine

    def fake_train(config, resume=True, progress=True):
        calls.append(("train", config.name))
        folder = Path(config.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(config)))
        (folder / "summary.json").write_text(json.dumps(
            {"status": "finished", "tasks": config.train.tasks, "seconds": 1.5, "best_val_accuracy": 40.0}))

    def fake_evaluate(run, tasks=None, split="test", progress=True, which=None, device=None, workers=None,
                      save=True, cache=None):
        calls.append(("evaluate", Path(run).name))
        (Path(run) / "eval_test.json").write_text(json.dumps(
            {"accuracy": 55.0, "ci95": 2.5, "tasks": tasks, "per_class_accuracy": {"a": 50.0}}))

    def fake_reversal(run_dir, tasks_per_pair, progress=False):
        calls.append(("reversal", Path(run_dir).name))
        (Path(run_dir) / "eval_reversal.json").write_text(json.dumps(
            {"accuracy": 70.0, "ci95": 4.0, "tasks": 5 * tasks_per_pair, "tasks_per_pair": tasks_per_pair}))

    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.setattr(engine, "evaluate_run", fake_evaluate)
    monkeypatch.setattr(running, "evaluate_reversal_run", fake_reversal)


def test_finished_runs_are_skipped_and_rows_replaced(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    _fake_engine(monkeypatch, calls)
    runs = plan({"strm_components": ["TRM", "STRM"], "strm_class_gain": None}, output=tmp_path)
    csv_path = tmp_path / "results.csv"
    rows = run_sweep(runs, csv_path, reversal_tasks=3, log=lambda *a: None)
    # TRM and STRM trained once each, although strm_class_gain lists them too
    assert [c for c in calls if c[0] == "train"] == [("train", "strm_components-TRM"), ("train", "strm_components-STRM")]
    assert len([c for c in calls if c[0] == "reversal"]) == 2
    assert [(r["sweep"], r["variant"], r["shared_with"]) for r in rows] == [
        ("strm_components", "TRM", ""), ("strm_components", "STRM", ""),
        ("strm_class_gain", "TRM", "strm_components/TRM"), ("strm_class_gain", "STRM", "strm_components/STRM"),
    ]
    written = read_csv(csv_path)
    assert list(written[0]) == list(CSV_FIELDS) and len(written) == 4
    assert written[0]["accuracy"] == "55.0" and written[0]["reversal_accuracy"] == "70.0"
    assert written[0]["status"] == "finished" and json.loads(written[0]["per_class_accuracy"]) == {"a": 50.0}
    assert json.loads(written[0]["config"])["model"]["use_ple"] is False
    assert written[0]["published"] == ""  # synthetic data: no published number in the row

    # again: everything is skipped, the CSV keeps one row per (sweep, variant, scale, base)
    calls.clear()
    assert all(run_status(r, 3) == "done" for r in runs)
    run_sweep(runs, csv_path, reversal_tasks=3, log=lambda *a: None)
    assert calls == []
    assert len(read_csv(csv_path)) == 4

    # more test tasks: evaluation again, no training; another reversal budget: reversal only
    more = plan({"strm_components": ["TRM"]}, overrides=["eval.tasks=400"], output=tmp_path)
    assert run_status(more[0], 3) == "evaluate"
    run_sweep(more, csv_path, reversal_tasks=3, log=lambda *a: None)
    assert calls == [("evaluate", "TRM")]
    calls.clear()
    run_sweep(more, csv_path, reversal_tasks=4, log=lambda *a: None)
    assert calls == [("reversal", "TRM")]
    assert len(read_csv(csv_path)) == 4 and read_csv(csv_path)[0]["variant"] == "TRM"


def test_a_folder_of_another_configuration_is_refused(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    _fake_engine(monkeypatch, calls)
    run_sweep(plan({"strm_joint": ["TRM"]}, output=tmp_path), None, reversal_tasks=0, log=lambda *a: None)
    changed = plan({"strm_joint": ["TRM"]}, overrides=["model.projection_dim=64"], output=tmp_path)
    with pytest.raises(ConfigError, match="another configuration.*projection_dim"):
        run_sweep(changed, None, reversal_tasks=0, log=lambda *a: None)


def test_a_failing_run_does_not_stop_the_sweep(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    _fake_engine(monkeypatch, calls)
    import fsvid.engine as engine

    real_train = engine.train

    def flaky(config, resume=True, progress=True):
        if config.name.endswith("PLE_TRM"):
            raise RuntimeError("out of memory")
        return real_train(config, resume, progress)

    monkeypatch.setattr(engine, "train", flaky)
    rows = run_sweep(plan({"strm_components": ["TRM", "PLE+TRM", "STRM"]}, output=tmp_path), tmp_path / "r.csv",
                     reversal_tasks=0, log=lambda *a: None)
    assert [r["status"][:6] for r in rows] == ["finish", "failed", "finish"]
    assert "out of memory" in rows[1]["status"] and rows[1]["accuracy"] == ""


def test_write_rows_merges_by_key(tmp_path):
    path = tmp_path / "results.csv"
    base = {"sweep": "s", "scale": "synthetic", "base": "p", "accuracy": 1.0}
    write_rows(path, [{**base, "variant": "a"}, {**base, "variant": "b"}])
    write_rows(path, [{**base, "variant": "a", "accuracy": 2.0}, {**base, "variant": "c"}])
    rows = read_csv(path)
    assert [(r["variant"], r["accuracy"]) for r in rows] == [("a", "2.0"), ("b", "1.0"), ("c", "1.0")]
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not a sweep results CSV"):
        read_csv(other)


def test_real_tiny_sweep_trains_evaluates_and_resumes(tiny_dataset, fsvid_home, tmp_path, monkeypatch):  # noqa: F811
    """Two real runs (TRM and STRM) on the tiny dataset: trained, tested, reversal-tested; then skipped."""
    tiny = [o for o in TINY_RUN if not o.startswith(("name=", "model.method=", "model.cardinalities="))]
    overrides = [*tiny, f"data.root={tiny_dataset}", "model.patch_grid=2", "train.tasks=4", "eval.tasks=4",
                 "train.val_every=0", "data.memory_mb=0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = plan({"strm_components": ["TRM", "STRM"]}, overrides=overrides, output=tmp_path / "sweeps")
        rows = run_sweep(runs, tmp_path / "results.csv", reversal_tasks=1, log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    for row, run in zip(rows, runs):
        assert row["status"] == "finished" and row["tasks"] == 4 and 0.0 <= row["accuracy"] <= 100.0
        assert (run.run_dir / "eval_test.json").is_file() and (run.run_dir / "summary.json").is_file()
        reversal = json.loads((run.run_dir / "eval_reversal.json").read_text())
        assert reversal["tasks_per_pair"] == 1 and reversal["tasks"] == row["reversal_tasks"] >= 1
    # STRM minus TRM on the same test tasks (the components sweep's reference is TRM)
    assert rows[1]["reference"] == "TRM"
    assert rows[1]["paired_difference"] == pytest.approx(rows[1]["accuracy"] - rows[0]["accuracy"], abs=1e-3)
    assert rows[0]["paired_difference"] == 0.0 and rows[0]["paired_ci95"] == 0.0
    # the analysis figures draw from these trained runs
    from fsvid.experiments.analysis import draw_analysis

    torch.set_num_threads(1)
    try:
        paths = draw_analysis(runs[1].run_dir, runs[0].run_dir, None, tmp_path / "figures", dpi=40)
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in paths] == ["analysis_activations.png", "analysis_tuple_matches.png", "analysis_projection.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    import fsvid.engine as engine

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(engine, "train", no_training)
    monkeypatch.setattr(engine, "evaluate_run", no_training)
    again = run_sweep(plan({"strm_components": ["TRM", "STRM"]}, overrides=overrides, output=tmp_path / "sweeps"),
                      tmp_path / "results.csv", reversal_tasks=1, log=lambda *a: None)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


# ----------------------------------------------------------------------------- command line


def test_cli_list_show_and_errors(tmp_path, capsys, fsvid_home):  # noqa: F811
    assert cli.main(["list", "--scale", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SWEEPS) and "PLE+FLE+TRM" in out and "STRM (HMDB)" not in out
    assert cli.main(["show", "strm_joint", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "strm_joint/Jnt-ST (1 l)" in out and "new" in out and "model.joint_layers=1" in out
    assert cli.main(["run", "strm_joint", "--variants", "nope", "--output", str(tmp_path)]) == 2
    assert "no variant 'nope'" in capsys.readouterr().err
    assert cli.main(["show", "strm_joint", "train.lr"]) == 2
    assert "key=value" in capsys.readouterr().err
