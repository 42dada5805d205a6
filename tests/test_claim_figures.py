"""The claim runs as the papers' figures: per-side accuracies with the seeds x tasks interval."""

from pathlib import Path

import numpy as np
import pytest

from fsvid.experiments.claim_figures import draw_claim_figures, side_interval, side_rows, write_accuracies
from fsvid.experiments.claims import CLAIMS, paired_seed_task_ci
from fsvid.experiments.reproduction import PROTOCOL_BUDGET, SEEDS, plan_claim_runs
from fsvid.experiments.results import load_results

LEARNING_RATES = {"prototype": 0.001, "trx": 0.001, "strm": 0.001, "mastaf": 0.001}


def _fake_evaluations(runs, tasks: int = 50) -> dict:
    """Per-task accuracies (0/1) written where the runner writes them; a level per run folder."""
    rng = np.random.default_rng(0)
    written = {}
    for run in {run.run_dir: run for run in runs.values()}.values():
        level = rng.uniform(0.3, 0.9)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        accuracies = (rng.random(tasks) < level).astype(np.float64)
        np.save(run.run_dir / "eval_test_tasks.npy", accuracies)
        np.save(run.run_dir / "eval_reversal_tasks.npy", accuracies[::-1].copy())
        written[run.run_dir] = accuracies
    return written


def test_side_interval_is_the_claims_interval_against_zero():
    rng = np.random.default_rng(1)
    rows = (rng.random((3, 400)) < np.array([[0.5], [0.6], [0.7]])).astype(float)  # seeds far apart
    mean, half = side_interval(rows)
    statistics = paired_seed_task_ci(rows, np.zeros_like(rows))
    assert mean == pytest.approx(100 * rows.mean())
    assert half == pytest.approx((statistics.ci_high - statistics.ci_low) / 2)
    tasks_only = 1.96 * 100 * rows.mean(0).std(ddof=1) / np.sqrt(400)
    assert half > 2 * tasks_only  # the seeds' spread is in the error bar


def test_side_rows_cover_every_side_once_and_read_each_seeds_tasks(tmp_path: Path):
    runs = plan_claim_runs(tmp_path, LEARNING_RATES)
    written = _fake_evaluations(runs)
    rows = side_rows(runs, CLAIMS, SEEDS, PROTOCOL_BUDGET)
    names = [(r["sweep"], r["variant"]) for r in rows]
    assert len(names) == len(set(names))
    assert ("strm_lambda", "lambda=0.5") in names  # an override side joins the figure of the claim's other side
    assert ("strm_table1", "STRM (qc as released)") in names
    assert ("strm_components", "STRM") in names  # the same configuration as strm_table1/STRM: in both figures
    components = {r["variant"]: r for r in rows if r["sweep"] == "strm_components"}
    table1 = next(r for r in rows if (r["sweep"], r["variant"]) == ("strm_table1", "STRM"))
    assert components["STRM"]["accuracy"] == table1["accuracy"] and components["STRM"]["run_dir"] == table1["run_dir"]
    trx = next(r for r in rows if (r["sweep"], r["variant"]) == ("strm_table1", "TRX"))
    stacked = np.stack([written[runs[(CLAIMS[0].a, seed)].run_dir] for seed in SEEDS])
    assert trx["accuracy"] == pytest.approx(100 * stacked.mean(), abs=1e-3) and trx["tasks"] == 50
    assert trx["reversal_tasks"] == 50  # TRX is a side of the reversed-pairs claim
    assert next(r for r in rows if r["variant"] == "STRM" and r["sweep"] == "strm_table1").get("reversal_tasks") is None


def test_a_side_with_a_missing_seed_has_no_row(tmp_path: Path):
    runs = plan_claim_runs(tmp_path, LEARNING_RATES)
    _fake_evaluations(runs)
    (runs[(CLAIMS[0].b, SEEDS[-1])].run_dir / "eval_test_tasks.npy").unlink()
    assert ("strm_table1", "Prototypes") not in [(r["sweep"], r["variant"]) for r in side_rows(runs, CLAIMS, SEEDS, PROTOCOL_BUDGET)]


def test_claim_figures_one_per_paper_table_from_the_written_csv(tmp_path: Path):
    runs = plan_claim_runs(tmp_path / "runs", LEARNING_RATES)
    _fake_evaluations(runs)
    rows = side_rows(runs, CLAIMS, SEEDS, PROTOCOL_BUDGET)
    csv_path = write_accuracies(rows, tmp_path / "results" / "claims_accuracies.csv")
    again = load_results(csv_path)
    assert [(r["sweep"], r["variant"], r["accuracy"]) for r in again] == [(r["sweep"], r["variant"], r["accuracy"]) for r in rows]
    paths = draw_claim_figures(again, tmp_path / "results")
    expected = {"strm_table1", "strm_components", "strm_joint", "strm_mechanisms", "strm_lambda", "strm_cardinalities",
                "strm_tuples", "strm_shots", "mastaf_ablations", "mastaf_scores"}
    assert {p.name[len("claims_"):-len(".png")] for p in paths} == expected
    assert all(p.stat().st_size > 5000 for p in paths)
