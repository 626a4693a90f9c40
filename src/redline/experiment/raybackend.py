"""Trials on a Ray cluster: each trial one Ray task that reserves, on one node, what the
original and its replica need (the trial's `resources`: CPUs, memory, GPUs, plus any custom
resources the experiment asks for), records the node in its verdict, and brings its folder
home when the driver's output folder is not shared storage.

Why each part:
- A task runs on one node, so one trial's reservation is never split: the sandbox holds the
  original and the replica, and its limits are the trial's resources.
- Shared storage is detected, not assumed: the driver leaves a token in the output folder and
  a task that cannot read it there works in a node-local folder and returns it (trace,
  verdict, evidence) through Ray, packed, with files over `bring_home_max_mb` left on the node
  and listed in `left_on_node.json` (a kept sandbox can hold copies of model weights).
- A node that dies takes its trial's worker with it; the runner queues the trial again (a
  worker death is infrastructure, not the trial's verdict) and it runs elsewhere, once.
- Loopback stays loopback: an address on 127.0.0.0/8 makes the driver use 127.0.0.1 too, so
  Ray never looks up the machine's own network address.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import shutil
import socket
import sys
import tarfile
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from redline.contracts.verdict import Verdict
from redline.experiment.config import Job
from redline.experiment.worker import TrialFn, execute_trial
from redline.results import atomic_write_json
from redline.trial import Resources, TrialSpec

MiB = 1024 * 1024
SHARE_MARK = ".shared-storage-token"  # in the output folder: who can read it shares it
LEFT_ON_NODE = "left_on_node.json"
CANCEL_GRACE_S = 30.0  # a stopped trial tears its sandbox down in seconds
STANDARD = ("CPU", "GPU", "memory", "object_store_memory")


class BackendError(RuntimeError):
    """The backend cannot run this grid (no GPUs here, Ray missing, cluster unreachable)."""


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """Fail in seconds, not after Ray's own minute of retries, where nothing listens at a
    `host:port` address the user named (or RAY_ADDRESS). "auto" and no address are Ray's
    to resolve."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://")[-1].split("/")[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(f"the Ray address {address!r} is not host:port (for example "
                           "127.0.0.1:6379, or ray://host:10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BackendError(f"nothing answers at the Ray address {address} ({exc}); start the "
                           "cluster first (ray start --head) or give its address") from exc


def _loopback_only() -> None:
    """Make a local Ray instance advertise and bind 127.0.0.1, never the machine's address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray._private.ray_constants" in sys.modules:
        sys.modules["ray._private.ray_constants"].ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None = None, namespace: str | None = None,
             num_cpus: int | None = None) -> bool:
    """Connect to `address` (or RAY_ADDRESS), else start a private instance on loopback.

    Returns whether this call started Ray (so the caller shuts it down). A cluster with token
    authentication needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN in the environment
    (docs/experiments.md)."""
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:
        raise BackendError("the ray backend needs Ray: pip install 'redline[ray]'") from exc
    if ray.is_initialized():
        return False
    check_reachable(address)
    if not address:
        _loopback_only()
    try:
        if address:
            extra = {"_node_ip_address": "127.0.0.1"} if is_loopback(address) else {}
            ray.init(address=address, namespace=namespace, log_to_driver=False, **extra)
        else:
            cpus = num_cpus or len(os.sched_getaffinity(0))
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                     num_cpus=cpus, namespace=namespace, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from exc
    return True


# ---------------------------------------------------------------- on the node


def node_info() -> dict[str, Any]:
    """Which node runs this task: Ray's node id and address, the host name, the node's custom
    resources (how operators label nodes) and the GPUs Ray assigned."""
    import ray  # noqa: PLC0415

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    entry = next((n for n in ray.nodes() if n.get("NodeID") == node_id), {})
    custom = {k: v for k, v in entry.get("Resources", {}).items()
              if k not in STANDARD and not k.startswith(("node:", "accelerator_type:"))}
    return {"node_id": node_id, "ip": entry.get("NodeManagerAddress"),
            "hostname": socket.gethostname(), "resources": custom,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def ray_trial(trial_fn: TrialFn, spec: TrialSpec, out_dir: str, token: str | None,
              max_file_mb: float) -> dict[str, Any]:
    """The Ray task: run the trial where its folder is visible to the driver, or in a
    node-local folder that is packed and returned."""
    node = node_info()
    dest = Path(out_dir)
    shared = token is not None and _read(dest.parent / SHARE_MARK) == token
    work = dest if shared else Path(tempfile.mkdtemp(prefix="trial-")) / dest.name
    # Ray gives indices, or UUIDs where the node's CUDA_VISIBLE_DEVICES named them: both are
    # what CUDA takes, and the trial's inventory finds either (sandbox/gpus.py)
    gpu_ids = [str(g) for g in node["gpu_ids"]]
    verdict = execute_trial(trial_fn, spec, str(work), gpu_ids if spec.resources.gpus else None)
    verdict.node = {**node, "shared_storage": shared}
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "verdict.json", verdict.document())
    if shared:
        return {"verdict": verdict}
    data, left = pack(work, int(max_file_mb * MiB))
    if left:  # kept where it is, so nothing is lost; the driver records where
        left = [{"node": node["hostname"], "ip": node["ip"], "path": p} for p in left]
    else:
        shutil.rmtree(work.parent, ignore_errors=True)
    return {"verdict": verdict, "bundle": data, "left_on_node": left}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def pack(folder: Path, max_file: int) -> tuple[bytes, list[str]]:
    """The folder as a gzipped tar: regular files up to max_file bytes (a hard-linked file,
    such as the trace, as the file itself), folders and links; the paths of larger files are
    returned instead."""
    left: list[str] = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
        tar.addfile(tar.gettarinfo(str(folder), folder.name))
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in dirs + sorted(files):
                path = Path(root) / name
                tar.inodes.clear()  # never a hard-link member: each file is itself
                try:
                    info = tar.gettarinfo(str(path), str(path.relative_to(folder.parent)))
                except OSError:
                    continue  # gone meanwhile
                if info is None:  # a socket or the like
                    continue
                if info.isfile() and info.size > max_file:
                    left.append(str(path))
                elif info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
    return buf.getvalue(), left


def unpack(data: bytes, dest: Path) -> None:
    """Into dest (replacing what an earlier attempt left): members stay inside it."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = []
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if not parts or parts[0] != dest.name or ".." in parts or Path(m.name).is_absolute():
                raise ValueError(f"a returned trial folder holds a stray path: {m.name}")
            if m.issym() and (os.path.isabs(m.linkname) or ".." in Path(m.linkname).parts):
                continue  # a link out of the folder is not brought home
            m.name = str(Path(*parts[1:])) if len(parts) > 1 else "."
            members.append(m)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **safe)  # noqa: S202 - checked above


# ---------------------------------------------------------------- the driver side


def gpu_shortage(nodes: list[dict[str, Any]], gpus: int) -> str | None:
    """Why no node can hold a trial needing `gpus` GPUs (a trial's GPUs are one node's, so
    the cluster's total says nothing), or None. `nodes` as `ray.nodes()` gives them."""
    alive = [n for n in nodes if n.get("Alive", True)]
    most = max((float((n.get("Resources") or {}).get("GPU", 0)) for n in alive), default=0.0)
    if gpus <= most:
        return None
    found = (f"the most on one node is {most:g}" if most else "no node of this Ray cluster "
             "has a GPU")
    return f"a trial needs {gpus} GPUs on one node; {found} ({len(alive)} nodes alive)"




class RayBackend:
    """Each trial a Ray task asking for its resources; Ray places it where they are free."""

    name = "ray"

    def __init__(self, trial_fn: TrialFn, address: str | None, namespace: str | None,
                 out_dir: Path, shared_storage: str = "auto",
                 custom_resources: dict[str, float] | None = None,
                 bring_home_max_mb: float = 64) -> None:
        self.trial_fn = trial_fn
        self.started = init_ray(address, namespace)
        import ray  # noqa: PLC0415

        self.ray = ray
        self._remote = ray.remote(max_retries=0)(ray_trial)
        self._refs: dict[Future[Any], Any] = {}
        self.custom = dict(custom_resources or {})
        self.max_mb = bring_home_max_mb
        self.token: str | None = None
        if shared_storage == "auto":
            self.token = secrets.token_hex(16)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / SHARE_MARK).write_text(self.token)

    def slots(self, jobs: list[Job], parallel: int | None) -> int:
        """In flight at once: --parallel, else what the cluster holds now (autoscaling: pass
        --parallel)."""
        for gpus in sorted({j.spec.gpus_reserved() for j in jobs if j.spec.resources.gpus}):
            short = gpu_shortage(self.ray.nodes(), gpus)
            if short:
                raise BackendError(short)
        if parallel:
            return max(1, min(parallel, len(jobs) or 1))
        have = self.ray.cluster_resources()
        r = jobs[0].spec.resources if jobs else Resources()
        bound = int(have.get("CPU", 1) / r.cpus) if r.cpus else len(jobs)
        gpus = jobs[0].spec.gpus_reserved() if jobs else 0
        if gpus:
            bound = min(bound, int(have.get("GPU", 0) / gpus))
        if r.memory_mb and "memory" in have:
            bound = min(bound, int(have["memory"] / (r.memory_mb * MiB)))
        for name, amount in self.custom.items():
            bound = min(bound, int(have.get(name, 0) / amount) if amount else bound)
        if bound < 1:
            raise BackendError(f"no node of this Ray cluster can hold a trial needing {r}"
                               + (f" and {self.custom}" if self.custom else ""))
        return max(1, min(bound, len(jobs) or 1))

    def submit(self, job: Job, out_dir: Path, gpu_ids: list[str] | None) -> Future[Any]:
        r = job.spec.resources
        opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": job.spec.gpus_reserved(),
                                "name": f"trial:{job.trial_id}"}
        if r.memory_mb:
            opts["memory"] = r.memory_mb * MiB
        if self.custom:
            opts["resources"] = self.custom
        ref = self._remote.options(**opts).remote(self.trial_fn, job.spec, str(out_dir),
                                                  self.token, self.max_mb)
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        self._refs[fut] = ref

        def land(done: Future[Any]) -> None:
            self._refs.pop(fut, None)
            try:
                fut.set_result(self._land(done.result(), out_dir))
            except BaseException as exc:  # noqa: BLE001 - handed to the runner as the result
                fut.set_exception(exc)

        ref.future().add_done_callback(land)
        return fut

    @staticmethod
    def _land(res: dict[str, Any], out_dir: Path) -> Verdict:
        """A finished task's result into the driver's folder; returns the verdict."""
        verdict: Verdict = res["verdict"]
        if "bundle" in res:
            unpack(res["bundle"], out_dir)
            if res.get("left_on_node"):
                (out_dir / LEFT_ON_NODE).write_text(json.dumps(res["left_on_node"], indent=1))
        return verdict

    def done(self, fut: Future[Any], broken: bool) -> None:
        pass

    def cancel(self) -> None:
        """Stopped: each running trial first gets a KeyboardInterrupt (Ray's cancel), so it
        writes a stated verdict and tears its sandbox down; what is still running after the
        grace is killed."""
        refs = list(self._refs.values())
        for ref in refs:
            self.ray.cancel(ref, force=False)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                continue
        self.close()

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
