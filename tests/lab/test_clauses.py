"""The answer-clause protocol: a clause type registered in one place (world/notebook.py CLAUSE_FORMS) travels out of
the sealed agent's process, is written in the audit's answer line, recorded by the investigation and told by the
story, with no branch of its own anywhere. The proof: a clause type that exists only in this test."""

import io
import re
from dataclasses import dataclass

import pytest
from rich.console import Console

from loopylab.lab import audit, story
from loopylab.lab.beliefs import Answer
from loopylab.lab.investigation import _answer_data, _answer_value
from loopylab.lab.notebook import Notebook, story_sink
from loopylab.lab.sealed import AgentReport, StepReport, _plain
from loopylab.world import audit as a
from loopylab.world import notebook as g


@dataclass(frozen=True)
class Tilt:
    """`tilt OBJ A.A S.S deg`: how far an object leans (a two-part clause only this test knows)."""

    object: str
    deg: float
    spread: float

    def render(self) -> str:
        return f"tilt {self.object} {g.fmt(self.deg, 1)} {g.fmt(self.spread, 1)} deg"

    @property
    def value(self) -> float:
        return round(self.deg / 57.2958, 6)  # radians: SI, as every answer

    @property
    def half_width(self) -> float:
        return round(self.spread / 57.2958, 6)

    def describe(self) -> str:
        return f"{self.object} leans {self.deg:.1f} ± {self.spread:.1f} degrees"


def _parse_tilt(text: str, section: str) -> Tilt | None:
    m = re.fullmatch(rf"tilt ({g.NAME_RE}) (\S+) (\S+) deg", text)
    return None if m is None else Tilt(m[1], g._num(m[2], 1, "tilt"), g._num(m[3], 1, "spread"))


TILT = g.ClauseForm("tilt", lambda n: rf"tilt {n} {g.num_re(1)} {g.num_re(1)} deg", _parse_tilt, cls=Tilt)


@pytest.fixture
def tilt():
    g.register_clause(TILT)
    yield Tilt("red_block", 12.5, 1.5)
    g.unregister_clause("tilt")


def test_a_clause_registered_in_one_place_is_grammar_in_beliefs_and_conclusions(tilt):
    text = "tilt red_block 12.5 1.5 deg"
    assert g.parse_body("conclusion", text) == g.Conclusion((tilt,))
    bel = g.parse_body("belief", f"friction red_block 0.40 0.05; {text}")
    assert (
        bel.estimates[1] == tilt
        and g.render([bel]) == f"<|belief_start|>friction red_block 0.40 0.05; {text}<|belief_end|>\n"
    )
    scene = g.Scene((g.SceneObject("red_block"),))
    assert all(g.prefix_ok("conclusion", text[:k], scene) for k in range(len(text) + 1))
    assert g.body_complete("conclusion", text, scene) and not g.body_complete("conclusion", text[:-1], scene)
    with pytest.raises(g.GrammarError, match="12.50"):  # its own parser's canonical numbers
        g.parse_body("conclusion", "tilt red_block 12.50 1.5 deg")


def test_the_test_clause_travels_out_of_the_sealed_process_and_into_the_audit_and_the_records(tilt):
    report = AgentReport(g.Conclusion((tilt,)), [StepReport("weigh red_block", True, answer=_plain(tilt.value))])
    back = AgentReport.from_json(report.to_json())
    assert back.conclusion == report.conclusion and back.steps[0].answer == tilt.value
    ans = Answer(g.Conclusion((tilt,)), 0.8123)
    line = audit.answer_now(ans)
    assert line.render() == "tilt red_block 12.5 1.5 deg p 0.812"
    assert g.parse_body("answer", line.render()) == a.AnswerNow(tilt, 0.812)
    assert _answer_data(ans) == {"answer": tilt.value, "half_width": tilt.half_width, "p_within": 0.8123}
    assert _answer_value(ans.conclusion) == tilt.value
    assert story.conclusion_text(g.Question("friction", ("red_block",), 0.05), ans.conclusion, {}, 0.9) == (
        "red_block leans 12.5 ± 1.5 degrees"
    )


def test_an_unregistered_clause_is_refused_where_it_would_travel(tilt):
    g.unregister_clause("tilt")
    with pytest.raises(g.GrammarError):
        g.parse_body("conclusion", tilt.render())
    with pytest.raises(ValueError, match="outside the grammar"):
        AgentReport.from_json(AgentReport(g.Conclusion((tilt,))).to_json())
    with pytest.raises(ValueError, match="where an answer's text belongs"):
        AgentReport.from_json('{"conclusion": [{"estimate": ["friction", "red_block", 0.4, 0.1]}]}')


BUILTIN_ANSWERS = [
    g.Conclusion((g.Estimate("friction", "red_block", 0.38, 0.04),)),
    g.Conclusion((g.Ranking("friction", ("blue_block", "red_block")),)),
    g.Conclusion(
        (
            g.ModelProb("red_block", "anisotropic", 0.97),
            g.Estimate("friction_x", "red_block", 0.8, 0.05),
            g.Estimate("friction_y", "red_block", 0.4, 0.03),
        )
    ),
    g.Conclusion((g.Unexplained("red_block"),)),
    g.Conclusion((g.Position("red_block", 0.512, -0.031, 0.012),)),
    g.Conclusion((g.ModelProb("red_block", "offset", 0.9), g.ComOffset("red_block", 6.2, 1.1, -3.0, 0.9))),
]


@pytest.mark.parametrize("conclusion", BUILTIN_ANSWERS, ids=lambda c: c.render()[:24])
def test_every_builtin_answer_travels_as_its_text_and_comes_back_the_same(conclusion):
    back = AgentReport.from_json(AgentReport(conclusion).to_json()).conclusion
    assert back == conclusion
    head = conclusion.answers[0]
    assert g.parse_body("answer", a.AnswerNow(head, 0.5).render()) == a.AnswerNow(head, 0.5)


def test_an_estimate_reaches_the_grader_as_the_agent_stated_it():
    """Its form declares exact travel: full precision, and a value outside the grammar (a cheater's "found
    nothing", -1) is graded wrong rather than refused."""
    for e in (g.Estimate("friction", "red_block", 0.38912, 0.0), g.Estimate("friction", "red_block", -1.0, 0.0)):
        assert AgentReport.from_json(AgentReport(g.Conclusion((e,))).to_json()).conclusion.answers == (e,)
    with pytest.raises(ValueError, match="malformed estimate"):
        AgentReport.from_json('{"conclusion": [{"clause": "estimate", "exact": ["friction", "a", "x", 0]}]}')
    with pytest.raises(ValueError, match="no clause travels so"):
        AgentReport.from_json('{"conclusion": [{"clause": "model", "exact": ["a", "isotropic", 1.0]}]}')
    assert g.form_of(g.ModelProb("a", "isotropic", 0.5)).name == "model" and g.form_of(object()) is None


def test_each_builtin_answer_records_its_value_and_half_width_in_si_units():
    rows = [_answer_data(Answer(c, 0.5)) for c in BUILTIN_ANSWERS]
    assert rows[0] == {"answer": 0.38, "half_width": 0.04, "p_within": 0.5}
    assert rows[1] == {"answer": ["blue_block", "red_block"], "p_within": 0.5}  # an order has no width
    assert rows[2] == {"answer": "anisotropic", "p_within": 0.5}
    assert rows[3] == {"answer": None, "p_within": 0.5}
    assert rows[4] == {"answer": [0.512, -0.031], "half_width": 0.012, "p_within": 0.5}
    assert rows[5]["answer"] == "offset"
    com = _answer_data(Answer(g.Conclusion((g.ComOffset("red_block", 6.2, 1.1, -3.0, 0.9),)), 0.5))
    assert com == {"answer": [0.0062, -0.003], "half_width": 0.0011, "p_within": 0.5}  # mm in the text, m here
    assert _plain([0.0062, -0.003]) == [0.0062, -0.003] and _plain(("a", "b")) == ["a", "b"]  # numbers stay numbers


# -- the story of model answers, rejections and two-number answers ------------------------------------------------

SLIDES = g.Question("slides", ("red_block",), 0.0)
REJECT = g.Rejection("red_block", "isotropic", "force", 1.83, 0.5, 1.2)


def test_model_answers_rejections_and_two_number_answers_in_words():
    c = g.Conclusion(BUILTIN_ANSWERS[2].answers)
    text = story.conclusion_text(SLIDES, c, {"experiments": 3}, 0.9)
    assert text.startswith(
        "the anisotropic model (friction different along the object's own x and y) explains red_block"
    )
    assert "friction_x of red_block 0.80 ± 0.05" in text and text.endswith("(after 3 experiments)")
    assert story.conclusion_text(SLIDES, BUILTIN_ANSWERS[3], {}, 0.9) == (
        "none of my hypotheses explains red_block: an observation refuted every model it held"
    )
    assert story.rejection_text(REJECT) == (
        "the isotropic model of red_block is rejected: it expected force between 0.500 and 1.200, "
        "and the robot measured 1.830"
    )
    com = story.conclusion_text(g.Question("com", ("red_block",), 0.005), BUILTIN_ANSWERS[5], {}, 0.9)
    assert "sits +6.2 ± 1.1 mm along its own x and -3.0 ± 0.9 mm along its own y" in com
    stop = story.conclusion_text(g.Question("predict_stop", ("red_block",), 0.02), BUILTIN_ANSWERS[4], {}, 0.9)
    assert stop == "red_block comes to rest at x 0.512 m, y -0.031 m, within 0.012 m"
    assert (
        story.question_text(SLIDES)
        == "Which model explains how red_block slides? An answer counts when it is the right model."
    )
    assert story.belief_text(SLIDES, "sticky", 0.0, 0.7, 0.9).startswith("most likely the sticky model (a bounce")


def test_the_story_sink_tells_a_model_investigation_its_rejections_once_and_none_explains():
    buf = io.StringIO()
    nb = Notebook(SLIDES, sinks=[story_sink(Console(file=buf, width=300), 0.9)])
    probs = (g.ModelProb("red_block", "isotropic", 0.5), g.ModelProb("red_block", "anisotropic", 0.5))
    nb.add(SLIDES)
    nb.add(g.Scene((g.SceneObject("red_block", x=0.55),)))
    nb.add(g.Hypothesis((g.Range("friction", "red_block", 0.1, 1.0),)), {"answer": "isotropic", "p_within": 0.5})
    nb.add(a.AnswerNow(probs[0], 0.5))
    for _ in range(2):  # the same rejection in two beliefs: told once
        nb.add(g.parse_body("experiment", "push red_block +x 0.10 0.05"))
        nb.add(g.Observation((("force", 1.83), ("moved", 0.1))))
        nb.add(g.Belief((g.ModelProb("red_block", "isotropic", 0.0), REJECT)), {"answer": None, "p_within": 1.0})
        nb.add(a.AnswerNow(g.Unexplained("red_block"), 1.0))
    nb.add(g.Conclusion((g.Unexplained("red_block"),)), {"experiments": 2})
    out = buf.getvalue()
    assert "Question: Which model explains how red_block slides?" in out
    assert "It stops when it is 90% sure it has the right model, or when" in out
    assert "the isotropic model (friction the same in every direction) explains red_block, p 0.50; 50% sure" in out
    assert out.count("rejected  the isotropic model of red_block is rejected: it expected force") == 1
    assert out.count("none of my hypotheses explains red_block: an observation refuted every model it held; 100%") == 2
    assert "Conclusion: none of my hypotheses explains red_block" in out and "(after 2 experiments)" in out
