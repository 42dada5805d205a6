"""The paper presets hold the values docs/fidelity.md lists (the released code's settings).

Each table of docs/fidelity.md names its presets (a ``Presets:`` line) and has one row per
configuration key with the expected value in the ``fsvid preset`` column (YAML in backticks,
or a mapping ``{preset: value, others: value}``). Every paper preset must appear in a table
and match every row, so a preset cannot drift from the documented settings silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsvid.config import RunConfig, load_config, preset_names, to_dict

FIDELITY = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"

#: Settings every method's table must cover (the issue's list, as configuration keys).
REQUIRED_KEYS = {
    "train.optimizer", "train.momentum", "train.lr", "train.schedule", "train.tasks", "train.tasks_per_step",
    "train.loss_reduction", "task.way", "task.shot", "task.query", "task.query_sampling", "task.test_query",
    "data.frames", "data.sampling", "data.test_sampling", "data.resize", "data.crop", "data.train_crop",
    "data.flip", "data.normalize", "model.backbone", "model.backbone_weights", "model.trainable",
    "model.backbone_passes", "train.amp", "eval.tasks", "eval.checkpoint",
}


@dataclass
class Row:
    setting: str
    key: str
    expected: Any  # a value, or a dict {preset: value, "others": value}
    released: str


@dataclass
class Table:
    title: str
    presets: list[str]
    rows: list[Row]

    def expected(self, row: Row, preset: str) -> Any:
        if isinstance(row.expected, dict):
            return row.expected.get(preset, row.expected.get("others"))
        return row.expected


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def read_tables(path: Path = FIDELITY) -> list[Table]:
    """The tables of sections with a ``Presets:`` line; rows with a key (not ``—``)."""
    tables = []
    for section in re.split(r"^## ", path.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0]
        presets_line = next((ln for ln in section.splitlines() if ln.startswith("Presets:")), None)
        if presets_line is None:
            continue
        presets = re.findall(r"`([^`]+)`", presets_line)
        lines = [ln for ln in section.splitlines() if ln.startswith("|")]
        header = _cells(lines[0])
        column = {name: header.index(name) for name in ("Setting", "fsvid key", "fsvid preset", "Released code")}
        rows = []
        for line in lines[2:]:  # after the header and the |---| line
            cells = _cells(line)
            key = cells[column["fsvid key"]]
            if key == "—":
                continue
            value = re.search(r"`([^`]*)`", cells[column["fsvid preset"]])
            assert value is not None, f"{path.name}, {title}: row {key} has no `value` in the fsvid preset column"
            rows.append(Row(cells[column["Setting"]], key, yaml.safe_load(value.group(1)), cells[column["Released code"]]))
        tables.append(Table(title, presets, rows))
    return tables


def config_value(config: RunConfig, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def mismatches(table: Table, preset: str, config: RunConfig) -> list[str]:
    """``key: preset has X, docs/fidelity.md says Y`` for every row the config does not match."""
    problems = []
    for row in table.rows:
        actual, expected = config_value(config, row.key), table.expected(row, preset)
        if actual != expected:
            problems.append(f"{row.key}: {preset} has {actual!r}, docs/fidelity.md ({table.title}) says {expected!r}")
    return problems


TABLES = read_tables()
PAPER_PRESETS = sorted(
    name for name in preset_names()
    if name.startswith(("trx_", "strm_", "mastaf_")) and not name.endswith(("_base", "_1shot"))
)


def test_every_paper_preset_is_in_exactly_one_table() -> None:
    listed = [preset for table in TABLES for preset in table.presets]
    assert sorted(listed) == PAPER_PRESETS
    assert {table.title.split()[0] for table in TABLES} == {"TRX", "STRM", "MASTAF"}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.title.split()[0])
def test_each_table_covers_the_settings_and_cites_the_released_code(table: Table) -> None:
    keys = [row.key for row in table.rows]
    assert len(keys) == len(set(keys)), f"{table.title}: a key listed twice"
    assert REQUIRED_KEYS <= set(keys), f"{table.title} lacks {sorted(REQUIRED_KEYS - set(keys))}"
    for row in table.rows:
        config_value(load_config(table.presets[0]), row.key)  # a real configuration key
        assert re.search(r"`(trx|strm|staf)/[^`]+`", row.released), f"{table.title}, {row.key}: no released file cited"


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_preset_matches_the_fidelity_table(preset: str) -> None:
    (table,) = [t for t in TABLES if preset in t.presets]
    assert mismatches(table, preset, load_config(preset)) == []


def test_a_drifted_preset_is_caught() -> None:
    (table,) = [t for t in TABLES if "strm_kinetics" in t.presets]
    drifted = load_config("strm_kinetics", ["train.amp=bf16", "task.query=4", "model.backbone_weights=imagenet"])
    problems = mismatches(table, "strm_kinetics", drifted)
    assert [p.split(":")[0] for p in problems] == ["task.query", "model.backbone_weights", "train.amp"]
    assert "strm_kinetics has 'bf16', docs/fidelity.md (STRM (Thatipelli et al., CVPR 2022)) says 'none'" in problems[2]


@pytest.mark.parametrize("one_shot, five_shot", [("trx_ssv2_full_1shot", "trx_ssv2_full"),
                                                  ("strm_ssv2_full_1shot", "strm_ssv2_full")])
def test_one_shot_presets_change_only_the_shot(one_shot: str, five_shot: str) -> None:
    expected = to_dict(load_config(five_shot, ["task.shot=1", f"name={one_shot}"]))
    assert to_dict(load_config(one_shot)) == expected
