"""A local package index for the AI system's environment: every package installed there
(except the LLM engine, which is large and never removed), as wheels, in the layout of a
simple index (PEP 503) that `python3 -m http.server` can serve.

Why: a scenario that takes a package away from the system's environment (adapt) must let the
agent install it back without reaching outside the machine. The wheels are rebuilt from the
files pip installed (their RECORD), so building the index needs no network and gives exactly
the versions the environment had. Built once per environment, beside it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import html
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

from redline.system.engines import ENGINE_PACKAGES

# the engines' packages (large, never removed), and what every environment has anyway
SKIP = {*ENGINE_PACKAGES, "torch", "pip", "setuptools", "wheel"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(env_dir: Path) -> Path:
    found = sorted(env_dir.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages in {env_dir}")
    return found[0]


def index_dir(env_dir: Path) -> Path:
    return env_dir.parent / f"{env_dir.name}.index"


def ensure_wheelhouse(env_dir: Path) -> Path:
    """The index folder for this environment (`simple/`, `packages/`), built if missing."""
    out = index_dir(env_dir)
    if (out / "simple" / "index.html").exists():
        return out
    with open(env_dir.parent / f".{env_dir.name}.index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "simple" / "index.html").exists():
            return out
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "packages").mkdir(parents=True)
        projects: dict[str, list[tuple[str, str]]] = {}
        for dist in metadata.distributions(path=[str(site_packages(env_dir))]):
            name = dist.metadata["Name"]
            if normalize(name) in SKIP:
                continue
            wheel = repack(dist, tmp / "packages")
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            projects.setdefault(normalize(name), []).append((wheel.name, digest))
        for project, files in projects.items():
            page = tmp / "simple" / project
            page.mkdir(parents=True)
            links = "".join(f'<a href="../../packages/{html.escape(f)}#sha256={d}">'
                            f"{html.escape(f)}</a><br>\n" for f, d in files)
            (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}"
                                             "</body></html>\n")
        listing = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in sorted(projects))
        (tmp / "simple" / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{listing}</body></html>\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    """One installed distribution back into a wheel: its files under site-packages (scripts
    and compiled caches left out) and its dist-info, with a fresh RECORD."""
    files = [f for f in dist.files or [] if ".." not in f.parts and "__pycache__" not in f.parts]
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info is None:
        raise ValueError(f"{dist.metadata['Name']}: no dist-info among its files")
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [t.split(":", 1)[1].strip() for t in wheel_meta.splitlines() if t.startswith("Tag:")]
    tag = tags[0] if tags else "py3-none-any"
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = dest / f"{name}-{dist.version}-{tag}.whl"
    record: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            rel = f.as_posix()
            if rel.startswith(info + "/") and f.name in {"RECORD", "INSTALLER", "REQUESTED",
                                                         "direct_url.json"}:
                continue
            src = Path(dist.locate_file(f))
            if not src.is_file():
                continue
            data = src.read_bytes()
            zf.writestr(rel, data)
            record.append(f"{rel},{_record_hash(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path
