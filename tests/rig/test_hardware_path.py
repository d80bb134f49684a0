"""A mass question answered on the hardware path: the real arm driver, gate and skills over the emulated
SO-101's serial port, the Robotiq over Modbus RTU, the mass from the emulated FT300's stream, the scene from
the camera. No simulator node in the graph: nothing offers or asks for sim/oracle or sim/reset."""

import time
import uuid
from pathlib import Path

import pytest

from loopylab.bus import Node
from loopylab.bus.launch import apply_overrides, load_graph, start_graph
from loopylab.lab.agents import make_agent
from loopylab.lab.forward import ForwardModel, InlineTwins
from loopylab.lab.investigation import InvestigationConfig, grammar_scene, investigate
from loopylab.lab.questions import grade, make_question
from loopylab.lab.rig_bench import PARK, HardwareBench
from loopylab.rig.rig import Rig, RigConfig
from loopylab.world.notebook import Experiment
from loopylab.world.splits import seeds

ROOT = Path(__file__).resolve().parents[2]
# |measured - true| over dev worlds 1000000-1000005 (10 runs, a loaded 2-core VM): at most 1.5 g, with the
# skill's own sigma ~3 g; 10 g leaves room for a noisier run without letting a wrong frame or sign through
# (the lightest block weighs 50 g; a reading off by the hand's weight is ~100 g)
TOLERANCE_KG = 0.010
# 40 pushes of this world's block (0.504 N) under 2-6 CPU hogs read 0.441-0.523 N, mean 0.484, sd 0.024 (the
# hand's timing under load changes the contact; sd 0.014 under 2 hogs): 15 % is 2.3 sd below that mean at 6 hogs.
# A stop counted as pushing (0.02 N), knocks counted (0.61 N and worse) or a wrong frame stay out.
PUSH_TOLERANCE = 0.15
WORLD = seeds("dev", 1, offset=2)[0]  # a dev world (tuned on dev; the benchmark reports test worlds)
AGENT_SEED = 11  # the agent's own RNG seed: never the world's


def hardware_graph(robot: str, rig: Rig):
    """graphs/<robot>.toml on the rig's ports and files, in-process; the camera and perception are left out
    (the weigh needs neither, and rendering is the slow part on a loaded machine)."""
    spec = load_graph(ROOT / "graphs" / f"{robot}.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    spec.nodes = [n for n in spec.nodes if n.name not in ("camera", "perception")]
    sets = [s for s in rig.overrides() if not s.startswith("perception.")]
    return apply_overrides(spec, sets)


def test_the_hardware_graph_names_no_simulator():
    for robot in ("so101", "koch"):
        spec = load_graph(ROOT / "graphs" / f"{robot}.toml")
        assert not [n.run for n in spec.nodes if n.run.startswith("loopylab.sim")]
        assert {n.name for n in spec.nodes} >= {"arm", "gate", "gripper", "ft", "camera", "perception", "skills"}


def test_weigh_over_serial_reads_the_mass_from_the_ft300(tmp_path):
    rig = Rig(RigConfig(robot="so101", seed=WORLD, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    try:
        with start_graph(hardware_graph("so101", rig), wait_for=["skills/execute"], timeout=60) as graph:
            for _attempt in range(2):
                # a starved emulator (both cores saturated) can trip the gate's heartbeat mid-skill: the skill
                # then fails cleanly and, as the lab does, it is run again
                r = graph.call("skills/execute", {"skill": "weigh", "args": {"object": "red_block"}}, timeout=120)
                if r["ok"]:
                    break
            assert not graph.has_service("sim/oracle") and not graph.has_service("sim/reset")
        assert r["ok"], r["error"]
        m = r["measurements"]
        truth = rig.truth()["red_block"]["mass"]
        assert m["mass_kg"] == pytest.approx(truth, abs=TOLERANCE_KG)
        assert m["source"] == "scene"  # no pose source in this graph: positions from the bench's scene file
    finally:
        rig.stop()


def test_a_mass_investigation_on_the_hardware_path(tmp_path):
    """The eig agent answers a mass question on the emulated rig: the scene measured by the camera (rendered by
    the rig, carried by the graph's camera node, tracked by perception), the masses weighed with the FT300."""
    cam_bus = f"inproc://rig-{uuid.uuid4().hex}"
    cam_node = Node("rig", cam_bus)
    rig = Rig(RigConfig(robot="so101", seed=WORLD, n_objects=1, out_dir=str(tmp_path)), node=cam_node).start()
    spec = load_graph(ROOT / "graphs" / "so101.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    spec = apply_overrides(spec, rig.overrides() + [f'camera.source="bus:overhead@{cam_bus}"'])
    try:
        with HardwareBench(spec, rig.files["scene"], place=lambda scene: None) as bench:
            scene = bench.reset()  # the emulated rig's builder placed the objects: the camera measures them
            truth = rig.truth()
            for o in scene.objects:  # the lab starts from the camera's positions, not the world's
                assert o.mass is None
                assert abs(o.position[0] - truth[o.label]["position"][0]) < 0.01
                assert abs(o.position[1] - truth[o.label]["position"][1]) < 0.01
            question = make_question("mass", grammar_scene(scene), WORLD)
            result = investigate(
                question,
                scene,
                make_agent("eig", seed=AGENT_SEED),
                bench.runner,
                ForwardModel(scene, InlineTwins()),
                InvestigationConfig(seed=AGENT_SEED),
            )
            assert not bench.graph.has_service("sim/oracle") and not bench.graph.has_service("sim/reset")
        assert result.experiments >= 1 and "weigh" in result.notebook.text()
        assert grade(question, result.conclusion, truth).success, result.notebook.text()
    finally:
        rig.stop()
        cam_node.close()


def test_koch_moves_over_dynamixel_where_the_skills_send_it(tmp_path):
    """graphs/koch.toml on the emulated Koch: move_to through the gate and the Dynamixel driver; the simulated
    hand (not just the joint readings) ends where it was sent. (The Koch's tool-down reach is too short for the
    grasp skills' clearance: see docs/hardware.md.)"""
    rig = Rig(RigConfig(robot="koch", seed=WORLD, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    try:
        with start_graph(hardware_graph("koch", rig), wait_for=["skills/execute"], timeout=60) as graph:
            goal = [0.16, 0.05, 0.04]
            r = graph.call("skills/execute", {"skill": "move_to", "args": {"position": goal}}, timeout=120)
        assert r["ok"], r["error"]
        with rig.physics.lock:
            hand = rig.physics.arm.ee_pose()[0]
        assert hand == pytest.approx(goal, abs=0.003)
    finally:
        rig.stop()


def test_the_arm_parks_out_of_the_cameras_view_before_the_scene_is_measured(tmp_path):
    """Dev world 1000003's only block stands 0.16 m in front of the SO-101, under its hand at the home pose: the
    oblique overhead camera cannot see it there (a clear error names it); `reset` parks the arm over its base
    first, and the camera then measures the block where it is."""
    world = seeds("dev", 1, offset=3)[0]
    cam_bus = f"inproc://rig-{uuid.uuid4().hex}"
    cam_node = Node("rig", cam_bus)
    rig = Rig(RigConfig(robot="so101", seed=world, out_dir=str(tmp_path)), node=cam_node).start()
    spec = load_graph(ROOT / "graphs" / "so101.toml").with_bus(f"inproc://{uuid.uuid4().hex}")
    spec = apply_overrides(spec, rig.overrides() + [f'camera.source="bus:overhead@{cam_bus}"'])
    try:
        with HardwareBench(spec, rig.files["scene"], place=lambda scene: None) as bench:
            with pytest.raises(TimeoutError, match="does not see red_block"):
                bench.measure_scene(timeout=5.0)  # the arm where it rests, at home
            scene = bench.reset()
            truth = rig.truth()["red_block"]["position"]
            (block,) = scene.objects
            assert abs(block.position[0] - truth[0]) < 0.01 and abs(block.position[1] - truth[1]) < 0.01
            # after each experiment too: the lab's next poses are the camera's with the arm parked (a skill's hand
            # left over the block it had just moved hid it, and the next experiment on it failed "unknown")
            t0 = time.time_ns()
            r = bench.runner.execute(Experiment("lift", "red_block", height=0.05))
            assert r["ok"], r["error"]
            with rig.physics.lock:
                hand = rig.physics.arm.ee_pose()[0]
            assert hand == pytest.approx(PARK["so101"], abs=0.01)
            msg = bench._objects.latest()
            assert msg.stamp_ns > t0 and "red_block" in bench.runner.poses()
    finally:
        rig.stop()
        cam_node.close()


def test_a_push_over_serial_reads_the_friction(tmp_path):
    """A 6 cm push on the emulated SO-101 (goals over serial, the force from the FT300's stream) reads
    mu m g within PUSH_TOLERANCE. On the emulated servos the hand once met every goal within a tick and stopped dead
    between goals that came late, and the skill counted the stops: 0.91 N read for 1.06 (world 2000001), or the
    push was refused for lost contact. (No camera here: the block's position comes from the bench's scene.)"""
    from loopylab.lab.experiments import path_clear, workspace
    from loopylab.world.notebook import DIRECTIONS

    rig = Rig(RigConfig(robot="so101", seed=WORLD, n_objects=1, cameras=[], out_dir=str(tmp_path))).start()
    try:
        truth = rig.truth()["red_block"]
        gscene = grammar_scene(rig.scene.perceived())
        way = next(d for d in DIRECTIONS if path_clear(gscene, "red_block", d, 0.06, workspace("so101")))
        with start_graph(hardware_graph("so101", rig), wait_for=["skills/execute"], timeout=60) as graph:
            for _attempt in range(2):  # a starved host can trip the gate's heartbeat: the lab runs it again
                args = {"object": "red_block", "direction": way, "distance": 0.06, "speed": 0.05}
                r = graph.call("skills/execute", {"skill": "push", "args": args}, timeout=120)
                if r["ok"]:
                    break
        assert r["ok"], r["error"]
        want = truth["friction"] * truth["mass"] * 9.81
        assert r["measurements"]["force_mean_N"] == pytest.approx(want, rel=PUSH_TOLERANCE), (
            way,
            want,
            r["measurements"],
        )
    finally:
        rig.stop()
