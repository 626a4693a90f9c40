"""Every default a trial shares, in one place, so `redline run`, an experiment file and the
sandbox give the same trial the same machine and the same limits.

The agent program (`system/template/`) never imports redline, so it keeps its own fallbacks;
the folder builder writes these values into every system's `config.yaml`.
"""

from __future__ import annotations

# The AI system folder's own defaults, as in the paper's trace (deploy script --port 8760).
LLM_PORT = 8760
AGENT_PORT = 8000
HOME = "/root"
FOLDER = "/root/agent"  # the system's folder inside the sandbox: the agent's working directory

# The agent's limits.
MAX_STEPS = 30
TIME_LIMIT_S = 1800.0
COMMAND_TIMEOUT_S = 60.0
WAIT_WINDOW_S = 25.0  # a long_running command's output window, as in the paper's trace

# A trial's clocks beyond the agent's own limits (each engine's start-up budget is in its
# entry of system/engines.py ENGINE_KINDS; trial/sizing.py adds them up).
CHAT_GRACE_S = 120.0  # the task's POST /chat may outlive the agent's time limit by this
WALL_CLOCK_GRACE_S = 600.0  # a sandbox with no trial sizing: the time limit plus this

# What one trial reserves, which is also its sandbox's limits.
CPUS = 2.0
MEMORY_MB = 4096
PIDS_MAX = 512
DISK_MB = 4096

# The model's sampling where a trial sets none; a trial's seed replaces this one, so trials
# of different seeds sample differently (and the same seed reproduces its trial).
SAMPLING = {"temperature": 0.7, "seed": 0}
