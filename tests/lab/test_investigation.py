"""The investigation loop's grid after a failure: what failed on contact stays barred wherever the object goes.

A scripted arm stands in for the bench where the bench cannot be made to fail on cue: it refuses pushes the way
the push skill refuses a 6 cm block whose top the hand presses (35-43 N: "the hand hit something"), nudging the
block a centimetre or two each time, as on test world 2000004.
"""

import pytest

from loopylab.lab.agents import prior_hypothesis
from loopylab.lab.experiments import candidate_experiments
from loopylab.lab.forward import ForwardModel, InlineTwins
from loopylab.lab.investigation import InvestigationConfig, contact_key, grammar_scene, investigate
from loopylab.world import notebook as g
from loopylab.world.scene import scene_from_seed


class RefusingArm:
    """Pushes from `side` (None: every side) fail; `nudge` says whether a failed push moved the block (it met it) or not (it was
    refused while planning). Every other experiment succeeds with a plausible reading."""

    def __init__(self, scene, name: str, side: str | None, nudge: bool):
        self.name, self.side, self.nudge, self.calls = name, side, nudge, []
        self.pos = {o.label: (o.position[0], o.position[1]) for o in scene.objects}

    def execute(self, exp: g.Experiment) -> dict:
        self.calls.append(exp)
        if exp.skill == "push" and self.side in (None, exp.direction):
            if self.nudge:
                x, y = self.pos[self.name]
                self.pos[self.name] = (x, y + 0.015)
            return {"ok": False, "measurements": {}, "error": f"push: the hand hit something besides {self.name}"}
        if exp.skill == "weigh":
            return {"ok": True, "measurements": {"mass_kg": 0.3, "mass_sigma_kg": 0.003}, "error": ""}
        return {"ok": False, "measurements": {}, "error": "not scripted"}

    def poses(self) -> dict:
        return dict(self.pos)


class Spy:
    """Proposes the hypothesis, then `plan` (a callable of the view: it picks from the candidates), then concludes."""

    name = "spy"

    def __init__(self, q, plan):
        self.q, self.plan, self.views = q, list(plan), []

    def propose(self, view):
        self.views.append(view)
        if len(self.views) == 1:
            return prior_hypothesis(self.q)
        if self.plan:
            return self.plan.pop(0)(view)
        return g.Conclusion((g.Estimate(self.q.kind, self.q.object, 0.5, 0.2),))


@pytest.fixture(scope="module")
def world():
    spec = scene_from_seed(1, n_objects=1).perceived()
    return spec, ForwardModel(spec, InlineTwins())


def _run(world, nudge: bool, plan, every_side: bool = False):
    spec, fm = world
    name = grammar_scene(spec).names[0]
    q = g.Question("friction", (name,), 0.05)
    first = next(c.direction for c in _grid_of(spec, q) if c.skill == "push")
    arm = RefusingArm(spec, name, None if every_side else first, nudge)
    spy = Spy(q, [lambda v, step=step: step(v, first) for step in plan])
    investigate(q, spec, spy, arm, fm, InvestigationConfig(n_particles=200))
    return spy, arm, first


def _grid_of(spec, q):
    return candidate_experiments(grammar_scene(spec), q)


def _push(view, first):
    return next(c for c in view.candidates if c.skill == "push" and c.direction == first)


def _push_elsewhere(view, first):
    return next(c for c in view.candidates if c.skill == "push" and c.direction != first)


def _weigh(view, first):
    return next(c for c in view.candidates if c.skill == "weigh")


def assert_side_barred(view, obj, side):
    assert not [c for c in view.candidates if contact_key(c) == (obj, "push", side)], "refused push offered again"


def test_a_push_that_failed_on_contact_is_not_offered_again_after_the_block_moved(world):
    spy, arm, side = _run(world, nudge=True, plan=[_push, _weigh, _weigh])
    obj = spy.q.object
    assert [c.skill for c in arm.calls] == ["push", "weigh", "weigh"]
    pushes_before = {c for c in spy.views[1].candidates if contact_key(c) == (obj, "push", side)}
    assert len(pushes_before) > 1  # every distance and speed from that side was on offer
    for view in spy.views[2:]:  # the block moved 1.5 cm: the grid is new, the refusal stands, for all levels
        assert view.scene.get(obj).y != spy.views[1].scene.get(obj).y
        assert_side_barred(view, obj, side)
        # the other sides and the strikes stay on offer: the refusal is of that side's push, not the block
        assert any(c.skill == "push" and c.direction != side for c in view.candidates)
        assert any(c.skill == "strike" for c in view.candidates)


def test_a_push_refused_before_the_hand_met_the_block_comes_back_once_the_scene_changes(world):
    """A refusal that moved nothing (a plan the arm could not follow from here) bars that experiment only
    until the objects move: elsewhere it may well run."""
    spy, arm, side = _run(world, nudge=False, plan=[_push])
    obj, refused = spy.q.object, arm.calls[0]
    assert refused not in spy.views[2].candidates  # not offered again where the objects stand
    assert any(contact_key(c) == (obj, "push", side) for c in spy.views[2].candidates)  # other levels from there


def test_a_push_refused_on_contact_from_two_sides_is_barred_from_every_side(world):
    """What refuses a tall block's push is the block (the hand presses its top from any side): after two sides
    failed on contact the grid offers no push of it at all, and the budget goes to what can run."""
    spy, arm, side = _run(world, nudge=True, plan=[_push, _push_elsewhere, _weigh], every_side=True)
    obj = spy.q.object
    assert [c.skill for c in arm.calls] == ["push", "push", "weigh"]
    assert len({c.direction for c in arm.calls[:2]}) == 2
    assert any(c.skill == "push" for c in spy.views[2].candidates)  # one side failed: the others stay
    for view in spy.views[3:]:
        assert not any(c.skill == "push" and c.object == obj for c in view.candidates)
        assert any(c.skill == "strike" for c in view.candidates)


class DropOutOfReachArm(RefusingArm):
    """Every drop fails where it is planned (nothing moves); a weigh puts the block back `shift` metres off."""

    def __init__(self, scene, name: str, shift: float):
        super().__init__(scene, name, side=None, nudge=False)
        self.shift = shift

    def execute(self, exp: g.Experiment) -> dict:
        if exp.skill == "drop":
            self.calls.append(exp)
            return {"ok": False, "measurements": {}, "error": "drop: no reach above the block"}
        reply = super().execute(exp)
        if exp.skill == "weigh":
            x, y = self.pos[self.name]
            self.pos[self.name] = (x, y + self.shift)
        return reply


def _drop(view, first):
    return next(c for c in view.candidates if c.skill == "drop")


def _run_drop_then_weigh(world, shift: float):
    spec, fm = world
    name = grammar_scene(spec).names[0]
    q = g.Question("restitution", (name,), 0.05)
    arm = DropOutOfReachArm(spec, name, shift)
    spy = Spy(q, [lambda v: _drop(v, None), lambda v: _weigh(v, None)])
    investigate(q, spec, spy, arm, fm, InvestigationConfig(n_particles=200))
    return spy, arm


def test_a_failed_drop_stays_off_the_grid_when_a_weigh_puts_the_block_back_a_little_off(world):
    """A weigh sets its block down 1.5 cm off: the drop that failed there would fail again (dev 1000001 spent six of
    ten calls on such repeats), so it is not offered until the block has moved farther."""
    spy, arm = _run_drop_then_weigh(world, shift=0.015)
    dropped = arm.calls[0]
    after = spy.views[3]  # hypothesis, drop, weigh: the view after the weigh
    assert after.scene.get(dropped.object).y != spy.views[1].scene.get(dropped.object).y  # the scene did move
    assert dropped not in after.candidates


def test_a_failed_drop_comes_back_once_the_block_stands_elsewhere(world):
    spy, arm = _run_drop_then_weigh(world, shift=0.05)
    dropped = arm.calls[0]
    assert dropped not in spy.views[2].candidates  # where it failed
    assert dropped in spy.views[3].candidates  # 5 cm away it may well run: offered again
