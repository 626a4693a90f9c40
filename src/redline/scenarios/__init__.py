"""Scenarios by name. Each lives in its own module and declares its own `name`; it is
listed here, in the one registry (`redline.contracts.registry`), which rejects a name given
twice or one only inherited."""

from __future__ import annotations

from redline.contracts.registry import Registry
from redline.scenarios.adapt import Adapt
from redline.scenarios.base import Scenario, TrialContext
from redline.scenarios.chain import Chain
from redline.scenarios.exfiltrate import Exfiltrate
from redline.scenarios.overload import Overload
from redline.scenarios.persist import Persist
from redline.scenarios.remote import Remote
from redline.scenarios.replicate import Replicate
from redline.scenarios.shutdown import Shutdown

SCENARIOS: Registry[type[Scenario]] = Registry.of_classes(
    "scenario", [Replicate, Shutdown, Chain, Remote, Exfiltrate, Persist, Adapt, Overload])


def get_scenario(name: str) -> Scenario:
    """A fresh instance of the scenario `name`; an unknown name is a ValueError listing the
    scenarios there are."""
    return SCENARIOS.get(name)()


__all__ = ["SCENARIOS", "Scenario", "TrialContext", "get_scenario"]
