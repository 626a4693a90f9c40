"""Append-only JSONL trace: one event per line, flushed as it happens, so a crash loses nothing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class Trace:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def event(self, type_: str, **fields: Any) -> None:
        record = {"type": type_, "ts": time.time(), **fields}
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
