"""The rig's cameras are rendered in a process of their own (rig/render.py): PyBullet holds the GIL through a
frame, and rendered in the rig's process it stopped the emulated devices' answers ten times a second."""

import uuid

import numpy as np
import pybullet as p
import pytest

from loopylab.bus import Image, Node
from loopylab.rig import rig as rig_mod
from loopylab.rig.render import RenderProcess, snapshot
from loopylab.rig.rig import Rig, RigConfig
from loopylab.sim.arm import ArmSim
from loopylab.sim.cameras import render
from loopylab.sim.world import World
from loopylab.world.scene import scene_from_seed


@pytest.fixture(scope="module")
def world():
    scene = scene_from_seed(1000003, robot="so101")
    w = World(scene)
    arm = ArmSim(w, ft_noise=None)
    # a pose the renderer's copy has not seen: an object moved and turned, the arm off its home
    label = scene.objects[0].label
    w.set_object_pose(label, [0.15, 0.05, scene.objects[0].size / 2], p.getQuaternionFromEuler([0, 0, 0.6]))
    for j, q in zip(w.robot.arm, [0.4, -0.3, 0.5, 0.2, -0.7]):
        p.resetJointState(w.robot.body, j, q, physicsClientId=w.cid)
    yield w, arm
    w.close()


def test_the_render_process_draws_the_same_picture_as_the_world(world):
    """Each camera of the scene (on the table and on the wrist), posed by a snapshot: the child's frame is the
    in-process frame, pixel for pixel."""
    w, arm = world
    renderer = RenderProcess(w.spec)
    try:
        snap = snapshot(w, arm.ee_pose())
        for cam in w.spec.cameras:
            ours = renderer.render(cam.name, snap)
            theirs = render(w.cid, cam, arm.ee_pose())
            assert np.array_equal(ours[0], theirs[0]), cam.name
            np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)
            np.testing.assert_allclose(ours[2], theirs[2])
            np.testing.assert_allclose(ours[3], theirs[3], atol=1e-9)
        with pytest.raises(KeyError):
            renderer.render("no_such_camera", snap)  # a bad request is an error, and the renderer lives on
        cam = w.spec.cameras[0]
        assert np.array_equal(renderer.render(cam.name, snap)[0], render(w.cid, cam, arm.ee_pose())[0])
    finally:
        renderer.close()


def test_the_rig_streams_frames_without_rendering_in_its_own_process(monkeypatch):
    """The rig's images keep coming while rendering in this process fails: nothing of PyBullet's renderer runs
    here (the old rig rendered under its physics lock, in this process)."""

    def no_render(*a, **kw):
        raise AssertionError("rendered in the rig's process")

    monkeypatch.setattr(rig_mod, "render", no_render)
    url = f"inproc://rig-render-{uuid.uuid4().hex}"
    node = Node("rig", url)
    client = Node("viewer", url)
    rig = Rig(RigConfig(robot="so101", seed=1000003, n_objects=1), node=node).start()
    try:
        sub = client.subscribe("camera/overhead/image", Image, mode="latest")
        first = sub.wait_for(timeout=60)
        later = sub.wait_for(lambda m: m.seq > first.seq, timeout=30)
        img = later.data
        assert img.shape == (240, 320, 3) and img.std() > 1  # a picture, not a blank
    finally:
        rig.stop()
        client.close()
        node.close()
