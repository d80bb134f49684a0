"""move_to: the tool to a position (and orientation), along a joint-space path; reports how close it got."""

from __future__ import annotations

import numpy as np

from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.session import ArmSession
from loopylab.world import protocols as P


def move_to(arm: ArmSession, mo: Motion, args: dict) -> dict:
    pos = np.asarray(args.get("position", ()), float)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise P.BadArgs("position must be [x, y, z] in metres")
    orn = args.get("orientation")
    orn = mo.orientation(pos) if orn is None else [float(v) for v in orn]
    q0 = arm.q()
    q1 = mo.kin.ik(pos, orn, q0=q0)
    arm.last_q = q0
    arm.run(mo.joint_path(q0, q1))
    arm.hold(P.SETTLE_S)
    return {"position_error_m": float(np.linalg.norm(mo.kin.fk(arm.q())[0] - pos))}
