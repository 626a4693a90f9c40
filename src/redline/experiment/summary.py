"""Per-cell rates with 95% Wilson intervals: with 10 trials a cell, the interval is the result.

Rates count trials that produced a judgement; trials whose verdict carries an `error` (the harness
could not run or judge them) are reported as errors, not as failures of the model.
summary.json keeps the flat counts that `redline run` writes, plus one entry per cell.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from redline.analysis.stats import wilson
from redline.experiment.store import load_rows
from redline.results import atomic_write_json
from redline.trial.verdict import OUTCOMES


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _cell(model: str, scenario: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in rows if r["verdict"] is not None and r["status"] in ("done", "error")]
    judged = [r["verdict"] for r in finished if not r["verdict"].get("error")]
    n = len(judged)
    cell: dict[str, Any] = {
        "model": model, "scenario": scenario, "trials": len(rows), "finished": len(finished),
        "judged": n, "errors": len(finished) - n, "pending": len(rows) - len(finished),
    }
    rates = {}
    for key in OUTCOMES:
        k = sum(bool(v.get(key)) for v in judged)
        cell[key] = k
        r = wilson(k, n)
        rates[key] = {"rate": round(r.p, 4) if n else None, "low": round(r.lo, 4),
                      "high": round(r.hi, 4)}
    cell["rates"] = rates
    cell["mean_steps"] = _mean([float(v.get("steps") or 0) for v in judged])
    cell["mean_duration_s"] = _mean([float(v["duration_s"]) for v in judged
                                     if v.get("duration_s") is not None])
    specs = sorted({str(r["verdict"].get("model")) for r in finished})
    cell["model_spec"] = specs[0] if len(specs) == 1 else specs
    cell["trial_ids"] = [r["trial_id"] for r in rows]
    return cell


def summarize(out_dir: Path) -> dict[str, Any]:
    """Summary of a results folder (an experiment's index, or a folder of verdict.json files)."""
    rows = load_rows(out_dir)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["model"]), str(row["scenario"])), []).append(row)
    cells = [_cell(m, s, rs) for (m, s), rs in groups.items()]
    totals: Counter[str] = Counter()
    for cell in cells:
        for key in ("trials", "finished", "judged", "errors", "pending", *OUTCOMES):
            totals[key] += cell[key]
    flat: dict[str, Any] = {k: totals[k] for k in ("trials", "finished", "judged", *OUTCOMES,
                                                   "errors", "pending")}
    if len(cells) == 1:  # the keys `redline run` writes for its single cell
        flat.update(model=cells[0]["model_spec"], scenario=cells[0]["scenario"])
    flat["trials_ids"] = [r["trial_id"] for r in rows]
    return {**flat, "cells": cells, "generated_at": datetime.now(UTC).isoformat()}


def write_summary(out_dir: Path) -> dict[str, Any]:
    """summary.json of a results folder, written one way for `redline run` and experiments."""
    summary = summarize(out_dir)
    atomic_write_json(Path(out_dir) / "summary.json", summary)
    return summary


def _rate(cell: dict[str, Any], key: str) -> str:
    r = cell["rates"][key]
    if r["rate"] is None:
        return "-"
    return f"{cell[key]}/{cell['judged']} {r['low']:.2f}-{r['high']:.2f}"


def summary_table(summary: dict[str, Any], title: str = "redline experiment") -> Table:
    table = Table(title=f"{title}: rates with 95% Wilson intervals")
    for col in ("model", "scenario", "replicated", "agreed", "knows how", "steps", "time s",
                "errors", "pending"):
        left = col in ("model", "scenario")
        table.add_column(col, justify="left" if left else "right", no_wrap=not left,
                         min_width=8 if left else None)
    for cell in sorted(summary["cells"], key=lambda c: (c["model"], c["scenario"])):
        table.add_row(cell["model"][-40:], cell["scenario"], _rate(cell, "replicated"),
                      _rate(cell, "agreed"), _rate(cell, "knows_how"),
                      "-" if cell["mean_steps"] is None else f"{cell['mean_steps']:.1f}",
                      "-" if cell["mean_duration_s"] is None else f"{cell['mean_duration_s']:.1f}",
                      str(cell["errors"]), str(cell["pending"]))
    return table
