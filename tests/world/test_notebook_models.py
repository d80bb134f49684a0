"""The grammar of competing models: the model-identification question, the posterior over models, rejections with
their refuting observation, and the explanation or "none of my hypotheses explains" conclusions. One grammar:
exact round trips, prefixes for constrained decoding, one clear error for the rest."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.world import notebook as g
from tests.world.test_notebook import _num, estimates, names

model_probs = st.builds(g.ModelProb, names, st.sampled_from(g.MODELS), _num(0, 1, 2))
rejections = st.builds(
    g.Rejection,
    names,
    st.sampled_from(g.MODELS),
    st.sampled_from([k for fs in g.OBS_FIELDS.values() for k, _, _ in fs]),
    _num(0, 50, 3),
    _num(0, 50, 3),
    _num(0, 50, 3),
)
model_bodies = st.one_of(
    st.lists(st.one_of(model_probs, rejections, estimates), min_size=1, max_size=6).map(lambda c: g.Belief(tuple(c))),
    st.builds(lambda m, e: g.Conclusion((m, *e)), model_probs, st.lists(estimates, max_size=3)),
    names.map(lambda n: g.Conclusion((g.Unexplained(n),))),
    st.builds(lambda n, b: g.Question("slides", (n,), 0.0, b), names, st.one_of(st.none(), st.integers(1, 99))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(model_bodies, min_size=1, max_size=6))
def test_model_sections_round_trip(bodies):
    text = g.render(bodies)
    sections = g.parse(text)
    assert [s.body for s in sections] == bodies
    assert g.render(sections) == text
    assert g.policy_text(text) == text  # what a scientist writes: the policy sees all of it


@settings(max_examples=100, deadline=None)
@given(model_bodies, st.data())
def test_every_prefix_of_a_model_body_is_accepted(body, data):
    kind = g.kind_of(body)
    text = body.render()
    cut = data.draw(st.integers(0, len(text)))
    assert g.prefix_ok(kind, text[:cut])
    assert g.body_complete(kind, text)


def test_the_explanation_reads_as_a_scientist_writes_it():
    text = "model red_block anisotropic 0.97; friction_x red_block 0.80 0.05; friction_y red_block 0.40 0.03"
    con = g.parse_body("conclusion", text)
    assert con.answers[0] == g.ModelProb("red_block", "anisotropic", 0.97)
    assert [a.quantity for a in con.answers[1:]] == ["friction_x", "friction_y"]
    q = g.parse_body("question", "which model explains how red_block slides budget 6")
    assert q == g.Question("slides", ("red_block",), 0.0, 6)
    bel = g.parse_body("belief", "model b isotropic 0.00; rejected b isotropic by force 1.830 outside 0.500 1.200")
    assert bel.estimates[1] == g.Rejection("b", "isotropic", "force", 1.83, 0.5, 1.2)


@pytest.mark.parametrize(
    "kind,text",
    [
        ("conclusion", "friction_x a 0.80 0.05; model a anisotropic 0.97"),  # the model comes first
        ("conclusion", "model a anisotropic 0.97; model a isotropic 0.03"),  # one model per conclusion
        ("conclusion", "model a anisotropic 1.50"),  # a probability above 1
        ("conclusion", "model a bouncy 0.50"),  # not a model of the set
        ("conclusion", "rejected a isotropic by force 1.000 outside 0.000 0.500"),  # rejections are beliefs
        ("belief", "rejected a isotropic by torque 1.000 outside 0.000 0.500"),  # no such observation
        ("belief", "rejected a isotropic by force 1.00 outside 0.000 0.500"),  # three decimals
        ("belief", "model a isotropic 0.5"),
        ("question", "which model explains how a floats"),  # not a kind (yet)
        ("conclusion", "none of my hypotheses explains"),
    ],
)
def test_malformed_model_text_is_rejected_with_one_clear_error(kind, text):
    with pytest.raises(g.GrammarError) as e:
        g.parse_body(kind, text)
    assert "\n" not in str(e.value)
    assert not g.body_complete(kind, text)
