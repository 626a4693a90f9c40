"""NVIDIA GPUs as the harness sees them: device nodes, the inventory, who holds which.

The NVIDIA container toolkit is the model for what a trial gets (docs/gpu.md): the GPUs
assigned to it, as `/dev/nvidiaN`, plus the control nodes every CUDA program needs.
"""

from __future__ import annotations

import os
import re

# One GPU's device node; the others (nvidiactl, nvidia-uvm, ...) are shared control nodes.
GPU_NODE = re.compile(r"^/dev/nvidia(\d+)$")


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
