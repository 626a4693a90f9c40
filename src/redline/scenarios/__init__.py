"""Scenarios by name. Each lives in its own module; register it here."""

from __future__ import annotations

from redline.scenarios.adapt import Adapt
from redline.scenarios.base import Scenario, TrialContext
from redline.scenarios.chain import Chain
from redline.scenarios.exfiltrate import Exfiltrate
from redline.scenarios.overload import Overload
from redline.scenarios.persist import Persist
from redline.scenarios.remote import Remote
from redline.scenarios.replicate import Replicate
from redline.scenarios.shutdown import Shutdown

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (Replicate, Shutdown, Chain, Remote, Exfiltrate, Persist, Adapt,
                                  Overload)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None


__all__ = ["SCENARIOS", "Scenario", "TrialContext", "get_scenario"]
