"""The source mark of a bought observation (world/source.py): one spelling, round trip, clear refusals, and never
the policy's text."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.world import notebook as g
from loopylab.world.source import Source

RIG = "0x" + "aB3" * 13 + "c"


@given(
    bounty=st.integers(1, 10**9),
    submission=st.integers(1, 10**9),
    rig=st.text("0123456789abcdefABCDEF", min_size=40, max_size=40).map(lambda h: "0x" + h),
    noise=st.integers(1, 99999).map(lambda n: n / 100),
    z=st.none() | st.integers(-99999, 99999).map(lambda n: n / 100),
)
def test_a_source_line_round_trips(bounty, submission, rig, noise, z):
    src = Source(bounty, submission, rig, noise, z)
    text = g.render([src])
    (parsed,) = g.parse(text)
    assert parsed.kind == "source" and parsed.body == src and g.render([parsed]) == text
    assert parsed.audit and g.policy_text(text) == ""  # the policy never reads where data came from
    assert parsed.body.used == (z is None)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (f"bounty 0 submission 1 rig {RIG} noise 1.00", "is not: bounty N"),  # ids start at 1
        ("bounty 1 submission 1 rig 0x123 noise 1.00", "is not: bounty N"),  # not an address
        (f"bounty 1 submission 1 rig {RIG} noise 1.5", "is not: bounty N"),  # two decimals, one spelling
        (f"bounty 1 submission 1 rig {RIG} noise 0.00", "not positive"),
        (f"bounty 1 submission 1 rig {RIG} noise 1.00 outlier z -0.00", "is not: bounty N"),  # no -0.00
        (f"bounty 1 submission 1 rig {RIG} noise 1.00 outlier", "is not: bounty N"),
    ],
)
def test_a_bad_source_line_is_refused_with_the_reason(body, fragment):
    with pytest.raises(g.GrammarError, match=fragment):
        g.parse(f"<|source_start|>{body}<|source_end|>\n")


def test_a_source_with_a_bad_rig_cannot_be_written():
    with pytest.raises(g.GrammarError, match="not a rig address"):
        Source(1, 1, "0xnothex", 1.0).render()
