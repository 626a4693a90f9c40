"""Reading what someone else wrote (a user's experiment file or a stand-in model's rules, a file an
agent may have written inside its sandbox), bounded and typed before it is read.

- Regular files only: a FIFO would block for ever, a device (`/dev/zero`) never ends, a folder
  is not a file. The file is opened without blocking and checked through its descriptor, so a
  name swapped after the check is still refused.
- Sizes, at most `limit` bytes (each reader says its own).
- YAML: at most `MAX_DEPTH` levels of nesting, and at most `MAX_NODES` nodes once every alias
  is expanded (an alias bomb expands to billions from a few lines: it is counted, never
  expanded); TOML: the same depth. Both read from the composed document, never run code.

Each problem is one `InputError` naming the file and what is wrong (docs: README, "Exit codes").
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_CONFIG_BYTES = 4 << 20  # an experiment file, a stand-in model's rules, a config.yaml
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK:
         "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder",
         stat.S_IFLNK: "a link"}


class InputError(ValueError):
    """An input that is not what it must be: one line, naming the file."""


def kind(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def regular_file(path: Path | str, what: str = "file") -> Path:
    """`path` if it is a regular file (links followed); InputError naming what it is else."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: is {kind(st.st_mode)}, not a regular file")
    return path


def read_bytes(path: Path | str, limit: int, what: str = "file") -> bytes:
    """The whole of a regular file of at most `limit` bytes; InputError otherwise."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise InputError(f"{what} not found: {path}") from None
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: is {kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise InputError(f"{path}: {st.st_size} bytes; a {what} may have at most {limit}")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:  # grew while read
                raise InputError(f"{path}: more than {limit} bytes; a {what} may have at most "
                                 f"{limit}")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: Path | str, limit: int, what: str = "file") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Depth and expanded size of a composed YAML document, a shared (aliased) node counted
    again at every place it appears, without expanding anything."""
    seen: dict[int, tuple[int, int]] = {}  # node -> (expanded size, height)

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if id(node) in seen:
            size, height = seen[id(node)]
            if depth + height > MAX_DEPTH:
                raise InputError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            return size, height
        seen[id(node)] = (1, 0)  # a node inside itself (a recursive alias) counts once
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        size, height = 1, 0
        for child in children:
            s, h = measure(child, depth + 1)
            size, height = size + s, max(height, h + 1)
            if size > MAX_NODES:
                raise InputError(f"{where}: more than {MAX_NODES} values once its aliases "
                                 "are expanded")
        seen[id(node)] = (size, height)
        return size, height

    measure(root, 0)


def load_yaml(text: str, where: str) -> Any:
    """A YAML document (safe types only) whose depth and expanded size are bounded."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, where)
        return loader.construct_document(node)
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to read") from None
    finally:
        loader.dispose()


def _depth(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InputError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    children = value.values() if isinstance(value, dict) else value if isinstance(
        value, list) else ()
    for child in children:
        _depth(child, where, depth + 1)


def load_toml(text: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to read") from None
    _depth(data, where)
    return data


def load_yaml_file(path: Path | str, limit: int = MAX_CONFIG_BYTES, what: str = "file") -> Any:
    return load_yaml(read_text(path, limit, what), str(path))


def read_regular(root: Path, inner: str, limit: int = 4096) -> str | None:
    """The text (at most `limit` bytes) of `root/inner` if every component is a real
    directory and the last a regular file: a link planted anywhere on the way (by an agent,
    inside its sandbox) is never followed, a FIFO never blocks. None otherwise."""
    parts = [p for p in inner.split("/") if p]
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(leaf, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read(limit).decode("utf-8", "replace")
