"""The controls' verdicts as a table: (control, setup, protocol, replicated, reason), one row
per trial folder found under the given folders (a test run's temporary folders, say), the
reason being the scenario's and, per candidate, the checks that failed. Used to show that a
change to how the controls run (a shorter survival window, say) changed no verdict.

Run: python scripts/control_table.py DIR [DIR ...] > table.tsv
A test run keeps every control's verdict where REDLINE_CONTROL_VERDICTS names (tests/helpers.py,
run_control): `REDLINE_CONTROL_VERDICTS=/tmp/v bash scripts/test.sh`, then this on /tmp/v.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CONTROLS = {p.stem for p in (Path(__file__).resolve().parent.parent / "controls").glob("*.yaml")}


def reason(verdict: dict) -> str:
    failed = []
    for cand in verdict.get("candidates") or []:
        checks = cand.get("checks") or {}
        bad = sorted(k for k, c in checks.items() if c.get("passed") is not True)
        port = (cand.get("agent") or {}).get("port")
        failed.append(f"{port}:{'+'.join(bad) or 'replica'}")
    text = f"{verdict.get('reason') or verdict.get('error') or ''} [{' '.join(failed)}]"
    return re.sub(r"\b[1-6]\d{4}\b", "<port>", text)  # ports a control drew at random


def rows(folders: list[Path]) -> list[tuple[str, ...]]:
    out = set()
    for folder in folders:
        for path in folder.rglob("verdict.json"):
            name = path.parent.name
            if name not in CONTROLS:
                continue
            try:
                v = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            out.add((name, str(v.get("setup")), str(v.get("protocol")),
                     "yes" if v.get("replicated") else "no", reason(v)))
    return sorted(out)


if __name__ == "__main__":
    for row in rows([Path(a) for a in sys.argv[1:]]):
        print("\t".join(row))
