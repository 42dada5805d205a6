"""Running the claims protocol (``results/PROTOCOL.md``): tuning, training, evaluation, claims.csv.

``fsvid sweep claims`` (and ``fsvid sweep reproduce``) does, resumably:

1. **tuning** (validation tasks only): for each method family (prototype, TRX, STRM and its
   variants, MASTAF and its variants) one representative configuration is trained with seed
   :data:`TUNING_SEED` (not a claim seed) at each learning rate of :data:`LR_CANDIDATES` and
   scored on :data:`TUNING_VAL_TASKS` validation tasks; the best learning rate of each family
   goes into ``hyperparameters.json`` and is then fixed for every variant of that family;
2. **claim runs**: every side of every claim (:data:`fsvid.experiments.claims.CLAIMS`), for
   every seed of :data:`SEEDS`, trained on :data:`TRAIN_TASKS` tasks and evaluated on the
   same :data:`TEST_TASKS` test tasks from the run's feature cache (its trained backbone's
   features of the test split, computed once); the claim on time-reversed pairs also on
   :data:`REVERSAL_TASKS_PER_PAIR` tasks of each reversed test pair. Identical configurations
   (STRM appears in many claims) are trained once per seed. Finished runs are skipped; an
   interrupted one resumes from its ``last.pt``;
3. ``claims.csv`` and ``claims.md`` from the per-task accuracies of those runs.

Runs of steps 1 and 2 go ``jobs`` at a time (default 2, one per core), each in its own
process with one torch thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fsvid.config import ConfigError
from fsvid.experiments.claims import (
    CLAIMS,
    Claim,
    Side,
    claim_row,
    claim_sides,
    claims_csv_text,
    claims_markdown,
    paired_seed_task_ci,
    reversal_sides,
)
from fsvid.experiments.definitions import PlannedRun, expand, get_sweep, share_identical, slug
from fsvid.experiments.running import check_folder_config, evaluation_done, reversal_done, training_finished

#: Training seeds of every configuration (``train.seed``: initial weights, training tasks, augmentation).
SEEDS: tuple[int, ...] = (0, 1, 2)
#: Training tasks per run.
TRAIN_TASKS = 600
#: Test tasks per run (``eval.seed`` fixed: the same list for every run of a task setting).
TEST_TASKS = 10_000
#: 2-way tasks per time-reversed test pair (the synthetic test split has 5 pairs: 10,000 tasks).
REVERSAL_TASKS_PER_PAIR = 2_000
#: The synthetic generator version whose dataset the protocol was written for (``dataset.json``).
DATA_GENERATOR_VERSION = 1
#: The learning rates tried per method family, on validation tasks only.
LR_CANDIDATES: tuple[float, ...] = (0.0005, 0.001, 0.002)
TUNING_SEED = 100
TUNING_VAL_TASKS = 1_000
#: Overrides of every protocol run, after the sweeps' synthetic budget.
PROTOCOL_BUDGET: tuple[str, ...] = (f"train.tasks={TRAIN_TASKS}", f"eval.tasks={TEST_TASKS}")
#: The configuration whose validation accuracy picks each family's learning rate.
FAMILY_REPRESENTATIVES: dict[str, Side] = {
    "prototype": Side("strm_table1", "Prototypes"),
    "trx": Side("strm_table1", "TRX"),
    "strm": Side("strm_table1", "STRM"),
    "mastaf": Side("mastaf_ablations", "MASTAF"),
}


# ----------------------------------------------------------------------------- planning


def side_run(side: Side, seed: int, root: Path, lr: float | None = None) -> PlannedRun:
    """The planned run of ``side`` with ``seed`` (and learning rate ``lr``) under
    ``root/seed<seed>/``; ``side.overrides`` must not set what the variant sets."""
    variant = get_sweep(side.sweep).variant(side.variant)
    clash = {o.split("=")[0] for o in side.overrides} & {o.split("=")[0] for o in variant.overrides}
    if clash:
        raise ConfigError(f"claim side {side.name!r} overrides {', '.join(sorted(clash))}, which variant "
                          f"{side.sweep}/{side.variant} already sets; base the side on another variant")
    output = root / f"seed{seed}" / slug(side.name) if side.overrides else root / f"seed{seed}"
    extra = (*PROTOCOL_BUDGET, f"train.seed={seed}", *(() if lr is None else (f"train.lr={lr}",)), *side.overrides)
    return expand(side.sweep, variants=[side.variant], overrides=extra, output=output)[0]


def family(side: Side) -> str:
    """The method family of a side (``model.method`` of its configuration)."""
    return expand(side.sweep, variants=[side.variant])[0].config.model.method


def plan_claim_runs(
    root: Path, learning_rates: Mapping[str, float], claims: Sequence[Claim] = CLAIMS, seeds: Sequence[int] | None = None
) -> dict[tuple[Side, int], PlannedRun]:
    """``{(side, seed): run}`` for every side of ``claims`` and every seed (default
    :data:`SEEDS`); identical configurations share one run (the first side's folder)."""
    seeds = SEEDS if seeds is None else seeds
    keys, runs = [], []
    for side in claim_sides(claims):
        method = family(side)
        if method not in learning_rates:
            raise KeyError(f"no learning rate for method family {method!r} (hyperparameters: {dict(learning_rates)})")
        for seed in seeds:
            keys.append((side, seed))
            runs.append(side_run(side, seed, root, learning_rates[method]))
    return dict(zip(keys, share_identical(runs)))


# ----------------------------------------------------------------------------- running


def evaluate_reversal_from_cache(run_dir: Path, tasks_per_pair: int) -> None:
    """The time-reversal tasks of :func:`fsvid.demo.evaluate_reversal` (the same tasks), scored
    from a feature cache of each pair's test videos; saves ``eval_reversal.json`` and
    ``eval_reversal_tasks.npy`` (all pairs' tasks, pair after pair)."""
    import numpy as np

    from fsvid.demo import reversal_dataset
    from fsvid.engine import evaluate_from_cache, feature_episodes, load_trained_model
    from fsvid.engine.checkpoint import atomic_write, atomic_write_text
    from fsvid.engine.data import time_reversed_pairs
    from fsvid.engine.features import split_cache
    from fsvid.engine.metrics import mean_and_ci

    model, config = load_trained_model(run_dir)
    accuracies = []
    for index, pair in enumerate(time_reversed_pairs(config, "test")):
        dataset = reversal_dataset(config, pair, tasks_per_pair, config.eval.seed)
        cache = split_cache(config, dataset, model.backbone, f"reversal{index}", Path(run_dir) / "cache", 0, False)
        result = evaluate_from_cache(model, feature_episodes(dataset, cache, train=False), "cpu", progress=False)
        accuracies.append(result.task_accuracies)
    if not accuracies:
        raise ValueError(f"the test split of {run_dir}'s dataset has no time-reversed class pairs")
    accuracy = mean_and_ci(np.concatenate(accuracies))
    atomic_write(Path(run_dir) / "eval_reversal_tasks.npy", lambda handle: np.save(handle, np.concatenate(accuracies)))
    atomic_write_text(Path(run_dir) / "eval_reversal.json", json.dumps(
        {"accuracy": accuracy.mean, "ci95": accuracy.ci95, "tasks": accuracy.tasks, "tasks_per_pair": tasks_per_pair},
        indent=2))


def execute_run(run: PlannedRun, test_tasks: int, reversal_per_pair: int = 0, progress: bool = False) -> str:
    """Train (or resume) one protocol run and evaluate it on ``test_tasks`` test tasks (and,
    ``reversal_per_pair > 0``, the reversed pairs) from its feature cache, skipping what is
    done. Returns ``done`` when nothing was left, else ``ran``."""
    from fsvid.engine import evaluate_run, train

    check_folder_config(run)
    trained = training_finished(run.run_dir, run.config)
    evaluated = trained and evaluation_done(run.run_dir, run.config)
    reversed_done = reversal_per_pair <= 0 or (trained and reversal_done(run.run_dir, reversal_per_pair))
    if trained and evaluated and reversed_done:
        return "done"
    if not trained:
        train(run.config, resume=True, progress=progress)
    if not evaluated or not trained:
        evaluate_run(run.run_dir, tasks=test_tasks, progress=progress, cache="auto")
    if reversal_per_pair > 0 and (not trained or not reversed_done):
        evaluate_reversal_from_cache(run.run_dir, reversal_per_pair)
    return "ran"


def validation_accuracy(run: PlannedRun, val_tasks: int, progress: bool = False) -> float:
    """Train (or resume) a tuning run and return its accuracy on ``val_tasks`` validation tasks."""
    from fsvid.engine import evaluate_run, train

    check_folder_config(run)
    if not training_finished(run.run_dir, run.config):
        train(run.config, resume=True, progress=progress)
    return evaluate_run(run.run_dir, tasks=val_tasks, split="val", progress=progress, cache="auto").accuracy.mean


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def in_parallel(function: Callable[..., Any], calls: Sequence[tuple[Any, ...]], jobs: int,
                log: Callable[[str], Any] = print, names: Sequence[str] = ()) -> list[Any]:
    """``function(*call)`` for each call, ``jobs`` at a time in separate processes with one
    torch thread each (``jobs <= 1``: here, in order); results in the calls' order."""
    if jobs <= 1:
        results = []
        for index, call in enumerate(calls):
            began = time.time()
            results.append(function(*call))
            log(f"[{index + 1}/{len(calls)}] {names[index] if names else ''}: {time.time() - began:.0f} s")
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = {pool.submit(function, *call): index for index, call in enumerate(calls)}
        results: list[Any] = [None] * len(calls)
        for done, future in enumerate(as_completed(futures), 1):
            index = futures[future]
            results[index] = future.result()
            log(f"[{done}/{len(calls)}] {names[index] if names else ''}: finished")
    return results


def tune(root: Path, path: Path, log: Callable[[str], Any] = print, progress: bool = False, jobs: int = 1) -> dict[str, float]:
    """Step 1: each family's learning rate by validation accuracy (``TUNING_VAL_TASKS`` tasks of
    the validation split, seed :data:`TUNING_SEED`); written to ``path`` with the validation
    accuracies, and read from it when it is already there."""
    from fsvid.engine.checkpoint import atomic_write_text

    if path.is_file():
        return read_learning_rates(path)
    grid = [(method, lr) for method in FAMILY_REPRESENTATIVES for lr in LR_CANDIDATES]
    runs = [side_run(FAMILY_REPRESENTATIVES[method], TUNING_SEED, root / "tuning" / f"lr{lr:g}", lr) for method, lr in grid]
    accuracies = in_parallel(validation_accuracy, [(run, TUNING_VAL_TASKS, progress) for run in runs], jobs, log,
                             [f"tuning {method} lr {lr:g}" for method, lr in grid])
    chosen, record = {}, {}
    for method in FAMILY_REPRESENTATIVES:
        scores = {lr: accuracy for (m, lr), accuracy in zip(grid, accuracies) if m == method}
        log(f"tuning {method}: validation accuracy by lr ({TUNING_VAL_TASKS} tasks): "
            + ", ".join(f"{lr:g}: {score:.2f}%" for lr, score in scores.items()))
        chosen[method] = max(LR_CANDIDATES, key=lambda lr: (scores[lr], -abs(lr - 0.001)))
        record[method] = {"lr": chosen[method], "validation_accuracy": {f"{lr:g}": round(s, 3) for lr, s in scores.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"seed": TUNING_SEED, "validation_tasks": TUNING_VAL_TASKS, "families": record},
                                       indent=2) + "\n")
    return chosen


def read_learning_rates(path: Path) -> dict[str, float]:
    """``{family: lr}`` from a ``hyperparameters.json`` written by :func:`tune`."""
    try:
        families = json.loads(path.read_text(encoding="utf-8"))["families"]
        return {name: float(entry["lr"]) for name, entry in families.items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a hyperparameters file of `fsvid sweep claims` ({error!r}); "
                         "move it aside to tune again") from None


# ----------------------------------------------------------------------------- results


def claim_statistics(claim: Claim, runs: Mapping[tuple[Side, int], PlannedRun], seeds: Sequence[int] | None = None):
    """The claim's :class:`~fsvid.experiments.claims.ClaimStatistics` from its runs' per-task
    accuracies, or ``None`` while a run is missing; ``ValueError`` when the runs of the claim
    were not evaluated on one task list."""
    import numpy as np

    from fsvid.engine.evaluate import EvalResult

    seeds = SEEDS if seeds is None else seeds
    stem = "eval_reversal" if claim.evaluation == "reversal" else "eval_test"
    arrays, lists = {}, set()
    for side in (claim.a, claim.b):
        rows = []
        for seed in seeds:
            folder = runs[(side, seed)].run_dir
            if not (folder / f"{stem}_tasks.npy").is_file():
                return None
            if stem == "eval_test":
                result = EvalResult.load(folder, stem)
                lists.add(json.dumps(result.task_list, sort_keys=True))
                rows.append(result.task_accuracies)
            else:
                rows.append(np.load(folder / f"{stem}_tasks.npy", allow_pickle=False))
        arrays[side] = np.stack(rows)  # (seeds, tasks)
    if len(lists) > 1:
        raise ValueError(f"claim {claim.name}: its runs were evaluated on {len(lists)} different task lists")
    return paired_seed_task_ci(arrays[claim.a], arrays[claim.b])


#: The hand-written paragraphs on the claims not supported (``## <claim>`` sections), in ``results/``.
CLAIM_NOTES = "claim_notes.md"


def write_claims(rows: Sequence[Mapping[str, object]], results: Path) -> list[Path]:
    """``claims.csv`` and ``claims.md`` (with the paragraphs of ``claim_notes.md`` when there)."""
    from fsvid.engine.checkpoint import atomic_write_text
    from fsvid.experiments.claims import read_claim_notes

    results.mkdir(parents=True, exist_ok=True)
    notes_file = results / CLAIM_NOTES
    notes = read_claim_notes(notes_file.read_text(encoding="utf-8")) if notes_file.is_file() else {}
    return [atomic_write_text(results / "claims.csv", claims_csv_text(rows)),
            atomic_write_text(results / "claims.md", claims_markdown(rows, notes))]


def write_claim_figures(runs: Mapping[tuple[Side, int], PlannedRun], results: Path,
                        claims: Sequence[Claim] = CLAIMS) -> list[Path]:
    """``claims_accuracies.csv`` (each side's accuracy over seeds and tasks) and one figure
    per paper table (:mod:`fsvid.experiments.claim_figures`); nothing while no side is done."""
    from fsvid.experiments.claim_figures import draw_claim_figures, side_rows, write_accuracies

    rows = side_rows(runs, claims, SEEDS, PROTOCOL_BUDGET)
    if not rows:
        return []
    return [write_accuracies(rows, results / "claims_accuracies.csv"), *draw_claim_figures(rows, results)]


def run_protocol(root: Path, results: Path, log: Callable[[str], Any] = print, progress: bool = False,
                 tune_only: bool = False, claims: Sequence[Claim] = CLAIMS, jobs: int = 2) -> list[Path]:
    """Steps 1-3 (see the module docstring); returns the files written."""
    from fsvid.data.synthetic import GENERATOR_VERSION

    if GENERATOR_VERSION != DATA_GENERATOR_VERSION:
        raise ConfigError(f"the protocol fixes the synthetic dataset of generator version {DATA_GENERATOR_VERSION}; "
                          f"this fsvid generates version {GENERATOR_VERSION} (fsvid/data/synthetic/config.py): "
                          "its results would not be the protocol's")
    from fsvid.engine.data import locate_data

    locate_data(side_run(claims[0].a, 0, root).config, progress=progress)  # made once, before any worker reads it
    learning_rates = tune(root, results / "hyperparameters.json", log, progress, jobs)
    log(f"learning rates: {learning_rates}")
    if tune_only:
        return [results / "hyperparameters.json"]
    runs = plan_claim_runs(root, learning_rates, claims)
    reversal_keys = {run.key for (side, _), run in runs.items() if side in reversal_sides(claims)}
    distinct = {run.key: (label, run) for label, run in runs.items()}  # one per configuration and seed
    calls = [(run, TEST_TASKS, REVERSAL_TASKS_PER_PAIR if key in reversal_keys else 0, progress)
             for key, (_, run) in distinct.items()]
    in_parallel(execute_run, calls, jobs, log, [f"{side.name} seed {seed}" for (side, seed), _ in distinct.values()])
    rows = [claim_row(claim, claim_statistics(claim, runs)) for claim in claims]
    return [*write_claims(rows, results), *write_claim_figures(runs, results, claims)]
