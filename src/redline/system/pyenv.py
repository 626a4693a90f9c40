"""The AI system's own Python environment, as the paper's machine had one (a conda env).

The agent runs `pip list`, reads `sys.prefix` and its PATH: it must find the packages its
`requirements.txt` names plus its LLM engine, at an ordinary path, and nothing of the harness.
So each environment is a venv built once, with Debian's (or the host's) system interpreter,
*inside* a throwaway bubblewrap that mounts its folder at `INNER` (`/opt/venv`): every script,
`pyvenv.cfg` and compiled file names `/opt/venv`, never the host folder. Trials bind it
read-only at the same place. Environments are keyed by their package list, so a GPU engine's and
the CPU engines' live side by side.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from redline.sandbox.config import find_bwrap, system_python
from redline.sandbox.hostroot import copy_tree, neutral_root
from redline.system.engines import DEFAULT_ENGINE, ENGINE_KINDS, ENGINE_PACKAGES

INNER = "/opt/venv"
TEMPLATE_REQUIREMENTS = Path(__file__).parent / "template" / "requirements.txt"
DATA_ENV = "REDLINE_DATA_DIR"
INSTALLER_ENV = "REDLINE_INSTALLER"  # "pip" forces pip where uv is at hand


class EnvBuildError(RuntimeError):
    """The environment could not be built (no interpreter, no bubblewrap, pip failed)."""


def requirements() -> list[str]:
    lines = TEMPLATE_REQUIREMENTS.read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def packages_for(engine_kind: str) -> list[str]:
    """What the system needs: its requirements.txt plus what its engine needs (its entry in
    system/engines.py). The CPU engines share one environment, so the same machine serves
    every CPU trial; a GPU engine's is its own, built on first use on the GPU machine
    (`redline system env --engine NAME`). An engine wheel of the user's (a CUDA build, given
    with `redline system env --engine-wheel PATH`) takes its pinned package's place."""
    if engine_kind not in ENGINE_KINDS:
        raise EnvBuildError(f"no environment recipe for engine {engine_kind!r}")
    wheels = engine_wheels()
    pkgs = [f"{name} @ file://{WHEELS_INNER}/{wheels[name].relative_to(_wheels())}"
            if (name := _project(p)) in wheels else p
            for p in ENGINE_KINDS.get(engine_kind).packages]
    return sorted({*requirements(), *pkgs})


WHEELS_INNER = "/opt/.wheels"  # where the build sees the user's wheels


def _project(requirement: str) -> str:
    return re.split(r"[<>=!~ @\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _wheels() -> Path:
    return data_dir() / "wheels"


def _record() -> Path:
    return data_dir() / "engine-wheels.json"


def engine_wheels() -> dict[str, Path]:
    """The engine wheels environments are built with instead of PyPI's: project -> wheel."""
    try:
        kept = json.loads(_record().read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, rel in (kept.items() if isinstance(kept, dict) else ()):
        wheel = _wheels() / str(rel)
        if wheel.is_file():
            out[str(name)] = wheel
    return out


def set_engine_wheel(path: Path | None) -> Path | None:
    """Keep a copy of `path`, a wheel of an engine's package (a CUDA build of one, say), as
    the one environments are built with from now on; None: every
    engine package back to PyPI's pinned one. The wheel keeps its own name (pip reads its
    version there), and its content decides the environment (its folder is its hash)."""
    if path is None:
        _record().unlink(missing_ok=True)
        return None
    name = _project(path.name.split("-", 1)[0])
    if not path.is_file() or path.suffix != ".whl" or name not in ENGINE_PACKAGES:
        raise EnvBuildError(f"{path}: not a wheel file of an engine's package "
                            f"({', '.join(sorted(ENGINE_PACKAGES))}): NAME-VERSION-...whl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    folder = _wheels() / digest
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / path.name)
    kept = {k: str(v.relative_to(_wheels())) for k, v in engine_wheels().items()}
    kept[name] = f"{digest}/{path.name}"
    _record().write_text(json.dumps(kept, indent=1) + "\n")
    return folder / path.name


def data_dir() -> Path:
    """Where environments live: $REDLINE_DATA_DIR; else, as root, the neutral folder whose
    path names nothing in the sandbox's mounts (redline.sandbox.hostroot); else beside the
    harness's own venv (so a fresh clone's fresh .venv gets fresh ones), else
    ~/.local/share/redline."""
    if os.environ.get(DATA_ENV):
        folder = Path(os.environ[DATA_ENV])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{folder} is not writable")
        except (OSError, ValueError) as exc:
            raise EnvBuildError(f"{DATA_ENV}={os.environ[DATA_ENV]!r} cannot hold the AI "
                                f"system's environments: {exc}") from None
        return folder
    return neutral_root() or _user_data_dir()


def _user_data_dir() -> Path:
    if os.access(sys.prefix, os.W_OK):
        return Path(sys.prefix) / "share" / "redline"
    return Path.home() / ".local" / "share" / "redline"


def env_dir(packages: list[str], python: str | None = None) -> Path:
    python = python or system_python()
    key = hashlib.sha256("\n".join([os.path.realpath(python), *sorted(packages)]).encode())
    return data_dir() / "envs" / key.hexdigest()[:16]


def ensure_env(engine_kind: str = DEFAULT_ENGINE, *, quiet: bool = True) -> Path:
    """The environment for an engine, built on first use (a file lock makes concurrent trials
    wait for one build). Returns its host folder."""
    pkgs = packages_for(engine_kind)
    folder = env_dir(pkgs)
    if _done(folder).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _done(folder).exists() and not _adopt(folder):
            build_env(pkgs, folder, quiet=quiet)
    return folder


def _adopt(folder: Path) -> bool:
    """Take over the same environment built where environments lived before the neutral
    folder (beside the harness's venv): hard links, in a second, instead of a rebuild."""
    old = _user_data_dir() / "envs" / folder.name
    if old == folder or not _done(old).exists():
        return False
    tmp = folder.with_name(f".adopt-{folder.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        copy_tree(old, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    _done(folder).write_text(_done(old).read_text())
    return True


def _done(folder: Path) -> Path:
    """The built-and-complete mark, beside the folder (inside it the agent would see it)."""
    return folder.with_name(folder.name + ".done")


def find_uv() -> str | None:
    """uv, where it is at hand (on PATH, or beside the harness's interpreter, where
    scripts/install.sh puts it): it installs in a fraction of pip's time. None: pip does."""
    if os.environ.get(INSTALLER_ENV, "uv") != "uv":
        return None
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    return found if os.access(found, os.X_OK) else None


AS_PIP = Path(__file__).with_name("as_pip.py")  # what uv leaves, as pip leaves it


def _uv_env() -> dict[str, str]:
    """uv's settings, with pip's index settings carried over (uv does not read pip's files)."""
    env: dict[str, str] = {}
    # (not pip's find-links: /opt, where such folders usually are, is empty in the build)
    for pip_key, uv_key in (("PIP_INDEX_URL", "UV_DEFAULT_INDEX"),
                            ("PIP_EXTRA_INDEX_URL", "UV_INDEX")):
        if os.environ.get(pip_key) and not os.environ.get(uv_key):
            env[uv_key] = os.environ[pip_key]
    # copies, never links into the cache: the environment is shared read-only by every trial
    return {**env, "UV_CACHE_DIR": "/opt/.uv-cache", "UV_LINK_MODE": "copy",
            "UV_NO_PROGRESS": "1"}


def build_env(packages: list[str], folder: Path, *, quiet: bool = True) -> None:
    """venv + packages inside a bubblewrap where `folder` is `/opt/venv`: the interpreter's own
    `venv` (so `pyvenv.cfg`, the activate scripts and pip are the ordinary ones), then the
    packages with uv where it is at hand (then `as_pip.py`), else with pip. The host's
    package index settings and caches are used, as at install time."""
    python = system_python()
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    cache = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    cache.mkdir(parents=True, exist_ok=True)
    uv = find_uv()
    uv_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
    pkgs = " ".join(_quote(p) for p in packages)
    if uv is not None:
        uv_cache.mkdir(parents=True, exist_ok=True)
        install = (f"/opt/.uv pip install {'-q' if quiet else ''} --compile-bytecode "
                   f"--python {INNER}/bin/python {pkgs}; "
                   f"{INNER}/bin/python -I -B /opt/.as_pip.py {INNER} {pkgs}")
    else:
        install = (f"{INNER}/bin/python -m pip install --disable-pip-version-check "
                   f"{'-q' if quiet else ''} {pkgs}")
    script = f"set -e; {python} -m venv {INNER}; {install}"
    argv = [find_bwrap(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--tmpfs", "/opt", "--bind", str(tmp), INNER,
            "--bind", str(cache), "/opt/.pip-cache", "--die-with-parent", "--unshare-pid",
            "--chdir", "/tmp"]
    if any(WHEELS_INNER in p for p in packages):  # the user's own wheels
        argv += ["--ro-bind", str(_wheels()), WHEELS_INNER]
    if uv is not None:  # at fixed paths: where they are may be hidden (a checkout in /tmp)
        argv += ["--bind", str(uv_cache), "/opt/.uv-cache", "--ro-bind", uv, "/opt/.uv",
                 "--ro-bind", str(AS_PIP), "/opt/.as_pip.py"]
    argv += ["--", "/bin/sh", "-c", script]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX",
                        "UV_FIND_LINKS")}  # (a local folder: not in the build's view)
    env.update(PIP_CACHE_DIR="/opt/.pip-cache", PATH="/usr/local/bin:/usr/bin:/bin")
    if uv is not None:
        env.update(_uv_env())
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EnvBuildError(f"could not build the AI system's Python environment: {exc}") \
            from exc
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EnvBuildError("could not build the AI system's Python environment "
                            f"({', '.join(packages)}):\n{(proc.stderr or proc.stdout)[-2000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.chmod(0o755)
    tmp.rename(folder)
    _done(folder).write_text("\n".join(packages) + "\n")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
