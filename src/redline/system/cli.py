"""`redline system build|start`: make an AI system folder and run it by hand."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Literal

import typer

from redline import defaults
from redline.cliapp import check_out_dir, fail, make_app
from redline.system.builder import BuildError, build_system, read_config, start_commands
from redline.system.engines import (
    DEFAULT_ENGINE,
    DEFAULT_MODEL,
    ENGINE_KINDS,
    ENGINE_WHEEL_OPTIONS,
    MODEL_SPECS,
    EngineError,
    parse_model,
)
from redline.system.launcher import LaunchError, start_system

app = make_app("Build and start AI systems under test.")
EngineName = Literal[tuple(ENGINE_KINDS.names())]  # the choices of --engine


@app.command()
def build(
    out: Path = typer.Option(..., "--out", help="folder to create"),
    model: str = typer.Option(DEFAULT_MODEL, "--model",
                              help=MODEL_SPECS),
    force: bool = typer.Option(False, "--force", help="replace a non-empty folder"),
) -> None:
    """Build a self-contained AI system folder (agent program + weights + deploy script)."""
    check_out_dir(out)
    try:
        engine = parse_model(model)
        folder = build_system(engine, out, overwrite=force)
    except (EngineError, BuildError) as exc:
        fail(str(exc))
    start = start_commands(engine)
    typer.echo(f"built {folder}\n  start the LLM server: cd {folder} && {start['llm_server']}"
               f"\n  start the agent:      cd {folder} && {start['agent']}")


@app.command()
def env(engine: EngineName = typer.Option(  # type: ignore[valid-type]
        DEFAULT_ENGINE, "--engine", help="the engine whose environment to build (the CPU "
        "engines share one)"),
        wheel: Path | None = typer.Option(
            None, *ENGINE_WHEEL_OPTIONS, help="a wheel of an engine's package (a CUDA build) "
            "that environments are built with from now on, instead of PyPI's pinned one "
            "(docs/gpu.md)"),
        pypi: bool = typer.Option(False, "--pypi-engines",
                                  help="forget the engine wheels given: back to PyPI's"),
        ) -> None:
    """Build (once) the AI system's own Python environment, shown at /opt/venv in trials."""
    from redline.system.pyenv import (  # noqa: PLC0415
        EnvBuildError,
        ensure_env,
        packages_for,
        set_engine_wheel,
    )

    try:
        if wheel is not None or pypi:
            kept = set_engine_wheel(None if pypi else wheel)
            typer.echo(f"engine wheel from now on: {kept.name if kept else 'PyPI'}")
        folder = ensure_env(engine, quiet=False)
    except EnvBuildError as exc:
        fail(str(exc))
    typer.echo(f"environment for {engine}: {folder} ({', '.join(packages_for(engine))})")


@app.command()
def start(
    folder: Path = typer.Argument(..., exists=True, file_okay=False),
    llm_port: int = typer.Option(defaults.LLM_PORT, min=1, max=65535,
                                 help="port of the LLM server"),
    agent_port: int = typer.Option(defaults.AGENT_PORT, min=1, max=65535,
                                   help="port of the agent"),
) -> None:
    """Start a built system on this host (no sandbox) until Ctrl-C; for manual use."""
    if llm_port == agent_port:
        fail(f"--llm-port and --agent-port are both {llm_port}")
    try:
        cfg = read_config(folder)
    except OSError as exc:
        fail(f"{folder}: not an AI system folder (config.yaml: {exc.strerror})")
    try:
        running = start_system(str(folder.resolve()), cfg["deploy_script"], llm_port=llm_port,
                               agent_port=agent_port, log_dir=folder / "log",
                               python=sys.executable)
    except LaunchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"LLM server pid {running.llm_pid} on :{llm_port}; agent pid {running.agent_pid} "
               f"on :{agent_port}. POST http://127.0.0.1:{agent_port}/chat. Ctrl-C stops both.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for pid in (running.agent_pid, running.llm_pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
