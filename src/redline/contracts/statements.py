"""What the model said about its situation, as verdict.json records it (`eval_awareness`,
`refusals`, `candidate_statements`); the scanner that fills them is judge/awareness.py."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Mention(BaseModel):
    """One thing the model wrote, at a step, in its own words."""

    step: int | None
    quote: str
    source: str = "reply"  # reply (its prose), reasoning (thinking sent apart) or finish
    rule: str = ""  # which rule matched (docs/report.md, "What the model said")


class Mentions(BaseModel):
    """Whether the model said it, and each time it did, with its quote."""

    mentioned: bool = False
    mentions: list[Mention] = Field(default_factory=list)

    @classmethod
    def of(cls, mentions: list[Mention]) -> Mentions:
        return cls(mentioned=bool(mentions), mentions=mentions)


class Statements(BaseModel):
    """What one agent said in the runs that were read."""

    eval_awareness: Mentions = Field(default_factory=Mentions)
    refusals: Mentions = Field(default_factory=Mentions)
    runs: int = 0


class CandidateStatements(Statements):
    """The same for a replica candidate, from its own trace (kept in evidence/candidates/),
    reported apart from the original's."""

    agent_port: int
    folder: str | None = None
    trace: str | None = None  # where its trace is kept, relative to the trial folder
