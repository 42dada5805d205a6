"""The results CSV of the sweeps: its columns, reading, merging rows in, and parsed rows.

One row per (sweep, variant, scale, base) with accuracy, 95% CI, time-reversal accuracy,
published number, per-class accuracies and the resolved configuration as JSON
(:data:`CSV_FIELDS`). :func:`write_rows` replaces a row with the same key and writes the file
atomically; :func:`load_results` gives the rows with numbers as floats, for the figures.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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

#: Columns :func:`load_results` reads as numbers (empty cells: ``None``).
NUMERIC_FIELDS = (
    "accuracy", "ci95", "tasks", "reversal_accuracy", "reversal_ci95", "reversal_tasks", "published",
    "best_val_accuracy", "train_tasks", "train_seconds", "way", "shot", "paired_difference", "paired_ci95",
)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results CSV as dicts of strings (``[]`` when the file does not exist)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a sweep results CSV")
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [f for f in ("sweep", "variant", "accuracy") if f not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path} is not a sweep results CSV: it lacks the column(s) {', '.join(missing)}")
            return list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a sweep results CSV: it is not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise ValueError(f"{path} is not a sweep results CSV: {error}") from None


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
    buffer = csv_text(list(merged.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, buffer)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as results-CSV text (the columns of :data:`CSV_FIELDS`, others ignored)."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    return buffer.getvalue()


def load_results(source: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a results CSV (a path, or rows already read) with numbers as floats (``None``
    for empty cells) and ``per_class_accuracy`` as a dict."""
    rows = read_csv(source) if isinstance(source, (str, Path)) else [dict(r) for r in source]
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise FileNotFoundError(f"no results CSV at {source}; run `fsvid sweep run ...` first")
    parsed = []
    for row in rows:
        row = dict(row)
        for key in NUMERIC_FIELDS:
            value = row.get(key)
            if value is None or value == "":
                row[key] = None
            else:
                try:
                    row[key] = float(value)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"results row {row.get('sweep')}/{row.get('variant')}: {key}={value!r} is not a number") from error
        per_class = row.get("per_class_accuracy") or {}
        row["per_class_accuracy"] = json.loads(per_class) if isinstance(per_class, str) else dict(per_class)
        parsed.append(row)
    return parsed
