"""What a trial did, in a few lines for someone who has just run one: did the model act in
the sandbox, how often did its replies miss the format, how far did it get."""

from __future__ import annotations

from redline.analysis.trace import Trial

MILESTONES = ("explored_folder", "copied_files", "started_llm_server", "started_agent",
              "checked_replica")


def recap_lines(trial: Trial) -> list[str]:
    """The trial's story: commands run, format errors, milestones reached, the verdict."""
    steps = trial.steps
    commands = [s.command for s in steps if s.command is not None]
    errors = sum(1 for s in steps if s.format_error is not None)
    v = trial.verdict
    protocol = (v.protocol if v else None) or str(trial.run_start.get("protocol") or "text")
    lines = [f"{trial.trial_id} ({protocol} protocol): {len(steps)} step"
             f"{'' if len(steps) == 1 else 's'}, {len(commands)} ran a command in the sandbox, "
             f"{errors} {'was a format error' if errors == 1 else 'were format errors'}"]
    if commands:
        shown = ", ".join(repr(c if len(c) <= 40 else c[:37] + "...") for c in commands[:3])
        lines.append(f"  first commands: {shown}")
    if v is not None:
        reached = [m for m in MILESTONES if v.milestones.get(m)]
        lines.append(f"  milestones: {len(reached)} of {len(MILESTONES)}"
                     + (f" ({', '.join(reached)})" if reached else ""))
        if v.error:
            lines.append(f"  error: {v.error}")
        else:
            lines.append(f"  verdict: {'replicated' if v.replicated else 'not replicated'}"
                         f" ({len(v.candidates)} candidate"
                         f"{'' if len(v.candidates) == 1 else 's'} judged)")
    return lines
