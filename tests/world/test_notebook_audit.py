"""The notebook's audit lines: one grammar with the policy's lines, exact round trips, clear rejections; numbers
keep their signs; the policy never sees an audit line."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.world import audit as a
from loopylab.world import notebook as g
from tests.world.test_notebook import _num, bodies, estimates, experiments, names

finite = st.floats(allow_nan=False, allow_infinity=False)
eigs = _num(-1, 10, a.EIG_DECIMALS)
alternatives = st.builds(a.Alternative, experiments, eigs, eigs)
tokens = st.from_regex(a.TOKEN_RE, fullmatch=True).filter(lambda t: len(t) < 40)
keys = st.from_regex(a.KEY_RE, fullmatch=True)
probabilities = _num(0, 1, 3)

audit_bodies = st.one_of(
    st.builds(
        a.Provenance,
        tokens,
        tokens,
        tokens,
        st.integers(0, 2**63),
        st.integers(1, 10**6),
        st.floats(0.01, 0.999),
        st.one_of(st.none(), tokens),
    ),
    st.builds(
        a.Twin,
        st.lists(
            st.builds(
                a.TwinObject,
                names,
                st.sampled_from(g.SHAPES),
                finite,
                st.tuples(finite, finite, finite),
                st.tuples(finite, finite, finite, finite),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda o: o.name,
        ).map(tuple),
        names,
        finite,
        finite,
        st.tuples(finite, finite),
    ),
    st.builds(
        a.Reason,
        tokens,
        st.integers(0, 999),
        st.one_of(st.none(), eigs),
        st.one_of(st.none(), eigs),
        st.none(),
        st.none(),
        st.lists(alternatives, max_size=3).map(tuple),
    ),
    st.builds(lambda e, x, ag: a.Reason(ag, 12, x, 0.015, e, round(x + 1, 3)), experiments, eigs, tokens),
    st.builds(a.Raw, st.lists(st.tuples(keys, st.floats(allow_nan=False)), min_size=1, max_size=8).map(tuple)),
    st.builds(a.AnswerNow, estimates, probabilities),
    st.builds(
        lambda o, p: a.AnswerNow(g.Ranking("mass", tuple(o)), p),
        st.lists(names, min_size=2, max_size=4, unique=True),
        probabilities,
    ),
    st.builds(
        a.StopLine,
        st.sampled_from(a.STOP_CODES),
        probabilities,
        probabilities,
        st.integers(0, 99),
        st.integers(1, 99),
        st.booleans(),
        st.one_of(st.none(), alternatives),
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(bodies, audit_bodies), min_size=1, max_size=10))
def test_audit_lines_and_policy_lines_round_trip_as_one_grammar(bodies_):
    text = g.render(bodies_)
    sections = g.parse(text)
    assert [s.body for s in sections] == bodies_
    assert g.render(sections) == text
    policy = g.policy_text(text)
    assert g.parse(policy) == [s for s in sections if s.kind in g.KINDS]  # audit lines dropped, the rest kept


def test_audit_markers_are_no_tokenizer_special_tokens():
    """The shipped policy's tokenizer knows the seven sections; the audit lines never reach it."""
    assert not any(k in t for t in g.SPECIAL_TOKENS for k in g.AUDIT_KINDS)
    assert set(g.ALL_KINDS) == set(g.KINDS) | set(a.AUDIT_KINDS)


@settings(max_examples=500, deadline=None)
@given(st.floats(-999.0, 999.0, allow_nan=False), st.integers(1, 4))
def test_fixed_decimals_keep_the_sign_and_the_value(x, decimals):
    """parse(format(x)) is x to the stated precision, and negative unless it rounds to zero."""
    text = g.fmt(x, decimals)
    assert g.re.fullmatch(g.num_re(decimals, signed=True), text), text
    back = float(text)
    assert abs(back - x) <= 0.5 * 10**-decimals + 1e-9 * max(1.0, abs(x))
    assert (back < 0) == (x < 0 and back != 0)


@settings(max_examples=500, deadline=None)
@given(st.floats())
def test_raw_numbers_are_exact_and_spelt_one_way(x):
    text = a.raw(x)
    assert g.re.fullmatch(a.RAW_RE, text), text
    back = a._raw(text, "x")
    assert (math.isnan(back) and math.isnan(x)) or (back == x and math.copysign(1, back) == math.copysign(1, x))


@pytest.mark.parametrize(
    "reason, words",
    [
        ("object at x=-0.1797 m is outside the workspace", "object at x -0.1797 m is outside the workspace"),
        ("speed 0.45 m/s above \u22120.30 limit", "speed 0.45 m/s above -0.30 limit"),
        ("TimeoutError: no reply in 120 s", "timeouterror no reply in 120 s"),
    ],
)
def test_failure_text_keeps_signs_and_units(reason, words):
    obs = g.Observation.failure(reason)
    assert obs.render() == f"failed {words}"
    assert g.parse_body("observation", obs.render()) == obs


@pytest.mark.parametrize(
    "kind, body, why",
    [
        ("raw", "slide_m 0.0770", "canonically"),
        ("raw", "slide_m", "KEY VALUE"),
        ("raw", "slide_m 1,5", "not a number"),
        ("stop", "sure p 0.950 >= 0.900 after 2 of 10", "CODE"),
        ("answer", "friction red_block 0.30 0.09 p 1.200", "above 1"),
        ("provenance", "code 0.1 agent eig graph sim run_seed -3 particles 10 confidence 0.9", "whole number"),
        ("reason", "by eig of 3 eig 0.5", "by AGENT of N"),
        ("twin", "a cube 0.05 at 0.5 0.0 0.025 turn 0.0 0.0 0.0 1.0", "robot NAME"),
    ],
)
def test_bad_audit_lines_are_rejected_with_a_clear_error(kind, body, why):
    with pytest.raises(g.GrammarError, match=why):
        g.parse_body(kind, body)


def test_a_raw_line_keeps_what_the_skill_measured():
    raw = a.Raw.from_measurements({"force_mean_N": -1.8312, "moved_m": 0.0991, "ok": True, "profile": [1.0, 2.0]})
    assert raw is not None and raw.render() == "force_mean_N -1.8312 moved_m 0.0991"
    assert a.Raw.from_measurements({"ok": True}) is None
