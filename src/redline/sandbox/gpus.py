"""NVIDIA GPUs as the harness sees them: the inventory, device nodes, who holds which.

The NVIDIA container toolkit is the model for what a trial gets (docs/gpu.md): the device
nodes of the GPUs assigned to it (`/dev/nvidiaN`, under their host names) and the control
nodes every CUDA program needs, nothing else; inside, CUDA counts the GPUs it sees from 0 in
PCI bus order (`CUDA_VISIBLE_DEVICES` renumbered, `CUDA_DEVICE_ORDER=PCI_BUS_ID`).

The inventory comes from `nvidia-smi`; a test seam names another one and another device
folder (`REDLINE_NVIDIA_SMI`, `REDLINE_GPU_DEV_ROOT`): CI runs the allocation, the binds and
the renumbering against a stand-in with no GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SMI_ENV = "REDLINE_NVIDIA_SMI"  # the nvidia-smi the harness asks (default: the one on PATH)
DEV_ENV = "REDLINE_GPU_DEV_ROOT"  # where the device nodes are (default: /dev)
# One GPU's device node; the others are shared control nodes.
GPU_NODE = re.compile(r"^/dev/nvidia(\d+)$")
REQUIRED_CONTROL = ("nvidiactl", "nvidia-uvm")
OPTIONAL_CONTROL = ("nvidia-uvm-tools", "nvidia-modeset")
CAPS_DIR = "nvidia-caps"  # MIG capabilities, a folder
QUERY = "index,uuid,name,memory.total,memory.used,pci.bus_id"


class GPUError(RuntimeError):
    """GPUs that cannot be given as asked: one line saying what is missing and what to do."""


@dataclass(frozen=True)
class GPU:
    index: int  # nvidia-smi's (PCI bus order)
    uuid: str
    name: str
    memory_mb: int
    used_mb: int
    bus_id: str
    minor: int  # its device node: /dev/nvidia<minor>

    @property
    def node(self) -> str:
        return f"nvidia{self.minor}"

    def public(self) -> dict[str, object]:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_mb": self.memory_mb, "bus_id": self.bus_id, "node": self.node}


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[GPU, ...]
    dev_root: Path
    smi: str | None  # the nvidia-smi asked (None: none found)
    error: str | None = None  # why there are none, where that is not simply "no GPU"

    def find(self, ids: list[str]) -> list[GPU]:
        """The GPUs named by index or UUID (CUDA_VISIBLE_DEVICES and Ray give either); an id
        that names none is an error, never dropped: dropping it would leave a trial short."""
        out = []
        for raw in ids:
            key = raw.strip()
            hit = [g for g in self.gpus if (key.isdigit() and g.index == int(key)) or
                   (not key.isdigit() and key and (g.uuid == key or g.uuid.startswith(key)))]
            if len(hit) != 1:
                raise GPUError(f"GPU {key!r} (CUDA_VISIBLE_DEVICES or the scheduler's id) is "
                               f"not one of this machine's: {self.describe()}")
            out.append(hit[0])
        return out

    def usable(self) -> list[GPU]:
        """What this process may use: the GPUs CUDA_VISIBLE_DEVICES names (the experiment
        runner's or Ray's pinning), else all."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return list(self.gpus)
        return self.find([v for v in visible.split(",") if v.strip()])

    def describe(self) -> str:
        if not self.gpus:
            return self.error or "none (nvidia-smi lists no GPU)"
        return ", ".join(f"{g.index} ({g.uuid[:12]})" for g in self.gpus)


def _minor(bus_id: str, index: int) -> int:
    """The GPU's device-node number, from the driver's own record of it (the toolkit reads
    the same); where there is none (a stand-in), its index."""
    bus = bus_id.lower()
    for cand in (bus, bus[4:] if bus.startswith("0000") else "0000" + bus[4:]):
        try:
            text = Path(f"/proc/driver/nvidia/gpus/{cand}/information").read_text()
        except OSError:
            continue
        m = re.search(r"Device Minor:\s*(\d+)", text)
        if m:
            return int(m.group(1))
    return index


def inventory(timeout: float = 20.0) -> Inventory:
    """This machine's GPUs, by asking nvidia-smi (or the stand-in named by REDLINE_NVIDIA_SMI)."""
    dev_root = Path(os.environ.get(DEV_ENV) or "/dev")
    smi = os.environ.get(SMI_ENV) or shutil.which("nvidia-smi")
    if not smi:
        return Inventory((), dev_root, None, "no nvidia-smi on PATH (no NVIDIA driver here)")
    try:
        proc = subprocess.run([smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return Inventory((), dev_root, smi, f"{smi} failed: {exc}")
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return Inventory((), dev_root, smi, f"{smi} failed: {why[-1] if why else proc.returncode}")
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6 or not parts[0].isdigit():
            continue
        index, uuid, name, total, used, bus = parts
        try:
            gpus.append(GPU(int(index), uuid, name, int(float(total)), int(float(used)), bus,
                            _minor(bus, int(index))))
        except ValueError:
            continue
    return Inventory(tuple(sorted(gpus, key=lambda g: g.index)), dev_root, smi)


def _is_node(path: Path) -> bool:
    """A device node, or (the stand-in's device folder) a plain file in its place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISREG(mode)


def missing_control_nodes(dev_root: Path) -> list[str]:
    return [n for n in REQUIRED_CONTROL if not _is_node(dev_root / n)]


def ensure_control_nodes(dev_root: Path) -> None:
    """`nvidiactl` and `nvidia-uvm` on the host: the uvm node exists only after the host's
    first CUDA use and cannot be made inside a sandbox, so it is made here first (with
    nvidia-modprobe, as the toolkit does); else one line saying what to run."""
    missing = missing_control_nodes(dev_root)
    if missing and "nvidia-uvm" in missing and dev_root == Path("/dev"):
        probe = shutil.which("nvidia-modprobe")
        if probe:
            subprocess.run([probe, "-u", "-c=0"], capture_output=True, timeout=30, check=False)
            missing = missing_control_nodes(dev_root)
    if missing:
        raise GPUError(f"GPU trial: {', '.join('/dev/' + m for m in missing)} missing on this "
                       "machine: run `nvidia-modprobe -u -c=0` as root (or any CUDA program "
                       "once), and check that the NVIDIA driver is loaded (`nvidia-smi`)")


def device_binds(gpus: list[GPU], dev_root: Path) -> list[tuple[str, str]]:
    """(host path, inner path) of every node a trial with these GPUs gets: each GPU's own node,
    under its host name as the toolkit keeps it, and the control nodes present. Never another
    GPU's node."""
    binds = []
    for gpu in gpus:
        src = dev_root / gpu.node
        if not _is_node(src):
            raise GPUError(f"GPU {gpu.index}: its device node {src} is missing")
        binds.append((str(src), f"/dev/{gpu.node}"))
    for name in (*REQUIRED_CONTROL, *OPTIONAL_CONTROL):
        if _is_node(dev_root / name):
            binds.append((str(dev_root / name), f"/dev/{name}"))
    if (dev_root / CAPS_DIR).is_dir():
        binds.append((str(dev_root / CAPS_DIR), f"/dev/{CAPS_DIR}"))
    return binds


def inner_env(count: int) -> dict[str, str]:
    """What CUDA inside is told: the trial's GPUs from 0, in PCI bus order (the order the
    inventory and the toolkit use)."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(count)),
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def gpu_nodes_held(host_pid: int) -> list[str]:
    """The GPU device nodes a process holds open (a CUDA program holds its GPUs' for as long
    as it runs, from before it loads its weights)."""
    found = set()
    try:
        fds = os.listdir(f"/proc/{host_pid}/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{host_pid}/fd/{fd}")
        except OSError:
            continue
        if GPU_NODE.match(target):
            found.add(target)
    return sorted(found)
