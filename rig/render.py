"""The rig's cameras, rendered in a process of their own.

PyBullet never releases the GIL: a 320x240 TinyRenderer frame is ~20 ms of CPU (more on a busy host) during
which no other thread of the process runs. Rendered in the rig's process at 10 Hz, that stopped the emulated
servos' and the Robotiq's answers, the FT300's stream and the world's ticks for 20-50 ms ten times a second (and
in a benchmark that runs the graph in the same process, the driver, the gate and the skills too): the arm's joint
states came at 40 Hz instead of 100 (gaps p90 45 ms, load ~14), and every waypoint a skill streams waits for one.

`RenderProcess(scene)` keeps a copy of the world in a child process (the perceived scene: shapes, sizes and
colours are all a camera sees). Each frame the rig takes a snapshot of the poses (`snapshot`: every object's
centre and orientation and every robot joint, a few C calls under the physics lock) and the child renders it
while the rig's threads run on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pybullet as p

from loopylab.world.scene import CameraSpec, SceneSpec


@dataclass
class Snapshot:
    """What a camera sees of the world at one moment: object poses (centre, xyzw) and robot joint angles."""

    objects: dict[str, tuple[list[float], list[float]]]
    joints: list[float]  # every joint of the robot's body, in PyBullet's order
    ee_pose: tuple | None  # the tool's pose, for a camera on the wrist


def snapshot(world, ee_pose=None) -> Snapshot:
    """The poses of `world` (a `sim.World`) now; the caller holds the physics lock."""
    objects = {label: tuple(v.tolist() for v in world.object_pose(label)) for label in world.objects}
    joints: list[float] = []
    if world.robot is not None:
        body, cid = world.robot.body, world.cid
        n = p.getNumJoints(body, physicsClientId=cid)
        joints = [s[0] for s in p.getJointStates(body, range(n), physicsClientId=cid)]
    return Snapshot(objects, joints, ee_pose)


def apply(world, snap: Snapshot) -> None:
    """Pose `world` (the renderer's copy) as `snap`."""
    for label, (centre, orn) in snap.objects.items():
        world.set_object_pose(label, centre, orn)
    if world.robot is not None:
        for j, q in enumerate(snap.joints):
            p.resetJointState(world.robot.body, j, q, physicsClientId=world.cid)


def render_snapshot(world, cam: CameraSpec, snap: Snapshot):
    """-> rgb, depth, K, T_base_camera of `cam` with `world` posed as `snap` (`sim.cameras.render`)."""
    from loopylab.sim.cameras import render

    apply(world, snap)
    return render(world.cid, cam, snap.ee_pose)


def _serve(conn: Connection) -> None:
    """The child: build the world of the scene it is sent first, then answer (camera name, snapshot) with its
    images until None (or the rig's end of the line closes)."""
    from loopylab.sim.world import World

    try:
        scene = SceneSpec.from_toml(conn.recv())
    except EOFError:
        return
    cams = {c.name: c for c in scene.cameras}
    world = World(scene)
    try:
        while True:
            req = conn.recv()
            if req is None:
                return
            name, snap = req
            try:
                conn.send(render_snapshot(world, cams[name], snap))
            except Exception as e:  # a bad request loses one frame, not the renderer
                conn.send(e)
    except (EOFError, KeyboardInterrupt):
        return
    finally:
        world.close()


class RenderProcess:
    """`RenderProcess(scene).render(camera_name, snapshot)` -> rgb, depth, K, T, from a child process.

    The child is a fresh interpreter (`python -m loopylab.rig.render FD`) on one end of a socket pair: not
    multiprocessing's spawn, which runs the parent's main script again (a script without a main guard started a
    rig in the renderer), and never a fork of a process that runs threads and a PyBullet client."""

    def __init__(self, scene: SceneSpec):
        ours, theirs = socket.socketpair()
        with theirs:
            fd = theirs.fileno()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "loopylab.rig.render", str(fd)], pass_fds=[fd], stdin=subprocess.DEVNULL
            )
        self._conn = Connection(ours.detach())
        self._conn.send(scene.perceived().to_toml())
        self._late = 0  # requests whose replies timed out

    def render(self, camera: str, snap: Snapshot, timeout: float = 30.0):
        while self._late and self._conn.poll(timeout):  # a reply that came too late is not this frame's
            self._conn.recv()
            self._late -= 1
        self._conn.send((camera, snap))
        if not self._conn.poll(timeout):
            self._late += 1
            raise TimeoutError(f"the rig's renderer did not answer within {timeout:.0f} s")
        out = self._conn.recv()
        if isinstance(out, Exception):
            raise out
        return out

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._conn.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(2)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
