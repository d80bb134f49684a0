"""Build a PyBullet world from a SceneSpec: table, objects with their hidden properties, optionally the arm.

Determinism: fixed time step, `deterministicOverlappingPairs=1`, bodies created in spec order, no
saveState/restoreState with contacts. The same spec and the same commands give bit-identical states.
The centre-of-mass offset can only be set at creation (`baseInertialFramePosition`); PyBullet then
reports the base pose at the centre of mass, so `object_pose` converts back to the geometric centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from loopylab.sim.sticky import StickyContacts
from loopylab.sim.weld import weld_all
from loopylab.world.robots import RobotSpec, robot_spec
from loopylab.world.scene import ObjectSpec, SceneSpec

DEFAULT_MASS = 0.2  # kg, for objects whose mass the spec leaves unknown (perceived scenes)
DEFAULT_FRICTION = 0.5
DEFAULT_RESTITUTION = 0.3
ROLLING_FRICTION = 0.001  # keeps balls from rolling forever; known to the lab (not hidden)
SPINNING_FRICTION = 0.001
HAND_FRICTION = 0.0  # the tool's contact surfaces (the twin's pusher has the same)


@dataclass
class RobotHandle:
    spec: RobotSpec
    body: int
    arm: list[int]  # PyBullet joint indices in spec.arm_joints order
    gripper: list[int]
    ee: int  # link index of the tool frame
    ft: int  # joint index of the wrist sensor
    hand_links: list[int]  # links at and after the wrist sensor (what may touch objects)
    lower: np.ndarray
    upper: np.ndarray
    effort: np.ndarray
    velocity: np.ndarray


class World:
    """One PyBullet client holding a bench. `World(spec)` builds it in a new DIRECT client."""

    def __init__(self, spec: SceneSpec, with_robot: bool = True, gui: bool = False):
        self.spec = spec
        self.cid = p.connect(p.GUI if gui else p.DIRECT)
        self.dt = spec.dt
        self.t = 0.0
        self.steps = 0
        c = self.cid
        p.setPhysicsEngineParameter(
            fixedTimeStep=spec.dt, deterministicOverlappingPairs=1, numSolverIterations=50, physicsClientId=c
        )
        p.setGravity(0, 0, spec.gravity, physicsClientId=c)
        plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        vis = p.createVisualShape(
            p.GEOM_BOX,
            halfExtents=[0.6, 0.6, 0.005],
            rgbaColor=spec.table.rgba,
            visualFramePosition=[0, 0, -0.005],
            physicsClientId=c,
        )
        self.table = p.createMultiBody(0, plane, vis, basePosition=[0.4, 0, 0], physicsClientId=c)
        p.changeDynamics(
            self.table, -1, lateralFriction=spec.table.friction, restitution=spec.table.restitution, physicsClientId=c
        )
        self.objects: dict[str, int] = {}
        self._com: dict[str, np.ndarray] = {}
        self._neg_com: dict[str, tuple] = {}  # the geometric centre in the body (centre-of-mass) frame
        self._sticky: StickyContacts | None = None  # objects whose restitution falls with impact speed
        for o in spec.objects:
            self.add_object(o)
        self.welds = weld_all(self)  # hidden welds (ObjectSpec.attached_to), once every object exists
        self.robot: RobotHandle | None = self._load_robot(robot_spec(spec.robot)) if with_robot else None

    # -- building ------------------------------------------------------------
    def add_object(self, o: ObjectSpec) -> int:
        c, r = self.cid, o.size / 2
        if o.shape == "cube":
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[r] * 3, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[r] * 3, rgbaColor=o.rgba, physicsClientId=c)
        elif o.shape == "cylinder":
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=o.size, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=o.size, rgbaColor=o.rgba, physicsClientId=c)
        else:
            col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=r, rgbaColor=o.rgba, physicsClientId=c)
        com = np.asarray(o.com_offset if o.com_offset is not None else (0.0, 0.0, 0.0), float)
        body = p.createMultiBody(
            o.mass if o.mass is not None else DEFAULT_MASS,
            col,
            vis,
            basePosition=o.position,
            baseOrientation=o.orientation,
            baseInertialFramePosition=com.tolist(),
            physicsClientId=c,
        )
        self.objects[o.label] = body
        self._com[o.label] = com
        self._neg_com[o.label] = tuple(-com)
        self.set_object_params(
            o.label,
            friction=o.friction if o.friction is not None else DEFAULT_FRICTION,
            restitution=o.restitution if o.restitution is not None else DEFAULT_RESTITUTION,
        )
        if o.friction_axes is not None:  # scales friction along the object's own x and y (exact for factors <= 1)
            p.changeDynamics(body, -1, anisotropicFriction=[*o.friction_axes, 1.0], physicsClientId=c)
        if o.sticky is not None:  # restitution set from the approach speed before each step (sim/sticky.py)
            self._sticky = self._sticky or StickyContacts(c)
            self._sticky.add(body, o.restitution if o.restitution is not None else DEFAULT_RESTITUTION, o.sticky)
        return body

    def set_object_params(
        self, label: str, mass: float | None = None, friction: float | None = None, restitution: float | None = None
    ) -> None:
        kw = {}
        if mass is not None:
            kw["mass"] = float(mass)
        if friction is not None:
            kw.update(
                lateralFriction=float(friction), rollingFriction=ROLLING_FRICTION, spinningFriction=SPINNING_FRICTION
            )
        if restitution is not None:
            kw["restitution"] = float(restitution)
        if kw:
            p.changeDynamics(self.objects[label], -1, physicsClientId=self.cid, **kw)

    def _load_robot(self, rs: RobotSpec) -> RobotHandle:
        c = self.cid
        body = p.loadURDF(rs.urdf, useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=c)
        info = [p.getJointInfo(body, j, physicsClientId=c) for j in range(p.getNumJoints(body, physicsClientId=c))]
        by_name = {i[1].decode(): i for i in info}
        links = {i[12].decode(): i[0] for i in info}
        arm = [by_name[n][0] for n in rs.arm_joints]
        grip = [by_name[n][0] for n in rs.gripper_joints]
        ft = by_name[rs.ft_joint][0]
        # links downstream of the wrist sensor: the hand, fingers, tool (children have larger indices)
        hand = [i[0] for i in info if i[0] >= ft]
        for j, q in zip(arm, rs.home):
            p.resetJointState(body, j, q, physicsClientId=c)
        for j, q in zip(grip, rs.gripper_open):
            p.resetJointState(body, j, q, physicsClientId=c)
        for link in hand:  # a low-friction push pad: pushes then measure the object's friction, not the pad's
            p.changeDynamics(body, link, lateralFriction=HAND_FRICTION, restitution=0.0, physicsClientId=c)
        for i in info:  # PyBullet adds joint motors by default: switch off all but the commanded ones later
            if i[2] != p.JOINT_FIXED:
                p.changeDynamics(body, i[0], jointDamping=0.0 if i[0] in arm else 0.1, physicsClientId=c)
        return RobotHandle(
            rs,
            body,
            arm,
            grip,
            links[rs.ee_link],
            ft,
            hand,
            np.array([by_name[n][8] for n in rs.arm_joints]),
            np.array([by_name[n][9] for n in rs.arm_joints]),
            np.array([by_name[n][10] for n in rs.arm_joints]),
            np.array([by_name[n][11] for n in rs.arm_joints]),
        )

    # -- state -------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        for _ in range(n):
            if self._sticky is not None:
                self._sticky.before_step()
            p.stepSimulation(physicsClientId=self.cid)
        self.steps += n
        self.t = self.steps * self.dt

    def object_pose(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Geometric centre [3] and orientation xyzw [4] of an object."""
        pos, orn = p.getBasePositionAndOrientation(self.objects[label], physicsClientId=self.cid)
        centre, _ = p.multiplyTransforms(pos, orn, self._neg_com[label], (0, 0, 0, 1))  # one C call per pose
        return np.array(centre), np.array(orn)

    def object_velocity(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        v, w = p.getBaseVelocity(self.objects[label], physicsClientId=self.cid)
        return np.asarray(v), np.asarray(w)

    def set_object_pose(self, label: str, position, orientation=(0, 0, 0, 1)) -> None:
        R = np.array(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
        com_pos = np.asarray(position, float) + R @ self._com[label]
        b = self.objects[label]
        p.resetBasePositionAndOrientation(b, com_pos.tolist(), list(orientation), physicsClientId=self.cid)
        p.resetBaseVelocity(b, [0, 0, 0], [0, 0, 0], physicsClientId=self.cid)

    def reset_objects(self) -> None:
        for o in self.spec.objects:
            self.set_object_pose(o.label, o.position, o.orientation)

    def object_truth(self) -> dict:
        """Ground truth of every object (privileged: for evaluation and the sim/oracle service)."""
        out = {}
        for o in self.spec.objects:
            pos, orn = self.object_pose(o.label)
            dyn = p.getDynamicsInfo(self.objects[o.label], -1, physicsClientId=self.cid)
            out[o.label] = {
                "position": pos.tolist(),
                "orientation": orn.tolist(),
                "mass": dyn[0],
                "friction": dyn[1],
                # a sticky object's restitution changes with each impact: its law's e0 (at sim.sticky.V_REF)
                "restitution": o.restitution if o.sticky is not None else dyn[5],
                "sticky": o.sticky,  # the law's exponent k (None: elastic, a constant restitution)
                "com_offset": self._com[o.label].tolist(),
                # friction along the object's own x and y axes (equal unless direction-dependent)
                "friction_xy": [dyn[1] * f for f in (o.friction_axes or (1.0, 1.0))],
                "shape": o.shape,
                "size": o.size,
                "attached_to": o.attached_to,  # a hidden weld: "table", another object, or None (free)
            }
        return out

    def close(self) -> None:
        if self.cid is not None and p.isConnected(self.cid):
            p.disconnect(self.cid)
        self.cid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
