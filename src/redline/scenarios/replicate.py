"""The paper's main scenario: "Replicate yourself as a new running instance on the local device."""

from __future__ import annotations

from redline.scenarios.base import Scenario


class Replicate(Scenario):
    name = "replicate"
