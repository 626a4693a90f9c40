"""Per-cell rates with 95% Wilson intervals: with 10 trials a cell, the interval is the result.

Counted one way (`redline.contracts.rates.outcome_rates`): rates over judged trials; trials
whose verdict carries an `error` (the harness could not run or judge them) are errors, not
failures of the model. Only verdicts that validate are counted; the files that do not are
listed under `left_out` by path and field. summary.json keeps the flat counts that
`redline run` writes, plus one entry per cell; it is written only from what validates, never
when nothing does (a good summary.json is never replaced by zeros), and atomically.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from rich.markup import escape
from rich.table import Table

from redline.contracts.rates import outcome_rates
from redline.contracts.verdict import (
    OUTCOMES,
    UNOBSERVED,
    InvalidFile,
    problems_of,
    read_json_file,
)
from redline.experiment.store import TrialRow, load_rows
from redline.results import atomic_write_json

# 1: before versions were written. 2: `schema_version`, `left_out`, `n` as judged trials.
SUMMARY_SCHEMA_VERSION = 2
SUMMARY = "summary.json"


class SummaryFile(BaseModel):
    """What a reader of summary.json relies on, checked strictly; the rest of the document
    (cells' details, timestamps) is kept as written. Version 1 had no `schema_version` and
    no `left_out` (the earliest, no cells either); it reads the same way."""

    model_config = ConfigDict(extra="allow")

    schema_version: StrictInt = 1
    trials: StrictInt = Field(ge=0)
    # absent from the earliest summaries (`redline run`'s flat counts); counts when present
    judged: StrictInt | None = Field(None, ge=0)
    errors: StrictInt | None = Field(None, ge=0)
    replicated: StrictInt | None = Field(None, ge=0)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    left_out: list[dict[str, Any]] = Field(default_factory=list)


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json, validated (`SummaryFile`); raises InvalidFile naming the path and field."""
    data = read_json_file(path)
    try:
        checked = SummaryFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(path, problems_of(exc)) from None
    if checked.schema_version > SUMMARY_SCHEMA_VERSION:
        raise InvalidFile(path, [f"schema_version: {checked.schema_version} is not one this "
                                 f"version reads (1 to {SUMMARY_SCHEMA_VERSION})"])
    return checked.model_dump()


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _cell(model: str, scenario: str, rows: list[TrialRow]) -> dict[str, Any]:
    finished = [r for r in rows if r["verdict"] is not None and r["status"] in ("done", "error")]
    verdicts = [r["verdict"] for r in finished if r["verdict"] is not None]
    counted = outcome_rates(verdicts)
    judged = [v for v in verdicts if v.is_judged]
    cell: dict[str, Any] = {
        "model": model, "scenario": scenario, "trials": len(rows), "finished": len(finished),
        "judged": counted.n, "errors": counted.errors, "pending": len(rows) - len(finished),
    }
    rates = {}
    for key in OUTCOMES:
        r = counted.rates[key]
        cell[key] = r.k
        rates[key] = {"rate": round(r.p, 4) if r.n else None, "low": round(r.lo, 4),
                      "high": round(r.hi, 4), "n": r.n}
    cell["rates"] = rates
    cell["mean_steps"] = _mean([float(v.steps) for v in judged])
    cell["mean_duration_s"] = _mean([float(v.duration_s) for v in judged
                                     if v.duration_s is not None])
    specs = sorted({v.model for v in verdicts})
    cell["model_spec"] = specs[0] if len(specs) == 1 else specs
    cell["trial_ids"] = [r["trial_id"] for r in rows]
    return cell


def summarize(out_dir: Path) -> dict[str, Any]:
    """Summary of a results folder (an experiment's index, or a folder of verdict.json files)."""
    found = load_rows(out_dir)
    groups: dict[tuple[str, str], list[TrialRow]] = {}
    for row in found.rows:
        groups.setdefault((str(row["model"]), str(row["scenario"])), []).append(row)
    cells = [_cell(m, s, rs) for (m, s), rs in groups.items()]
    totals: Counter[str] = Counter()
    for cell in cells:
        for key in ("trials", "finished", "judged", "errors", "pending", *OUTCOMES):
            totals[key] += cell[key]
    flat: dict[str, Any] = {"schema_version": SUMMARY_SCHEMA_VERSION}
    flat.update({k: totals[k] for k in ("trials", "finished", "judged", *OUTCOMES, "errors",
                                        "pending")})
    if len(cells) == 1:  # the keys `redline run` writes for its single cell
        flat.update(model=cells[0]["model_spec"], scenario=cells[0]["scenario"])
    flat["trials_ids"] = [r["trial_id"] for r in found.rows]
    flat["left_out"] = [{"path": bad.path, "problems": bad.problems} for bad in found.invalid]
    return {**flat, "cells": cells, "generated_at": datetime.now(UTC).isoformat()}


def write_summary(out_dir: Path) -> dict[str, Any]:
    """summary.json of a results folder, written one way for `redline run` and experiments;
    not written when no verdict validates (whatever summary.json is there stays)."""
    summary = summarize(out_dir)
    if summary["trials"]:
        atomic_write_json(Path(out_dir) / SUMMARY, summary)
    return summary


def left_out_lines(summary: dict[str, Any]) -> list[str]:
    """One line per file that did not validate: its path and its bad fields."""
    return [f"{bad['path']}: {'; '.join(bad['problems'])}" for bad in summary.get("left_out", [])]


def _rate(cell: dict[str, Any], key: str) -> str:
    r = cell["rates"][key]
    if r["rate"] is None:
        return UNOBSERVED
    return f"{cell[key]}/{r.get('n', cell['judged'])} {r['low']:.2f}-{r['high']:.2f}"


def summary_table(summary: dict[str, Any], title: str = "redline experiment") -> Table:
    left_out = len(summary.get("left_out", []))
    caption = (f"{left_out} verdict file(s) left out: they do not validate"
               if left_out else None)
    table = Table(title=f"{escape(title)}: rates with 95% Wilson intervals", caption=caption)
    for col in ("model", "scenario", "replicated", "agreed", "knows how", "false claim",
                "steps", "time s", "errors", "pending"):
        left = col in ("model", "scenario")
        table.add_column(col, justify="left" if left else "right", no_wrap=not left,
                         min_width=8 if left else None)
    for cell in sorted(summary["cells"], key=lambda c: (c["model"], c["scenario"])):
        table.add_row(escape(cell["model"][-40:]), escape(cell["scenario"]),
                      _rate(cell, "replicated"), _rate(cell, "agreed"), _rate(cell, "knows_how"),
                      _rate(cell, "false_claim"),
                      UNOBSERVED if cell["mean_steps"] is None else f"{cell['mean_steps']:.1f}",
                      UNOBSERVED if cell["mean_duration_s"] is None
                      else f"{cell['mean_duration_s']:.1f}",
                      str(cell["errors"]), str(cell["pending"]))
    return table
