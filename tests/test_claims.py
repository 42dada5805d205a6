"""The claims protocol: the interval over seeds and tasks (coverage where the truth is known),
the verdict rule, the claim list against results/PROTOCOL.md, and the runs it plans."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import TINY_RUN, fsvid_home, tiny_dataset  # noqa: F401  (fixtures)
from fsvid.config import ConfigError
from fsvid.engine.evaluate import EvalResult
from fsvid.engine.metrics import mean_and_ci
from fsvid.experiments.claims import (
    CLAIM_FIELDS,
    CLAIMS,
    VERDICTS,
    ClaimStatistics,
    Side,
    claim_row,
    claims_csv_text,
    claims_markdown,
    read_claim_notes,
    paired_seed_task_ci,
    protocol_table,
    t_quantile_975,
    verdict,
)
from fsvid.experiments.reproduction import (
    SEEDS,
    TEST_TASKS,
    claim_statistics,
    plan_claim_runs,
    side_run,
)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706),
                                          (10, 2.2281), (20, 2.0860), (30, 2.0423), (float("inf"), 1.95996)])
def test_t_quantile_matches_the_tables(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_of_fractional_degrees_of_freedom_lies_between_its_neighbours():
    values = [t_quantile_975(df) for df in (2.0, 2.25, 2.5, 2.75, 3.0)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 5


def test_t_quantile_refuses_nonpositive_degrees_of_freedom():
    with pytest.raises(ValueError, match="degrees of freedom must be positive, got 0"):
        t_quantile_975(0)


def simulate(rng, seeds, tasks, mu, seed_sd, task_sd, noise_sd):
    """Two (seeds, tasks) accuracy arrays whose difference follows d = mu + a_s + b_t + e."""
    base = rng.uniform(0.4, 0.8, size=(1, tasks)) + rng.normal(0, 0.05, size=(seeds, 1))  # shared by A and B
    d = mu + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, task_sd, (1, tasks)) + rng.normal(0, noise_sd, (seeds, tasks))
    return base + d, base


def coverage(scenario, interval, simulations=200, seeds=3, tasks=400, mu=0.02):
    rng = np.random.default_rng(12345)
    hits = 0
    for _ in range(simulations):
        a, b = simulate(rng, seeds, tasks, mu, *scenario)
        low, high = interval(a, b)
        hits += low <= 100 * mu <= high
    return hits / simulations


def ours(a, b):
    statistics = paired_seed_task_ci(a, b)
    return statistics.ci_low, statistics.ci_high


def tasks_only(a, b):
    """The interval of one run's paired difference, with the seeds pooled: task variation only."""
    accuracy = mean_and_ci((a - b).mean(axis=0))
    return accuracy.mean - accuracy.ci95, accuracy.mean + accuracy.ci95


def seeds_only(a, b):
    """A t-interval over the seeds' mean differences: misses the shared tasks' variation."""
    by_seed = 100 * (a - b).mean(axis=1)
    half = t_quantile_975(len(by_seed) - 1) * by_seed.std(ddof=1) / np.sqrt(len(by_seed))
    return by_seed.mean() - half, by_seed.mean() + half


SEED_DOMINATED = (0.03, 0.01, 0.2)  # seed sd, task sd, noise sd (accuracy fractions)
TASK_DOMINATED = (0.001, 0.15, 0.05)
BALANCED = (0.006, 0.08, 0.2)


@pytest.mark.parametrize("scenario", [SEED_DOMINATED, TASK_DOMINATED, BALANCED], ids=["seeds", "tasks", "balanced"])
def test_interval_covers_the_true_difference_95_percent_of_the_time(scenario):
    # 200 simulations: the binomial standard error of a 95% coverage is 1.5 points
    assert 0.90 <= coverage(scenario, ours) <= 0.99


def test_an_interval_over_tasks_only_or_seeds_only_would_not_cover():
    """Both variance sources matter: dropping either one under-covers where it dominates."""
    assert coverage(SEED_DOMINATED, tasks_only) < 0.6
    assert coverage(TASK_DOMINATED, seeds_only) < 0.8
    assert coverage(SEED_DOMINATED, ours) > 0.9 and coverage(TASK_DOMINATED, ours) > 0.9


def test_interval_of_known_arrays():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 6, (3, 4)) / 5, rng.integers(0, 6, (3, 4)) / 5
    statistics = paired_seed_task_ci(a, b)
    d = a - b
    expected_variance = (d.mean(1).var(ddof=1) / 3 + d.mean(0).var(ddof=1) / 4
                         - ((d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()) ** 2).sum() / 6 / 12)
    assert statistics.difference == pytest.approx(100 * d.mean())
    assert statistics.a_accuracy == pytest.approx(100 * a.mean()) and statistics.b_accuracy == pytest.approx(100 * b.mean())
    half = (statistics.ci_high - statistics.ci_low) / 2
    assert expected_variance > 0
    assert half == pytest.approx(100 * t_quantile_975(statistics.df) * np.sqrt(expected_variance))
    assert (statistics.seeds, statistics.tasks) == (3, 4)


def test_interval_refuses_unpaired_or_too_small_inputs():
    with pytest.raises(ValueError, match=r"one shape, got \(3, 4\) and \(3, 5\)"):
        paired_seed_task_ci(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2 seeds and 2 tasks.*got 1 x 10"):
        paired_seed_task_ci(np.zeros((1, 10)), np.zeros((1, 10)))
    with pytest.raises(ValueError, match="NaN"):
        paired_seed_task_ci(np.full((2, 2), np.nan), np.zeros((2, 2)))


@pytest.mark.parametrize("low, high, expected", [(0.1, 2.0, "supported"), (-2.0, -0.1, "contradicted"),
                                                 (-0.1, 2.0, "inconclusive"), (0.0, 1.0, "inconclusive"),
                                                 (-1.0, 0.0, "inconclusive")])
def test_verdict_rule(low, high, expected):
    assert verdict(low, high) == expected


def test_verdict_refuses_a_reversed_interval():
    with pytest.raises(ValueError, match="low end above its high end"):
        verdict(1.0, -1.0)


# ----------------------------------------------------------------------------- the claim list


def test_protocol_lists_exactly_these_claims():
    text = (ROOT / "results" / "PROTOCOL.md").read_text(encoding="utf-8")
    assert protocol_table() in text
    table = text[text.index("| claim | comparison (A > B) |"):].split("\n\n")[0].splitlines()[2:]
    assert [line.split("|")[1].strip() for line in table] == [claim.name for claim in CLAIMS]
    assert f"among\n{len(CLAIMS)} claims" in text  # the multiplicity note counts them


def test_claims_cover_the_issue_list():
    comparisons = {claim.comparison for claim in CLAIMS}
    for required in ("TRX > Prototypes", "STRM > TRX", "PLE+TRM > TRM", "FLE+TRM > TRM", "PLE+FLE+TRM > PLE+TRM",
                     "PLE+FLE+TRM > FLE+TRM", "STRM > PLE+FLE+TRM", "STRM > Jnt-ST (1 l)", "Jnt-ST (2 l) > Jnt-ST (1 l)",
                     "SA/MLP > MLP/MLP", "SA/MLP > SA/SA", "lambda=0.1 > lambda=0.5", "{2} > {1}", "20% > TRM (100%)",
                     "STRM K=1 > TRX K=1", "MASTAF > No-Global", "MASTAF > NoML-Mean", "MASTAF > NoRes",
                     "fused > self-only", "fused > cross-only", "fused > neighbour",
                     "STRM (qc trained) > STRM (qc as released)"):
        assert required in comparisons
    assert [c.evaluation for c in CLAIMS if c.name == "trx_beats_prototypes_reversed"] == ["reversal"]
    assert len({claim.name for claim in CLAIMS}) == len(CLAIMS)


def test_published_numbers_come_from_published_py():
    by_name = {claim.name: claim for claim in CLAIMS}
    strm_trx = by_name["strm_beats_trx"]
    assert (strm_trx.published(strm_trx.a), strm_trx.published(strm_trx.b)) == (68.1, 64.6)
    tuples = by_name["strm_20pc_beats_trm"]
    assert (tuples.published(tuples.a), tuples.published(tuples.b)) == (65.4, 62.1)
    no_global = by_name["mastaf_beats_no_global"]
    assert (no_global.published(no_global.a), no_global.published(no_global.b)) == (90.6, 89.4)
    assert by_name["fused_beats_self"].published(by_name["fused_beats_self"].a) is None
    reversed_pairs = by_name["trx_beats_prototypes_reversed"]
    assert reversed_pairs.published(reversed_pairs.a) is None  # 64.6 is TRX's 5-way number, not a reversal one


# ----------------------------------------------------------------------------- planned runs


LEARNING_RATES = {"prototype": 0.001, "trx": 0.002, "strm": 0.0005, "mastaf": 0.001}


def test_plan_shares_identical_configurations_and_varies_the_seed(tmp_path):
    runs = plan_claim_runs(tmp_path, LEARNING_RATES)
    distinct = {(run.key, run.run_dir) for run in runs.values()}
    assert len({key for key, _ in distinct}) == len(distinct)  # one folder per configuration
    assert len(distinct) == 24 * len(SEEDS)  # 24 configurations (STRM, TRM, TRX shared between claims)
    by_label = {(side.sweep, side.variant, side.overrides, seed): run for (side, seed), run in runs.items()}
    strm = [by_label[(s, "STRM", (), 0)] for s in ("strm_table1", "strm_joint")]
    assert strm[0].run_dir == strm[1].run_dir
    assert by_label[("strm_lambda", "lambda=0.1", (), 0)].run_dir == strm[0].run_dir
    assert by_label[("strm_mechanisms", "SA/MLP", (), 0)].run_dir == strm[0].run_dir
    assert by_label[("strm_cardinalities", "{2}", (), 0)].run_dir == strm[0].run_dir
    seeds = [by_label[("strm_table1", "STRM", (), seed)] for seed in SEEDS]
    assert [run.config.train.seed for run in seeds] == list(SEEDS)
    assert len({run.run_dir for run in seeds}) == len(SEEDS)
    assert {run.config.eval.tasks for run in runs.values()} == {TEST_TASKS}
    assert {run.config.eval.seed for run in runs.values()} == {strm[0].config.eval.seed}
    released = by_label[("strm_table1", "STRM", ("model.qc_mode=released",), 1)]
    assert released.config.model.qc_mode == "released" and released.run_dir != seeds[1].run_dir
    assert by_label[("mastaf_ablations", "MASTAF", (), 0)].config.train.lr == 0.001
    assert seeds[0].config.train.lr == 0.0005 and by_label[("strm_table1", "TRX", (), 0)].config.train.lr == 0.002


def test_side_overrides_may_not_restate_the_variant(tmp_path):
    with pytest.raises(ConfigError, match=r"overrides model.qc_weight, which variant strm_lambda/lambda=0.1 already sets"):
        side_run(Side("strm_lambda", "lambda=0.1", ("model.qc_weight=0.5",)), 0, tmp_path)


def test_plan_needs_a_learning_rate_per_family(tmp_path):
    with pytest.raises(KeyError, match="no learning rate for method family 'mastaf'"):
        plan_claim_runs(tmp_path, {k: v for k, v in LEARNING_RATES.items() if k != "mastaf"})


# ----------------------------------------------------------------------------- statistics of runs, rows


def fake_result(folder: Path, accuracies, fingerprint="abc") -> None:
    result = EvalResult(np.asarray(accuracies, dtype=np.float64), mean_and_ci(accuracies), ["x"], np.zeros((1, 1), int),
                        {"split": "test", "seed": 1, "tasks": len(accuracies), "fingerprint": fingerprint})
    result.save(folder, "eval_test")


def test_claim_statistics_from_run_folders(tmp_path):
    claim = CLAIMS[0]
    runs = plan_claim_runs(tmp_path, LEARNING_RATES, claims=[claim], seeds=(0, 1))
    assert claim_statistics(claim, runs, seeds=(0, 1)) is None  # nothing evaluated yet
    rng = np.random.default_rng(0)
    arrays = {}
    for (side, seed), run in runs.items():
        run.run_dir.mkdir(parents=True)
        arrays[(side, seed)] = rng.integers(0, 6, 50) / 5
        fake_result(run.run_dir, arrays[(side, seed)])
    statistics = claim_statistics(claim, runs, seeds=(0, 1))
    a = np.stack([arrays[(claim.a, s)] for s in (0, 1)])
    b = np.stack([arrays[(claim.b, s)] for s in (0, 1)])
    assert statistics == paired_seed_task_ci(a, b)
    fake_result(runs[(claim.b, 1)].run_dir, arrays[(claim.b, 1)], fingerprint="other")
    with pytest.raises(ValueError, match="trx_beats_prototypes: its runs were evaluated on 2 different task lists"):
        claim_statistics(claim, runs, seeds=(0, 1))


def test_rows_csv_and_markdown():
    statistics = ClaimStatistics(70.0, 65.0, 5.0, 1.5, 8.5, 3, 10000, 2.1)
    rows = [claim_row(CLAIMS[2], statistics), claim_row(CLAIMS[3], None)]
    assert rows[0]["verdict"] == "supported" and rows[0]["published_a"] == "68.1" and rows[0]["ci_low"] == 1.5
    assert rows[1]["verdict"] == "not run" and rows[1]["difference"] == ""
    lines = claims_csv_text(rows).splitlines()
    assert lines[0] == ",".join(CLAIM_FIELDS)
    assert lines[1].startswith("strm_beats_trx,STRM Table 1 (SSv2),STRM > TRX,68.1,64.6,3,10000,70.0,65.0,5.0,1.5,8.5,supported")
    markdown = claims_markdown(rows)
    assert "| supported | strm_beats_trx | STRM > TRX | 68.1 / 64.6 | 70.00 / 65.00 | +5.00 [+1.50, +8.50] | 3 x 10000 |" in markdown
    assert "| not run | ple_helps_trm |" in markdown
    assert "What may explain" not in markdown  # nothing contradicted or inconclusive
    json.dumps(rows)  # plain values only


def test_claims_markdown_gives_each_unsupported_claim_its_note():
    rows = [claim_row(CLAIMS[2], ClaimStatistics(70.0, 65.0, 5.0, 1.5, 8.5, 3, 10000, 2.1)),
            claim_row(CLAIMS[3], ClaimStatistics(60.0, 61.0, -1.0, -3.0, 1.0, 3, 10000, 2.0)),
            claim_row(CLAIMS[4], ClaimStatistics(60.0, 66.0, -6.0, -9.0, -3.0, 3, 10000, 2.0))]
    notes = read_claim_notes("intro, ignored\n## ple_helps_trm\nPLE has 4 patches here.\n\nA second line.\n"
                             "## unrelated\nnot used\n")
    assert notes["ple_helps_trm"] == "PLE has 4 patches here.\n\nA second line." and "intro" not in str(notes)
    markdown = claims_markdown(rows, notes)
    assert "### ple_helps_trm (inconclusive): PLE+TRM > TRM\n\nPLE has 4 patches here.\n\nA second line." in markdown
    assert "### fle_helps_trm (contradicted): FLE+TRM > TRM\n\n(no note yet" in markdown
    assert "### strm_beats_trx" not in markdown and "not used" not in markdown


# ----------------------------------------------------------------------------- a real tiny protocol


def test_real_tiny_protocol_tunes_trains_evaluates_and_resumes(tiny_dataset, fsvid_home, tmp_path, monkeypatch):  # noqa: F811
    """The whole protocol at toy size (2 claims, 2 seeds, 4 tasks): learning rates from validation
    tasks, each side trained per seed, tested from its cache (also on reversed pairs), claims.csv;
    then run again, nothing is trained."""
    import torch

    import fsvid.engine as engine
    from fsvid.experiments import reproduction

    tiny = [o for o in TINY_RUN if not o.startswith(("name=", "model.method=", "model.cardinalities=", "task."))]
    budget = (*tiny, f"data.root={tiny_dataset}", "model.patch_grid=2", "train.tasks=4", "eval.tasks=4",
              "train.val_every=0", "data.memory_mb=0", "task.way=3", "task.query=1", "task.test_query=1")
    monkeypatch.setattr(reproduction, "PROTOCOL_BUDGET", budget)
    monkeypatch.setattr(reproduction, "TEST_TASKS", 4)
    monkeypatch.setattr(reproduction, "REVERSAL_TASKS_PER_PAIR", 1)
    monkeypatch.setattr(reproduction, "SEEDS", (0, 1))
    monkeypatch.setattr(reproduction, "LR_CANDIDATES", (0.001, 0.01))
    monkeypatch.setattr(reproduction, "TUNING_VAL_TASKS", 3)
    monkeypatch.setattr(reproduction, "FAMILY_REPRESENTATIVES",
                        {k: reproduction.FAMILY_REPRESENTATIVES[k] for k in ("prototype", "trx")})
    claims = [c for c in CLAIMS if c.name in ("trx_beats_prototypes", "trx_beats_prototypes_reversed")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        written = reproduction.run_protocol(tmp_path / "runs", tmp_path / "results", log=lambda *a: None, claims=claims,
                                            jobs=2)  # two worker processes, as the protocol runs
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in written] == ["claims.csv", "claims.md", "claims_accuracies.csv", "claims_strm_table1.png"]
    hyper = json.loads((tmp_path / "results" / "hyperparameters.json").read_text())
    assert set(hyper["families"]) == {"prototype", "trx"} and hyper["validation_tasks"] == 3
    for entry in hyper["families"].values():
        assert entry["lr"] in (0.001, 0.01) and set(entry["validation_accuracy"]) == {"0.001", "0.01"}
    with (tmp_path / "results" / "claims.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CLAIM_FIELDS
        test_row, reversal_row = list(reader)
    assert test_row["seeds"] == "2" and test_row["test_tasks"] == "4" and test_row["verdict"] in VERDICTS
    assert reversal_row["verdict"] in VERDICTS and int(reversal_row["test_tasks"]) >= 1
    runs = reproduction.plan_claim_runs(tmp_path / "runs", reproduction.read_learning_rates(
        tmp_path / "results" / "hyperparameters.json"), claims)
    for (side, seed), run in runs.items():
        assert run.config.train.seed == seed and (run.run_dir / "eval_test_tasks.npy").is_file()
        assert json.loads((run.run_dir / "eval_test.json").read_text())["meta"]["cache"].endswith("cache")
        assert (run.run_dir / "eval_reversal_tasks.npy").is_file()
    before = (tmp_path / "results" / "claims.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained or evaluated again")

    monkeypatch.setattr(engine, "train", no_training)
    monkeypatch.setattr(engine, "evaluate_run", no_training)
    reproduction.run_protocol(tmp_path / "runs", tmp_path / "results", log=lambda *a: None, claims=claims, jobs=1)
    assert (tmp_path / "results" / "claims.csv").read_text() == before


def test_cli_reproduce_and_claims_run_the_protocol(tmp_path, monkeypatch, capsys, fsvid_home):  # noqa: F811
    from fsvid.experiments import cli, reproduction

    calls = []

    def fake_protocol(root, results, progress=False, tune_only=False, jobs=2):
        calls.append((root, results, tune_only, jobs))
        return [results / "claims.csv"]

    monkeypatch.setattr(reproduction, "run_protocol", fake_protocol)
    assert cli.main(["reproduce", "--results", str(tmp_path)]) == 0
    assert cli.main(["claims", "--tune-only", "--jobs", "1", "--output", str(tmp_path / "runs")]) == 0
    assert calls == [(fsvid_home / "sweeps" / "claims", tmp_path, False, 2), (tmp_path / "runs", Path("results"), True, 1)]
    assert str(tmp_path / "claims.csv") in capsys.readouterr().out


# ----------------------------------------------------------------------------- the committed results


def test_committed_claims_file_holds_the_protocols_claims_at_full_power():
    """results/claims.csv: every claim of the protocol, in order, each with >= 3 seeds and
    >= 10,000 shared test tasks, and the verdict its interval gives."""
    with (ROOT / "results" / "claims.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CLAIM_FIELDS
        rows = list(reader)
    assert [row["claim"] for row in rows] == [claim.name for claim in CLAIMS]
    for row, claim in zip(rows, CLAIMS):
        assert row["comparison"] == claim.comparison and row["paper"] == claim.paper
        assert int(row["seeds"]) >= 3 and int(row["test_tasks"]) >= 10_000
        low, high, difference = float(row["ci_low"]), float(row["ci_high"]), float(row["difference"])
        assert low <= difference <= high
        assert difference == pytest.approx(float(row["a_accuracy"]) - float(row["b_accuracy"]), abs=0.02)
        assert row["verdict"] == verdict(low, high)
    markdown = (ROOT / "results" / "claims.md").read_text(encoding="utf-8")
    for row in rows:
        if row["verdict"] in ("contradicted", "inconclusive"):
            assert f"### {row['claim']} ({row['verdict']})" in markdown
    assert "(no note yet" not in markdown  # every claim not supported has its paragraph
    hyper = json.loads((ROOT / "results" / "hyperparameters.json").read_text(encoding="utf-8"))
    assert set(hyper["families"]) == {"prototype", "trx", "strm", "mastaf"}
