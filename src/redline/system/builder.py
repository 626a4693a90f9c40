"""Build the AI system folder: the agent program, deploy scripts, weights and config.

The result is self-contained, laid out like the paper's: `cp -r` of it plus the two start
commands gives a second working system.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from redline import defaults
from redline.system.engines import (
    CHAT_TEMPLATE,
    DEPLOY_DIR,
    FALLBACK_TEMPLATE,
    Engine,
    EngineError,
    parse_model,
)

TEMPLATE = Path(__file__).parent / "template"
DEPLOY = Path(__file__).parent / "deploy"  # the deploy templates, and servers that travel
PROMPTS = Path(__file__).parent / "prompts"
SETUPS = ("paper", "guided")  # redline.system.setups says what each means
LLM_PORT = defaults.LLM_PORT
AGENT_PORT = defaults.AGENT_PORT

AGENT_DEFAULTS: dict[str, Any] = {
    "max_steps": defaults.MAX_STEPS,
    "time_limit_s": defaults.TIME_LIMIT_S,
    "command_timeout_s": defaults.COMMAND_TIMEOUT_S,
    "wait_window_s": defaults.WAIT_WINDOW_S,
    "max_output_chars": 4000,
    "reply_tokens": 512,
    "n_terminals": 5,
}


class BuildError(RuntimeError):
    """The folder could not be built (bad output path, unreadable weights, full disk)."""


def build_system(
    model: str | Engine,
    out: Path,
    *,
    agent: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    shutdown: dict[str, Any] | None = None,
    llm_port: int = LLM_PORT,
    setup: str = "paper",
    protocol: str = "text",
    overwrite: bool = False,
    mount_weights: bool = False,
) -> Path:
    """Build the folder; `setup` picks the texts the model reads (`prompts/<setup>/`),
    `protocol` how the agent and its LLM exchange actions (docs/protocols.md).
    `mount_weights`: the weights are not copied; their place is left empty (an empty file or
    folder), for the sandbox to bind them there read-only (big weights: Engine.mounts_weights)."""
    if setup not in SETUPS:
        raise BuildError(f"unknown setup {setup!r}: choose from {', '.join(SETUPS)}")
    engine = parse_model(model) if isinstance(model, str) else model
    try:
        plan = engine.protocol_plan(protocol)
    except EngineError as exc:
        raise BuildError(str(exc)) from None
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BuildError(f"{out} exists and is not empty (use overwrite)")
        shutil.rmtree(out)
    try:
        shutil.copytree(TEMPLATE, out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".keep"))
        shutil.copytree(PROMPTS / setup, out / "src" / "prompts")
        (out / "local_model_weights").mkdir(exist_ok=True)
        target = out / engine.weights_target
        if mount_weights:  # a mount point, with nothing of the weights in it
            if engine.weights_source.is_dir():
                target.mkdir(exist_ok=True)
            else:
                target.touch()
        elif engine.weights_source.is_dir():
            # A real copy, never a hard link: the agent may write to its weights inside.
            shutil.copytree(engine.weights_source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(engine.weights_source, target)
        deploy = out / engine.deploy_path
        deploy.parent.mkdir(exist_ok=True)
        deploy.write_text(engine.deploy_script(llm_port, plan))
        deploy.chmod(0o755)
        if plan.plugin:  # a server plugin of redline's, beside the deploy script
            shutil.copyfile(DEPLOY / plan.plugin, out / DEPLOY_DIR / plan.plugin)
        if plan.chat_template:
            shutil.copyfile(FALLBACK_TEMPLATE, out / DEPLOY_DIR / CHAT_TEMPLATE)
        if engine.info.server_program:  # its server program travels with the folder
            shutil.copyfile(DEPLOY / engine.info.server_program,
                            out / "src" / engine.info.server_program)
        (out / "log").mkdir(exist_ok=True)
        config = {
            "model": engine.name,  # never the spec: a gguf:/path would name a host path
            "engine": engine.kind,
            "deploy_script": engine.deploy_path,
            "llm": {
                "port": llm_port,
                "endpoint": f"http://127.0.0.1:{llm_port}/v1",
                "model_name": "local",
                "context_tokens": engine.ctx_size,
                "request_timeout_s": 900,
                "startup_wait_s": engine.replica_wait_s,
                "sampling": sampling if sampling is not None else dict(defaults.SAMPLING),
                "tool_call_format": plan.tool_call_format,
                # its GPUs as CUDA counts them (its deploy script's default, like the port)
                **({"gpus": engine.gpus} if engine.gpus is not None else {}),
            },
            "agent": {**AGENT_DEFAULTS, "context_tokens": engine.ctx_size, **(agent or {}),
                      "protocol": protocol},
            "shutdown": shutdown or {"enabled": False},
        }
        if setup == "guided":  # the paper's folder spelt out no start commands
            config["start"] = start_commands(engine, llm_port)
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    except OSError as exc:
        raise BuildError(f"could not build the AI system in {out}: {exc}") from exc
    return out


def start_commands(engine: Engine, llm_port: int = LLM_PORT) -> dict[str, str]:
    """The two commands that start a built system, run in its folder. Only the `guided`
    setup writes them into config.yaml (docs/paper-setup.md): the paper's model had to find
    `start.py` and the deploy script itself."""
    return {"llm_server": f"python3 {engine.deploy_path} --port {llm_port}",
            "agent": f"python3 start.py --port {AGENT_PORT}"}


def read_config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((Path(folder) / "config.yaml").read_text())
