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
    return data
