"""The papers' claims as directional comparisons, and the statistics that decide them.

A claim says "configuration A beats configuration B" (e.g. STRM > TRX, STRM Table 1). Each side
is a variant of a sweep (:data:`fsvid.experiments.definitions.SWEEPS`), optionally with extra
overrides (lambda = 0.5, the released query-class classifier), so every setting is stated once,
in the sweep definitions; the published numbers come from
:mod:`fsvid.experiments.published`.

Every side is trained with each seed of the protocol (``train.seed`` draws the initial weights,
the training tasks and their augmentation) and evaluated on one fixed list of test tasks. The
difference ``d[s, t] = acc_A[s, t] - acc_B[s, t]`` (seed s, test task t) follows a crossed
two-level model

    d[s, t] = mu + a_s + b_t + e[s, t]

(a_s: the seed's effect, b_t: the task's effect, shared by every seed because the task list is
shared; e: the rest). The estimate is the grand mean of ``d``; its variance
``sigma_a^2 / S + sigma_b^2 / T + sigma_e^2 / (S T)`` is estimated from the two-way layout
(:func:`paired_seed_task_ci`) and the 95% interval uses Student's t with Satterthwaite's
degrees of freedom. Verdict (:func:`verdict`): supported when the interval lies above 0,
contradicted below 0, inconclusive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fsvid.experiments.definitions import get_sweep
from fsvid.experiments.published import PUBLISHED_TABLES, published

#: Columns of ``results/claims.csv``, in order.
CLAIM_FIELDS = ("claim", "paper", "comparison", "published_a", "published_b", "seeds", "test_tasks",
                "a_accuracy", "b_accuracy", "difference", "ci_low", "ci_high", "verdict")

VERDICTS = ("supported", "contradicted", "inconclusive")


# ----------------------------------------------------------------------------- claims as data


@dataclass(frozen=True)
class Side:
    """One side of a claim: a sweep variant, plus ``overrides`` that the variant does not set.

    ``published_as``: the variant name of the published number when it differs from
    ``variant`` (Table 1 names its rows per benchmark, e.g. ``"STRM (SSv2)"``)."""

    sweep: str
    variant: str
    overrides: tuple[str, ...] = ()
    label: str = ""
    published_sweep: str = ""
    published_as: str = ""

    @property
    def name(self) -> str:
        return self.label or self.variant


@dataclass(frozen=True)
class Claim:
    """``a`` > ``b``, as a paper states it; ``evaluation``: ``test`` (the split's test tasks)
    or ``reversal`` (2-way tasks of a class against its time-reversed twin)."""

    name: str
    paper: str
    a: Side
    b: Side
    dataset: str = "ssv2_OTAM"
    """The benchmark whose published numbers are quoted."""
    evaluation: str = "test"

    @property
    def comparison(self) -> str:
        return f"{self.a.name} > {self.b.name}"

    def published(self, side: Side) -> float | None:
        """The paper's number for ``side`` (none for the reversed pairs: the papers report none)."""
        if self.evaluation != "test":
            return None
        return published(side.published_sweep or side.sweep, self.dataset, side.published_as or side.variant)


def _source(sweep: str, dataset: str = "ssv2_OTAM") -> str:
    """The paper, table or figure of a sweep's published numbers (from ``published.py``)."""
    for table in PUBLISHED_TABLES:
        if table.sweep == sweep and table.dataset == dataset:
            return table.source
    raise KeyError(f"no published table of sweep {sweep!r} on {dataset!r}")


def _side(sweep: str, variant: str, *overrides: str, label: str = "", published_sweep: str = "",
          published_as: str = "") -> Side:
    get_sweep(sweep).variant(variant)  # KeyError naming the sweep's variants
    return Side(sweep, variant, tuple(overrides), label, published_sweep, published_as)


_T1, _COMP, _MASTAF = "strm_table1", "strm_components", "mastaf_ablations"
_STRM = _side(_T1, "STRM", published_sweep=_COMP, published_as="STRM")
_TRX = _side(_T1, "TRX", published_as="TRX (SSv2)")
_PROTOTYPES = _side(_T1, "Prototypes")
_TRM = _side(_COMP, "TRM")
_PLE_FLE = _side(_COMP, "PLE+FLE+TRM")
_JNT1 = _side("strm_joint", "Jnt-ST (1 l)")
_FUSED = _side("mastaf_scores", "MASTAF", label="fused")
_MASTAF_FULL = _side(_MASTAF, "MASTAF")
_K1 = "STRM Fig. 7, 1-shot (5-way 1-shot training and test)"
_MASTAF_SCORES = "MASTAF appendix Fig. 1: scores of the fused, self-, cross-attention and neighbour models (5-way 1-shot)"
_QC = "fsvid: STRM's query-class classifier trained (the paper) vs fixed random weights (the released code)"

#: The claims the protocol tests, in the order of ``results/claims.csv``.
CLAIMS: tuple[Claim, ...] = (
    Claim("trx_beats_prototypes", "TRX vs the prototype baseline, 5-way 5-shot (TRX as in STRM Table 1; no paper "
          "prints a prototype number)", _TRX, _PROTOTYPES),
    Claim("trx_beats_prototypes_reversed", "TRX's temporal order: 2-way tasks of a class and its time-reversed twin "
          "(fsvid's test; no published number)", _TRX, _PROTOTYPES, evaluation="reversal"),
    Claim("strm_beats_trx", "STRM Table 1 (SSv2)", _STRM, _TRX),
    Claim("ple_helps_trm", _source(_COMP), _side(_COMP, "PLE+TRM"), _TRM),
    Claim("fle_helps_trm", _source(_COMP), _side(_COMP, "FLE+TRM"), _TRM),
    Claim("fle_helps_ple_trm", _source(_COMP), _PLE_FLE, _side(_COMP, "PLE+TRM")),
    Claim("ple_helps_fle_trm", _source(_COMP), _PLE_FLE, _side(_COMP, "FLE+TRM")),
    Claim("qc_helps_ple_fle_trm", _source(_COMP), _STRM, _PLE_FLE),
    Claim("strm_beats_joint_1", _source("strm_joint"), _side("strm_joint", "STRM"), _JNT1),
    Claim("joint_2_beats_joint_1", _source("strm_joint"), _side("strm_joint", "Jnt-ST (2 l)"), _JNT1),
    Claim("sa_mlp_beats_mlp_mlp", _source("strm_mechanisms"), _side("strm_mechanisms", "SA/MLP"),
          _side("strm_mechanisms", "MLP/MLP")),
    Claim("sa_mlp_beats_sa_sa", _source("strm_mechanisms"), _side("strm_mechanisms", "SA/MLP"),
          _side("strm_mechanisms", "SA/SA")),
    Claim("lambda_01_beats_05", "STRM Fig. 8 (lambda of the query-class loss)", _side("strm_lambda", "lambda=0.1"),
          _side(_T1, "STRM", "model.qc_weight=0.5", label="lambda=0.5")),
    Claim("omega_2_beats_1", _source("strm_cardinalities"), _side("strm_cardinalities", "{2}"),
          _side("strm_cardinalities", "{1}")),
    Claim("strm_20pc_beats_trm", "STRM Fig. 6 (right): STRM with 20% of the tuples vs TRM with all",
          _side("strm_tuples", "20%"), _side(_COMP, "TRM", label="TRM (100%)", published_sweep=_COMP)),
    Claim("strm_beats_trx_1shot", _K1, _side("strm_shots", "STRM K=1"), _side("strm_shots", "TRX K=1")),
    Claim("mastaf_beats_no_global", _source(_MASTAF, "ucf_ARN"), _MASTAF_FULL, _side(_MASTAF, "No-Global"),
          dataset="ucf_ARN"),
    Claim("mastaf_beats_noml_mean", _source(_MASTAF, "ucf_ARN"), _MASTAF_FULL, _side(_MASTAF, "NoML-Mean"),
          dataset="ucf_ARN"),
    Claim("mastaf_beats_nores", _source(_MASTAF, "ucf_ARN"), _MASTAF_FULL, _side(_MASTAF, "NoRes"), dataset="ucf_ARN"),
    Claim("fused_beats_self", _MASTAF_SCORES, _FUSED, _side("mastaf_scores", "Self", label="self-only")),
    Claim("fused_beats_cross", _MASTAF_SCORES, _FUSED, _side("mastaf_scores", "Cross", label="cross-only")),
    Claim("fused_beats_neighbour", _MASTAF_SCORES, _FUSED, _side("mastaf_scores", "Neighbor", label="neighbour")),
    Claim("trained_qc_beats_released", _QC, _side(_T1, "STRM", label="STRM (qc trained)"),
          _side(_T1, "STRM", "model.qc_mode=released", label="STRM (qc as released)")),
)


def claim_sides(claims: Sequence[Claim] = CLAIMS) -> list[Side]:
    """Every side of ``claims`` once (the same side in two claims is one entry), in order."""
    sides: dict[Side, None] = {}
    for claim in claims:
        sides.setdefault(claim.a)
        sides.setdefault(claim.b)
    return list(sides)


def reversal_sides(claims: Sequence[Claim]) -> set[Side]:
    """The sides of the claims on time-reversed pairs (their runs are also evaluated there)."""
    return {side for claim in claims if claim.evaluation == "reversal" for side in (claim.a, claim.b)}


def protocol_table(claims: Sequence[Claim] = CLAIMS) -> str:
    """The claims as the markdown table of ``results/PROTOCOL.md`` (a test checks it is there)."""
    lines = ["| claim | comparison (A > B) | A | B | paper | published A | published B | tasks |",
             "|---|---|---|---|---|---|---|---|"]
    for claim in claims:
        cells = [claim.name, claim.comparison, _describe(claim.a), _describe(claim.b), claim.paper,
                 _number(claim.published(claim.a)), _number(claim.published(claim.b)), claim.evaluation]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def _describe(side: Side) -> str:
    return f"`{side.sweep}/{side.variant}`" + "".join(f" `{o}`" for o in side.overrides)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# ----------------------------------------------------------------------------- statistics


def t_quantile_975(df: float) -> float:
    """The 97.5% quantile of Student's t with ``df`` (> 0, real) degrees of freedom.

    By bisection on the CDF, itself ``1 - I_x(df/2, 1/2) / 2`` at ``x = df / (df + t^2)``
    (regularised incomplete beta, :func:`_incomplete_beta`); ``df = inf`` gives 1.959964."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(df) or df > 1e7:
        return 1.959963984540054
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > 0.025:
        high *= 2.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if _t_upper_tail(middle, df) > 0.025 else (low, middle)
    return 0.5 * (low + high)


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _incomplete_beta(df / (df + t * t), 0.5 * df, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - _incomplete_beta(1.0 - x, b, a)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(log_front) * fraction / a


@dataclass(frozen=True)
class ClaimStatistics:
    """A - B over seeds and shared test tasks, in percentage points."""

    a_accuracy: float
    b_accuracy: float
    difference: float
    ci_low: float
    ci_high: float
    seeds: int
    tasks: int
    df: float
    """Satterthwaite's degrees of freedom of the interval."""

    @property
    def verdict(self) -> str:
        return verdict(self.ci_low, self.ci_high)


def paired_seed_task_ci(acc_a: np.ndarray, acc_b: np.ndarray) -> ClaimStatistics:
    """Mean of ``acc_a - acc_b`` ((seeds, tasks) arrays in [0, 1], row s of both trained with
    seed s, column t the same test task) with a 95% CI over seeds AND tasks.

    Crossed model ``d = mu + a_s + b_t + e``: with ``V_s`` the variance of the seeds' mean
    differences (expectation ``sigma_a^2 + sigma_e^2/T``), ``V_t`` that of the tasks' mean
    differences (``sigma_b^2 + sigma_e^2/S``) and ``M`` the two-way residual mean square
    (``sigma_e^2``), ``V_s/S + V_t/T - M/(ST)`` is unbiased for the variance of the grand mean
    ``sigma_a^2/S + sigma_b^2/T + sigma_e^2/(ST)``. The interval is Student's t with
    Satterthwaite's degrees of freedom (close to S - 1 when seeds dominate). Needs >= 2 seeds
    and >= 2 tasks.
    """
    a, b = np.asarray(acc_a, dtype=np.float64), np.asarray(acc_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (seeds, tasks) arrays of one shape, got {a.shape} and {b.shape}")
    seeds, tasks = a.shape
    if seeds < 2 or tasks < 2:
        raise ValueError(f"need at least 2 seeds and 2 tasks for an interval over both, got {seeds} x {tasks}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("task accuracies contain NaN or infinite values")
    d = a - b  # (seeds, tasks)
    mean = float(d.mean())
    by_seed, by_task = d.mean(axis=1), d.mean(axis=0)  # (seeds,), (tasks,)
    residual = d - by_seed[:, None] - by_task[None, :] + mean
    seed_term = by_seed.var(ddof=1) / seeds
    task_term = by_task.var(ddof=1) / tasks
    residual_term = float((residual ** 2).sum()) / ((seeds - 1) * (tasks - 1)) / (seeds * tasks)
    variance = max(seed_term + task_term - residual_term, 0.0)
    denominator = seed_term ** 2 / (seeds - 1) + task_term ** 2 / (tasks - 1) + residual_term ** 2 / ((seeds - 1) * (tasks - 1))
    df = max(variance ** 2 / denominator, 1.0) if denominator > 0 and variance > 0 else math.inf
    half = t_quantile_975(df) * math.sqrt(variance)
    return ClaimStatistics(
        a_accuracy=100.0 * float(a.mean()), b_accuracy=100.0 * float(b.mean()), difference=100.0 * mean,
        ci_low=100.0 * (mean - half), ci_high=100.0 * (mean + half), seeds=seeds, tasks=tasks, df=float(df),
    )


def verdict(ci_low: float, ci_high: float) -> str:
    """``supported`` when the whole interval is above 0, ``contradicted`` when below, else
    ``inconclusive`` (an interval touching 0 decides nothing)."""
    if ci_low > ci_high:
        raise ValueError(f"interval [{ci_low}, {ci_high}] has its low end above its high end")
    if ci_low > 0:
        return "supported"
    if ci_high < 0:
        return "contradicted"
    return "inconclusive"


# ----------------------------------------------------------------------------- rows and files


def claim_row(claim: Claim, statistics: ClaimStatistics | None) -> dict[str, object]:
    """The ``results/claims.csv`` row of ``claim`` (empty result cells when not yet run)."""
    row: dict[str, object] = {
        "claim": claim.name, "paper": claim.paper, "comparison": claim.comparison,
        "published_a": _number(claim.published(claim.a)), "published_b": _number(claim.published(claim.b)),
    }
    if statistics is None:
        row.update({k: "" for k in CLAIM_FIELDS if k not in row})
        row["verdict"] = "not run"
        return row
    row.update(seeds=statistics.seeds, test_tasks=statistics.tasks, verdict=statistics.verdict,
               **{k: round(getattr(statistics, k), 2) for k in ("a_accuracy", "b_accuracy", "difference", "ci_low", "ci_high")})
    return row


def claims_csv_text(rows: Sequence[Mapping[str, object]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CLAIM_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CLAIM_FIELDS})
    return buffer.getvalue()


#: Verdicts that need a paragraph on what may explain them.
EXPLAINED_VERDICTS = ("contradicted", "inconclusive")


def read_claim_notes(text: str) -> dict[str, str]:
    """``{claim: paragraph}`` from a notes file: a ``## <claim name>`` heading, then its
    paragraph(s), up to the next heading. Text before the first heading is ignored."""
    notes: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            notes[current] = []
        elif current is not None:
            notes[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in notes.items()}


def claims_markdown(rows: Sequence[Mapping[str, object]], notes: Mapping[str, str] | None = None) -> str:
    """``results/claims.md``: the verdict table, then one paragraph per contradicted or
    inconclusive claim from ``notes`` (``{claim: paragraph}``, written after the results, see
    :func:`read_claim_notes`; a missing one is flagged as missing)."""
    lines = ["# The papers' claims on the synthetic set", "",
             "Protocol: `PROTOCOL.md` (committed before these runs). A - B in percentage points, averaged over "
             "training seeds and the shared test tasks; 95% interval over seeds and tasks (crossed two-level model, "
             "Student's t with Satterthwaite's degrees of freedom).", "",
             "| verdict | claim | comparison | published A / B | ours A / B | A - B [95% CI] | seeds x tasks |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        published_pair = f"{row['published_a'] or '-'} / {row['published_b'] or '-'}"
        if row["verdict"] == "not run":
            ours, difference, size = "-", "-", "-"
        else:
            ours = f"{row['a_accuracy']:.2f} / {row['b_accuracy']:.2f}"
            difference = f"{row['difference']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
            size = f"{row['seeds']} x {row['test_tasks']}"
        lines.append(f"| {row['verdict']} | {row['claim']} | {row['comparison'].replace('|', '/')} | {published_pair} | "
                     f"{ours} | {difference} | {size} |")
    explained = [row for row in rows if row["verdict"] in EXPLAINED_VERDICTS]
    if explained:
        lines += ["", "## What may explain the claims not supported here", ""]
    for row in explained:
        note = (notes or {}).get(str(row["claim"]), "")
        lines += [f"### {row['claim']} ({row['verdict']}): {row['comparison']}", "",
                  note or "(no note yet: add a paragraph under `## " + str(row["claim"]) + "` in `claim_notes.md`)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
