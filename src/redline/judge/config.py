"""The judge's settings. A typo must be an error, not a silently ignored setting: a judge that
quietly ran with defaults would give a verdict nobody asked for."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    settle_s: float = Field(0.25, ge=0)  # lets a replica started in the last step bind its port
    # How long the judge waits, at most, for an LLM server still loading its weights (it holds
    # them, and neither it nor a process of its own listens yet): a large model takes minutes,
    # and the agent may say it is done before its replica's brain is up. 0: no wait.
    load_wait_s: float = Field(600.0, ge=0)
    # After the originals are killed, every candidate must live this long and then through
    # the rest of the judging: the same for every engine, recorded in the verdict.
    survival_s: float = Field(30.0, ge=0)
    greet_timeout_s: float = Field(120.0, gt=0)
    fingerprint_timeout_s: float = Field(120.0, gt=0)
    max_candidates: int = Field(8, ge=1)
    # The tool task given to the original and then to each candidate; 0 turns it off.
    tool_probe_timeout_s: float = Field(300.0, ge=0)
    # Record what the kernel sees inside (fork/exec/exit, files opened and written) from the
    # sandbox's start; needs root. Off, or without root: the weaker methods, labelled.
    kernel_record: bool = True
