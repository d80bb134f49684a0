"""Twin: an objects-only DIRECT copy of a (perceived) scene with candidate physical parameters.

The belief engine asks "what would this experiment show if friction were 0.4": `Twin.predict` replays
the skill at object level — a kinematic pusher pad on the skill's exact path and timing for push and
strike, a release from the skill's height for drop, the mass itself for weigh — and turns the simulated
signals into measurements with the same functions the skills use (`loopylab.world.protocols`). The world
is built once and reset between predictions. `TwinPool` spreads predictions over processes.

    twin = Twin(scene.perceived())
    twin.predict("push", {"object": "red_block", "direction": "+x", "distance": 0.1, "speed": 0.05},
                 {"red_block": {"mass": 0.4, "friction": 0.5, "restitution": 0.3}})
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pybullet as p

from loopylab.lab import twin_fit
from loopylab.sim.world import HAND_FRICTION, World
from loopylab.world import protocols as P
from loopylab.world.robots import CONTROL_HZ
from loopylab.world.scene import SceneSpec

PAD = 0.0145  # m: half-thickness of the pusher pad (a Panda finger pair, seen from the side)
PAD_WIDTH = 0.02  # m: half-width across the push
PAD_HEIGHT = 0.02  # m: half-height (bottom at the protocol's tool-tip height)
PARK = (5.0, 5.0, 1.0)  # where the pad waits between experiments


class Twin:
    def __init__(self, scene: SceneSpec, control_hz: float = CONTROL_HZ, lag_s: float | None = None):
        """`lag_s`: how far the pusher trails the skill's path (the rig's fitted tracking lag, `twin_fit.lag_s`,
        by default: 0 unless a `--twin-calibration` is in use)."""
        self.scene = scene
        self.hz = control_hz
        self.lag_ticks = round((twin_fit.lag_s() if lag_s is None else lag_s) * control_hz)
        self.substeps = max(1, round(1.0 / (control_hz * scene.dt)))
        self._build(scene)
        self._params: dict[str, dict] = {}
        self._last: tuple | None = None  # the action and centres of mass the world was last built for (_apply)

    def _build(self, spec: SceneSpec) -> None:
        """A fresh world of `spec` and the pad, always built in the same order."""
        if getattr(self, "world", None) is not None:
            self.world.close()
        self.world = World(spec, with_robot=False)
        c = self.world.cid
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[PAD, PAD_WIDTH, PAD_HEIGHT], physicsClientId=c)
        self.pad = p.createMultiBody(1.0, col, -1, basePosition=PARK, physicsClientId=c)
        p.changeDynamics(self.pad, -1, lateralFriction=HAND_FRICTION, restitution=0.0, physicsClientId=c)
        self.pad_cons = p.createConstraint(
            self.pad, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0], PARK, physicsClientId=c
        )
        p.changeConstraint(self.pad_cons, PARK, maxForce=5000, physicsClientId=c)

    # -- parameters -------------------------------------------------------------------------------
    def _apply(self, params: dict | None, action: tuple = ()) -> None:
        """Set the parameters on a world in which a prediction is a function of its scene, action (skill and
        arguments) and parameters alone, never of what the twin simulated before. The solver keeps state that no
        reset of poses or saved state clears (a strike after a 0.2 m drop slid 4 mm further, one at 0.30 m/s
        after one at 0.45 up to 3 cm; a push after an off-centre drop read 0.4 % off), but repeating one action
        with other parameters leaves none: so a new world whenever the action or a centre of mass changes, once
        per table (a new world costs about as much as two predictions)."""
        spec = self.scene
        coms = []
        for label, props in (params or {}).items():
            self.scene.object(label)  # KeyError for an unknown label
            com = props.get("com_offset")
            if com is not None:
                spec = spec.with_params({label: {"com_offset": com}})
                coms.append((label, tuple(map(float, com))))
        key = (action, tuple(coms))
        if key != self._last:
            self._build(spec)
            self._last = key
        for label, props in (params or {}).items():
            self.world.set_object_params(label, props.get("mass"), props.get("friction"), props.get("restitution"))
        self.world.reset_objects()
        self._park()

    def _park(self) -> None:
        c = self.world.cid
        p.resetBasePositionAndOrientation(self.pad, PARK, [0, 0, 0, 1], physicsClientId=c)
        p.resetBaseVelocity(self.pad, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        p.changeConstraint(self.pad_cons, PARK, maxForce=5000, physicsClientId=c)

    def _pad_to(self, pos, reset: bool = False) -> None:
        c = self.world.cid
        centre = [float(pos[0]), float(pos[1]), float(pos[2]) + PAD_HEIGHT]
        if reset:
            p.resetBasePositionAndOrientation(self.pad, centre, [0, 0, 0, 1], physicsClientId=c)
            p.resetBaseVelocity(self.pad, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        p.changeConstraint(self.pad_cons, centre, maxForce=5000, physicsClientId=c)

    def _pad_force(self, label: str) -> np.ndarray:
        f = np.zeros(3)
        for cp in p.getContactPoints(self.pad, self.world.objects[label], physicsClientId=self.world.cid):
            f += cp[9] * np.asarray(cp[7])
        return f

    def _tick(self, label: str | None = None) -> np.ndarray:
        """One control period; returns the pad's contact force (on the pad) averaged over the substeps."""
        f = np.zeros(3)
        for _ in range(self.substeps):
            self.world.step(1)
            if label is not None:
                f += self._pad_force(label)
        return f / self.substeps

    # -- prediction ------------------------------------------------------------------------------------
    def predict(self, skill: str, args: dict, params: dict | None = None) -> dict:
        t0 = time.perf_counter()
        fn = getattr(self, f"_predict_{skill}", None)
        if fn is None:
            raise ValueError(
                f"the twin cannot predict {skill!r} (known: move_to, push, lift, weigh, drop, strike, place)"
            )
        self._apply(params, (skill, json.dumps(args, sort_keys=True, default=str)))
        m = fn(args)
        m["source"] = "twin"
        m["duration_s"] = time.perf_counter() - t0
        return m

    def _obj(self, args) -> tuple[str, np.ndarray, float]:
        label = str(args.get("object", ""))
        o = self.scene.object(label)
        return label, self.world.object_pose(label)[0], o.size

    def _run_pad(self, label, start, d, path) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The pad along `path` (one point per tick), trailing it by `lag_ticks` as the rig's hand trails the
        commands: the readings of the path's ticks, and the object's track until the pad reaches its end."""
        forces, track = [], []
        self._pad_to(start, reset=True)
        n = len(path)
        for i in range(n + self.lag_ticks):
            self._pad_to(start + d * path[min(max(i - self.lag_ticks, 0), n - 1)])
            f = self._tick(label)
            if i < n:
                forces.append(f)
            track.append(self.world.object_pose(label)[0])
        return forces, track

    def _predict_push(self, args) -> dict:
        label, pos0, size = self._obj(args)
        d = P.direction(str(args.get("direction", "+x")))
        plan = P.push_plan(
            pos0,
            size,
            str(args.get("direction", "+x")),
            P.number(args, "distance", 0.005, 0.3),
            P.number(args, "speed", 0.005, 0.3, default=0.05),
            PAD,
            self.hz,
        )
        forces, _ = self._run_pad(label, plan.start, d, plan.path)
        for _ in range(int(0.15 * self.hz)):
            self._tick()
        pos1 = self.world.object_pose(label)[0]
        f = np.array([-(fi @ d) for fi in forces])
        return P.analyze_push(plan.path, f, pos0, pos1, plan.steady, 0.0)

    def _predict_strike(self, args) -> dict:
        label, pos0, size = self._obj(args)
        name = str(args.get("direction", "+x"))
        d = P.direction(name)
        speed = P.number(args, "speed", 0.05, P.STRIKE_MAX_SPEED)
        plan = P.strike_plan(pos0, size, name, speed, PAD, self.hz)
        _, track = self._run_pad(label, plan.start, d, plan.path)
        still, last = 0, track[-1]
        for _ in range(int(3.0 * self.hz)):
            self._tick()
            x = self.world.object_pose(label)[0]
            track.append(x)
            still = still + 1 if np.linalg.norm(x - last) < 2e-4 else 0
            last = x
            if still >= 12:
                break
        xy = np.asarray(track)
        t = np.arange(len(xy)) / self.hz
        t_brake = np.searchsorted(plan.path, plan.brake_s - 1e-9) / self.hz
        return P.analyze_strike(t, xy, t_brake, speed, 0.0)

    def _predict_drop(self, args) -> dict:
        label, pos0, size = self._obj(args)
        height = P.number(args, "height", 0.02, 0.3)
        _, orn = self.world.object_pose(label)
        self.world.set_object_pose(label, [pos0[0], pos0[1], pos0[2] + height], orn)
        z, still, last = [], 0, None
        for _ in range(int(2.0 * self.hz)):
            self._tick()
            x = self.world.object_pose(label)[0]
            z.append(x[2])
            still = still + 1 if last is not None and np.linalg.norm(x - last) < 2e-4 else 0
            last = x
            if still >= 12:
                break
        return P.analyze_drop(np.arange(len(z)) / self.hz, z, 0.0, size)

    def _predict_weigh(self, args) -> dict:
        label, _, _ = self._obj(args)
        m = p.getDynamicsInfo(self.world.objects[label], -1, physicsClientId=self.world.cid)[0]
        return {"mass_kg": float(m), "force_z_N": float(m * P.G), "mass_sigma_kg": 0.0}

    def _predict_lift(self, args) -> dict:
        self._obj(args)
        return {"lifted_m": P.number(args, "height", 0.005, 0.25)}

    def _predict_place(self, args) -> dict:
        _, pos, _ = self._obj(args)
        target = np.asarray(args.get("position", pos[:2]), float)[:2]
        return {"placed_m": float(np.linalg.norm(target - pos[:2]))}

    def _predict_move_to(self, args) -> dict:
        return {"position_error_m": 0.0}

    def close(self) -> None:
        self.world.close()


# -- process pool -------------------------------------------------------------------------------------------
_TWINS: dict[str, Twin] = {}


def _worker_predict(scene_toml: str, skill: str, args: dict, params_list: list[dict]) -> list[dict]:
    twin = _TWINS.get(scene_toml)
    if twin is None:
        if len(_TWINS) > 8:  # a worker keeps a few scenes' twins; drop the oldest
            _TWINS.pop(next(iter(_TWINS))).close()
        twin = _TWINS[scene_toml] = Twin(SceneSpec.from_toml(scene_toml))
    return [twin.predict(skill, args, prm) for prm in params_list]


class TwinPool:
    """Predictions for many parameter sets, spread over `workers` processes (each reuses its twins)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self._ex = ProcessPoolExecutor(self.workers)

    def predict_many(self, scene: SceneSpec, skill: str, args: dict, params_list: list[dict]) -> list[dict]:
        if not params_list:
            return []
        text = scene.to_toml()
        k = self.workers
        chunks = [params_list[i::k] for i in range(k)]
        futures = [self._ex.submit(_worker_predict, text, skill, args, ch) for ch in chunks if ch]
        results = [f.result() for f in futures]
        out: list[dict] = [None] * len(params_list)  # type: ignore[list-item]
        for i, res in enumerate(results):
            out[i::k] = res
        return out

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
