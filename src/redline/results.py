"""Reading and writing the files a trial leaves, in one place: JSON Lines (the agent's trace,
the scenario services' logs) read tolerantly, and JSON documents (verdict.json,
summary.json) written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from redline.inputs import read_bytes

# A trace or a service log larger than this is not read (it holds what an agent wrote).
JSONL_LIMIT = 512 << 20


def read_jsonl(path: Path | None) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file; torn or corrupt lines (a crash mid-write) and
    anything that is not an object are skipped, and a missing file is empty. Only a regular
    file of at most JSONL_LIMIT bytes is read (a link to /dev/zero, a FIFO: InputError)."""
    rows: list[dict[str, Any]] = []
    if path is None or not os.path.lexists(path):
        return rows
    text = read_bytes(path, JSONL_LIMIT, "JSON Lines file").decode("utf-8", errors="replace")
    for line in text.splitlines():
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
    """Readers (and a resume after SIGKILL) see the old file or the whole new one, never half;
    a write that fails (a full disk, a folder that refuses it) leaves no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(data, indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


# Where a document goes when the folder meant for it cannot take it (full, read-only, not
# permitted): the user's state folder, else the machine's temporary folder.
FALLBACK_ENV = "XDG_STATE_HOME"


def fallback_dirs() -> list[Path]:
    state = Path(os.environ.get(FALLBACK_ENV) or Path.home() / ".local" / "state")
    return [state / "redline" / "unsaved", Path("/tmp") / f"redline-unsaved-{os.getuid()}"]


def write_elsewhere(name: str, data: Any) -> Path | None:
    """`data` as `<fallback>/<name>`, in the first fallback folder that takes it (None: none
    did; the caller still has the data and prints it)."""
    for folder in fallback_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / name, data)
            return folder / name
        except OSError:
            continue
    return None
