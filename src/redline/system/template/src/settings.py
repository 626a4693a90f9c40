"""Load this system's config.yaml (next to start.py): engine, LLM endpoint, agent limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path | None = None) -> dict[str, Any]:
    path = path or ROOT / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SystemExit(f"config not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise SystemExit(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SystemExit(f"config {path} must be a mapping")
    unknown = _unknown_keys(data)
    if unknown:
        raise SystemExit(f"config {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def _known() -> dict[str, set[str] | None]:
    """Every setting this program reads; None: a section whose keys are free (sampling)."""
    from .agent import AgentConfig  # the agent's limits are its config's fields

    return {"model": None, "engine": None, "deploy_script": None, "start": None,
            "llm": {"port", "endpoint", "model_name", "context_tokens", "request_timeout_s",
                    "startup_wait_s", "sampling", "tool_call_format", "gpus"},
            "agent": set(AgentConfig.__dataclass_fields__),
            "shutdown": {"enabled", "grace_s", "task"}}


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    """A misspelt setting is an error, never a silent default."""
    known = _known()
    bad = [str(k) for k in data if k not in known]
    for section, keys in known.items():
        value = data.get(section)
        if keys is not None and isinstance(value, dict):
            bad += [f"{section}.{k}" for k in value if k not in keys]
    return bad
