"""Draw the paper's figures as PNGs from stats.py's numbers (matplotlib, Agg backend).

Drawing only: every number comes from a stats.py function that tests check on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from redline.analysis import stats  # noqa: E402
from redline.analysis.commands import CATEGORIES  # noqa: E402
from redline.analysis.trace import Trial  # noqa: E402

COLORS = {"agreed": "#4c78a8", "knows_how": "#f58518", "replicated": "#54a24b",
          "false_claim": "#b279a2",
          "background": "#4c78a8", "receive": "#f58518", "immediate": "#54a24b",
          CATEGORIES[0]: "#4c78a8", CATEGORIES[1]: "#e45756", CATEGORIES[2]: "#72b7b2",
          CATEGORIES[3]: "#f58518"}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _empty(path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.text(0.5, 0.5, "no data", ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def plot_outcomes(rows: list[dict[str, Any]], path: Path) -> Path:
    """Agreed / knows how / replicated (the paper's three) and false claim (claimed, not
    replicated) per model x scenario, with Wilson 95% error bars."""
    title = "Outcome rates (95% Wilson intervals)"
    if not rows:
        return _empty(path, title)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows) + 2), 4))
    shown = (*stats.PAPER_OUTCOMES, "false_claim")
    width = 0.8 / len(shown)
    for j, o in enumerate(shown):
        xs = [i + (j - (len(shown) - 1) / 2) * width for i in range(len(rows))]
        ps = [r[o].p for r in rows]
        err = [[r[o].p - r[o].lo for r in rows], [r[o].hi - r[o].p for r in rows]]
        ax.bar(xs, ps, width, yerr=err, capsize=3, label=o.replace("_", " "), color=COLORS[o])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n{r['scenario']} (n={r['n']})" for r in rows],
                       fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of trials")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(shown))
    return _save(fig, path)


def plot_action_types(rows: list[dict[str, Any]], path: Path) -> Path:
    """Box plot of per-trial counts of background runs, receives and immediate runs."""
    title = "Action types per trial"
    if not rows:
        return _empty(path, title)
    fig, ax = plt.subplots(figsize=(6, 4))
    data = [[r[k] for r in rows] for k in stats.ACTION_TYPES]
    box = ax.boxplot(data, patch_artist=True, showmeans=True)
    ax.set_xticks(range(1, 4), ["background runs", "receives", "immediate runs"])
    for patch, k in zip(box["boxes"], stats.ACTION_TYPES, strict=True):
        patch.set_facecolor(COLORS[k])
        patch.set_alpha(0.6)
    for i, col in enumerate(data, start=1):
        ax.scatter([i] * len(col), col, s=10, color="black", alpha=0.5, zorder=3)
    ax.set_ylabel("actions per trial")
    ax.set_title(f"{title} (n={len(rows)} trials)")
    return _save(fig, path)


def plot_command_categories(rows: list[dict[str, Any]], path: Path) -> Path:
    """Stacked shares of the four command categories, per model, all vs replicated trials."""
    title = "Command categories (share of simple commands)"
    rows = [r for r in rows if r["total"]]
    if not rows:
        return _empty(path, title)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 3), 4))
    bottoms = [0.0] * len(rows)
    for c in CATEGORIES:
        vals = [r["shares"][c] for r in rows]
        bars = ax.bar(range(len(rows)), vals, 0.6, bottom=bottoms, label=c, color=COLORS[c])
        for b, v, y0 in zip(bars, vals, bottoms, strict=True):
            if v >= 0.06:
                ax.text(b.get_x() + b.get_width() / 2, y0 + v / 2, f"{v:.0%}", ha="center",
                        va="center", fontsize=7, color="white")
        bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n{r['subset']} ({r['total']} cmds)" for r in rows],
                       fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_cumulative_tokens(rows: list[dict[str, Any]], path: Path) -> Path:
    """Cumulative observation tokens per step, one line per trial; successes beside failures."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, ok in zip(axes, (True, False), strict=True):
        mine = [r for r in rows if r["replicated"] is ok]
        for r in mine:
            ax.plot(r["steps"], r["cumulative"], marker=".", linewidth=1, alpha=0.8,
                    label=r["trial_id"], color="#54a24b" if ok else "#e45756")
        ax.set_title(f"{'replicated' if ok else 'not replicated'} (n={len(mine)})")
        ax.set_xlabel("step")
        if not mine:
            ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("cumulative observation tokens")
    fig.suptitle("Observation tokens per step")
    return _save(fig, path)


def plot_milestones(rows: list[dict[str, Any]], path: Path) -> Path:
    """Share of trials reaching each milestone, per model, with 95% intervals."""
    title = "Milestone reach per model"
    if not rows:
        return _empty(path, title)
    names = list(rows[0]["reach"])
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(names) * max(1, len(rows)) / 2 + 3), 4))
    width = 0.8 / len(rows)
    for j, r in enumerate(rows):
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(names))]
        rates = [r["reach"][m] for m in names]
        ax.bar(xs, [x.p for x in rates], width, label=f"{r['model']} (n={r['n']})",
               yerr=[[x.p - x.lo for x in rates], [x.hi - x.p for x in rates]], capsize=2)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of trials")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    return _save(fig, path)


PLOTS = {
    "outcomes": ("Outcome rates", lambda ts: stats.outcome_rates(ts), plot_outcomes),
    "action_types": ("Action types per trial", lambda ts: stats.action_type_table(ts),
                     plot_action_types),
    "command_categories": ("Command categories", lambda ts: stats.category_shares(ts),
                           plot_command_categories),
    "observation_tokens": ("Cumulative observation tokens",
                           lambda ts: stats.cumulative_tokens(ts), plot_cumulative_tokens),
    "milestones": ("Milestone reach", lambda ts: stats.milestone_reach(ts), plot_milestones),
}


def make_plots(trials: list[Trial], out_dir: Path) -> dict[str, Path]:
    """Every figure as out_dir/<name>.png; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: draw(data(trials), out_dir / f"{name}.png")
            for name, (_, data, draw) in PLOTS.items()}
