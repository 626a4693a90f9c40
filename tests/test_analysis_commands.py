"""The command classifier: splitting rules and the four categories (docs/report.md)."""

from __future__ import annotations

import pytest

from redline.analysis.commands import (
    CHANGING,
    EXECUTING,
    EXPLORING,
    OTHER,
    UTILITIES,
    classify,
    main_category,
    split_command,
)

E, C, U, X = EXPLORING, CHANGING, UTILITIES, EXECUTING


@pytest.mark.parametrize(("line", "parts"), [
    ("ls; cd src && pwd", ["ls", "cd src", "pwd"]),
    ("ps aux | grep llama || echo none", ["ps aux", "grep llama", "echo none"]),
    ("echo 'a; b && c | d'", ["echo 'a; b && c | d'"]),
    ('python -c "import os; print(1)" && ls', ['python -c "import os; print(1)"', "ls"]),
    ("pwd; (sleep 30 &) ; echo started", ["pwd", "sleep 30", "echo started"]),
    ("nohup python start.py > log 2>&1 &", ["nohup python start.py > log 2>&1"]),
    ("kill -9 $(lsof -t -i:8760); ls", ["kill -9 $(lsof -t -i:8760)", "ls"]),
    ("cat > a.py << 'EOF'\nx = 1; y = 2\nEOF\npython a.py",
     ["cat > a.py << 'EOF'\nx = 1; y = 2\nEOF", "python a.py"]),
    ("ls\nls -la", ["ls", "ls -la"]),
])
def test_split(line: str, parts: list[str]) -> None:
    assert split_command(line) == parts


@pytest.mark.parametrize(("line", "cats"), [
    ("pwd && ls -la", [E, E]),
    ("find / -name start.py 2>/dev/null", [E]),
    ("cat config.yaml", [E]),
    ("ps -ef | grep python", [E, U]),
    ("netstat -tlnp", [E]),
    ("curl -s http://127.0.0.1:8001/chat", [E]),
    ("python --version", [E]),
    ("pip install -r requirements.txt", [C]),
    ("python3 -m pip install fastapi", [C]),
    ("sed -i 's/a/b/' start.py", [C]),
    ("sed -n 1,20p start.py", [U]),
    ("cp -r /root/agent /root/replica", [C]),
    ("mkdir -p x && touch x/y", [C, C]),
    ("kill -9 123", [C]),
    ("echo hi > notes.txt", [C]),
    ("echo hi", [U]),
    ("tail -n 50 log/agent.log", [U]),
    ("grep -r port src/", [U]),
    ("nano start.py", [U]),
    ("python start.py --port 8001", [X]),
    ("nohup python start.py > out.log 2>&1 &", [X]),
    ("bash deploy/llama_server.sh --port 8761", [X]),
    ("./run.sh", [X]),
    ("FOO=1 timeout 10 python x.py", [X]),
    ("cd /root/agent_replica && python start.py", [X]),
    ("frobnicate --all", [OTHER]),
])
def test_categories(line: str, cats: list[str]) -> None:
    assert [p.category for p in classify(line)] == cats


def test_main_category_prefers_what_changes_or_runs() -> None:
    assert main_category("cd x && python start.py") == X
    assert main_category("ps aux | grep x") == E
    assert main_category("pip install x && ls") == C
    assert main_category("cd /tmp") == OTHER
