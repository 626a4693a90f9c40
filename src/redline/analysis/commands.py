"""Classify shell commands into the paper's four categories.

The paper counted, in successful runs, what agents spent their commands on: *exploring*
the environment, *changing* it, *using utilities* and *executing programs*. A command line
is first split into simple commands on `&&`, `||`, `;`, `|`, `&` and newlines (outside
quotes, parentheses and here-documents); each simple command gets one category. The rules,
with examples, are in docs/report.md; keep the two in step.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from redline.system.engines import ENGINE_PROGRAMS

EXPLORING = "exploring"
CHANGING = "changing the environment"
UTILITIES = "using utilities"
EXECUTING = "executing programs"
OTHER = "other"
CATEGORIES = (EXPLORING, CHANGING, UTILITIES, EXECUTING)

# Programs by category (the first word after wrappers and variable assignments).
EXPLORE_PROGRAMS = frozenset("""
ls ll find pwd cat ps pgrep pidof tree du df stat file which whereis type command whoami id
uname hostname printenv netstat ss lsof nvidia-smi free top htop uptime readlink realpath
nproc lscpu lsblk mount ip ifconfig curl wget nc ncat telnet ping dig nslookup host
""".split())
CHANGE_PROGRAMS = frozenset("""
pip pip3 conda mamba uv apt apt-get dpkg yum apk cp mv rm rmdir mkdir touch chmod chown ln
kill pkill killall fuser rsync scp tar unzip gunzip zip git tee export unset dd truncate
install shred unlink reboot shutdown poweroff halt init systemctl service setsid
""".split())
UTILITY_PROGRAMS = frozenset("""
grep egrep fgrep rg head tail less more awk sed cut sort uniq wc tr diff cmp jq xargs echo
printf date sleep vi vim nano emacs ed base64 md5sum sha256sum watch yes true false test [
basename dirname seq tput clear history alias
""".split())
EXEC_PROGRAMS = frozenset("""
python python3 bash sh zsh source . node npm npx uvicorn gunicorn flask fastapi java go make
cargo ruby perl php
""".split()) | frozenset(ENGINE_PROGRAMS)  # the LLM servers' own (system/engines.py)
WRAPPERS = frozenset("sudo nohup time nice env exec stdbuf ionice setsid".split())
NAVIGATION = frozenset({"cd", "pushd", "popd"})
SEPARATORS = ("&&", "||", ";;", ";", "|&", "|", "&", "\n")
REDIRECT_TO_FILE = re.compile(r"(?<![0-9&<])(?:[0-9]?>>?|&>>?)\s*(?!&)([^\s;&|<>]+)")
INSPECT_FLAGS = frozenset({"--version", "-V", "--help", "version"})


@dataclass(frozen=True)
class Part:
    """One simple command of a command line and its category."""

    text: str
    program: str
    category: str


def split_command(line: str) -> list[str]:
    """Simple commands of a shell line, split outside quotes, parentheses and heredocs."""
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(line)
    quote: str | None = None
    depth = 0
    heredoc: list[str] = []
    while i < n:
        c = line[i]
        if quote:
            buf.append(c)
            if c == "\\" and quote == '"' and i + 1 < n:
                buf.append(line[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            buf.append(line[i : i + 2])
            i += 2
            continue
        if c in "'\"":
            quote = c
            buf.append(c)
            i += 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        if depth == 0 and line.startswith("<<", i) and not line.startswith("<<<", i):
            m = re.match(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", line[i:])
            if m:
                heredoc.append(m.group(2))
                buf.append(m.group(0))
                i += len(m.group(0))
                continue
        if depth == 0 and c == "\n" and heredoc:
            # the here-document body belongs to the command that opened it
            end = i
            for word in heredoc:
                m = re.compile(rf"^[ \t]*{re.escape(word)}[ \t]*$", re.M).search(line, end + 1)
                end = m.end() if m else n
            buf.append(line[i:end])
            heredoc = []
            i = end
            continue
        sep = next((s for s in SEPARATORS if line.startswith(s, i)), None) if depth == 0 else None
        if sep and not (sep == "&" and (line.startswith("&>", i) or (buf and buf[-1] in "<>"))):
            parts.append("".join(buf))
            buf = []
            i += len(sep)
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf))
    out: list[str] = []
    for p in (p.strip() for p in parts):
        if p.startswith("(") and p.endswith(")") and not p.startswith("$("):
            out.extend(split_command(p[1:-1]))
        elif p.startswith("{") and p.endswith("}"):
            out.extend(split_command(p[1:-1].rstrip("; ")))
        elif p:
            out.append(p)
    return out


def words(part: str) -> list[str]:
    """Shell words of a simple command; unbalanced quotes fall back to whitespace split."""
    try:
        return shlex.split(part, comments=False, posix=True)
    except ValueError:
        return part.split()


def program_of(part: str) -> tuple[str, list[str]]:
    """The program a simple command runs (after wrappers and VAR=value) and its arguments."""
    w = words(part)
    while w:
        head = w[0]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", head):
            w = w[1:]
        elif head in WRAPPERS:
            w = w[1:]
            while w and (w[0].startswith("-") or (head == "nice" and w[0].isdigit())):
                w = w[1:]
        elif head == "timeout":
            w = w[1:]
            while w and (w[0].startswith("-") or re.match(r"^\d+[smhd]?$", w[0])):
                w = w[1:]
        else:
            break
    if not w:
        return "", []
    prog = w[0].rsplit("/", 1)[-1] if "/" in w[0] and not w[0].endswith("/") else w[0]
    if w[0].startswith("./") or w[0].endswith((".sh", ".py")):
        prog = w[0]
    return prog, w[1:]


def writes_file(part: str) -> bool:
    """True when the command redirects output into a file (not /dev/null)."""
    return any(m.group(1) not in ("/dev/null", "/dev/stderr", "/dev/stdout")
               for m in REDIRECT_TO_FILE.finditer(_strip_quoted(part)))


def _strip_quoted(text: str) -> str:
    return re.sub(r"'[^']*'|\"(?:\\.|[^\"\\])*\"", "''", text)


def classify_part(part: str) -> str:
    """Category of one simple command (see docs/report.md, 'Command classifier')."""
    prog, args = program_of(part)
    if not prog or prog in NAVIGATION:
        return OTHER
    base = prog.rsplit("/", 1)[-1]
    if base.startswith("python") and args[:2] == ["-m", "pip"]:
        return CHANGING
    if base == "sed" and any(a.startswith("-i") or a == "--in-place" for a in args):
        return CHANGING
    if base in ("perl",) and any(a.startswith("-i") for a in args):
        return CHANGING
    if base == "find" and any(a in ("-delete", "-exec") for a in args):
        return CHANGING if "-delete" in args or "rm" in args else EXPLORING
    if args and args[0] in INSPECT_FLAGS:
        return EXPLORING
    if base in EXEC_PROGRAMS or base.startswith("python3.") or prog.endswith(
            (".sh", ".py")) or prog.startswith(("./", "/")):
        return EXECUTING  # a program run with its output sent to a log is still a run
    if writes_file(part):
        return CHANGING
    if base in ("git",) and args and args[0] in ("status", "log", "diff", "show"):
        return EXPLORING
    if base in ("systemctl", "service") and args and args[0] in ("status", "list-units"):
        return EXPLORING
    if base in EXPLORE_PROGRAMS:
        return EXPLORING
    if base in CHANGE_PROGRAMS:
        return CHANGING
    if base in UTILITY_PROGRAMS:
        return UTILITIES
    return OTHER


def classify(line: str) -> list[Part]:
    """Each simple command of a line with its program and category; `cd` is left out."""
    out = []
    for p in split_command(line):
        prog, _ = program_of(p)
        if prog in NAVIGATION:
            continue  # only sets the directory for what follows; not counted
        out.append(Part(p, prog.rsplit("/", 1)[-1] if prog else "", classify_part(p)))
    return out


def main_category(line: str) -> str:
    """One category for a whole line: its last part that changes or executes, else its first.

    `cd x && python start.py` is executing; `ps aux | grep x` is exploring. Used to group a
    failed command with the later command that fixes it (findings.py).
    """
    parts = classify(line)
    if not parts:
        return OTHER
    strong = [p for p in parts if p.category in (CHANGING, EXECUTING)]
    return strong[-1].category if strong else parts[0].category
