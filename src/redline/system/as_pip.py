"""Leave an environment that uv filled as pip would have left it.

The AI system's environment is built with uv (pyenv.build_env) because it is several times
faster, but the agent reads its environment (`pip list`, `pip show`, site-packages, the console
scripts in bin/): nothing there may differ from the ordinary pip-built environment it is in every
other way, or name another tool. What uv leaves differently, and this puts right:
- each package's `INSTALLER` says `uv`: pip writes `pip`;
- every package gets `REQUESTED`: pip marks only those named on its command line;
- console scripts have uv's body: pip writes its own (below), for the same entry point;
- `RECORD` leaves out the compiled bytecode: pip lists each `.pyc` (no hash, no size);
- a `.lock` file at the environment's top.
Each changed file's line in `RECORD` gets its new hash and size.

Run by the environment's own interpreter, standalone (no redline import):
    /opt/venv/bin/python -I -B as_pip.py /opt/venv NAME [NAME ...]
where the names are the requirements pip would have been given.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import importlib.util
import io
import re
import sys
from pathlib import Path

PIP_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {name}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def requested(names: list[str]) -> set[str]:
    """Project names out of requirement strings (`engine==1.2`, `pyyaml`)."""
    return {normalize(re.split(r"[\s<>=!~;\[(@]", n.strip(), maxsplit=1)[0]) for n in names}


def console_scripts(info: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string((info / "entry_points.txt").read_text())
    except (OSError, configparser.Error):
        return {}
    out: dict[str, str] = {}
    for section in ("console_scripts", "gui_scripts"):
        if parser.has_section(section):
            out.update({k.strip(): v.strip() for k, v in parser.items(section)})
    return out


def fix(env: Path, wanted: set[str]) -> None:
    (env / ".lock").unlink(missing_ok=True)
    python = str(env / "bin" / "python")
    for info in sorted(env.glob("lib/python3*/site-packages/*.dist-info")):
        site = info.parent
        record, installer = info / "RECORD", info / "INSTALLER"
        if not record.is_file() or (installer.is_file() and installer.read_bytes() == b"pip\n"):
            continue  # pip's own work (the venv's pip itself)
        rows = {row[0]: row for row in csv.reader(io.StringIO(record.read_text())) if row}
        name = normalize(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        changed: dict[str, bytes | None] = {}  # RECORD path -> new content (None: removed)
        changed[f"{info.name}/INSTALLER"] = b"pip\n"
        if name not in wanted:
            changed[f"{info.name}/REQUESTED"] = None
        for script, target in console_scripts(info).items():
            module, _, attr = target.partition(":")
            attr = attr.split("[", 1)[0].strip()
            rel = f"../../../bin/{script}"
            if rel in rows and attr:
                changed[rel] = PIP_SCRIPT.format(python=python, module=module.strip(),
                                                 name=attr.split(".")[0], func=attr).encode()
        for rel, body in changed.items():
            path = (site / rel).resolve()
            if body is None:
                path.unlink(missing_ok=True)
                rows.pop(rel, None)
            elif rel in rows or rel.endswith("/INSTALLER"):
                mode = path.stat().st_mode if path.exists() else 0o644
                path.write_bytes(body)
                path.chmod(mode)
                rows[rel] = [rel, digest(body), str(len(body))]
        for rel in [r for r in rows if r.endswith(".py") and not r.startswith("../")]:
            pyc = importlib.util.cache_from_source(rel)
            if (site / pyc).is_file():
                rows.setdefault(pyc, [pyc, "", ""])
        rows[f"{info.name}/RECORD"] = [f"{info.name}/RECORD", "", ""]
        out = io.StringIO()
        writer = csv.writer(out)  # its line ends too (\r\n)
        for row in sorted(rows.values()):  # as pip writes it
            writer.writerow(row)
        record.write_text(out.getvalue())


if __name__ == "__main__":
    fix(Path(sys.argv[1]), requested(sys.argv[2:]))
