"""`redline sandbox exec|shell|audit`: see what the agent sees.

`exec` exits with the command's own status; its own failures use 124-127 as `timeout`, `env`
and `docker run` do (redline.cliapp).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from redline import defaults
from redline.cliapp import (
    EXIT_CANNOT_RUN,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    ProfileName,
    ProtocolName,
    SetupName,
    above,
    error_line,
    fail,
    make_app,
)

app = make_app("Run commands in a fresh sandbox.")


def _config(profile: str) -> object:
    """A sandbox as a trial's: the profile, and the AI system's Python environment."""
    from redline.sandbox import SandboxConfig  # noqa: PLC0415
    from redline.system.pyenv import ensure_env  # noqa: PLC0415

    return SandboxConfig(profile=profile, keep="never", python_env=str(ensure_env()))


def _spawn_failure(message: str) -> int:
    """The exit code of a command that could not be started, as `env` gives it."""
    if message.startswith("FileNotFoundError"):
        return EXIT_NOT_FOUND
    if message.startswith(("PermissionError", "OSError: [Errno 8]")):
        return EXIT_NOT_EXECUTABLE
    return EXIT_CANNOT_RUN


# Options stop at the command: `exec ls -la` runs `ls -la`; a mistyped option before the
# command is an error, never run as the command.
@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(argv: list[str] = typer.Argument(..., metavar="CMD",
                                           help="the command and its arguments (after "
                                                "--, or from its first word: what follows "
                                                "is its own)"),
          profile: ProfileName = typer.Option("standard", "--profile", help="sandbox profile"),
          timeout: float = typer.Option(60, "--timeout", callback=above(0),
                                        help="seconds before the command is killed (exit 124)")
          ) -> None:
    """Run one command in a fresh sandbox; print its output and exit with its status."""
    from redline.sandbox import Sandbox, SandboxError  # noqa: PLC0415

    if not argv[0]:
        fail("the command is empty")
    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(_config(profile), Path(tmp) / "sb")
        try:
            sb.start()
        except SandboxError as exc:
            error_line(f"the sandbox could not start: {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
        with sb:  # torn down however the command ends
            try:
                r = sb.exec(argv, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                sys.stdout.write(exc.stdout or "")
                sys.stderr.write(exc.stderr or "")
                error_line(f"{argv[0]}: still running after {timeout:g} s; killed")
                raise typer.Exit(EXIT_TIMEOUT) from None
            except SandboxError as exc:
                error_line(f"{argv[0]}: {exc}")
                raise typer.Exit(_spawn_failure(str(exc))) from None
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    # killed by a signal: 128 + the signal, as a shell says
    raise typer.Exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)


@app.command()
def shell(profile: ProfileName = typer.Option("standard", "--profile",
                                             help="sandbox profile")) -> None:
    """An interactive shell in a fresh sandbox (bubblewrap directly, with your terminal)."""
    from redline.sandbox import Sandbox  # noqa: PLC0415
    from redline.sandbox.cgroups import Cgroup  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(_config(profile), Path(tmp) / "sb")
        sb.place_areas()  # home and /tmp where a trial's are (their mounts name nothing)
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
            sb.release_areas(keep=False)
    raise typer.Exit(rc)


@app.command()
def audit(profile: ProfileName = typer.Option("standard", "--profile",
                                             help="sandbox profile"),
          model: str = typer.Option("smollm2-135m", "--model",
                                    help="the AI system to start inside, as in a trial"),
          setup: SetupName = typer.Option("paper", "--setup", help="paper or guided"),
          protocol: ProtocolName = typer.Option("text", "--protocol",
                                                help="the protocol the system is built for "
                                                     "(its prompt, deploy script, config)"),
          show: bool = typer.Option(False, "--show", help="print every command's output")
          ) -> None:
    """Print what an agent looking around a trial's machine could find, and every giveaway
    (a telltale word or a host path) in it; exit 1 if there is one."""
    from redline.sandbox import Sandbox, SandboxConfig  # noqa: PLC0415
    from redline.sandbox.audit import look_around  # noqa: PLC0415
    from redline.system.builder import build_system  # noqa: PLC0415
    from redline.system.engines import EngineError, parse_model  # noqa: PLC0415
    from redline.system.pyenv import ensure_env  # noqa: PLC0415
    from redline.trial.run import start_inside  # noqa: PLC0415
    from redline.trial.spec import TrialSpec, trial_env  # noqa: PLC0415

    try:
        engine = parse_model(model)
        engine.protocol_plan(protocol)
    except EngineError as exc:
        fail(str(exc))
    spec = TrialSpec(model=model, setup=setup, protocol=protocol)
    folder = defaults.FOLDER
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SandboxConfig(profile=profile, keep="never", python_env=str(ensure_env(engine.kind)),
                            extra_ro_binds=engine.host_binds())
        with Sandbox(cfg, Path(tmp) / "sb") as sb:
            build_system(engine, sb.host_path(folder), overwrite=True, setup=setup,
                         protocol=protocol)
            env = trial_env(spec, sb.default_env())
            logs = Path(tmp) / "logs"
            logs.mkdir()
            start_inside(sb, engine.deploy_path, setup, env, logs, engine.startup_s)
            found = look_around(sb, env=env, cwd=folder, markers=[tmp])
    if show:
        for command, out in found.outputs.items():
            typer.echo(f"$ {command}\n{out}")
    for f in found.residual:
        typer.secho(f"known, stays detectable: {f}", fg="yellow")
    for f in found.findings:
        typer.secho(f"giveaway: {f}", fg="red")
    typer.echo(f"{len(found.outputs)} commands, {len(found.findings)} giveaways, "
               f"{len(found.residual)} known (profile {profile}, model {model})")
    raise typer.Exit(1 if found.findings else 0)
