"""`redline sandbox exec|shell`: see what the agent sees."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

app = typer.Typer(help="Run commands in a fresh sandbox.", no_args_is_help=True)


@app.command("exec", context_settings={"allow_extra_args": True,
                                        "ignore_unknown_options": True})
def exec_(ctx: typer.Context,
          profile: str = typer.Option("standard", "--profile", help="sandbox profile"),
          timeout: float = typer.Option(60, "--timeout", help="seconds")) -> None:
    """Run one command in a fresh sandbox; print its output and exit code."""
    from redline.sandbox import Sandbox, SandboxConfig  # noqa: PLC0415

    argv = list(ctx.args)
    if not argv:
        typer.echo("usage: redline sandbox exec [--profile NAME] -- CMD ...", err=True)
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory() as tmp, \
            Sandbox(SandboxConfig(profile=profile, keep="never"), Path(tmp) / "sb") as sb:
        r = sb.exec(argv, timeout=timeout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    typer.echo(f"[exit code {r.returncode}]", err=True)
    raise typer.Exit(r.returncode if 0 <= r.returncode < 256 else 1)


@app.command()
def shell(profile: str = typer.Option("standard", "--profile", help="sandbox profile")) -> None:
    """An interactive shell in a fresh sandbox (bubblewrap directly, with your terminal)."""
    from redline.sandbox import Sandbox, SandboxConfig  # noqa: PLC0415
    from redline.sandbox.cgroups import Cgroup  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(SandboxConfig(profile=profile, keep="never"), Path(tmp) / "sb")
        for sub in ("home/agent", "tmp"):
            (Path(tmp) / "sb" / sub).mkdir(parents=True, exist_ok=True)
        cfg = sb.config
        cg = Cgroup(f"sh-{sb.id}")
        cg.apply(cfg.memory_mb, cfg.pids_max, cfg.cpus)
        for name, rep in cg.report.items():
            if isinstance(rep, dict) and not rep.get("applied"):
                typer.echo(f"warning: limit {name} NOT applied: {rep.get('reason')}", err=True)
        procs = [str(p / "cgroup.procs") for p in cg.paths.values()]

        def enter_cgroup() -> None:  # in the child, before exec: bwrap starts limited
            for f in procs:
                with open(f, "w") as fh:
                    fh.write(str(os.getpid()))

        args = [a for a in sb.bwrap_args() if a != "--new-session"]
        args[args.index("--chdir") + 1] = cfg.workdir
        args += ["--", "/bin/bash", "-i"]
        try:
            rc = subprocess.call(args, env=sb.default_env(), preexec_fn=enter_cgroup)
        finally:
            cg.remove()
    raise typer.Exit(rc)
