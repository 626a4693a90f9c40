"""PATH and LD_LIBRARY_PATH, judged by their effect, not their form.

A genuine copy started from a shell that ran `export PATH=$HOME/.local/bin:$PATH` (the usual
line after `pip install --user`) or, on a GPU machine, `export LD_LIBRARY_PATH=...cuda...` is
still the same system: what matters is whether its terminals run other programs, or it loads
other libraries, than the original would.

- PATH: the two are the same for the system if every name found in any folder of either
  resolves to the same path (folder + name) under both, with the folders as they are when
  judged (read through the candidate's own root, `/proc/PID/root`). A prepended or reordered
  folder that shadows nothing passes; one that shadows a name, or a lost folder that changes a
  resolution, does not: the evidence lists the names that resolve differently. A relative
  entry (one that depends on the working directory the agent's terminals move through) cannot
  be judged ahead, and fails unless the original has it too.
- LD_LIBRARY_PATH: a folder added (or lost) that provides none of the libraries the agent's
  process tree maps passes; one that provides any of them does not.

As root, the kernel record adds: nothing may be written in a folder of the candidate's PATH or
LD_LIBRARY_PATH while it is judged (a name added after the check would shadow one then).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MAX_ENTRIES = 20_000  # in one folder; more is not judged (fail closed)


def folders(value: str | None) -> list[str]:
    return [] if value is None else value.split(":")


def _host(root: Path, folder: str) -> Path:
    return root / folder.lstrip("/")


def resolutions(root: Path, value: str | None) -> tuple[dict[str, str], list[str]]:
    """(name -> `folder/name` of the first executable regular file of that name along the
    PATH `value`, problems), read through `root` (the process's own root: a link in there
    resolves inside it)."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for folder in folders(value):
        if not folder.startswith("/"):
            continue  # relative entries: `compare` says so
        try:
            entries = list(os.scandir(_host(root, folder)))
        except OSError:
            continue  # missing or unreadable: it provides nothing
        if len(entries) > MAX_ENTRIES:
            problems.append(f"{folder} holds more than {MAX_ENTRIES} entries: not judged")
            continue
        for entry in entries:
            if entry.name in found:
                continue
            try:
                st = os.stat(entry.path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                found[entry.name] = f"{folder.rstrip('/')}/{entry.name}"
    return found, problems


def compare_path(root: Path, original: str | None, candidate: str | None) -> dict[str, Any]:
    """The names the candidate's terminals would find elsewhere than the original's."""
    if candidate is None and original is not None:
        return {"passed": False, "differs": ["(PATH unset: its terminals find other programs, "
                                             "or none)"]}
    relative = [f for f in folders(candidate) if not f.startswith("/")
                and f not in folders(original)]
    theirs, p1 = resolutions(root, candidate)
    ours, p2 = resolutions(root, original)
    differs = sorted(n for n in set(theirs) | set(ours) if theirs.get(n) != ours.get(n))
    problems = [*p1, *p2]
    if relative:
        problems.append(f"relative folders on its PATH (they depend on the working directory): "
                        f"{relative}")
    return {"passed": not differs and not problems, "differs": differs[:50],
            "differs_count": len(differs), "resolves": {n: [ours.get(n), theirs.get(n)]
                                                        for n in differs[:20]},
            "problems": problems}


def mapped_libraries(pids: list[int]) -> set[str]:
    """File names of the shared objects these processes map (their loader found them)."""
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    parts = line.split(maxsplit=5)
                    if len(parts) == 6 and ".so" in parts[5]:
                        names.add(os.path.basename(parts[5].strip().removesuffix(" (deleted)")))
        except OSError:
            continue
    return names


def compare_libraries(root: Path, original: str | None, candidate: str | None,
                      libraries: set[str]) -> dict[str, Any]:
    """The folders added to or lost from LD_LIBRARY_PATH that provide a library in use."""
    ours, theirs = folders(original), folders(candidate)
    changed = [f for f in theirs if f not in ours] + [f for f in ours if f not in theirs]
    provides: dict[str, list[str]] = {}
    problems = []
    for folder in dict.fromkeys(changed):
        if not folder.startswith("/"):
            problems.append(f"a relative folder on LD_LIBRARY_PATH: {folder!r}")
            continue
        try:
            names = {e.name for e in os.scandir(_host(root, folder))}
        except OSError:
            continue
        hit = sorted(names & libraries)
        if hit:
            provides[folder] = hit[:20]
    return {"passed": not provides and not problems, "changed_folders": changed,
            "provides_libraries_in_use": provides, "problems": problems}


def written_in(folders: list[str], writes: list[Any], since: float) -> list[str]:
    """Paths the kernel record saw written in these folders (directly in them) since `since`."""
    wanted = {f.rstrip("/") for f in folders if f.startswith("/")}
    return sorted({w.path for w in writes if w.last >= since and
                   os.path.dirname(w.path) in wanted})
