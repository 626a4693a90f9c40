"""Read a GGUF file's header and metadata (no tensors), to check a model before a trial starts.

The format (ggml's): magic `GGUF`, a version, the tensor and key-value counts, then typed
key-value pairs. Only the metadata is read; arrays (the vocabulary) are skipped, not kept.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_ITEMS = 1 << 24  # a vocabulary has some 10^5 tokens; more is not a header
MAX_KEYS = 1 << 16
Value = int | float | bool | str | None


class GGUFError(ValueError):
    """Not a GGUF file, or one whose header is cut short or malformed."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("the file ends inside its header")
    return data


def _unpack(f: BinaryIO, fmt: str) -> int | float | bool:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    n = int(_unpack(f, "<Q"))
    if n > 1 << 28:
        raise GGUFError(f"a string of {n} bytes: not a GGUF header")
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Value:
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = int(_unpack(f, "<I")), int(_unpack(f, "<Q"))
        if item in _SCALARS:  # fixed size: skipped in one seek, never item by item
            size = struct.calcsize(_SCALARS[item]) * count
            here = f.tell()
            if f.seek(0, 2) < here + size:
                raise GGUFError("the file ends inside its header")
            f.seek(here + size)
            return None
        if count > MAX_ITEMS:
            raise GGUFError(f"an array of {count} items: not a GGUF header")
        for _ in range(count):
            _value(f, item)
        return None  # arrays are skipped: nothing here needs them
    raise GGUFError(f"unknown value type {kind}")


def metadata(path: Path) -> dict[str, Value]:
    """The GGUF's key-value metadata (arrays as None); GGUFError says what is wrong."""
    try:
        with open(path, "rb") as f:
            if _read(f, 4) != MAGIC:
                raise GGUFError(f"{path}: not a GGUF file (its first bytes are not 'GGUF')")
            version = int(_unpack(f, "<I"))
            if version not in (2, 3):
                raise GGUFError(f"{path}: GGUF version {version}, expected 2 or 3")
            _tensors, n_kv = _unpack(f, "<Q"), int(_unpack(f, "<Q"))
            if n_kv > MAX_KEYS:
                raise GGUFError(f"{path}: {n_kv} metadata keys: not a GGUF header")
            out: dict[str, Value] = {"general.gguf_version": version}
            for _ in range(n_kv):
                key = _string(f)
                out[key] = _value(f, int(_unpack(f, "<I")))
            return out
    except GGUFError as exc:
        raise GGUFError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def chat_template(path: Path) -> str | None:
    value = metadata(path).get("tokenizer.chat_template")
    return value if isinstance(value, str) else None
