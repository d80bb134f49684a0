"""Displacement measurement for experiments: an object's pose before and after, and what moved.

    probe = DisplacementProbe(node)             # any node of the graph (e.g. the skills server's)
    before = probe.measure("red_block")         # fused over fresh frames, with covariance
    ... push ...
    d = probe.displacement("red_block", before) # waits for frames taken after the push
    d.measurements()  # {"displacement_m": [dx, dy], "moved_m", "displacement_sigma_m", "source": "perception"}

The uncertainty comes from the trackers' covariances (both poses, independent frames); the lab's noise
model should use `displacement_sigma_m` rather than a fixed constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopylab.perception.geometry import quat_to_R


@dataclass
class PoseMeasurement:
    label: str
    position: np.ndarray
    orientation: np.ndarray  # xyzw
    covariance: np.ndarray  # 6x6
    stamp_ns: int
    frames: int = 1
    source: str = "perception"

    @classmethod
    def from_reply(cls, r: dict) -> PoseMeasurement:
        return cls(
            r["label"],
            np.asarray(r["position"], float),
            np.asarray(r["orientation"], float),
            np.asarray(r["covariance"], float).reshape(6, 6),
            int(r["stamp_ns"]),
            int(r["frames"]),
            r.get("source", "perception"),
        )


@dataclass
class Displacement:
    label: str
    before: PoseMeasurement
    after: PoseMeasurement
    delta: np.ndarray  # after - before, base frame, m
    covariance: np.ndarray  # 3x3, m^2
    yaw_change_rad: float

    @property
    def planar(self) -> np.ndarray:
        return self.delta[:2]

    @property
    def moved_m(self) -> float:
        return float(np.linalg.norm(self.planar))

    @property
    def sigma_m(self) -> float:
        """Standard deviation of `moved_m` (along the motion; isotropic when nothing moved)."""
        C = self.covariance[:2, :2]
        if self.moved_m > 3 * np.sqrt(np.trace(C) / 2):
            u = self.planar / self.moved_m
            return float(np.sqrt(u @ C @ u))
        return float(np.sqrt(np.trace(C) / 2))

    def measurements(self) -> dict:
        return {
            "displacement_m": self.planar.tolist(),
            "moved_m": self.moved_m,
            "displacement_sigma_m": self.sigma_m,
            "source": self.before.source,
        }


def displacement(before: PoseMeasurement, after: PoseMeasurement) -> Displacement:
    if before.label != after.label:
        raise ValueError(f"displacement between different objects: {before.label!r} and {after.label!r}")
    Ra, Rb = quat_to_R(before.orientation), quat_to_R(after.orientation)
    dyaw = float(np.arctan2((Ra.T @ Rb)[1, 0], (Ra.T @ Rb)[0, 0]))
    return Displacement(
        before.label,
        before,
        after,
        after.position - before.position,
        before.covariance[:3, :3] + after.covariance[:3, :3],
        dyaw,
    )


class DisplacementProbe:
    """Client of the perception node's `perception/measure` service."""

    def __init__(self, node, service: str = "perception/measure", frames: int = 3, timeout: float = 3.0):
        self.node, self.service, self.frames, self.timeout = node, service, frames, timeout

    def measure(self, label: str, after_ns: int | None = None, frames: int | None = None) -> PoseMeasurement:
        """The pose from frames stamped after `after_ns`; by default from frames newer than any the node
        had processed when asked, so never a stale frame, whatever the clock (sim time or wall)."""
        req = {"label": label, "frames": frames or self.frames, "timeout": self.timeout}
        if after_ns is not None:
            req["after_ns"] = int(after_ns)
        return PoseMeasurement.from_reply(self.node.call(self.service, req, timeout=self.timeout + 2.0))

    def displacement(self, label: str, before: PoseMeasurement, after_ns: int | None = None) -> Displacement:
        return displacement(before, self.measure(label, after_ns))
