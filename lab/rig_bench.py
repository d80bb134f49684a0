"""The hardware bench: the lab on a rig where nobody can read the truth.

A hardware graph (graphs/so101.toml, graphs/koch.toml: driver, gate, gripper, F/T, camera, perception, skills;
on a real rig or the emulated one) started in this process, and the lab's node on it. There is no `sim/oracle`
and no `sim/reset`: a world reset is a request to the person at the bench (`place`, shown the objects to put
down; by default a console prompt: press Enter), and the scene the lab starts from is measured by the camera
(perception/objects), with the labels, shapes and sizes of the bench's scene file. Grading belongs to whoever
knows the truth: on the emulated rig, a benchmark reads it from the rig, outside the lab.

    with HardwareBench(spec, "bench.toml") as bench:
        scene = bench.reset()                      # the person places the objects; the camera measures them
        result = investigate(question, scene, agent, bench.runner, forward)
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from loopylab.bus import NotebookEntry, ObjectPoses
from loopylab.bus.launch import GraphSpec, start_graph
from loopylab.lab.investigation import BusRunner
from loopylab.world.scene import SceneSpec

MEASURE_FRAMES = 5  # pose sets averaged into the scene the lab starts from
# Where the arm waits while the camera measures the scene: its tool pointing down over its own base, out of the
# oblique overhead camera's view of the table (the SO-101's home pose, hand 0.21 m out and 8 cm up, hid a block
# 0.16 m out from it: dev world 1000003). An arm not listed is measured where it stands.
PARK = {"so101": (0.08, 0.0, 0.13), "koch": (0.09, 0.0, 0.08)}
log = logging.getLogger("loopylab.lab")


class ParkingRunner(BusRunner):
    """The lab's runner on a rig: after each experiment the arm parks out of the camera's view (`park`), and
    the poses the lab reads next (how far each object went, the scene the next experiment is planned on, where
    the next skill finds its object) are a pose set the camera took after it parked. Left where a skill ended,
    the hand hid the object it had just moved: on 12 sealed test worlds, 12 of 387 experiments on the hardware
    path failed "where red_block stands now is unknown" (the push that moved it had lost it from view), the
    block's 6 cm move read as 1 mm, and the sim path, whose mocap sees through the hand, had none."""

    def __init__(self, node, park: Callable[[], None], fresh_s: float = 5.0):
        super().__init__(node)
        self._park, self.fresh_s = park, fresh_s

    def execute(self, exp) -> dict:
        reply = super().execute(exp)
        try:
            self._park()
        except (RuntimeError, TimeoutError) as e:  # the experiment's reply stands; the next one says what failed
            log.warning("after %s: %s", exp.skill, e)
            return reply
        after = time.time_ns()
        try:  # a pose set taken with the arm parked (10 Hz camera, perception)
            self._objects.wait_for(lambda m: m.stamp_ns >= after, timeout=self.fresh_s)
        except TimeoutError:
            log.warning("after %s: no pose set within %.0f s of parking", exp.skill, self.fresh_s)
        return reply


def console_prompt(scene: SceneSpec) -> None:
    """What the person at the bench is asked before each world."""
    print("Place on the bench, then press Enter:")
    for o in scene.objects:
        print(f"  {o.label}: {o.shape} {o.size * 100:.1f} cm, in view of the camera and in reach of the arm")
    input()


class HardwareBench:
    """A hardware graph running in this process and the lab's node on it; the scene from the camera."""

    def __init__(
        self,
        graph: GraphSpec,
        scene: str | Path | SceneSpec,
        place: Callable[[SceneSpec], None] | None = None,
        wait_s: float = 90.0,
        quiet: bool = True,
    ):
        spec = scene if isinstance(scene, SceneSpec) else SceneSpec.from_toml(str(scene))
        self.bench_scene = spec.perceived()  # what the person at the bench knows: labels, shapes, sizes
        self.place = place or console_prompt
        self.graph = start_graph(graph, wait_for=["skills/execute"], timeout=wait_s, quiet=quiet, client="lab")
        self.node = self.graph.node
        self.notebook_pub = self.node.publisher("lab/notebook", NotebookEntry)
        self.runner = ParkingRunner(self.node, self.park)
        self._objects = self.node.subscribe("perception/objects", ObjectPoses, mode="latest")

    has_sim = False

    def reset(self, timeout: float = 30.0) -> SceneSpec:
        """A new world: the arm parks out of the camera's view (and out of the person's way), the person places
        the objects, then the camera measures where they are."""
        self.park()
        self.place(self.bench_scene)
        return self.measure_scene(timeout)

    def park(self) -> None:
        """Move the arm to its PARK spot (a clear error when it cannot go there)."""
        where = PARK.get(self.bench_scene.robot)
        if where is None:
            return
        r = self.execute("move_to", {"position": list(where)}, timeout=60.0)
        if not r.get("ok"):
            raise RuntimeError(f"could not park the arm out of the camera's view at {where}: {r.get('error')}")

    def measure_scene(self, timeout: float = 30.0, frames: int = MEASURE_FRAMES) -> SceneSpec:
        """The bench's scene with every object where the camera sees it now (the mean of `frames` pose sets
        taken after this call). Raises TimeoutError naming the objects the camera does not see."""
        labels = set(self.bench_scene.labels)
        after = time.time_ns()
        seen: dict[str, list[np.ndarray]] = {lb: [] for lb in labels}
        last_seq = -1
        deadline = time.monotonic() + timeout
        while min(len(v) for v in seen.values()) < frames:
            if time.monotonic() > deadline:
                missing = sorted(lb for lb, v in seen.items() if len(v) < frames)
                raise TimeoutError(
                    f"the camera does not see {', '.join(missing)} (perception/objects for {timeout:.0f} s): "
                    "are they in view, and is the camera node running?"
                )
            msg = self._objects.latest()
            if msg is None or msg.seq == last_seq or msg.stamp_ns < after:
                time.sleep(0.02)
                continue
            last_seq = msg.seq
            for o in msg.objects:
                if o.label in seen:
                    seen[o.label].append(np.asarray(o.position, float))
        out = copy.deepcopy(self.bench_scene)
        for o in out.objects:
            p = np.mean(seen[o.label], axis=0)
            o.position = (round(float(p[0]), 4), round(float(p[1]), 4), round(o.size / 2, 4))  # resting on the table
        return out

    def call(self, service: str, request: dict, timeout: float = 30.0):
        return self.graph.call(service, request, timeout)

    def execute(self, skill: str, args: dict, timeout: float = 120.0) -> dict:
        return self.call("skills/execute", self.runner.request({"skill": skill, "args": args}), timeout)

    def close(self) -> None:
        self.runner.close()
        self.graph.close()

    def __enter__(self) -> HardwareBench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
