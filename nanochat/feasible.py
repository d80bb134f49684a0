"""Feasible calls only: which of the lab's candidate experiments the arm can carry out now, and which
would only repeat a measurement that adds nothing.

The engine decodes experiment bodies through a trie over the candidates it is given (the grammar's
constraint); this module shrinks that list the same way, before decoding:

- **Reach and followability, from the skills' own planners.** Each candidate is run through its skill
  function (`loopylab.actuation.skills`) on a stand-in arm session that answers from the notebook's scene
  (object present, where it stands, its size; the arm at its home pose, gripper open and empty) and stops
  the skill at its first motion command. Everything a skill checks before it moves (IK of every
  waypoint, the Cartesian lines, a strike's joint speeds against the gate) runs exactly as on the robot,
  so "cannot reach" and "arm cannot follow" are found without moving. An object not in the scene is a
  KeyError there, as on the robot. Results are cached per experiment and object pose.
- **No repetition without information.** An exact repeat of an experiment is masked once the latest
  belief has settled what it measures about the question: the parameter's 90 % half-width below a
  quarter of the question's tolerance, or, for a ranking, below a tenth of the gap to the nearest other
  object. Repeats that still inform (noisy drops, strikes on a friction question) stay allowed.

If nothing feasible is left the agent is only offered a conclusion, as when the grid is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from loopylab.lab import kinds
from loopylab.world import notebook as g

log = logging.getLogger("loopylab.nanochat.feasible")

INFORMS = {"weigh": ("mass",), "push": ("friction",), "strike": ("friction",)}
INFORMS["drop"] = ("restitution",)
SETTLED_OF_TOLERANCE = 0.25  # a 90 % half-width this small against the tolerance: another reading adds nothing
SETTLED_OF_GAP = 0.1  # for a ranking: against the gap to the nearest other object's mean
Z90 = 1.645
# the planner samples the skills' paths at 30 Hz instead of the control rate: 4x faster (64 against
# 261 ms per candidate on the loaded 2-core VM) with the same verdicts on the 48 candidates of five
# poses compared; the skill itself re-plans at the control rate before it moves
PLAN_HZ = 30.0


class _Planned(Exception):
    """The skill finished planning and asked the arm to move."""


class SceneArm:
    """A stand-in for the skills' ArmSession: answers from the scene; any motion ends the plan."""

    def __init__(self, scene: g.Scene, q):
        object.__setattr__(self, "_scene", scene)
        object.__setattr__(self, "_q", q)

    def q(self):
        return self._q.copy()

    def object(self, label: str):
        import numpy as np

        try:
            o = self._scene.get(label)
        except (KeyError, StopIteration):
            raise KeyError(f"unknown object {label!r}: not in the scene") from None
        return np.array([o.x, o.y, o.size / 2]), o.size, "scene"

    def obj_now(self, label: str):
        return self.object(label)[0]

    def __getattr__(self, name: str):  # gripper, run, stream, record, hold ...: the skill wants to move
        raise _Planned(name)


class Feasibility:
    """Plans candidate experiments with the skills' own code to find those the arm cannot carry out."""

    def __init__(self, robot: str = "panda"):
        self.robot = robot
        self._motion = None
        self._home = None
        self._cache: dict[tuple, str | None] = {}

    def _planner(self):
        if self._motion is None:
            import numpy as np

            from loopylab.actuation.skills.motion import Motion
            from loopylab.world.robots import robot_spec

            self._motion = Motion(self.robot, control_hz=PLAN_HZ)
            self._home = np.asarray(robot_spec(self.robot).home, float)
        return self._motion

    def refusal(self, scene: g.Scene, exp: g.Experiment) -> str | None:
        """Why the skill would refuse `exp` where the objects stand now; None when it would run."""
        try:
            o = scene.get(exp.object)
            pose = (o.x, o.y, o.size)
        except (KeyError, StopIteration):
            return f"{exp.object} is not in the scene"
        key = (exp.render(), pose)
        if key not in self._cache:
            self._cache[key] = self._plan(scene, exp)
        return self._cache[key]

    def _plan(self, scene: g.Scene, exp: g.Experiment) -> str | None:
        from loopylab.actuation.skills.node import SKILLS
        from loopylab.actuation.skills.session import SkillFailed
        from loopylab.world import protocols as P
        from loopylab.world.kinematics import Unreachable

        mo = self._planner()
        req = exp.request()
        try:
            SKILLS[req["skill"]](SceneArm(scene, self._home), mo, req.get("args") or {})
        except _Planned:
            return None
        except (P.BadArgs, Unreachable, SkillFailed, KeyError) as e:
            return f"{exp.skill}: {e}"
        return None

    def filter(self, scene: g.Scene, candidates: Sequence[g.Experiment]) -> list[g.Experiment]:
        return [c for c in candidates if self.refusal(scene, c) is None]

    def close(self) -> None:
        if self._motion is not None:
            self._motion.close()
            self._motion = None


def latest(sections: Sequence[g.Section], kind: str):
    return next((s.body for s in reversed(sections) if s.kind == kind), None)


def settled(belief: g.Belief | None, question: g.Question, quantity: str, obj: str) -> bool:
    """Whether the belief already pins down `quantity` of `obj` as finely as the question needs."""
    if belief is None:
        return False
    try:
        est = belief.get(quantity, obj)
    except StopIteration:
        return False
    if kinds.of(question).ranks == quantity:  # a rank kind (by mass, by friction)
        others = []
        for o in question.objects:
            if o == obj:
                continue
            try:
                others.append(abs(belief.get(quantity, o).value - est.value))
            except StopIteration:
                return False
        return bool(others) and Z90 * est.spread < SETTLED_OF_GAP * min(others)
    if question.kind != quantity or obj not in question.objects or question.tolerance <= 0:
        return False  # it informs something the question does not ask about as such: leave it
    tol = question.tolerance * abs(est.value) if quantity == "mass" else question.tolerance  # mass: relative
    return Z90 * est.spread < SETTLED_OF_TOLERANCE * tol


def uninformative(sections: Sequence[g.Section], question: g.Question, exp: g.Experiment) -> bool:
    """An exact repeat of an experiment whose every measured quantity the latest belief has settled."""
    done = any(s.kind == "experiment" and s.body == exp for s in sections)
    if not done:
        return False
    belief = latest(sections, "belief")
    quantities = INFORMS.get(exp.skill, ())
    return bool(quantities) and all(settled(belief, question, q, exp.object) for q in quantities)


def feasible_candidates(
    sections: Sequence[g.Section],
    question: g.Question,
    scene: g.Scene,
    candidates: Sequence[g.Experiment],
    feasibility: Feasibility | None,
) -> list[g.Experiment]:
    """The candidates the arm can carry out now and that would still tell the question something."""
    keep = [c for c in candidates if not uninformative(sections, question, c)]
    if feasibility is not None:
        keep = feasibility.filter(scene, keep)
    return keep
