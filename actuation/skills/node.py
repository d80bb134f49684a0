"""The skills node: serves `skills/execute` {skill, args, epoch_ns?} -> {ok, measurements, error}, one skill
at a time, on an arm session and a motion planner of its own."""

from __future__ import annotations

import logging
import threading
import time

from loopylab.actuation.skills.drop import drop
from loopylab.actuation.skills.lift import lift
from loopylab.actuation.skills.motion import Motion
from loopylab.actuation.skills.move_to import move_to
from loopylab.actuation.skills.place import place
from loopylab.actuation.skills.push import push, strike
from loopylab.actuation.skills.session import ArmSession, SkillFailed
from loopylab.actuation.skills.weigh import weigh
from loopylab.bus import Node
from loopylab.world import protocols as P
from loopylab.world.kinematics import Unreachable

log = logging.getLogger("loopylab.skills")

SKILLS = {
    "move_to": move_to,
    "push": push,
    "lift": lift,
    "weigh": weigh,
    "drop": drop,
    "strike": strike,
    "place": place,
}
MOVES_ITS_OBJECT = {"push", "strike", "drop", "place"}  # a lift and a weigh put it back where it stood


class Skills:
    def __init__(
        self,
        node: Node,
        robot: str = "panda",
        scene=None,
        control_hz: float = P.CONTROL_HZ,
        velocity_scale: float = 0.4,
        acceleration: float = 4.0,
        tick_timeout: float = 5.0,
    ):
        self.node = node
        self.motion = Motion(robot, control_hz, velocity_scale, acceleration)
        self.arm = ArmSession(node, self.motion.kin.joint_names, scene, control_hz, tick_timeout)
        self.arm.sensor_rotation = self.motion.sensor_rotation  # a wrist FT300 reports in its own axes
        self._lock = threading.Lock()  # one skill at a time
        node.service("skills/execute", self.execute)

    def execute(self, req: dict) -> dict:
        t0 = time.monotonic()
        req = req or {}
        name, args = req.get("skill"), req.get("args") or {}
        fn = SKILLS.get(name) if isinstance(name, str) else None
        if fn is None:
            return {
                "ok": False,
                "measurements": {"source": "scene", "duration_s": 0.0},
                "error": f"unknown skill {name!r} (known: {', '.join(SKILLS)})",
            }
        if not self._lock.acquire(timeout=0.1):
            return {
                "ok": False,
                "measurements": {"source": "scene", "duration_s": 0.0},
                "error": "another skill is running",
            }
        self.arm.source = "scene"
        try:
            self.arm.wait_world(int(req.get("epoch_ns") or 0))
            self.arm.wait_ready()
            m = fn(self.arm, self.motion, args)
            ok, err = True, ""
            moved = True
        except (P.BadArgs, Unreachable, SkillFailed, KeyError, TimeoutError) as e:
            m, ok, err = {}, False, f"{name}: {e}"
            moved = isinstance(e, SkillFailed)  # it may have failed with the hand on the object; planning did not
            log.warning("%s", err)
        finally:
            self._lock.release()
        if moved and name in MOVES_ITS_OBJECT and self.arm.source == "scene":
            self.arm.moved_blind.add(str(args.get("object", "")))
        m["source"] = self.arm.source
        m["duration_s"] = round(time.monotonic() - t0, 4)
        return {"ok": ok, "measurements": m, "error": err}

    def close(self) -> None:
        self.motion.close()


def run_skills(node: Node, robot: str = "panda", scene: str | None = None, control_hz: float = P.CONTROL_HZ) -> Skills:
    """Graph entry point (`loopylab.actuation.skills:run_skills`). The perceived scene (sizes, shapes) gives
    object sizes and fallback positions; live positions come from perception/objects. A simulator's latched
    `sim/scene` says which world is loaded (and follows its resets); `scene` (a TOML file) describes the
    objects where no simulator runs."""
    from loopylab.world.scene import SceneSpec

    return Skills(node, robot, SceneSpec.from_toml(scene).perceived() if scene else None, control_hz)
