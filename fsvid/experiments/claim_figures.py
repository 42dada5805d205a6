"""The claim runs drawn as the papers' tables and figures, with the protocol's intervals.

Each side of a claim (a configuration, :class:`~fsvid.experiments.claims.Side`) becomes one
row in the form of the sweep results CSV (:data:`fsvid.experiments.results.CSV_FIELDS`): its
accuracy is the mean over the protocol's seeds and shared test tasks, and its ``ci95`` the
half-width of the same crossed seeds x tasks interval the claims use
(:func:`~fsvid.experiments.claims.paired_seed_task_ci` of the side against zero), so the
error bars include the spread between training seeds, not only the test tasks. A side that
is not a variant of its sweep (lambda = 0.5, STRM with the released query-class classifier)
joins the sweep of its figure under its label. The rows are written to
``results/claims_accuracies.csv`` and drawn by :mod:`fsvid.experiments.paper_figures`, one
figure per paper table, as ``results/claims_<sweep>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fsvid.experiments.claims import Claim, Side, paired_seed_task_ci, reversal_sides
from fsvid.experiments.definitions import PlannedRun

#: The label under which a claim run appears in all its figures (``scale`` column).
SCALE = "claims"


def _task_accuracies(folder: Path, stem: str) -> np.ndarray | None:
    path = folder / f"{stem}_tasks.npy"
    return np.load(path, allow_pickle=False) if path.is_file() else None


def side_interval(rows: np.ndarray) -> tuple[float, float]:
    """Mean accuracy (%) of a (seeds, tasks) array of task accuracies in [0, 1], and the
    half-width of its 95% interval over seeds and tasks."""
    statistics = paired_seed_task_ci(rows, np.zeros_like(rows, dtype=np.float64))
    return statistics.a_accuracy, (statistics.ci_high - statistics.ci_low) / 2.0


def side_row(side: Side, sweep: str, runs: Sequence[PlannedRun], reversal: bool) -> dict[str, Any] | None:
    """The results-CSV row of ``side`` in ``sweep``'s figure from its runs (one per seed), or
    ``None`` while one is not evaluated."""
    tests = [_task_accuracies(run.run_dir, "eval_test") for run in runs]
    if any(t is None for t in tests):
        return None
    config = runs[0].config
    accuracy, ci95 = side_interval(np.stack(tests))
    row: dict[str, Any] = {
        "sweep": sweep, "variant": side.variant if not side.overrides else side.name, "scale": SCALE,
        "method": config.model.method, "dataset": config.data.dataset, "way": config.task.way,
        "shot": config.task.shot, "accuracy": round(accuracy, 3), "ci95": round(ci95, 3),
        "tasks": int(tests[0].size), "train_tasks": config.train.tasks, "status": "finished",
        "run_dir": " ".join(str(run.run_dir) for run in runs), "overrides": " ".join(side.overrides),
    }
    if reversal:
        reversed_ = [_task_accuracies(run.run_dir, "eval_reversal") for run in runs]
        if all(r is not None for r in reversed_):
            value, half = side_interval(np.stack(reversed_))
            row.update(reversal_accuracy=round(value, 3), reversal_ci95=round(half, 3), reversal_tasks=int(reversed_[0].size))
    return row


def figure_sweep(side: Side, claim: Claim) -> str:
    """The figure a side is drawn in: its sweep's, or for a side that adds overrides to a
    variant (lambda = 0.5 is STRM with another weight), the figure of the claim's other side."""
    if not side.overrides:
        return side.sweep
    other = claim.b if side is claim.a else claim.a
    return other.sweep


def twin_variants(runs: Mapping[tuple[Side, int], PlannedRun], seed: int,
                  budget: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """For each claim run (by configuration key), the other sweeps' variants with the same
    configuration at the protocol's ``budget`` overrides (STRM is also
    ``strm_components/STRM``): the same run belongs in each of those figures."""
    from fsvid.experiments.definitions import config_key, expand

    keys = {config_key(run.config) for (_, s), run in runs.items() if s == seed}
    rates = {run.config.model.method: run.config.train.lr for run in runs.values()}
    sweeps = {side.sweep for side, _ in runs}
    twins: dict[str, list[tuple[str, str]]] = {}
    for sweep in sorted(sweeps):
        for planned in expand(sweep):  # the variants of the synthetic scale
            method = planned.config.model.method
            if method not in rates:
                continue
            extra = (*budget, f"train.seed={seed}", f"train.lr={rates[method]}")
            key = config_key(expand(sweep, variants=[planned.variant], overrides=extra)[0].config)
            if key in keys:
                twins.setdefault(key, []).append((sweep, planned.variant))
    return twins


def side_rows(runs: Mapping[tuple[Side, int], PlannedRun], claims: Sequence[Claim], seeds: Sequence[int],
              budget: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (figure, configuration) of ``claims`` whose runs (``seeds``, trained with the
    ``budget`` overrides) are all evaluated: each side in its figure, and again under every other
    variant with its configuration."""
    from fsvid.experiments.definitions import config_key

    reversal = reversal_sides(claims)
    twins = twin_variants(runs, seeds[0], budget)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for claim in claims:
        for side in (claim.a, claim.b):
            side_runs = [runs[(side, seed)] for seed in seeds]
            row = side_row(side, figure_sweep(side, claim), side_runs, side in reversal)
            if row is None:
                continue
            rows.setdefault((row["sweep"], row["variant"]), row)
            for sweep, variant in twins.get(config_key(side_runs[0].config), []) if not side.overrides else []:
                rows.setdefault((sweep, variant), {**row, "sweep": sweep, "variant": variant})
    return list(rows.values())


def write_accuracies(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """``rows`` as a results CSV (the columns of :data:`fsvid.experiments.results.CSV_FIELDS`)."""
    from fsvid.engine.checkpoint import atomic_write_text
    from fsvid.experiments.results import csv_text

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, csv_text(rows))


def draw_claim_figures(rows: Sequence[Mapping[str, Any]], out: Path, dpi: int = 100) -> list[Path]:
    """One figure per paper table the rows cover, ``<out>/claims_<sweep>.png``."""
    from fsvid.experiments.drawing import pyplot
    from fsvid.experiments.paper_figures import FIGURES
    from fsvid.experiments.definitions import SWEEPS
    from fsvid.experiments.results import load_results

    plt = pyplot()
    parsed = load_results(list(rows))
    paths = []
    for name, sweep in SWEEPS.items():
        if any(r["sweep"] == name for r in parsed):
            path = Path(out) / f"claims_{name}.png"
            plt.close(FIGURES[sweep.figure](parsed, path, dpi=dpi))
            paths.append(path)
    return paths
