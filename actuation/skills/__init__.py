"""Experiment skills served on `skills/execute`: move_to, push, lift, weigh, drop, strike, place.

Each skill plans its whole motion first (IK for every point; an unreachable point fails before the arm
moves), then streams `arm/joint_target` one control period at a time, waiting for each new
`arm/joint_state` — so it runs in lockstep with a lockstep sim and at real time with real hardware.
Every target goes through the safety gate; a rejection or an e-stop aborts the skill and the arm stays
where the gate held it. Measurements come from sensors only: wrist wrench, joint states, and object
poses from `perception/objects` (or the scene spec when nothing publishes them; `source` says which).

    session.py   the arm session: bus I/O (joint state, targets through the gate, gripper, recording, safety)
    motion.py    planning: orientation, joint and Cartesian paths, tilts, the tool's reach
    grasp.py     grasp-and-lift, shared by lift, weigh, drop and place
    move_to.py, push.py (push and strike), lift.py, weigh.py, drop.py, place.py: one skill each
    node.py      the `skills/execute` service and the graph entry `run_skills`
"""

from loopylab.actuation.skills.node import SKILLS, Skills, run_skills
from loopylab.actuation.skills.session import ArmSession, SkillFailed

__all__ = ["SKILLS", "ArmSession", "SkillFailed", "Skills", "run_skills"]
