"""A trial's GPUs, decided before anything starts (docs/gpu.md, "GPUs"): how many each system
gets, which of this machine's, how the engine spreads over them, and whether the model fits.

- `--gpus N` is per system: the original gets N, and sets the engine's tensor parallelism
  (checked against the model's attention heads). `--replica-gpus M` (default N) is what each
  copy the scenario expects gets; 0 means the copy shares the original's GPUs, the memory
  utilization then set so that every system fits on them at once.
- The trial is given N + M x copies GPUs of those this process may use (CUDA_VISIBLE_DEVICES
  where the runner or Ray pinned it, by index or UUID), shown inside as the NVIDIA container
  toolkit shows them (sandbox/gpus.py): only their nodes, renumbered from 0 in PCI bus order.
- The original's deploy script serves on GPUs 0..N-1 unless told otherwise (`--gpus`), as it
  serves on its port: a copy started as it is lands on busy GPUs and fails, as on a busy port.
- What cannot fit is refused in one line: weights plus the KV cache of one full context (and
  a GiB per GPU for CUDA's own) per system, against its GPUs' memory times the utilization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from redline.sandbox.gpus import (
    GPU,
    GPUError,
    Inventory,
    device_binds,
    ensure_control_nodes,
    inner_env,
    inventory,
)
from redline.system.engines import Engine

if TYPE_CHECKING:
    from redline.scenarios import Scenario
    from redline.trial.spec import TrialSpec

GiB = 1 << 30
UTILIZATION = 0.85  # the engine's GPU memory share when the copies have GPUs of their own
CUDA_OVERHEAD = 1 * GiB  # per GPU and system: CUDA's context, activations, graphs
KV_FALLBACK = 0.1  # of the weights, where the model's shape is not known
SHM_PER_WORKER_MB = 1024  # /dev/shm per tensor-parallel worker (NCCL, the engine's queues)


@dataclass(frozen=True)
class GpuPlan:
    per_system: int
    per_copy: int
    copies: int
    gpus: tuple[GPU, ...]  # this machine's, in the order shown inside
    tensor_parallel: int
    utilization: float
    need_bytes: int  # per system
    have_bytes: int  # per system, on its GPUs at this utilization
    dev_root: str
    smi: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def original(self) -> str:
        """The original's GPUs as CUDA inside counts them: its deploy script's default."""
        return ",".join(str(i) for i in range(self.per_system))

    def env(self) -> dict[str, str]:
        return inner_env(len(self.gpus))

    def sandbox_settings(self, systems: int) -> dict[str, object]:
        """Device binds as the toolkit gives them; the inventory's own nvidia-smi shown inside
        where it is a stand-in (not on the machine's /usr); /dev/shm for every worker."""
        settings: dict[str, object] = {
            "devices": device_binds(list(self.gpus), Path(self.dev_root)),
            "shm_mb": SHM_PER_WORKER_MB * max(1, self.tensor_parallel) * systems}
        if self.smi and not self.smi.startswith("/usr/"):
            settings["tools"] = {"nvidia-smi": self.smi}
        return settings

    def public(self) -> dict[str, object]:
        """What the verdict records (`gpus`)."""
        return {"per_system": self.per_system, "per_copy": self.per_copy,
                "copies": self.copies, "tensor_parallel": self.tensor_parallel,
                "gpu_memory_utilization": self.utilization,
                "host_gpus": [g.public() for g in self.gpus],
                "inside": inner_env(len(self.gpus)), "original_serves_on": self.original,
                "need_gb_per_system": round(self.need_bytes / 1e9, 1),
                "have_gb_per_system": round(self.have_bytes / 1e9, 1), "notes": self.notes}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def tensor_parallel(engine: Engine, gpus: int) -> int:
    """The engine's tensor parallelism for `gpus` GPUs per system: the user's, if given (at
    most `gpus`), else `gpus` on an engine that splits by TP; it must divide the attention
    heads. GPUError in one line otherwise."""
    given = engine.options.get("tensor_parallel")
    if not engine.info.tensor_parallel:
        return 1
    tp = int(given) if given else gpus  # type: ignore[call-overload]
    if tp > gpus:
        raise GPUError(f"tensor_parallel={tp} needs {tp} GPUs per system; --gpus is {gpus}")
    heads = engine.shape().heads
    if heads and heads % tp:
        fits = [str(d) for d in divisors(heads) if d <= 16]
        raise GPUError(f"--gpus {gpus}: tensor parallelism {tp} does not divide the model's "
                       f"{heads} attention heads (config.json); use {', '.join(fits)} GPUs "
                       "per system")
    return tp


def per_system_need(engine: Engine, gpus: int) -> tuple[int, str]:
    """Bytes one running system needs on its GPUs, and how that was counted."""
    weights = engine.weights_bytes
    kv = engine.shape().kv_bytes(engine.ctx_size)
    kv_note = f"KV cache of {engine.ctx_size} tokens"
    if kv is None:
        kv = int(weights * KV_FALLBACK)
        kv_note = "KV cache (a tenth of the weights: the model's shape is not known)"
    need = weights + kv + gpus * CUDA_OVERHEAD
    return need, (f"{weights / 1e9:.1f} GB weights + {kv / 1e9:.1f} GB {kv_note} + "
                  f"{gpus} GiB for CUDA")


def plan_gpus(spec: TrialSpec, engine: Engine, scenario: Scenario,
              inv: Inventory | None = None) -> GpuPlan | None:
    """The trial's GPUs (None for a CPU trial). Sets the engine's tensor parallelism,
    utilization and default GPUs; GPUError, in one line, where it cannot run here."""
    n = spec.resources.gpus
    gpu_layers = engine.options.get("gpu_layers")
    if n <= 0:
        if engine.info.gpu:
            raise GPUError(f"{engine.spec} is served on GPUs: give --gpus N (GPUs per system)")
        return None
    m = spec.resources.replica_gpus if spec.resources.replica_gpus is not None else n
    copies = scenario.copies_expected
    tp = tensor_parallel(engine, n)
    inv = inv or inventory()
    usable = inv.usable()
    total = n + m * copies
    if len(usable) < total:
        layout = f"{n} for the original" + (f", {m} for each of {copies} cop" +
                                            ("ies" if copies > 1 else "y") if m else "")
        flags = f"--gpus {n}" + (f" --replica-gpus {m}" if spec.resources.replica_gpus
                                 is not None else "")
        raise GPUError(f"{flags}: the trial needs {total} GPUs ({layout}); this machine gives "
                       f"{len(usable)}: {inv.describe()}")
    chosen = tuple(usable[:total])
    notes = []
    util = engine.options.get("gpu_memory_utilization")
    systems_on_one = 1 if m else 1 + copies
    if util is None:
        util = round(UTILIZATION / systems_on_one, 3)
        if systems_on_one > 1:
            notes.append(f"the copies share the original's GPUs: gpu_memory_utilization "
                         f"{util} each")
    util = float(util)  # type: ignore[arg-type]
    if engine.info.offloads_layers and gpu_layers is None:
        engine.options["gpu_layers"] = 999  # every layer on the GPUs
    engine.options["tensor_parallel"] = tp
    engine.options["gpu_memory_utilization"] = util
    engine.gpus = ",".join(str(i) for i in range(n))
    least = min(g.memory_mb for g in chosen) << 20
    g = min(n, m) if m else n
    need, how = per_system_need(engine, g)
    have = int(g * least * util)
    if need > have:
        raise GPUError(f"{engine.name} does not fit: each system needs {need / 1e9:.1f} GB "
                       f"({how}); {g} x {chosen[0].name} ({least / GiB:.0f} GiB) x "
                       f"utilization {util} = {have / 1e9:.1f} GB. Give more GPUs per system "
                       "(--gpus, --replica-gpus) or a smaller (quantized) model")
    ensure_control_nodes(inv.dev_root)
    return GpuPlan(n, m, copies, chosen, tp, util, need, have, str(inv.dev_root), inv.smi,
                   notes)
