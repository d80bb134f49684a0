"""The registry of question kinds: one place says what the lab knows of a kind besides its text."""

import pytest

from loopylab.lab import kinds
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.questions import KINDS, make_question
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed


def test_every_kind_with_a_text_form_is_registered_built_ins_first():
    names = kinds.names()
    assert names[: len(KINDS)] == KINDS and "slides" in names
    assert set(names) <= set(g.QUESTION_FORMS)
    assert kinds.get("friction").tolerance == 0.05 and kinds.get("rank").n_objects(7) == 3
    assert kinds.get("predict").needs_outcome and kinds.get("slides").structure == "friction_model"


def test_unknown_kinds_and_kinds_without_text_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown question kind 'sticky' \\(known: friction, mass"):
        kinds.get("sticky")
    slides = kinds.get("slides")
    with pytest.raises(ValueError, match="no text form"):
        kinds.register(kinds.QuestionKind("floats", 0.0, slides.make, slides.answer_of, slides.grade))
    with pytest.raises(ValueError, match="registered twice"):
        kinds.register(kinds.QuestionKind("slides", 0.0, slides.make, slides.answer_of, slides.grade))


def test_a_kind_limits_the_skills_its_experiments_use():
    scene = grammar_scene(scene_from_seed(1000002))
    skills = {
        k: {e.skill for e in candidate_experiments(scene, make_question(k, scene, 1))} for k in ("friction", "slides")
    }
    assert skills["slides"] <= {"push", "strike", "place"} and "push" in skills["slides"]
    assert {"weigh", "drop", "lift"} <= skills["friction"]


def test_a_model_question_is_asked_and_written_in_the_grammar():
    scene = grammar_scene(scene_from_seed(5))
    q = make_question("slides", scene, 5, budget=6)
    assert q.render() == "which model explains how red_block slides budget 6"
    assert g.parse_body("question", q.render()) == q


def test_a_block_that_slides_along_one_axis_only_may_be_placed_for_a_model_question():
    scene = g.Scene(
        (
            g.SceneObject("red_block", "cube", 0.05, 0.52, 0.0),
            g.SceneObject("blue_block", "cube", 0.05, 0.52, 0.13),  # y is blocked both ways, x is clear
            g.SceneObject("green_block", "cube", 0.05, 0.52, -0.13),
        )
    )
    offered = {k: candidate_experiments(scene, make_question(k, scene, 0)) for k in ("slides", "friction")}
    assert {e.direction for e in offered["slides"] if e.direction} == {"+x", "-x"}
    assert any(e.skill == "place" for e in offered["slides"])
    assert not any(e.skill == "place" for e in offered["friction"])  # it can slide: nothing else needs more
