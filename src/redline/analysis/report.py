"""Write DIR/report.html: figures, tables, findings and a trace viewer in one offline file.

Evaluators open the report from disk, often on machines with no network, so everything is
inline: CSS, JS, PNGs as base64 (they are also written beside it), and the traces as JSON in
a script tag that the viewer renders lazily (only the steps a reader opens), which keeps a
200-step trial with large outputs fast.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from redline.analysis import situation, stats
from redline.analysis.commands import CATEGORIES
from redline.analysis.findings import UNEXPECTED, Finding, findings
from redline.analysis.plots import PLOTS, make_plots
from redline.analysis.runs import load_run, load_summary
from redline.analysis.stats import Rate
from redline.analysis.trace import REPLY_PARTS, Step, Trial, processes_of
from redline.contracts.verdict import OUTCOMES, Verdict

MAX_FIELD_CHARS = 200_000  # per text field in the embedded data; the viewer shows 4,000 first


def _cap(text: Any) -> str:
    s = "" if text is None else str(text)
    if len(s) <= MAX_FIELD_CHARS:
        return s
    cut = len(s) - MAX_FIELD_CHARS
    half = MAX_FIELD_CHARS // 2
    return f"{s[:half]}\n[... {cut} characters left out of the report ...]\n{s[-half:]}"


def step_data(s: Step, tokens: int | None,
              processes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the viewer shows for one step (observation text only when there is no tool);
    `processes`: every process its command started (the kernel record)."""
    p = s.parsed or {}
    t = s.tool or {}
    d: dict[str, Any] = {
        "n": s.step, "kind": s.kind, "action": s.action or ("format error" if s.format_error
                                                            else None),
        **{k: _cap(p.get(k)) for k in REPLY_PARTS},
        "action_input": json.dumps(p.get("action_input"), ensure_ascii=False)
        if p.get("action_input") is not None else "",
        "command": _cap(s.command) if s.command is not None else None,
        "terminal": t.get("terminal_id"), "command_type": t.get("command_type"),
        "status": t.get("status"), "status_code": t.get("status_code"),
        "exit_code": t.get("exit_code"), "stdout": _cap(t.get("stdout")),
        "stderr": _cap(t.get("stderr")), "terminals": t.get("terminals") or {},
        "duration_s": t.get("duration_s"), "format_error": s.format_error,
        "finish": s.finish, "llm_error": s.llm_error, "latency_s": s.latency_s,
        "usage": s.usage, "obs_tokens": tokens,
        "processes": [" ".join(p["argv"]) for p in processes or [] if p.get("argv")],
    }
    if not s.parsed:
        d["reply"] = _cap(s.reply)
    if not s.tool and s.observation:
        d["observation"] = _cap(s.observation)
    return d


def _rate(r: Rate) -> dict[str, Any]:
    return {"k": r.k, "n": r.n, "p": round(r.p, 4), "lo": round(r.lo, 4), "hi": round(r.hi, 4)}


def verdict_summary(v: Verdict | None, status: str | None = None) -> dict[str, Any]:
    """The verdict's headline and each candidate's checks, for the viewer's top; a null
    outcome (never observed) stays null, shown as "–"."""
    keys = ("replicated", "agreed", "knows_how", "claimed_success", "false_claim", "error",
            "steps", "duration_s", "end_reason", "finish_message", "setup", "reason",
            "survival_s")
    if v is None:
        return {**dict.fromkeys(keys), "status": status, "milestones": {}, "candidates": []}
    candidates = [{"agent_port": c.agent.port, "folder": c.agent.folder,
                   "llm_port": c.llm_server.port, "replica": c.replica,
                   "checks": {k: check.passed for k, check in c.checks.items()}}
                  for c in v.candidates]
    return {**{k: getattr(v, k) for k in keys}, "status": status, "milestones": v.milestones,
            "candidates": candidates}


def trial_data(t: Trial, found: list[Finding]) -> dict[str, Any]:
    tokens = {n: k for n, k, _ in stats.observation_tokens(t)}
    return {
        "id": t.trial_id, "model": t.model, "scenario": t.scenario, "task": t.task,
        "protocol": t.protocol,
        "path": str(t.path) if t.path else None,
        "verdict": verdict_summary(t.verdict, t.status),
        "verdict_json": json.dumps(t.verdict.document() if t.verdict else None,
                                   indent=1)[:MAX_FIELD_CHARS],
        "evidence_files": t.evidence.get("files", []),
        "findings": [f.to_dict() for f in found], "actions": stats.action_types(t),
        "said": situation.trial_statements(t),
        "truncated_trace": t.truncated_trace, "other_runs": t.other_runs,
        "end": {k: t.run_end.get(k) for k in ("reason", "message", "steps")},
        "steps": [step_data(s, tokens.get(s.step), processes_of(t, s)) for s in t.steps],
    }


def analysis_data(trials: list[Trial]) -> dict[str, Any]:
    """All numbers of the report, JSON-ready (also written as analysis.json)."""
    per_trial = {t.trial_id: findings(t) for t in trials}
    outcome = [{**{k: r[k] for k in ("model", "scenario", "protocol", "n", "errors")},
                **{o: _rate(r[o]) for o in OUTCOMES}}
               for r in stats.outcome_rates(trials)]
    milestones = [{"model": r["model"], "n": r["n"],
                   "reach": {m: _rate(x) for m, x in r["reach"].items()}}
                  for r in stats.milestone_reach(trials)]
    kinds = (*UNEXPECTED, "refusal", "obstacle")
    unexpected = []
    for model in sorted({t.model for t in trials}):
        row: dict[str, Any] = {"model": model}
        for k in kinds:
            row[k] = sum(1 for t in trials if t.model == model
                         for f in per_trial[t.trial_id] if f.kind == k)
        row["obstacles_resolved"] = sum(1 for t in trials if t.model == model
                                        for f in per_trial[t.trial_id]
                                        if f.kind == "obstacle" and f.resolved)
        unexpected.append(row)
    return {
        "outcomes": outcome, "action_types": stats.action_type_table(trials),
        "awareness": situation.awareness_rates(trials),
        "command_categories": stats.category_shares(trials),
        "observation_tokens": stats.cumulative_tokens(trials), "milestones": milestones,
        "findings_by_model": unexpected,
        "findings": {tid: [f.to_dict() for f in fs] for tid, fs in per_trial.items()},
    }, per_trial


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no '<' can close the tag or open a comment."""
    return (json.dumps(data, ensure_ascii=False, default=str).replace("<", "\\u003c")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def build_report(run_dir: Path, out_dir: Path | None = None) -> Path:
    """Write report.html, the PNGs and analysis.json into out_dir (default: run_dir)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    run = load_run(run_dir)
    trials = run.trials
    summary = load_summary(run_dir, run)
    pngs = make_plots(trials, out_dir)
    data, per_trial = analysis_data(trials)
    data["left_out"] = [{"path": bad.path, "problems": bad.problems} for bad in run.invalid]
    (out_dir / "analysis.json").write_text(json.dumps(data, indent=1, default=str))
    figures = [{"name": name, "title": PLOTS[name][0], "file": path.name,
                "b64": base64.b64encode(path.read_bytes()).decode()}
               for name, path in pngs.items()]
    viewer = {"run": {"dir": str(run_dir), "summary": summary,
                      "generated": datetime.now(UTC).isoformat(timespec="seconds")},
              "trials": [trial_data(t, per_trial[t.trial_id]) for t in trials],
              "stats": {k: data[k] for k in ("outcomes", "findings_by_model")}}
    env = Environment(loader=PackageLoader("redline.analysis", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        title=f"redline report: {run_dir.name}", figures=figures, data=data,
        trials=trials, n_trials=len(trials), viewer_json=_script_json(viewer),
        left_out=data["left_out"],
        categories=CATEGORIES,
    )
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
