"""Running planned sweep runs: what is done, training and evaluating the rest, the CSV rows.

``run_sweep`` trains and evaluates every planned run that is not finished yet (a run folder
with a finished ``summary.json`` and its ``eval_test.json`` is skipped; an interrupted run
resumes from its ``last.pt``), runs identical configurations once even when several sweeps
list them, and writes one row per planned run into the results CSV
(:mod:`fsvid.experiments.results`) as soon as it is done, then the paired differences to each
sweep's reference variant.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fsvid.config import ConfigError, RunConfig, load_config, to_dict
from fsvid.experiments.definitions import SWEEPS, PlannedRun, share_identical
from fsvid.experiments.published import published
from fsvid.experiments.results import write_rows

#: Time-reversal tasks per reversed class pair of the synthetic test split (synthetic scale).
SYNTHETIC_REVERSAL_TASKS = 30


# ----------------------------------------------------------------------------- run state


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def training_finished(run_dir: Path, config: RunConfig) -> bool:
    """``summary.json`` says the run finished all of ``config.train.tasks``."""
    summary = _read_json(Path(run_dir) / "summary.json")
    return bool(summary) and summary.get("status") == "finished" and summary.get("tasks") == config.train.tasks


def evaluation_done(run_dir: Path, config: RunConfig) -> bool:
    """``eval_test.json`` exists and was made on ``config.eval.tasks`` tasks."""
    result = _read_json(Path(run_dir) / "eval_test.json")
    return bool(result) and result.get("tasks") == config.eval.tasks


def reversal_done(run_dir: Path, tasks_per_pair: int) -> bool:
    result = _read_json(Path(run_dir) / "eval_reversal.json")
    return bool(result) and result.get("tasks_per_pair") == tasks_per_pair


def run_status(run: PlannedRun, reversal_tasks: int = 0) -> str:
    """``done`` (trained and evaluated: skipped), ``evaluate`` (trained, evaluation missing),
    ``resume`` (a ``last.pt`` to continue from) or ``new``."""
    directory, config = run.run_dir, run.config
    if training_finished(directory, config):
        if evaluation_done(directory, config) and (
            reversal_tasks <= 0 or config.data.dataset != "synthetic" or reversal_done(directory, reversal_tasks)
        ):
            return "done"
        return "evaluate"
    return "resume" if (directory / "last.pt").exists() else "new"


def check_folder_config(run: PlannedRun) -> None:
    """Refuse a run folder trained with another configuration (a changed sweep definition)."""
    from fsvid.engine.training import resume_conflicts

    written = run.run_dir / "config.yaml"
    if not written.is_file():
        return
    conflicts = resume_conflicts(load_config(written), run.config)
    if conflicts:
        raise ConfigError(
            f"{run.run_dir} holds a run of another configuration ({'; '.join(conflicts)}); "
            "delete that folder or pick another --output"
        )


# ----------------------------------------------------------------------------- running


def evaluate_reversal_run(run_dir: Path, tasks_per_pair: int, progress: bool = False) -> dict[str, Any]:
    """The time-reversal evaluation of :func:`fsvid.demo.evaluate_reversal`, saved as
    ``eval_reversal.json`` and ``eval_reversal_tasks.npy`` in the run folder."""
    import numpy as np

    from fsvid.demo import evaluate_reversal
    from fsvid.engine.checkpoint import atomic_write, atomic_write_text
    from fsvid.engine.metrics import mean_and_ci

    accuracies = evaluate_reversal(Path(run_dir), tasks_per_pair, progress=progress)
    accuracy = mean_and_ci(accuracies)
    result = {"accuracy": accuracy.mean, "ci95": accuracy.ci95, "tasks": accuracy.tasks,
              "tasks_per_pair": tasks_per_pair}
    atomic_write(Path(run_dir) / "eval_reversal_tasks.npy", lambda handle: np.save(handle, accuracies))
    atomic_write_text(Path(run_dir) / "eval_reversal.json", json.dumps(result, indent=2))
    return result


def execute(run: PlannedRun, reversal_tasks: int = 0, progress: bool = False) -> str:
    """Train, evaluate and (synthetic data) reversal-evaluate one run, skipping what is done.
    Returns the status it found (see :func:`run_status`)."""
    from fsvid.engine import evaluate_run, train

    check_folder_config(run)
    status = run_status(run, reversal_tasks)
    if status == "done":
        return status
    trained_now = False
    if not training_finished(run.run_dir, run.config):
        train(run.config, resume=True, progress=progress)
        trained_now = True
    if trained_now or not evaluation_done(run.run_dir, run.config):
        evaluate_run(run.run_dir, tasks=run.config.eval.tasks, progress=progress, cache=False)
    if reversal_tasks > 0 and run.config.data.dataset == "synthetic" and (
        trained_now or not reversal_done(run.run_dir, reversal_tasks)
    ):
        evaluate_reversal_run(run.run_dir, reversal_tasks, progress=progress)
    return status


def short_path(path: Path) -> str:
    text = str(Path(path).expanduser())
    home = str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + "/") else text


def result_row(run: PlannedRun) -> dict[str, Any]:
    """The CSV row of a run (from its folder's ``summary.json``, ``eval_test.json`` and
    ``eval_reversal.json``; empty cells for what is missing)."""
    directory, config = run.run_dir, run.config
    summary = _read_json(directory / "summary.json") or {}
    evaluation = _read_json(directory / "eval_test.json") or {}
    reversal = _read_json(directory / "eval_reversal.json") or {}
    value = published(run.sweep, config.data.dataset, run.variant)
    row = {
        "sweep": run.sweep,
        "variant": run.variant,
        "scale": run.scale,
        "base": run.base,
        "method": config.model.method,
        "dataset": config.data.dataset,
        "way": config.task.way,
        "shot": config.task.shot,
        "accuracy": evaluation.get("accuracy", ""),
        "ci95": evaluation.get("ci95", ""),
        "tasks": evaluation.get("tasks", ""),
        "reversal_accuracy": reversal.get("accuracy", ""),
        "reversal_ci95": reversal.get("ci95", ""),
        "reversal_tasks": reversal.get("tasks", ""),
        "published": "" if value is None else value,
        "best_val_accuracy": summary.get("best_val_accuracy", ""),
        "train_tasks": summary.get("tasks", ""),
        "train_seconds": summary.get("seconds", ""),
        "status": summary.get("status", "not run"),
        "run_dir": short_path(directory),
        "shared_with": run.shared_with,
        "overrides": " ".join(run.overrides),
        "per_class_accuracy": json.dumps(evaluation.get("per_class_accuracy", {}), sort_keys=True),
        "config": json.dumps(to_dict(config), sort_keys=True),
    }
    for key in ("accuracy", "ci95", "reversal_accuracy", "reversal_ci95", "best_val_accuracy"):
        if isinstance(row[key], float):
            row[key] = round(row[key], 4)
    return row


def run_sweep(
    planned: Sequence[PlannedRun],
    csv_path: str | Path | None,
    reversal_tasks: int = SYNTHETIC_REVERSAL_TASKS,
    progress: bool = False,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Run every planned run that is not done (identical ones once), writing its CSV row(s) as
    soon as it is done; return all rows. ``reversal_tasks``: time-reversal tasks per pair for
    synthetic-data runs (0: none)."""
    planned = share_identical(list(planned))
    rows = []
    finished: set[str] = set()
    for index, run in enumerate(planned, 1):
        began = time.time()
        error = ""
        if run.key in finished:
            status = "done"
        else:
            try:
                status = execute(run, reversal_tasks, progress)
            except (KeyboardInterrupt, ConfigError):
                raise
            except Exception as exc:  # one failed run must not stop a long sweep; its row says why
                status, error = "failed", f"{type(exc).__name__}: {exc}"
            finished.add(run.key)
        row = result_row(run)
        if error:
            row["status"] = f"failed ({error})"[:300]
        rows.append(row)
        if csv_path is not None:
            write_rows(csv_path, [row])
        what = "skipped (done)" if status == "done" else f"{status} -> {time.time() - began:.0f} s"
        if error:
            what = f"FAILED after {time.time() - began:.0f} s: {error}"
        shared = f" (= {run.shared_with})" if run.shared_with else ""
        log(f"[{index}/{len(planned)}] {run.label}{shared}: {what}; accuracy {_fmt(row['accuracy'], row['ci95'])}"
            + (f", reversal {_fmt(row['reversal_accuracy'], row['reversal_ci95'])}" if row["reversal_accuracy"] != "" else ""))
    add_paired_differences(planned, rows)
    if csv_path is not None:
        write_rows(csv_path, rows)
    return rows


def add_paired_differences(planned: Sequence[PlannedRun], rows: Sequence[dict[str, Any]]) -> None:
    """Fill ``reference``, ``paired_difference`` and ``paired_ci95`` of each row: the variant
    minus its sweep's reference variant on the same test tasks
    (:func:`fsvid.engine.compare_runs`), when the plan holds the reference and both runs were
    evaluated on the same task list (not, e.g., across numbers of shots)."""
    from fsvid.engine import compare_runs

    where = {(r.sweep, r.scale, r.base, r.variant): r.run_dir for r in planned}
    for run, row in zip(planned, rows):
        reference = SWEEPS[run.sweep].reference if run.sweep in SWEEPS else None
        other = where.get((run.sweep, run.scale, run.base, reference))
        row.update(reference="", paired_difference="", paired_ci95="")
        if reference is None or other is None or row["accuracy"] == "":
            continue
        try:
            difference = compare_runs(run.run_dir, other).difference
        except (FileNotFoundError, ValueError):  # not evaluated, or on another task list
            continue
        row.update(reference=reference, paired_difference=round(difference.mean, 4),
                   paired_ci95=round(difference.ci95, 4))


def _fmt(mean: Any, ci: Any) -> str:
    return "-" if mean == "" else f"{float(mean):.2f} ± {float(ci):.2f}"
