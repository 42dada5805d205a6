"""The papers' experiments as sweeps, and their expansion into planned runs.

A sweep is a base preset plus a list of variants, each a name and dotted overrides::

    Sweep("strm_cardinalities", base={"synthetic": "synthetic_strm", "full": "strm_ssv2_full"},
          variants=(Variant("{1}", ("model.cardinalities=[1]",)), Variant("{2}", ...), ...))

``expand`` turns a sweep into planned runs (one resolved :class:`~fsvid.config.RunConfig` and
one run folder per variant) at a *scale*:

- ``synthetic``: the CPU-sized presets on the synthetic dataset, with a small training budget
  (:data:`SYNTHETIC_BUDGET`), plus the time-reversal evaluation of :mod:`fsvid.demo`;
- ``full``: the paper presets (ResNet-50, 75,000 or 10,000 tasks, 10,000 test tasks), for GPUs.

``plan`` expands several sweeps and marks identical configurations as one run (STRM itself
appears in several sweeps); :mod:`fsvid.experiments.running` trains and evaluates them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

    ``figure``: the name of the function that draws it (a key of
    :data:`fsvid.experiments.paper_figures.FIGURES`); ``paper``: the table or figure it
    reproduces; ``reference``: the variant every other one is compared with, task by task
    (paired difference in the CSV), when both were evaluated on the same task list.
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
