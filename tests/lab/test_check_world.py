"""`loopylab run`'s world check judges a question on the arm's own table, not a Panda's."""

import pytest
import typer

from loopylab.lab.commands import _check_world
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.questions import make_question
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed


class SeededWorlds:
    """The simulator's reset as far as the check sees it: the world builder's scene of a seed, for one arm."""

    has_sim = True

    def __init__(self, robot: str):
        self.robot = robot

    def reset(self, seed, n_objects, structure=None):
        return scene_from_seed(seed, n_objects, robot=self.robot)


@pytest.mark.parametrize("robot", ["so101", "koch"])
@pytest.mark.parametrize(
    "text",
    [
        "predict slide of red_block after strike +y 0.40 within 0.010",
        "predict where red_block stops after strike +y 0.50 within 0.015",
    ],
)
def test_a_predict_question_on_a_desk_arm_is_refused_for_what_it_is(robot, text):
    # its strike is refused because the arm does not strike, not as "off the table" (a Panda's table)
    q = g.parse_body("question", text)
    with pytest.raises(typer.BadParameter, match=f"the {robot} does not strike, so a {q.kind} question"):
        _check_world(SeededWorlds(robot), q, 1000001, None)


def test_a_mass_question_on_a_desk_arm_and_a_predict_question_on_a_panda_pass():
    q = g.parse_body("question", "estimate mass of red_block within 10%")
    assert _check_world(SeededWorlds("so101"), q, 1000001, None).robot == "so101"
    panda = scene_from_seed(1000003)
    predict = make_question("predict", grammar_scene(panda), 1000003)
    assert _check_world(SeededWorlds("panda"), predict, 1000003, None).objects == panda.objects
