"""The notebook's text format: exact round trips, clear rejections, prefix checks for constrained decoding."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.world import notebook as g

DESIGN_EXAMPLE = (
    "<|question_start|>estimate friction of red_block within 0.05<|question_end|>\n"
    "<|scene_start|>red_block cube 0.05 at 0.55 0.00; blue_block cube 0.05 at 0.45 0.12<|scene_end|>\n"
    "<|hypothesis_start|>friction red_block in 0.10 1.00<|hypothesis_end|>\n"
    "<|experiment_start|>push red_block +x 0.10 0.05<|experiment_end|>\n"
    "<|observation_start|>force 1.83 moved 0.099<|observation_end|>\n"
    "<|belief_start|>friction red_block 0.41 0.09; mass red_block 0.450 0.100<|belief_end|>\n"
    "<|conclusion_start|>friction red_block 0.38 0.03<|conclusion_end|>\n"
)


def test_design_example_round_trips_and_parses_to_the_right_values():
    sections = g.parse(DESIGN_EXAMPLE)
    assert g.render(sections) == DESIGN_EXAMPLE
    assert [s.kind for s in sections] == list(g.KINDS)
    q, scene, hyp, exp, obs, bel, con = (s.body for s in sections)
    assert q == g.Question("friction", ("red_block",), 0.05)
    assert scene.get("blue_block").y == 0.12
    assert hyp.ranges[0] == g.Range("friction", "red_block", 0.1, 1.0)
    assert exp.request() == {
        "skill": "push",
        "args": {"object": "red_block", "direction": "+x", "distance": 0.1, "speed": 0.05},
    }
    assert obs.get("force") == 1.83 and obs.get("moved") == 0.099
    assert bel.get("mass", "red_block").value == 0.45
    assert con.answers[0].spread == 0.03


@pytest.mark.parametrize(
    "text",
    [
        "estimate mass of red_block within 10%",
        "estimate restitution of ball within 0.05 budget 6",
        "rank a b c by mass",
        "predict slide of red_block after strike -y 0.40 within 0.020",
    ],
)
def test_question_forms_round_trip(text):
    q = g.parse_body("question", text)
    assert q.render() == text
    assert g.prefix_ok("question", text) and g.body_complete("question", text)


@pytest.mark.parametrize(
    "kind,text",
    [
        ("question", "estimate friction of red_block within 0.050"),  # wrong decimals
        ("question", "rank a a by mass"),  # duplicate
        ("hypothesis", "friction red_block in 0.9 1.00"),
        ("hypothesis", "friction red_block in 0.90 0.10"),  # empty range
        ("scene", "red_block cube 0.05 at 0.55 -0.00"),  # negative zero
        ("experiment", "push red_block +z 0.10 0.05"),
        ("observation", "force nan moved 0.100"),
        ("belief", "mass red_block 0.45 0.10"),  # mass has 3 decimals
        ("conclusion", "mass order a > a"),
    ],
)
def test_rejects_non_grammar_text_with_a_clear_error(kind, text):
    with pytest.raises(g.GrammarError):
        g.parse_body(kind, text)
    assert not g.body_complete(kind, text)


def test_drop_observation_carries_an_optional_centre_of_mass_offset():
    obs = g.Observation.from_measurements("drop", {"bounce_m": 0.0231, "com_x_m": -0.0041, "com_y_m": 0.00004})
    assert obs.render() == "bounce 0.023 com -0.004 0.000"
    assert g.parse_body("observation", obs.render()) == obs
    # the drop tilted the object: its vertical offset too
    tilted = g.Observation.from_measurements(
        "drop", {"bounce_m": 0.0231, "com_x_m": -0.0041, "com_y_m": 0.002, "com_z_m": -0.0032}
    )
    assert tilted.render() == "bounce 0.023 com -0.004 0.002 -0.003" and tilted.com == (-0.004, 0.002, -0.003)
    assert g.parse_body("observation", tilted.render()) == tilted
    assert g.body_complete("observation", tilted.render())
    assert g.prefix_ok("observation", "bounce 0.023 com -0.004 0.002 -0.0")
    bare = g.Observation.from_measurements("drop", {"bounce_m": 0.0231})  # no wrist sensor: no com
    assert bare.render() == "bounce 0.023" and g.parse_body("observation", "bounce 0.023") == bare
    for bad in (
        "bounce 0.023 com 0.004",
        "bounce 0.023 com -0.000 0.001",
        "mass 0.200 com 0.001 0.001",
        "bounce 0.023 com 0.001 0.001 0.001 0.001",
    ):
        with pytest.raises(g.GrammarError):
            g.parse_body("observation", bad)
        assert not g.body_complete("observation", bad)


def test_push_observation_carries_an_optional_vertical_load():
    obs = g.Observation.from_measurements("push", {"force_mean_N": 1.234, "moved_m": 0.1004, "load_N": 0.347})
    assert obs.render() == "force 1.23 moved 0.100 load 0.35" and obs.load == 0.35 and obs.com is None
    assert g.parse_body("observation", obs.render()) == obs
    assert g.parse_body("observation", "force 1.23 moved 0.100 load -0.20").load == -0.2
    for bad in (
        "force 1.23 moved 0.100 load",
        "force 1.23 moved 0.100 load 0.1 0.2",
        "slide 0.020 load 0.10",
        "bounce 0.023 load 0.10",
    ):
        with pytest.raises(g.GrammarError):
            g.parse_body("observation", bad)


def test_notebook_lines_must_be_well_formed():
    with pytest.raises(g.GrammarError, match="line 2"):
        g.parse("<|scene_start|>a cube 0.05 at 0.50 0.00<|scene_end|>\n<|belief_start|>x<|scene_end|>\n")


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


def _num(lo, hi, d):
    return st.integers(round(lo * 10**d), round(hi * 10**d)).map(lambda i: i / 10**d)


experiments = st.one_of(
    st.builds(
        lambda n, dr, di, sp: g.Experiment("push", n, dr, di, sp),
        names,
        st.sampled_from(g.DIRECTIONS),
        _num(0, 1, 2),
        _num(0, 1, 2),
    ),
    st.builds(
        lambda n, dr, sp: g.Experiment("strike", n, dr, speed=sp), names, st.sampled_from(g.DIRECTIONS), _num(0, 2, 2)
    ),
    st.builds(lambda n: g.Experiment("weigh", n), names),
    st.builds(lambda s, n, h: g.Experiment(s, n, height=h), st.sampled_from(["drop", "lift"]), names, _num(0, 1, 2)),
    st.builds(lambda n, x, y: g.Experiment("place", n, position=(x, y)), names, _num(-1, 1, 2), _num(-1, 1, 2)),
)
estimates = st.sampled_from(g.QUANTITIES).flatmap(
    lambda q: st.builds(g.Estimate, st.just(q), names, _num(0, 50, g.DECIMALS[q]), _num(0, 5, g.DECIMALS[q]))
)
scenes = st.lists(
    st.builds(g.SceneObject, names, st.sampled_from(g.SHAPES), _num(0.01, 0.2, 2), _num(-1, 1, 2), _num(-1, 1, 2)),
    min_size=1,
    max_size=4,
    unique_by=lambda o: o.name,
).map(lambda objs: g.Scene(tuple(objs)))
observations = st.one_of(
    st.sampled_from(list(g.OBS_FIELDS))
    .flatmap(lambda sk: st.tuples(*[_num(0, 100, d).map(lambda v, k=k: (k, v)) for k, _, d in g.OBS_FIELDS[sk]]))
    .map(g.Observation),
    st.builds(
        lambda b, com: g.Observation((("bounce", b),), com=com),
        _num(0, 1, 3),
        st.one_of(
            st.none(), st.tuples(_num(-0.05, 0.05, 3), _num(-0.05, 0.05, 3)), st.tuples(*[_num(-0.05, 0.05, 3)] * 3)
        ),
    ),
    st.builds(
        lambda f, d, load: g.Observation((("force", f), ("moved", d)), load=load),
        _num(0, 50, 2),
        _num(0, 0.3, 3),
        st.one_of(st.none(), _num(-5, 5, 2)),
    ),
    st.text("abcxyz019_. !?", min_size=1, max_size=30).map(g.Observation.failure),
)
bodies = st.one_of(
    experiments,
    observations,
    scenes,
    st.lists(estimates, min_size=1, max_size=4).map(lambda e: g.Belief(tuple(e))),
    st.lists(estimates, min_size=1, max_size=3).map(lambda e: g.Conclusion(tuple(e))),
    st.lists(names, min_size=2, max_size=4, unique=True).map(lambda o: g.Conclusion((g.Ranking("mass", tuple(o)),))),
    st.sampled_from(g.PARAMS).flatmap(
        lambda p: st.tuples(names, _num(0, 5, g.DECIMALS[p]), _num(0, 5, g.DECIMALS[p])).map(
            lambda t, p=p: g.Hypothesis((g.Range(p, t[0], min(t[1:]), max(t[1:])),))
        )
    ),
    st.builds(
        lambda k, n, t, b: g.Question(k, (n,), t, b),
        st.sampled_from(["friction", "restitution"]),
        names,
        _num(0.01, 0.5, 2),
        st.one_of(st.none(), st.integers(1, 99)),
    ),
    st.builds(lambda n, p: g.Question("mass", (n,), p / 100), names, st.integers(1, 99)),
    st.builds(
        lambda n, d, s, t: g.Question("predict", (n,), t, None, g.Experiment("strike", n, d, speed=s)),
        names,
        st.sampled_from(g.DIRECTIONS),
        _num(0.1, 1, 2),
        _num(0.001, 0.2, 3),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=8))
def test_render_parse_round_trip(bodies_):
    text = g.render(bodies_)
    sections = g.parse(text)
    assert [s.body for s in sections] == bodies_
    assert g.render(sections) == text


@settings(max_examples=100, deadline=None)
@given(bodies, st.data())
def test_every_prefix_of_a_valid_body_is_accepted(body, data):
    kind = g.Section(g.kind_of(body), body).kind
    text = body.render()
    cut = data.draw(st.integers(0, len(text)))
    assert g.prefix_ok(kind, text[:cut])
    assert g.body_complete(kind, text)


@settings(max_examples=100, deadline=None)
@given(scenes, st.data())
def test_prefix_ok_with_a_scene_takes_names_from_the_scene(scene, data):
    name = data.draw(st.sampled_from(scene.names))
    assert g.prefix_ok("experiment", f"weigh {name}", scene) and g.body_complete("experiment", f"weigh {name}", scene)
    assert not g.prefix_ok("experiment", "weigh zz_not_here", scene)
    partial = f"friction {name} 0."
    assert g.prefix_ok("belief", partial, scene)  # a half-written number
    assert not g.prefix_ok("belief", f"friction {name} 0.x", scene)
    assert not g.prefix_ok("belief", f"friction {name} -", scene)
    assert not g.prefix_ok("hypothesis", f"friction {name} in 1.00 2.000", scene)


def test_the_text_format_imports_no_other_loopylab_package():
    """world is the bottom package: loading the notebook format pulls in nothing above it."""
    code = (
        "import sys, loopylab.world.notebook; "
        "print(sorted(m for m in sys.modules if m.startswith('loopylab.') and not m.startswith('loopylab.world')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_section_missing_a_field_it_needs_has_no_text():
    with pytest.raises(g.GrammarError, match="push distance is missing"):
        g.Experiment("push", "a", "+x", speed=0.05).render()
    with pytest.raises(g.GrammarError, match="predict action is missing"):
        g.Question("predict", ("a",), 0.01).render()
