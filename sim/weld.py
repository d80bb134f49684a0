"""Hidden welds: an object rigidly fixed to the table or to another object (`ObjectSpec.attached_to`).

Each weld is a PyBullet fixed constraint between the object's base and the world (the table) or the other
object's base, holding them as the spec placed them. A constraint's `maxForce` is the force it may apply to
hold; PyBullet's default (500 N) is within reach of a hard push or a grasp constraint (also 500 N,
sim/arm.py), and a weld that breaks is a different model (a joint that gives), so a weld gets `WELD_FORCE`:
well above what any arm's joints can push with (tests/sim/test_weld.py pushes with the arm's maximum).
"""

from __future__ import annotations

import pybullet as p

WELD_FORCE = 1.0e5  # N: far above every arm's push and the grasp constraint's 500 N: the weld never gives
TABLE = "table"


def weld_all(world) -> dict[str, int]:
    """Weld every object of `world.spec` whose `attached_to` is set; {label: constraint id}. Called once the
    objects exist (a weld to another object needs both bodies)."""
    out = {}
    for o in world.spec.objects:
        if o.attached_to is not None:
            out[o.label] = weld(world, o.label, o.attached_to)
    return out


def weld(world, label: str, to: str) -> int:
    """Fix object `label` where it is now to `to` ("table" or another object's label); the constraint's id."""
    c = world.cid
    if label not in world.objects:
        raise KeyError(f"weld: no object {label!r} in the world")
    if to != TABLE and to not in world.objects:
        known = ", ".join([TABLE, *(k for k in world.objects if k != label)])
        raise ValueError(f"weld: {label!r} is attached to {to!r}, which is not in the scene (known: {known})")
    body = world.objects[label]
    pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=c)  # the centre-of-mass frame
    # the object is the constraint's parent (PyBullet's child may be the world, -1; its parent may not), its
    # frame the object's own; the child's frame is where the object sits in the world's or the other's frame
    if to == TABLE:
        other, rel_pos, rel_orn = -1, pos, orn  # the world's frame: the table does not move
    else:
        other = world.objects[to]
        opos, oorn = p.getBasePositionAndOrientation(other, physicsClientId=c)
        inv_pos, inv_orn = p.invertTransform(opos, oorn)
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, pos, orn)
    cid = p.createConstraint(
        body,
        -1,
        other,
        -1,
        p.JOINT_FIXED,
        [0, 0, 0],
        [0, 0, 0],
        rel_pos,
        [0, 0, 0, 1],
        rel_orn,
        physicsClientId=c,
    )
    p.changeConstraint(cid, maxForce=WELD_FORCE, physicsClientId=c)
    return cid


__all__ = ["TABLE", "WELD_FORCE", "weld", "weld_all"]
