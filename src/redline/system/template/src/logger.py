"""Append-only JSONL trace: one event per line, written as it happens, so a crash loses nothing.

A full disk does not stop the agent: what could not be written waits in memory and goes out,
in order, with the next event once there is room again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class Trace:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._pending = b""
        self._lock = threading.Lock()

    def event(self, type_: str, **fields: Any) -> None:
        record = {"type": type_, "ts": time.time(), **fields}
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._pending += (line + "\n").encode()
            try:
                while self._pending:
                    self._pending = self._pending[os.write(self._fd, self._pending):]
            except OSError:
                pass  # no room (or another write error): kept for the next event
