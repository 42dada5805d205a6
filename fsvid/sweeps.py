"""The papers' experiments as sweeps: definitions, expansion into runs, running, one results CSV.

A sweep is a base preset plus a list of variants, each a name and dotted overrides::

    Sweep("strm_cardinalities", base={"synthetic": "synthetic_strm", "full": "strm_ssv2_full"},
          variants=(Variant("{1}", ("model.cardinalities=[1]",)), Variant("{2}", ...), ...))

``expand`` turns a sweep into planned runs (one resolved :class:`~fsvid.config.RunConfig` and
one run folder per variant) at a *scale*:

- ``synthetic``: the CPU-sized presets on the synthetic dataset, with a small training budget
  (:data:`SYNTHETIC_BUDGET`), plus the time-reversal evaluation of :mod:`fsvid.demo`;
- ``full``: the paper presets (ResNet-50, 75,000 or 10,000 tasks, 10,000 test tasks), for GPUs.

``run_sweep`` trains and evaluates every planned run that is not finished yet (a run folder
with a finished ``summary.json`` and its ``eval_test.json`` is skipped; an interrupted run
resumes from its ``last.pt``), runs identical configurations once even when several sweeps
list them (STRM itself appears in five), and writes one tidy CSV (:data:`CSV_FIELDS`): one row
per (sweep, variant, scale, base) with accuracy, 95% CI, time-reversal accuracy, published
number, per-class accuracies and the resolved configuration as JSON.

    fsvid sweep list                                  # the sweeps and their variants
    fsvid sweep show strm_cardinalities --scale full  # the runs it expands to, and their status
    fsvid sweep run strm_components strm_shots        # synthetic scale, CPU
    fsvid sweep run strm_cardinalities --scale full --base strm_kinetics   # Table 2, Kinetics
    fsvid sweep reproduce                             # the committed synthetic results + figures
    fsvid sweep plot --csv results/results.csv --out results/

The published numbers (METHODS.md, the papers' tables) are data here, :data:`PUBLISHED`;
:mod:`fsvid.plots` draws them beside ours when a run used the paper's dataset.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsvid.config import ConfigError, RunConfig, load_config, preset_names, to_dict
from fsvid.paths import fsvid_home

SCALES = ("synthetic", "full")

#: Overrides of every synthetic-scale run: a CPU budget (about a minute of training per run on
#: two cores). ``--train-tasks`` and ``--test-tasks`` change the first and the fourth.
SYNTHETIC_BUDGET: tuple[str, ...] = (
    "train.tasks=600",
    "train.val_every=300",
    "train.val_tasks=50",
    "eval.tasks=300",
    "train.checkpoint_every=300",
)

#: Time-reversal tasks per reversed class pair of the synthetic test split (synthetic scale).
SYNTHETIC_REVERSAL_TASKS = 30

#: Resolution of the committed figures (small PNGs).
FIGURE_DPI = 80

#: Columns of the results CSV, in order.
CSV_FIELDS = (
    "sweep",
    "variant",
    "scale",
    "base",
    "method",
    "dataset",
    "way",
    "shot",
    "accuracy",
    "ci95",
    "tasks",
    "reversal_accuracy",
    "reversal_ci95",
    "reversal_tasks",
    "published",
    "reference",
    "paired_difference",
    "paired_ci95",
    "best_val_accuracy",
    "train_tasks",
    "train_seconds",
    "status",
    "run_dir",
    "shared_with",
    "overrides",
    "per_class_accuracy",
    "config",
)


# ----------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Variant:
    """One setting of a sweep: a name (the paper's label) and dotted config overrides.

    ``presets``: a preset per scale replacing the sweep's base (e.g. Table 1's datasets);
    ``scales``: the scales it exists at (Table 1's per-benchmark rows are ``("full",)``).
    """

    name: str
    overrides: tuple[str, ...] = ()
    presets: Mapping[str, str] = field(default_factory=dict)
    scales: tuple[str, ...] = SCALES


@dataclass(frozen=True)
class Sweep:
    """A paper experiment: a base preset per scale, variants, and how it is drawn.

    ``figure``: the name of the function of :mod:`fsvid.plots` that draws it;
    ``paper``: the table or figure it reproduces; ``reference``: the variant every other one
    is compared with, task by task (paired difference in the CSV), when both were evaluated on
    the same task list.
    """

    name: str
    paper: str
    base: Mapping[str, str]
    variants: tuple[Variant, ...]
    figure: str
    reference: str | None = None

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"sweep {self.name} has no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")

    def variants_at(self, scale: str) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if scale in v.scales)


# Switches of STRM's pieces (Fig. 6 left); TRM is STRM with no PLE, FLE or classifier.
_TRM = ("model.use_ple=false", "model.use_fle=false", "model.use_qc=false")
_TRX = ("model.method=trx", "model.cardinalities=[2,3]")
_STRM_BASE = {"synthetic": "synthetic_strm", "full": "strm_ssv2_full"}
_CARDINALITIES = ((1,), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))


def _omega(cardinalities: Sequence[int]) -> str:
    return "{" + ",".join(map(str, cardinalities)) + "}"


def _shots_variants() -> tuple[Variant, ...]:
    methods = (("TRM", _TRM), ("TRX", _TRX), ("STRM", ()))
    return tuple(
        Variant(f"{method} K={k}", (*overrides, f"task.shot={k}", f"task.train_shot={k}"))
        for method, overrides in methods
        for k in (1, 2, 3, 4, 5, 10)
    )


def _table1_variants() -> tuple[Variant, ...]:
    synthetic = (
        Variant("Prototypes", ("model.method=prototype",), scales=("synthetic",)),
        Variant("TRX", _TRX, scales=("synthetic",)),
        Variant("STRM", (), scales=("synthetic",)),
    )
    benchmarks = (("Kinetics", "strm_kinetics"), ("SSv2", "strm_ssv2_full"), ("HMDB", "strm_hmdb"), ("UCF", "strm_ucf"))
    full = tuple(
        Variant(f"{method} ({label})", overrides, presets={"full": preset}, scales=("full",))
        for label, preset in benchmarks
        for method, overrides in (("TRX", _TRX), ("STRM", ()))
    )
    return synthetic + full


SWEEPS: dict[str, Sweep] = {
    sweep.name: sweep
    for sweep in (
        Sweep(
            "strm_table1",
            "STRM Table 1: TRX and STRM on each benchmark, 5-way 5-shot",
            _STRM_BASE,
            _table1_variants(),
            "strm_table1",
            "TRX",
        ),
        Sweep(
            "strm_cardinalities",
            "STRM Table 2: tuple cardinalities Omega",
            _STRM_BASE,
            tuple(Variant(_omega(c), (f"model.cardinalities=[{','.join(map(str, c))}]",)) for c in _CARDINALITIES),
            "strm_cardinalities",
            "{2}",
        ),
        Sweep(
            "strm_joint",
            "STRM Table 3: joint spatio-temporal self-attention instead of PLE + FLE",
            _STRM_BASE,
            (
                Variant("TRM", _TRM),
                Variant("Jnt-ST (1 l)", ("model.joint_layers=1",)),
                Variant("Jnt-ST (2 l)", ("model.joint_layers=2",)),
                Variant("STRM"),
            ),
            "strm_joint",
            "STRM",
        ),
        Sweep(
            "strm_mechanisms",
            "STRM Table 4: PLE / FLE enrichment mechanism (self-attention or MLP-mixer)",
            _STRM_BASE,
            (
                Variant("TRM", _TRM),
                Variant("SA/SA", ("model.fle_kind=attention",)),
                Variant("MLP/SA", ("model.ple_kind=mlp", "model.fle_kind=attention")),
                Variant("MLP/MLP", ("model.ple_kind=mlp",)),
                Variant("SA/MLP"),
            ),
            "strm_mechanisms",
            "SA/MLP",
        ),
        Sweep(
            "strm_components",
            "STRM Fig. 6 (left): adding each component to the TRM baseline",
            _STRM_BASE,
            (
                Variant("TRM", _TRM),
                Variant("PLE+TRM", ("model.use_fle=false", "model.use_qc=false")),
                Variant("FLE+TRM", ("model.use_ple=false", "model.use_qc=false")),
                Variant("PLE+FLE+TRM", ("model.use_qc=false",)),
                Variant("STRM"),
            ),
            "strm_components",
            "TRM",
        ),
        Sweep(
            "strm_tuples",
            "STRM Fig. 6 (right): fraction of the tuples kept",
            _STRM_BASE,
            tuple(Variant(f"{p}%", (f"model.tuple_fraction={p / 100}",)) for p in (20, 40, 60, 80, 100)),
            "strm_tuples",
            "100%",
        ),
        Sweep("strm_shots", "STRM Fig. 7: 1 to 5 and 10 shots, TRM / TRX / STRM", _STRM_BASE, _shots_variants(),
              "strm_shots"),
        Sweep(
            "strm_lambda",
            "STRM Fig. 8: weight lambda of the query-class loss",
            _STRM_BASE,
            tuple(Variant(f"lambda={w}", (f"model.qc_weight={w}",)) for w in (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)),
            "strm_lambda",
            "lambda=0.1",
        ),
        Sweep(
            "strm_class_gain",
            "STRM Fig. 9: per-class gain of STRM over TRM",
            _STRM_BASE,
            (Variant("TRM", _TRM), Variant("STRM")),
            "strm_class_gain",
            "TRM",
        ),
        Sweep(
            "trx_cardinalities",
            "TRX: tuple cardinalities Omega",
            {"synthetic": "synthetic_trx", "full": "trx_ssv2_full"},
            tuple(Variant(_omega(c), (f"model.cardinalities=[{','.join(map(str, c))}]",)) for c in _CARDINALITIES),
            "trx_cardinalities",
            "{2,3}",
        ),
        Sweep(
            "mastaf_ablations",
            "MASTAF appendix Tables 1-3: no global task, no meta-learner, no residual (5-way 1-shot)",
            {"synthetic": "synthetic_mastaf", "full": "mastaf_ucf"},
            (
                Variant("MASTAF"),
                Variant("No-Global", ("model.global_task=false",)),
                Variant("NoML-Mean", ("model.meta_learner=false",)),
                Variant("NoRes", ("model.residual=false",)),
            ),
            "mastaf_ablations",
            "MASTAF",
        ),
        Sweep(
            "mastaf_scores",
            "MASTAF: neighbour, self-attention, cross-attention and fused scores (5-way 1-shot)",
            {"synthetic": "synthetic_mastaf", "full": "mastaf_ucf"},
            (
                Variant("Neighbor", ("model.mastaf_mode=neighbor",)),
                Variant("Self", ("model.mastaf_mode=self",)),
                Variant("Cross", ("model.mastaf_mode=cross",)),
                Variant("MASTAF", ()),
            ),
            "mastaf_scores",
            "MASTAF",
        ),
        Sweep(
            "seed_spread",
            "Training-seed spread: TRM and STRM trained with three seeds (not in the papers)",
            _STRM_BASE,
            tuple(Variant(f"{name} seed {seed}", (*overrides, f"train.seed={seed}"))
                  for name, overrides in (("TRM", _TRM), ("STRM", ())) for seed in (0, 1, 2)),
            "seed_spread",
            "STRM seed 0",
        ),
    )
}

#: Published accuracies (%), ``PUBLISHED[sweep][dataset][variant]`` (METHODS.md and the papers:
#: STRM Tables 1-4 and Figs. 6-8, 5-way 5-shot; MASTAF appendix Tables 1-3, 5-way 1-shot, where
#: "SSv2-all" is the OTAM split). Only numbers the papers state are here.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "strm_table1": {
        "kinetics_CMN": {"TRX (Kinetics)": 85.9, "STRM (Kinetics)": 86.7},
        "ssv2_OTAM": {"TRX (SSv2)": 64.6, "STRM (SSv2)": 68.1},
        "hmdb_ARN": {"TRX (HMDB)": 75.6, "STRM (HMDB)": 77.3},
        "ucf_ARN": {"TRX (UCF)": 96.1, "STRM (UCF)": 96.9},
    },
    "strm_cardinalities": {
        "kinetics_CMN": dict(zip(map(_omega, _CARDINALITIES), (86.2, 86.5, 86.0, 85.3, 85.9, 86.1, 85.7, 86.1))),
        "ssv2_OTAM": dict(zip(map(_omega, _CARDINALITIES), (67.2, 68.1, 66.9, 66.4, 67.1, 67.3, 67.3, 68.1))),
    },
    "strm_joint": {"ssv2_OTAM": {"TRM": 62.1, "Jnt-ST (1 l)": 64.7, "Jnt-ST (2 l)": 65.8, "STRM": 68.1}},
    "strm_mechanisms": {"ssv2_OTAM": {"TRM": 62.1, "SA/SA": 64.2, "MLP/SA": 64.1, "MLP/MLP": 65.0, "SA/MLP": 68.1}},
    "strm_components": {
        "ssv2_OTAM": {"TRM": 62.1, "PLE+TRM": 63.7, "FLE+TRM": 65.3, "PLE+FLE+TRM": 66.8, "STRM": 68.1}
    },
    "strm_tuples": {"ssv2_OTAM": {"20%": 65.4, "100%": 68.1}},
    "strm_shots": {"ssv2_OTAM": {"TRM K=5": 62.1, "TRX K=5": 64.6, "STRM K=5": 68.1}},
    "strm_lambda": {"ssv2_OTAM": {"lambda=0.1": 68.1}},
    "strm_class_gain": {"ssv2_OTAM": {"TRM": 62.1, "STRM": 68.1}},
    "trx_cardinalities": {"ssv2_OTAM": {"{2,3}": 64.6}, "kinetics_CMN": {"{2,3}": 85.9}},
    "mastaf_ablations": {
        "ucf_ARN": {"MASTAF": 90.6, "No-Global": 89.4, "NoML-Mean": 89.9, "NoRes": 88.9},
        "ssv2_OTAM": {"MASTAF": 50.3, "No-Global": 49.5, "NoML-Mean": 49.3, "NoRes": 49.2},
    },
    "mastaf_scores": {},
    "seed_spread": {},
}

#: The paper dataset each sweep's published numbers are drawn against by default.
PAPER_DATASET: dict[str, str] = {
    name: ("ucf_ARN" if name.startswith("mastaf") else "ssv2_OTAM") for name in SWEEPS
}

#: The committed synthetic-scale reproduction (``fsvid sweep reproduce``): sweep -> variants
#: (``None``: all of the sweep's synthetic variants). Identical configurations run once.
SYNTHETIC_REPRODUCTION: dict[str, tuple[str, ...] | None] = {
    "strm_table1": None,
    "strm_components": None,
    "strm_cardinalities": ("{1}", "{2}", "{3}", "{2,3}"),
    "strm_mechanisms": None,
    "strm_shots": ("STRM K=1", "STRM K=3", "STRM K=5"),
    "strm_class_gain": None,
    "mastaf_ablations": None,
    "seed_spread": None,
}


def published(sweep: str, dataset: str, variant: str) -> float | None:
    """The paper's accuracy for ``variant`` of ``sweep`` on ``dataset``, or ``None``."""
    return PUBLISHED.get(sweep, {}).get(dataset, {}).get(variant)


def get_sweep(name: str) -> Sweep:
    """The sweep called ``name`` (``KeyError`` listing the sweeps otherwise)."""
    if name not in SWEEPS:
        raise KeyError(f"unknown sweep {name!r}; sweeps: {', '.join(SWEEPS)}")
    return SWEEPS[name]


# ----------------------------------------------------------------------------- expansion


def slug(name: str) -> str:
    """A folder-safe form of a variant name: ``"{2,3}"`` -> ``"2_3"``, ``"PLE+TRM"`` -> ``"PLE_TRM"``."""
    text = re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_").replace("=", "")
    return text or "variant"


def default_output(scale: str, base: str | None = None) -> Path:
    """Where a sweep's runs go: ``$FSVID_HOME/sweeps/<scale>`` (or ``.../<base preset>``)."""
    return fsvid_home() / "sweeps" / (base or scale)


@dataclass
class PlannedRun:
    """One run of a sweep: its resolved configuration and its run folder.

    ``key`` identifies the training run: two planned runs with the same key (the same
    configuration up to ``name`` and ``output_dir``) are the same run, trained once.
    """

    sweep: str
    variant: str
    scale: str
    base: str
    overrides: tuple[str, ...]
    config: RunConfig
    run_dir: Path
    key: str = ""
    shared_with: str = ""

    @property
    def label(self) -> str:
        return f"{self.sweep}/{self.variant}"


def config_key(config: RunConfig) -> str:
    """The configuration as canonical JSON, without ``name`` and ``output_dir``."""
    data = to_dict(config)
    data.pop("name", None)
    data.pop("output_dir", None)
    return json.dumps(data, sort_keys=True)


def expand(
    sweep: Sweep | str,
    scale: str = "synthetic",
    variants: Iterable[str] | None = None,
    base: str | None = None,
    overrides: Sequence[str] = (),
    output: str | Path | None = None,
) -> list[PlannedRun]:
    """The runs of ``sweep`` at ``scale``: one per variant (all of the scale's, or ``variants``).

    Overrides apply in this order: the base preset (``base`` or the sweep's for the scale, or
    the variant's own preset), the synthetic budget (synthetic scale), ``overrides``, the
    variant's overrides, then ``name = <sweep>-<variant>`` and ``output_dir =
    <output>/<sweep>/<variant slug>``.
    """
    sweep = get_sweep(sweep) if isinstance(sweep, str) else sweep
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if base is not None and base not in preset_names() and not Path(base).exists():
        raise ConfigError(f"unknown base preset {base!r}; presets: {', '.join(preset_names())}")
    available = sweep.variants_at(scale)
    if variants is None:
        chosen = available
    else:
        names = list(variants)
        unknown = [n for n in names if n not in {v.name for v in available}]
        if unknown:
            raise KeyError(
                f"sweep {sweep.name} has no variant {', '.join(map(repr, unknown))} at scale {scale}; "
                f"variants: {', '.join(v.name for v in available)}"
            )
        chosen = tuple(v for v in available if v.name in names)
    folder = Path(output).expanduser() if output is not None else default_output(scale, base)
    budget = SYNTHETIC_BUDGET if scale == "synthetic" else ()
    slugs: dict[str, str] = {}
    planned = []
    for variant in chosen:
        preset = variant.presets.get(scale) or base or sweep.base[scale]
        folder_name = slug(variant.name)
        if folder_name in slugs:
            raise ValueError(f"sweep {sweep.name}: variants {slugs[folder_name]!r} and {variant.name!r} share a folder name")
        slugs[folder_name] = variant.name
        run_dir = folder / sweep.name / folder_name
        every = (*budget, *overrides, *variant.overrides)
        config = load_config(preset, [*every, f"name={sweep.name}-{folder_name}", f"output_dir={run_dir}"])
        planned.append(PlannedRun(sweep.name, variant.name, scale, preset, tuple(every), config, run_dir))
    return planned


def share_identical(planned: Sequence[PlannedRun]) -> list[PlannedRun]:
    """Mark runs with the same configuration as one run: the first in order keeps its folder,
    the others point to it (``shared_with`` names the owner). Returns the runs, in order."""
    owners: dict[str, PlannedRun] = {}
    for run in planned:
        run.key = config_key(run.config)
        owner = owners.setdefault(run.key, run)
        if owner is not run:
            run.run_dir = owner.run_dir
            run.config = owner.config
            run.shared_with = owner.label
    return list(planned)


def plan(
    selection: Mapping[str, Iterable[str] | None] | Iterable[str],
    scale: str = "synthetic",
    base: str | None = None,
    overrides: Sequence[str] = (),
    output: str | Path | None = None,
) -> list[PlannedRun]:
    """Expand several sweeps (names, or ``{sweep: variants or None}``) and share identical runs."""
    if not isinstance(selection, Mapping):
        selection = {name: None for name in selection}
    planned = [
        run
        for name, variants in selection.items()
        for run in expand(name, scale, variants, base, overrides, output)
    ]
    return share_identical(planned)


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


def _short_path(path: Path) -> str:
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
        "run_dir": _short_path(directory),
        "shared_with": run.shared_with,
        "overrides": " ".join(run.overrides),
        "per_class_accuracy": json.dumps(evaluation.get("per_class_accuracy", {}), sort_keys=True),
        "config": json.dumps(to_dict(config), sort_keys=True),
    }
    for key in ("accuracy", "ci95", "reversal_accuracy", "reversal_ci95", "best_val_accuracy"):
        if isinstance(row[key], float):
            row[key] = round(row[key], 4)
    return row


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results CSV as dicts of strings (``[]`` when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in ("sweep", "variant", "accuracy") if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a sweep results CSV: it lacks the column(s) {', '.join(missing)}")
        return list(reader)


def _row_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(k, "")) for k in ("sweep", "variant", "scale", "base"))


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Merge ``rows`` into the CSV at ``path``: a row replaces the row with the same sweep,
    variant, scale and base; other rows are kept in their order; new rows go at the end.
    Written atomically."""
    from fsvid.engine.checkpoint import atomic_write_text

    path = Path(path)
    merged: dict[tuple[str, ...], Mapping[str, Any]] = {_row_key(r): r for r in read_csv(path)}
    for row in rows:
        merged[_row_key(row)] = row
    buffer = _csv_text(list(merged.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, buffer)


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    return buffer.getvalue()


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


# ----------------------------------------------------------------------------- command line


def _add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=SCALES, default="synthetic",
                        help="synthetic: CPU presets and budget on the synthetic set; full: the paper presets")
    parser.add_argument("--base", default=None, help="a preset replacing the sweeps' base (e.g. strm_kinetics)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder of the run folders (default $FSVID_HOME/sweeps/<scale or base>)")
    parser.add_argument("--train-tasks", type=int, default=None, help="training tasks per run (synthetic default 600)")
    parser.add_argument("--test-tasks", type=int, default=None, help="test tasks per run (synthetic default 300)")


def _plan_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [item for item in args.items if "=" in item or "." in item]
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"expected key=value overrides (e.g. train.lr=0.01), got {' '.join(bad)}")
    extra = list(overrides)
    if args.train_tasks is not None:
        extra.append(f"train.tasks={args.train_tasks}")
    if args.test_tasks is not None:
        extra.append(f"eval.tasks={args.test_tasks}")
    return extra


def _csv_default(args: argparse.Namespace) -> Path:
    folder = args.output if args.output is not None else default_output(args.scale, args.base)
    return Path(folder).expanduser() / "results.csv"


def main(argv: Sequence[str] | None = None) -> int:
    """``fsvid sweep``: list, show, run and plot the papers' experiments."""
    parser = argparse.ArgumentParser(prog="fsvid sweep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("list", help="the sweeps and their variants")
    p.add_argument("--scale", choices=SCALES, default=None)

    items_help = "sweep names, then section.key=value overrides for every run"
    p = commands.add_parser("show", help="the runs a sweep expands to, with their status")
    p.add_argument("items", nargs="+", metavar="SWEEP [key=value ...]", help=items_help)
    p.add_argument("--variants", nargs="+", default=None)
    _add_plan_arguments(p)

    p = commands.add_parser("run", help="train and evaluate the runs not done yet; rows into results.csv")
    p.add_argument("items", nargs="+", metavar="SWEEP [key=value ...]", help=items_help)
    p.add_argument("--variants", nargs="+", default=None, help="only these variants (names as `list` shows)")
    p.add_argument("--csv", type=Path, default=None, help="results CSV (default <output>/results.csv)")
    p.add_argument("--reversal-tasks", type=int, default=SYNTHETIC_REVERSAL_TASKS,
                   help="time-reversal tasks per reversed pair, synthetic data only (0: none)")
    p.add_argument("--progress", action="store_true", help="progress bars of training and evaluation")
    _add_plan_arguments(p)

    p = commands.add_parser("reproduce", help="the committed synthetic-scale reproduction, then its figures")
    p.add_argument("--csv", type=Path, default=Path("results/results.csv"))
    p.add_argument("--figures", type=Path, default=Path("results"), help="folder for the PNG figures")
    p.add_argument("--reversal-tasks", type=int, default=SYNTHETIC_REVERSAL_TASKS)
    p.add_argument("--progress", action="store_true")
    p.add_argument("items", nargs="*", metavar="key=value", help="overrides for every run")
    _add_plan_arguments(p)

    p = commands.add_parser("analysis", help="attention, tuple-match, angle and projection figures of trained runs")
    p.add_argument("--output", type=Path, default=None,
                   help="the synthetic sweep folder holding the runs (default $FSVID_HOME/sweeps/synthetic)")
    p.add_argument("--strm", default="strm_table1/STRM", help="STRM run folder, relative to --output")
    p.add_argument("--trm", default="strm_components/TRM", help="TRM run folder, relative to --output ('' for none)")
    p.add_argument("--mastaf", default="mastaf_ablations/MASTAF", help="MASTAF run folder ('' for none)")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--dpi", type=int, default=60)

    p = commands.add_parser("plot", help="draw every figure the results CSV has rows for")
    p.add_argument("--csv", type=Path, default=Path("results/results.csv"))
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--dpi", type=int, default=FIGURE_DPI)

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, KeyError, ValueError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"fsvid sweep: error: {message}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for sweep in SWEEPS.values():
            variants = sweep.variants_at(args.scale) if args.scale else sweep.variants
            print(f"{sweep.name:20s} {sweep.paper}")
            print(f"{'':20s} base: {', '.join(f'{k}={v}' for k, v in sweep.base.items())}")
            print(f"{'':20s} variants: {' | '.join(v.name for v in variants)}")
        return 0
    if args.command == "analysis":
        from fsvid.plots import draw_analysis

        folder = Path(args.output).expanduser() if args.output is not None else default_output("synthetic")
        runs = [folder / name if name else None for name in (args.strm, args.trm, args.mastaf)]
        for run in runs:
            if run is not None and not (run / "best.pt").is_file():
                raise FileNotFoundError(f"no trained run in {run} (run `fsvid sweep reproduce` first)")
        for path in draw_analysis(*runs, args.out, dpi=args.dpi):
            print(path)
        return 0
    if args.command == "plot":
        from fsvid.plots import draw_all

        for path in draw_all(args.csv, args.out, dpi=args.dpi):
            print(path)
        return 0
    if args.command == "reproduce":
        if args.scale != "synthetic":
            raise ValueError("reproduce is the synthetic-scale reproduction; use `run` with --scale full")
        selection: Mapping[str, Any] = SYNTHETIC_REPRODUCTION
    else:
        names = [item for item in args.items if "=" not in item and "." not in item]
        if not names:
            raise ValueError(f"name at least one sweep; sweeps: {', '.join(SWEEPS)}")
        selection = {name: args.variants for name in names}
    planned = plan(selection, args.scale, args.base, _plan_overrides(args), args.output)
    if args.command == "show":
        for run in planned:
            status = run_status(run)
            shared = f" = {run.shared_with}" if run.shared_with else ""
            print(f"{run.label:34s} {status:9s} {_short_path(run.run_dir)}{shared}")
            print(f"{'':34s} {run.base} {' '.join(run.overrides)}")
        return 0
    csv_path = args.csv if args.csv is not None else _csv_default(args)
    started = time.time()
    run_sweep(planned, csv_path, args.reversal_tasks, args.progress)
    print(f"results: {csv_path} ({time.time() - started:.0f} s)")
    if args.command == "reproduce":
        from fsvid.plots import draw_all

        for path in draw_all(csv_path, args.figures, dpi=FIGURE_DPI):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
