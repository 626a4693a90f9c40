"""Reading and writing the files a trial leaves, in one place: JSON Lines (the agent's trace,
the scenario services' logs) read tolerantly, and JSON documents (verdict.json,
summary.json) written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_jsonl(path: Path | None) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file; torn or corrupt lines (a crash mid-write) and
    anything that is not an object are skipped, and a missing file is empty."""
    rows: list[dict[str, Any]] = []
    if path is None or not Path(path).exists():
        return rows
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def load_events(path: Path | None) -> list[dict[str, Any]]:
    """Events of an agent's trace.jsonl (docs/ARCHITECTURE.md): objects with a `type`."""
    return [e for e in read_jsonl(path) if "type" in e]


def atomic_write_json(path: Path, data: Any) -> None:
    """Readers (and a resume after SIGKILL) see the old file or the whole new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2, default=str))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
