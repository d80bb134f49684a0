"""Sticky contact: a restitution that falls with the impact speed, on a simulator whose restitution is constant.

The law (`restitution_at`): e(v) = e0 (v / V_REF)^-k, clipped to `E_RANGE`. An impact past the yield velocity
deforms the contact plastically and keeps more of its energy the harder it hits: Johnson's elastic-plastic
analysis gives e ~ v^-1/4 for spheres (K. L. Johnson, Contact Mechanics, Cambridge 1985, sec. 11.5, eq. 11.50;
measured exponents scatter around it, e.g. C. Thornton, J. Appl. Mech. 64 (1997) 383), so k is the object's
hidden "stickiness" (0: elastic, a constant restitution e0). V_REF fixes what e0 means: the restitution of an
impact at 1 m/s (a drop of 5 cm).

Bullet's restitution is a body constant, combined with the other body's when a contact point is created, so
`StickyContacts.before_step` sets each sticky body's restitution from its approach speed (its downward velocity;
the table is the only surface it falls on) before every step while it falls free of contact: the contact that
a step creates bounces with e(v) of the speed it hit at. Bullet resolves an impact over several steps and
recombines the restitution each step, so the value is held while the body touches anything (set from the
speed it has mid-impact, a block from 28 cm bounced 35 % higher than the law says), rising or at rest.
"""

from __future__ import annotations

import numpy as np
import pybullet as p

V_REF = 1.0  # m/s: the impact speed at which the restitution is e0
E_RANGE = (0.02, 0.95)  # a slow touch is not perfectly elastic, a fast one not perfectly dead
MIN_APPROACH = 0.05  # m/s: slower than this the body is resting or sliding, not approaching


def restitution_at(e0, k, v):
    """The restitution of an impact at speed `v` (m/s) for an object with restitution `e0` at V_REF and
    stickiness `k` (arrays broadcast)."""
    v = np.maximum(np.asarray(v, float), 1e-6)
    return np.clip(np.asarray(e0, float) * (v / V_REF) ** (-np.asarray(k, float)), *E_RANGE)


def impact_speed(height: float, gravity: float = 9.81) -> float:
    """The speed at which an object dropped from rest `height` above where it lands hits (m/s)."""
    return float(np.sqrt(2.0 * abs(gravity) * max(height, 0.0)))


class StickyContacts:
    """The sticky bodies of one PyBullet client and their laws: World.step calls `before_step`."""

    def __init__(self, cid: int):
        self.cid = cid
        self.laws: dict[int, tuple[float, float]] = {}  # body -> (e0, k)

    def add(self, body: int, e0: float, k: float) -> None:
        if not (0.0 < e0 <= 1.0 and 0.0 <= k <= 2.0):
            raise ValueError(f"sticky contact: restitution {e0} must be in (0, 1] and stickiness {k} in 0..2")
        self.laws[body] = (float(e0), float(k))

    def before_step(self) -> None:
        for body, (e0, k) in self.laws.items():
            vz = p.getBaseVelocity(body, physicsClientId=self.cid)[0][2]
            if vz < -MIN_APPROACH and not p.getContactPoints(bodyA=body, physicsClientId=self.cid):
                e = float(restitution_at(e0, k, -vz))
                p.changeDynamics(body, -1, restitution=e, physicsClientId=self.cid)


__all__ = ["E_RANGE", "V_REF", "StickyContacts", "impact_speed", "restitution_at"]
