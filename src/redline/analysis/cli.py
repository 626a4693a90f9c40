"""`redline export inspect DIR` (this module's `app`) and `redline report DIR` (`report_command`).

`report_command` is a plain function so the top-level CLI can mount it as `redline report`
with `app.command("report")(report_command)`; it also works when called directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from redline.analysis.labeller import LabellerError, chat_url, label_run
from redline.analysis.runs import load_run
from redline.cliapp import EXIT_TRIAL_ERROR, check_out_dir, fail, make_app

app = make_app("Export trials to other log formats.")

RunDir = Annotated[Path, typer.Argument(help="run directory: trial folders, summary.json, "
                                             "optional index.sqlite", exists=True,
                                        file_okay=False)]


@app.command("inspect")
def inspect_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR/inspect)")] = None,
    fmt: Annotated[Literal["eval", "json"],
                   typer.Option("--format", help="eval (zip) or json")] = "eval",
) -> None:
    """Write Inspect AI logs (one per model x scenario) that `inspect view` opens."""
    check_out_dir(out or Path(dir) / "inspect", "--out" if out else "DIR")
    check_trials(dir)
    try:
        from redline.analysis.inspect_export import export_inspect  # noqa: PLC0415
    except ImportError as exc:
        fail(f"inspect_ai is not installed ({exc}); pip install 'redline[inspect]'")
    paths = export_inspect(dir, out, fmt)
    if not paths:
        fail(f"no trials found in {dir}")
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"open with: inspect view --log-dir {paths[0].parent}")


def check_trials(folder: Path) -> None:
    """A folder with no trial in it is bad input, for `report` and `export` as for
    `experiment summary`: one line, exit code 2, nothing written."""
    if not load_run(folder):  # its trials
        fail(f"no trials found in {folder}")


def report_command(
    dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="output folder "
                                             "(default DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report's path and the "
                                          "outcome counts as JSON")] = False,
    labeller: Annotated[str | None, typer.Option(
        "--labeller", help="first label every trial with the LLM at this OpenAI-compatible "
                           "endpoint (as `redline label`)")] = None,
    labeller_model: Annotated[str, typer.Option("--labeller-model",
                                                help="the model name sent to it")] = "local",
) -> None:
    """Write DIR/report.html (offline, self-contained) and the figures as PNGs beside it."""
    from redline.analysis.report import build_report  # noqa: PLC0415

    check_out_dir(Path(out) if out else Path(dir), "--out" if out else "DIR")
    check_trials(Path(dir))
    if labeller:
        _label(Path(dir), labeller, labeller_model, None)
    path = build_report(Path(dir), Path(out) if out else None)
    if as_json:
        analysis = json.loads((path.parent / "analysis.json").read_text())
        typer.echo(json.dumps({"report": str(path), "analysis": str(path.parent /
                                                                      "analysis.json"),
                               "outcomes": analysis.get("outcomes"),
                               "left_out": analysis.get("left_out", [])}, indent=1))
    else:
        typer.echo(str(path))


def _label(run_dir: Path, endpoint: str, model: str, api_key_env: str | None) -> int:
    """Label a run's trials; one line per trial on stderr; how many could not be labelled."""
    try:
        results = label_run(run_dir, endpoint, model, api_key_env)
    except LabellerError as exc:
        fail(str(exc))
    for r in results:
        said = "error: " + r.error if r.error or r.llm is None else (
            f"evaluation mentioned: {r.llm.eval_awareness.mentioned} (rules: "
            f"{r.rules.eval_awareness}), knows how: {r.llm.knows_how.value} (rules: "
            f"{r.rules.knows_how})")
        typer.echo(f"{r.trial_id}: {said}", err=True)
    return sum(1 for r in results if r.error)


def label_command(
    dir: RunDir,
    endpoint: Annotated[str, typer.Option("--endpoint", help="an OpenAI-compatible endpoint "
                                          "you name, e.g. http://127.0.0.1:8080/v1")],
    model: Annotated[str, typer.Option("--model", help="the model name sent to it")] = "local",
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="an environment variable holding its API key")] = None,
) -> None:
    """Label each trial's evaluation awareness and knows_how with an LLM, beside the rules'
    labels; writes <trial>/labels.json (runs here, after the trials, never in a sandbox)."""
    try:
        chat_url(endpoint)  # a malformed URL is the first thing said
    except LabellerError as exc:
        fail(str(exc))
    check_trials(dir)
    if _label(Path(dir), endpoint, model, api_key_env):
        raise typer.Exit(EXIT_TRIAL_ERROR)
