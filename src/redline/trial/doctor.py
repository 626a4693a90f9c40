"""`redline doctor`: whether a trial of model M on N GPUs can run on this machine, one line
per prerequisite, each with what to do where it does not hold (docs/gpu.md, "Doctor").

Every check looks; none installs or builds (the environment, the device nodes): the doctor
says which command does.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from redline.sandbox import SandboxConfig, make_sandbox
from redline.sandbox.config import find_bwrap
from redline.sandbox.errors import SandboxError
from redline.sandbox.gpus import GPUError, Inventory, inventory, missing_control_nodes
from redline.scenarios import get_scenario
from redline.system.engines import ENGINE_KINDS, EngineError, parse_model
from redline.system.pyenv import EnvBuildError, env_dir, packages_for
from redline.trial.gpuplan import GpuPlan, plan_gpus
from redline.trial.sizing import size_trial
from redline.trial.spec import Resources, TrialSpec

MiB = 1 << 20
# CUDA in a sandbox: the driver library loads, initializes, and counts the GPUs it was given.
CUDA_SMOKE = ("import ctypes, sys\n"
              "cuda = ctypes.CDLL('libcuda.so.1')\n"
              "n = ctypes.c_int(0)\n"
              "rc = cuda.cuInit(0) or cuda.cuDeviceGetCount(ctypes.byref(n))\n"
              "print(rc, n.value)\n")


@dataclass
class Line:
    name: str
    ok: bool | None  # None: not needed for this trial (shown, never failing)
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[self.ok]
        text = f"{mark} {self.name:<22} {self.detail}"
        return text + (f" -> {self.fix}" if self.fix and self.ok is False else "")


def _need(needed: bool, ok: bool) -> bool | None:
    return ok if needed or ok else None


class Doctor:
    """The checks, in the order a user fixes them."""

    def __init__(self, model: str, gpus: int, replica_gpus: int | None, scenario: str) -> None:
        self.spec = TrialSpec(model=model, scenario=scenario,
                              resources=Resources(gpus=gpus, replica_gpus=replica_gpus))
        self.gpus = gpus
        self.lines: list[Line] = []
        self.engine = None
        self.inv: Inventory | None = None
        self.plan: GpuPlan | None = None

    def run(self) -> list[Line]:
        for check in (self.privileges, self.bubblewrap, self.model, self.environment,
                      self.driver, self.nodes, self.fabric, self.fit, self.cuda_inside,
                      self.room):
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check
                self.lines.append(Line(check.__name__, False, f"{type(exc).__name__}: {exc}"))
        return self.lines

    @property
    def ok(self) -> bool:
        return all(line.ok is not False for line in self.lines)

    def add(self, *args: object, **kw: object) -> None:
        self.lines.append(Line(*args, **kw))  # type: ignore[arg-type]

    # ----- the machine
    def privileges(self) -> None:
        if os.geteuid() == 0:
            self.add("privileges", True, "root: cgroups, the kernel record, bound weights")
            return
        userns = Path("/proc/sys/user/max_user_namespaces")
        count = int(userns.read_text()) if userns.exists() else 0
        self.add("privileges", count > 0, f"not root; user namespaces: {count}",
                 "run as root, or enable user namespaces (sysctl user.max_user_namespaces)")

    def bubblewrap(self) -> None:
        try:
            bwrap = find_bwrap()
        except RuntimeError as exc:
            self.add("bubblewrap", False, str(exc), "bash scripts/install.sh")
            return
        t0 = time.monotonic()
        try:
            with make_sandbox(SandboxConfig()) as sb:
                ran = sb.exec(["true"], timeout=30).returncode == 0
        except SandboxError as exc:
            self.add("sandbox", False, f"{bwrap}: {exc}", "see docs/sandbox.md")
            return
        self.add("sandbox", ran, f"a sandbox starts and runs a command "
                                 f"({time.monotonic() - t0:.1f} s)", "see docs/sandbox.md")

    # ----- the model and its engine
    def model(self) -> None:
        try:
            self.engine = parse_model(self.spec.model)
        except EngineError as exc:
            self.add("model", False, str(exc), "check --model")
            return
        self.add("model", True, f"{self.engine.name} ({self.engine.kind}, "
                                f"{self.engine.weights_bytes / 1e9:.1f} GB)")

    def environment(self) -> None:
        if self.engine is None:
            return
        try:
            pkgs = packages_for(self.engine.kind)
        except EnvBuildError as exc:
            self.add("environment", False, str(exc))
            return
        folder = env_dir(pkgs)
        built = folder.with_name(folder.name + ".done").exists()
        if not built:
            self.add("environment", False, f"not built ({', '.join(pkgs)})",
                     f"redline system env --engine {self.engine.kind}")
            return
        found = {}
        for pin in ENGINE_KINDS.get(self.engine.kind).packages:
            name, _, want = pin.partition("==")
            have = _installed(folder, name)
            found[name] = (have, want)
        wrong = {n: v for n, v in found.items() if v[1] and v[0] != v[1] and "@" not in n}
        detail = ", ".join(f"{n} {h or 'missing'}" for n, (h, _) in found.items())
        self.add("engine versions", not wrong, f"{detail} in {folder}",
                 f"rebuild: remove {folder} and run redline system env --engine "
                 f"{self.engine.kind}")
        kernels = self.engine.info.kernels
        if kernels:  # its compiled kernels, as the build fetched them
            found = list(folder.glob(f"lib/python*/site-packages/{kernels}"))
            self.add("engine kernels", bool(found),
                     f"compiled kernels present ({kernels})" if found else
                     f"no compiled kernels ({kernels})",
                     "rebuild the environment on this machine (docs/gpu.md)")
        layers = self.engine.options.get("gpu_layers")
        if self.engine.info.offloads_layers:
            cuda, what, fix = self.engine.gpu_build(folder)
            self.add("engine build", _need(self.gpus > 0 or bool(layers), cuda), what, fix)

    # ----- GPUs
    def driver(self) -> None:
        self.inv = inventory()
        needed = self.gpus > 0
        if not self.inv.gpus:
            self.add("nvidia-smi", _need(needed, False), self.inv.describe(),
                     "install the NVIDIA driver; nvidia-smi must list the GPUs")
            return
        names = sorted({g.name for g in self.inv.gpus})
        self.add("nvidia-smi", True, f"{len(self.inv.gpus)} GPUs: {', '.join(names)} "
                                     f"({self.inv.smi})")

    def nodes(self) -> None:
        if self.inv is None or not self.inv.gpus:
            return
        missing = missing_control_nodes(self.inv.dev_root)
        self.add("device nodes", _need(self.gpus > 0, not missing),
                 f"missing: {', '.join(missing)}" if missing else
                 "nvidiactl, nvidia-uvm present",
                 "nvidia-modprobe -u -c=0 (as root), or run any CUDA program once")

    def fabric(self) -> None:
        if self.inv is None or not self.inv.gpus:
            return
        switches = list(self.inv.dev_root.glob("nvidia-nvswitch*"))
        if not switches:
            self.add("fabric manager", None, "no NVSwitch: not needed")
            return
        running = any(p.info["name"] in ("nv-fabricmanager", "nvidia-fabricmanager")
                      for p in psutil.process_iter(["name"]))
        self.add("fabric manager", _need(self.gpus > 1, running),
                 f"{len(switches)} NVSwitches; fabric manager "
                 f"{'running' if running else 'not running'}",
                 "systemctl start nvidia-fabricmanager (its version must match the driver's)")

    def fit(self) -> None:
        if self.engine is None or (self.gpus <= 0 and not self.engine.info.gpu):
            self.add("GPUs for the copies", None, "a CPU trial (give --gpus N for GPUs)")
            return
        try:
            self.plan = plan_gpus(self.spec, self.engine, get_scenario(self.spec.scenario),
                                  self.inv)
        except GPUError as exc:
            self.add("GPUs for the copies", False, str(exc))
            return
        assert self.plan is not None
        self.add("GPUs for the copies", True,
                 f"{len(self.plan.gpus)} GPUs, tensor parallelism {self.plan.tensor_parallel},"
                 f" {self.plan.need_bytes / 1e9:.0f} of {self.plan.have_bytes / 1e9:.0f} GB "
                 "per system")

    def cuda_inside(self) -> None:
        if self.plan is None:
            return
        settings = self.plan.sandbox_settings(1)
        cfg = SandboxConfig(devices=settings["devices"],  # type: ignore[arg-type]
                            tools=settings.get("tools", {}),  # type: ignore[arg-type]
                            env=self.plan.env())
        with make_sandbox(cfg) as sb:
            smi = sb.exec(["nvidia-smi", "-L"], timeout=60)
            cuda = sb.exec(["python3", "-c", CUDA_SMOKE], timeout=120)
        listed = sum(line.startswith("GPU ") for line in smi.stdout.splitlines())
        rc, _, count = cuda.stdout.strip().partition(" ")
        ok = cuda.returncode == 0 and rc == "0" and count == str(len(self.plan.gpus))
        self.add("CUDA in a sandbox", ok,
                 f"nvidia-smi lists {listed}; CUDA sees {count or '?'} "
                 f"({(cuda.stderr or '').strip().splitlines()[-1:] or 'ok'})",
                 "check the driver libraries under /usr and /dev/nvidia-uvm (docs/gpu.md)")

    def room(self) -> None:
        if self.engine is None:
            return
        sized = size_trial(self.spec, self.engine, get_scenario(self.spec.scenario))
        free = shutil.disk_usage(Path.cwd()).free // MiB
        self.add("disk for the copies", free >= sized.disk_mb,
                 f"{free} MiB free here; a trial may write {sized.disk_mb} MiB",
                 "free disk space, or run where there is more (--out)")
        avail = psutil.virtual_memory().available // MiB
        self.add("memory", avail >= sized.memory_mb,
                 f"{avail} MiB available; a trial takes up to {sized.memory_mb} MiB",
                 "fewer trials at once, or a machine with more memory")


def _installed(env: Path, name: str) -> str | None:
    for info in env.glob(f"lib/python*/site-packages/{name.replace('-', '_')}-*.dist-info"):
        return info.name[len(name) + 1:-len(".dist-info")]
    return None


def diagnose(model: str, gpus: int, replica_gpus: int | None = None,
             scenario: str = "replicate", echo: Callable[[str], None] = print) -> bool:
    doctor = Doctor(model, gpus, replica_gpus, scenario)
    for line in doctor.run():
        echo(line.render())
    return doctor.ok


__all__ = ["diagnose"]
