"""Notebooks a scientist can audit and replay: provenance, reasons, raw measurements and the stopping reason are
written; `replay` recomputes every belief exactly; an edited notebook is caught at the line that was edited;
`rerun` runs the experiments again on a world."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.beliefs import Measurement, Posterior
from loopylab.lab.bench import sim_bench
from loopylab.lab.cli import make_app
from loopylab.lab.forward import ForwardModel, InlineTwins
from loopylab.lab.investigation import InvestigationConfig, investigate
from loopylab.lab.questions import parse_question
from loopylab.lab.replay import ReplayError, parse_numbered, replay_text
from loopylab.lab.rerun import rerun_sections
from loopylab.world import audit as a
from loopylab.world import notebook as g


class Script:
    """An agent with a fixed plan: the prior, one experiment of each listed skill (the first the grid offers
    where the objects stand), then the belief engine's answer."""

    name = "script"

    def __init__(self, skills):
        self.skills = list(skills)

    def propose(self, view):
        if view.last("hypothesis") is None:
            return prior_hypothesis(view.question)
        while self.skills:
            skill = self.skills.pop(0)
            exp = next((c for c in view.candidates if c.skill == skill), None)
            if exp is not None:
                return exp
        return view.posterior.answer(view.confidence).conclusion


@pytest.fixture(scope="module")
def bench():
    with sim_bench(seed=4, n_objects=2) as b:
        yield b


def _notebook(bench, seed, question, skills, n_objects=None):
    scene = bench.reset(seed, n_objects)
    cfg = InvestigationConfig(n_particles=300, seed=1234567, graph="sim_bench")
    q = parse_question(question)
    return investigate(q, scene, Script(skills), bench.runner, ForwardModel(scene, InlineTwins()), cfg)


KINDS = {  # one short investigation per kind of question, every skill that measures something among them
    "friction": (2, "estimate friction of red_block within 0.05", ("push", "strike"), None),
    "mass": (6, "estimate mass of red_block within 10%", ("weigh",), None),
    "restitution": (3, "estimate restitution of red_block within 0.05", ("drop",), None),
    "rank": (4, "rank red_block blue_ball by mass", ("weigh",), 2),
    "predict": (5, "predict slide of red_block after strike +y 0.45 within 0.020", ("strike",), None),
    "rank_friction": (1000004, "rank red_block blue_cylinder green_block by friction", ("strike",), None),
    "predict_stop": (5, "predict where red_block stops after push -y 0.12 0.05 within 0.010", ("push",), None),
}


@pytest.fixture(scope="module")
def friction(bench):
    seed, question, skills, n = KINDS["friction"]
    return _notebook(bench, seed, question, skills, n)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "friction"])
def test_the_labs_notebooks_replay_with_no_difference(bench, kind):
    seed, question, skills, n = KINDS[kind]
    text = _notebook(bench, seed, question, skills, n).notebook.full_text()
    report = replay_text(text)
    assert report.ok, report.summary()
    assert report.checked >= 4 and not report.notes  # beliefs, answers, raw lines and the stop, all exact


def test_a_friction_notebook_replays_exactly_and_says_where_it_came_from(friction):
    text = friction.notebook.full_text()
    kinds = [s.kind for s in g.parse(text)]
    assert kinds[:4] == ["question", "provenance", "scene", "twin"]
    prov = g.parse(text)[1].body
    assert isinstance(prov, a.Provenance)
    assert (prov.agent, prov.graph, prov.run_seed, prov.particles) == ("script", "sim_bench", 1234567, 300)
    assert prov.code  # the package version (and the checkout's git describe, when there is one)
    # each experiment is followed by why it was chosen, each observation by what the skill measured unrounded
    for i, k in enumerate(kinds):
        if k == "experiment":
            assert kinds[i + 1] == "reason"
        if k == "observation" and not g.parse(text)[i].body.error:
            assert kinds[i + 1] == "raw"
    assert kinds[-2:] == ["conclusion", "stop"]
    report = replay_text(text)
    assert report.ok, report.summary()
    # the policy never sees an audit line
    assert friction.notebook.text() == g.policy_text(text)
    assert not any(s.audit for s in g.parse(friction.notebook.text()))


def test_the_stop_says_how_sure_the_belief_was_against_what_it_needed(friction):
    stop = g.parse(friction.notebook.full_text())[-1].body
    assert isinstance(stop, a.StopLine)
    assert stop.code == friction.stop.code and stop.met == friction.stop.met
    assert stop.confidence == 0.9 and stop.experiments == friction.experiments
    assert stop.render().startswith(f"{stop.code} p {g.fmt(stop.p, 3)} {'>=' if stop.met else '<'} 0.900")


def _edit(text: str, kind: str, old: str, new: str, nth: int = 0) -> tuple[str, int]:
    """`text` with `old` replaced by `new` in the nth line of `kind`; and that line's number."""
    lines = text.splitlines(keepends=True)
    index = [i for i, line in enumerate(lines) if line.startswith(g.start_token(kind))][nth]
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new, 1)
    return "".join(lines), index + 1


def test_an_edited_measurement_is_caught_at_its_line(friction):
    text = friction.notebook.full_text()
    raw = next(s.body for s in g.parse(text) if s.kind == "raw")  # the first push's
    key, value = "force_mean_N", raw.as_dict()["force_mean_N"]
    # the rounded observation alone edited: its raw line no longer rounds to it
    obs = next(s.body for s in g.parse(text) if s.kind == "observation")
    first = obs.values[0][1]
    edited, line = _edit(text, "observation", g.fmt(first, 2 if obs.values[0][0] == "force" else 3), "9.99")
    report = replay_text(edited)
    assert not report.ok and report.differences[0].line == line
    assert report.differences[0].kind == "observation" and f"line {line} (observation)" in report.summary()
    # the raw value edited (as if the arm had measured 30 % more): the beliefs after it move
    edited, _ = _edit(text, "raw", f"{key} {a.raw(value)}", f"{key} {a.raw(value * 1.3)}")
    report = replay_text(edited)
    assert {d.kind for d in report.differences} >= {"belief", "answer"}


def test_a_recorded_stopping_decision_that_the_numbers_do_not_support_is_caught(friction):
    text = friction.notebook.full_text()
    stop = g.parse(text)[-1].body
    lie = a.StopLine("confident", 0.999, stop.confidence, stop.experiments, stop.budget, True)
    edited = text[: text.rindex(g.start_token("stop"))] + g.section_text(lie) + "\n"
    report = replay_text(edited)
    assert [d.kind for d in report.differences] == ["stop"]


def test_a_push_observation_replays_from_its_rounded_text(friction):
    """The text-only path: Measurement.from_observation crashed on every push (KeyError: 'moved_m')."""
    push = g.Experiment("push", "red_block", "+x", 0.1, 0.05)
    obs = g.Observation((("force", 1.83), ("moved", 0.099)), load=0.5)
    m = Measurement.from_observation(push, obs)
    assert m.values == {"force_mean_N": 1.83} and m.load == 0.5
    text = friction.notebook.full_text()
    no_raw = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(g.start_token("raw")))
    report = replay_text(no_raw)
    assert any("no raw line" in n for n in report.notes)  # said, and replayed approximately, not crashed
    with pytest.raises(ValueError, match="measured nothing"):
        Measurement.from_observation(push, g.Observation.failure("no contact"))


def test_the_belief_does_not_depend_on_who_else_sampled_from_it(bench):
    """The agent's EIG draws from the belief; the belief's own particles must not notice (the replay of a
    friction notebook gave P 0.82 against the recorded 0.906 when they shared one stream)."""
    scene = bench.reset(2, None)
    q = parse_question("estimate friction of red_block within 0.05")
    fwd = ForwardModel(scene, InlineTwins())
    push = g.Experiment("push", "red_block", "-x", 0.1, 0.05)
    reply = {"force_mean_N": 1.2, "moved_m": 0.1}
    beliefs = []
    for meddle in (False, True):
        post = Posterior(q, fwd, prior_hypothesis(q), 300, seed=5)
        if meddle:
            post.objects["red_block"].draw(512)
            post.answer()
        post.update(Measurement.from_reply(push, reply))
        assert post.objects["red_block"].resamples  # the update drew random numbers (resample and move)
        beliefs.append((post.belief().render(), post.answer().confidence))
    assert beliefs[0] == beliefs[1]


def test_rerun_runs_the_recorded_experiments_again_and_compares(bench, friction):
    seed = KINDS["friction"][0]
    report = rerun_sections(parse_numbered(friction.notebook.full_text()), bench, seed, twins=InlineTwins())
    assert [s.experiment for s in report.steps] == [
        s.body.render() for s in friction.notebook.sections if s.kind == "experiment"
    ]
    for s in report.steps:
        assert g.parse_body("observation", s.rerun) and s.recorded and s.rerun_answer
        assert "failed" in s.delta or re.fullmatch(r"(\w+ [+-]\d+\.\d{3} ?)+", s.delta)
    assert report.rerun_answer.startswith("friction red_block")
    with pytest.raises(ReplayError, match="seed"):
        rerun_sections(parse_numbered(friction.notebook.full_text()), bench, None)


def test_replay_cli_reports_zero_differences_and_names_an_edited_line(tmp_path, friction):
    runner = CliRunner()
    app = make_app(eps=[])
    friction.notebook.save(tmp_path)
    ok = runner.invoke(app, ["notebook", "replay", str(tmp_path / "notebook.txt")])
    assert ok.exit_code == 0 and "0 differences" in ok.output
    ok = runner.invoke(app, ["notebook", "replay", str(tmp_path / "notebook.jsonl")])
    assert ok.exit_code == 0 and "0 differences" in ok.output
    edited, line = _edit(
        (tmp_path / "notebook.txt").read_text(), "belief", "friction red_block 0.", "friction red_block 1."
    )
    (tmp_path / "edited.txt").write_text(edited)
    bad = runner.invoke(app, ["notebook", "replay", str(tmp_path / "edited.txt")])
    assert bad.exit_code == 1 and f"line {line} (belief)" in bad.output
    (tmp_path / "policy.txt").write_text(friction.notebook.text())  # no provenance: not replayable, and said so
    none = runner.invoke(app, ["notebook", "replay", str(tmp_path / "policy.txt")])
    assert none.exit_code == 2 and "provenance" in none.output
    no_world = runner.invoke(app, ["notebook", "rerun", str(tmp_path / "notebook.txt")])
    assert no_world.exit_code == 2 and "--seed" in no_world.output


def test_a_twin_prediction_does_not_depend_on_what_it_simulated_before():
    """A replay builds the twin's tables in another order, in another process: the same prediction must come
    out (a strike at 0.30 m/s after a drop and a faster strike slid up to 3 cm further in the old twin)."""
    from loopylab.lab.twin import Twin
    from loopylab.world.scene import scene_from_seed

    scene = scene_from_seed(7).perceived()
    params = {"red_block": {"mass": 0.1, "friction": 0.5, "restitution": 0.3, "com_offset": (0.0, 0.0, 0.0)}}
    strike = {"object": "red_block", "direction": "+y", "speed": 0.3}
    fresh = Twin(scene)
    want = fresh.predict("strike", strike, params)["slide_m"]
    fresh.close()
    busy = Twin(scene)
    off = {"red_block": {**params["red_block"], "com_offset": (-0.007, -0.009, 0.001), "mass": 0.4}}
    busy.predict("drop", {"object": "red_block", "height": 0.2}, off)
    busy.predict("strike", {**strike, "speed": 0.45}, params)
    assert busy.predict("strike", strike, params)["slide_m"] == want
    busy.close()
