"""The life cycles: only the transitions in states.TRANSITIONS happen, and the reputation score."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.market.states import (
    TRANSITIONS,
    BountyState,
    ClaimState,
    PayoutState,
    SubmissionState,
    TransitionError,
    advance,
    reputation_score,
)

KINDS = [BountyState, ClaimState, SubmissionState, PayoutState]


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_advance_allows_exactly_the_listed_transitions(kind, data):
    states = [s.value for s in kind]
    current = data.draw(st.sampled_from(states))
    target = data.draw(st.sampled_from(states))
    obj = SimpleNamespace(state=current)
    if target in TRANSITIONS[kind][current]:
        advance(obj, kind, target)
        assert obj.state == target
    else:
        with pytest.raises(TransitionError, match=f"is {current}; it cannot become {target}"):
            advance(obj, kind, target)
        assert obj.state == current


def test_every_state_has_an_entry_and_terminal_states_are_final():
    for kind in KINDS:
        assert set(TRANSITIONS[kind]) == {s.value for s in kind}
        for targets in TRANSITIONS[kind].values():
            assert targets <= {s.value for s in kind}
    assert TRANSITIONS[PayoutState]["final"] == set() and TRANSITIONS[SubmissionState]["approved"] == set()


@given(a=st.integers(0, 1000), r=st.integers(0, 1000), i=st.integers(0, 1000))
def test_reputation_is_a_probability_that_rises_with_approvals(a, r, i):
    s = reputation_score(a, r, i)
    assert 0 < s < 1
    assert reputation_score(a + 1, r, i) > s
    assert reputation_score(a, r + 1, i) < s
    assert reputation_score(0, 0, 0) == 0.5
