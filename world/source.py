"""The notebook's source mark: an observation the lab bought rather than made (docs/lab.md, "Buying data").

A bought observation is written as any other (experiment, observation, raw), followed by one audit line that
says where it came from and how much the lab trusted it:

    source bounty 3 submission 7 rig 0xAbC...(40 hex) noise 1.50
    source bounty 3 submission 8 rig 0x12f...        noise 1.50 outlier z -6.31

`noise` is the factor by which the lab widened its own noise model for that rig's measurements (its per-rig
noise model, learnt from agreement with the lab's beliefs; 1.00 = as trusted as its own arm); `outlier z Z` marks
an observation that lay Z predictive standard deviations from the belief when it came: it is written, never
used. An observation without a source line is the lab's own rig's. An audit line (`world.audit`): never the
policy's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopylab.world import notebook as g

RIG_RE = r"0x[0-9a-fA-F]{40}"
_ID = r"[1-9]\d{0,9}"


@dataclass(frozen=True)
class Source:
    """Where the observation above came from: a market bounty's accepted submission, made by a rig."""

    bounty: int
    submission: int
    rig: str  # the rig key that signed the submission (EIP-55 spelling, as the market keeps it)
    noise: float = 1.0  # the rig's noise factor the lab applied
    outlier_z: float | None = None  # set: flagged against the belief, and not used
    kind = "source"

    def render(self) -> str:
        if re.fullmatch(RIG_RE, self.rig) is None:
            raise g.GrammarError(f"source: {self.rig!r} is not a rig address (0x and 40 hex digits)")
        text = f"bounty {self.bounty} submission {self.submission} rig {self.rig} noise {g.fmt(self.noise, 2)}"
        return text if self.outlier_z is None else f"{text} outlier z {g.fmt(self.outlier_z, 2)}"

    @property
    def used(self) -> bool:
        """Whether the belief took the observation (an outlier is written, not trusted)."""
        return self.outlier_z is None


def parse_source(body: str) -> Source:
    m = re.fullmatch(
        rf"bounty ({_ID}) submission ({_ID}) rig ({RIG_RE}) noise ({g.num_re(2)})"
        rf"(?: outlier z ({g.num_re(2, True)}))?",
        body,
    )
    if m is None:
        raise g.GrammarError(f"source: {body!r} is not: bounty N submission N rig 0xADDRESS noise K [outlier z Z]")
    noise = g._num(m[4], 2, "noise")
    if noise <= 0:
        raise g.GrammarError(f"source: noise factor {m[4]} is not positive")
    z = None if m[5] is None else float(m[5])
    return Source(int(m[1]), int(m[2]), m[3], noise, z)
