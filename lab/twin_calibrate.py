"""The fixed calibration run behind `loopylab lab calibrate-twin`: a few experiments on known objects, on a
hardware bench (`loopylab.lab.rig_bench.HardwareBench`, real or emulated), fitted by `loopylab.lab.twin_fit`.

1. the wrist sensor's stream while the arm stands still (`still_s` seconds) -> its force noise;
2. `weighs` weighs of every object whose mass is known -> the weigh's sd and bias against the known masses (and
   the rms of the sigma the skill reported, the sensor noise it already accounts for);
3. the gate's joint commands and the driver's joint readings during those weighs -> the arm's tracking lag;
4. `pushes` pushes of every object whose mass and friction are known (each the first push the lab's grid offers
   where the camera sees it now) against the twin's prediction at its truth -> the push noise factor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loopylab.bus import JointCommand, JointState, Wrench
from loopylab.lab.twin_fit import KnownObject, TwinCalibration, noise_sd, offset, push_noise_factor, tracking_lag


@dataclass(frozen=True)
class Plan:
    weighs: int = 3  # per object of known mass (two or more in all)
    still_s: float = 2.0  # seconds of the still sensor's stream
    attempts: int = 2  # a skill that fails cleanly (a starved bus, a lost grasp) is run again, as the lab does
    pushes: int = 3  # per object of known mass and friction (0: no push phase)
    see_s: float = 15.0  # s: how long the camera may take to see the objects before each push


class Recorder:
    """(arrival time, values) of every message on a topic, from when it is made until `close`."""

    def __init__(self, node, topic: str, cls, pick: Callable):
        self.t: list[float] = []
        self.v: list = []
        self.names: list[str] = []
        self._lock = threading.Lock()
        self._pick = pick
        self._node = node
        self._sub = node.subscribe(topic, cls, callback=self._on)

    def _on(self, msg) -> None:
        with self._lock:
            self.t.append(time.monotonic())
            self.v.append(self._pick(msg))
            self.names = list(getattr(msg, "name", []) or self.names)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return np.asarray(self.t, float), np.asarray(self.v, float)

    def close(self) -> None:
        self._node.unsubscribe(self._sub)


def _lag(cmds: Recorder, states: Recorder) -> float | None:
    """The tracking lag of the joints both streams name (None when either stream stayed empty)."""
    tc, qc = cmds.arrays()
    ts, qs = states.arrays()
    if len(tc) < 2 or len(ts) < 2 or not cmds.names:
        return None
    idx = [states.names.index(n) for n in cmds.names if n in states.names]
    if not idx:
        return None
    cols = [i for i, n in enumerate(cmds.names) if n in states.names]
    return tracking_lag(tc, qc[:, cols], ts, qs[:, idx])


def calibrate(bench, objects: list[KnownObject], plan: Plan = Plan(), rig: str = "", say=print) -> TwinCalibration:
    """Run the plan on `bench` (objects already placed) and fit the figures."""
    weighed = [o for o in objects if o.mass is not None]
    if len(weighed) * plan.weighs < 2:
        raise ValueError("the weigh needs two or more weighs of objects of known mass (raise --weighs)")
    node = bench.node
    fields: dict = {"rig": rig}

    wrench = Recorder(node, "wrist/wrench", Wrench, lambda m: np.asarray(m.force, float)[:3])
    time.sleep(plan.still_s)
    wrench.close()
    t, f = wrench.arrays()
    if len(f) >= 25:
        e = noise_sd(f)
        fields |= {"force_noise_N": e.value, "force_noise_lo": e.lo, "force_noise_hi": e.hi, "force_samples": e.n}
        distinct = 1 + int(np.sum(np.any(np.diff(f, axis=0) != 0, axis=1)))  # re-sent readings are not new ones
        fields["force_rate_hz"] = distinct / max(float(t[-1] - t[0]), 1e-3)
        say(f"wrist force noise {e.value:.4f} N (95 % {e.lo:.4f}-{e.hi:.4f}, {e.n} samples)")
    else:
        say(f"wrist/wrench: {len(f)} readings in {plan.still_s:.1f} s, too few for its noise: no F/T sensor?")

    cmds = Recorder(node, "arm/joint_command", JointCommand, lambda m: np.asarray(m.position, float))
    states = Recorder(node, "arm/joint_state", JointState, lambda m: np.asarray(m.position, float))
    measured, truth, reported = [], [], []
    try:
        for o in weighed:
            for k in range(plan.weighs):
                m, sig = _weigh(bench, o.label, plan.attempts)
                measured.append(m)
                truth.append(o.mass)
                reported.append(sig)
                say(f"weigh {o.label} #{k + 1}: {m * 1000:.1f} g (known {o.mass * 1000:.1f} g)")
    finally:
        cmds.close()
        states.close()
    bias, sd = offset(measured, truth)
    fields |= {"weigh_sd_kg": sd.value, "weigh_sd_lo": sd.lo, "weigh_sd_hi": sd.hi, "weighs": sd.n}
    fields |= {"weigh_bias_kg": bias.value, "weigh_bias_lo": bias.lo, "weigh_bias_hi": bias.hi}
    fields["weigh_reported_kg"] = float(np.sqrt(np.mean(np.square(reported))))
    lag = _lag(cmds, states)
    if lag is not None:
        fields["tracking_lag_s"] = lag
    sliding = {o.label for o in bench.bench_scene.objects if o.shape != "sphere"}  # a ball rolls: no friction read
    pushed = [o for o in objects if o.mass is not None and o.friction is not None and o.label in sliding]
    if plan.pushes and pushed:
        ratios, sds = _pushes(bench, pushed, plan, say)
        if len(ratios) >= 2:
            from loopylab.lab.beliefs import BIAS, NoiseModel

            k = push_noise_factor(ratios, sds, BIAS["force_mean_N"], NoiseModel().dof)
            fields |= {"push_noise_factor": k.value, "push_noise_lo": k.lo, "push_noise_hi": k.hi, "pushes": k.n}
            say(f"push noise {k.value:.2f} x the model's (95 % {k.lo:.2f}-{k.hi:.2f}, {k.n} pushes)")
        else:
            say(f"{len(ratios)} push(es) carried out: too few for the push noise")
    return TwinCalibration(**fields)


def _pushes(bench, objects: list[KnownObject], plan: Plan, say) -> tuple[list[float], list[float]]:
    """(log measured/twin, the noise model's sigma over its prediction) of each push carried out: for each
    object, `plan.pushes` times the first push the grid offers where the camera sees the objects now, predicted
    by the lab's twin at its known mass and friction (and the load the push measured)."""
    from loopylab.lab.beliefs import LATENT_SD, Measurement, NoiseModel, predict_biased
    from loopylab.lab.experiments import candidate_experiments, workspace
    from loopylab.lab.forward import ForwardModel, InlineTwins
    from loopylab.lab.investigation import grammar_scene

    noise, twins = NoiseModel(), InlineTwins()
    ratios, sds = [], []
    try:
        for o in objects:
            theta = np.zeros((1, 3 + len(LATENT_SD)))
            theta[0, :3] = np.log([o.friction, o.mass, 0.5])  # a push does not depend on the restitution
            done = 0
            for _ in range(plan.pushes + plan.attempts):  # a place or a failed push takes a turn, not a push
                if done == plan.pushes:
                    break
                try:
                    scene = bench.measure_scene(timeout=plan.see_s)
                except TimeoutError as e:  # no camera: a pushed object's new place would be a guess
                    say(f"no pushes: {e}")
                    return ratios, sds
                offered = list(candidate_experiments(grammar_scene(scene), ws=workspace(scene.robot)))
                exp = next((e for e in offered if e.object == o.label and e.skill == "push"), None)
                move = next((e for e in offered if e.object == o.label and e.skill == "place"), None)
                if exp is None and move is not None:  # boxed in: where the grid would put it to be pushed
                    say(f"{move.render()}: {'ok' if bench.execute('place', move.args()).get('ok') else 'failed'}")
                    continue
                if exp is None:
                    say(f"no push of {o.label} fits where it stands now: {done} of {plan.pushes} pushed")
                    break
                r = bench.execute("push", exp.args())
                if not r.get("ok"):
                    say(f"{exp.render()} failed: {r.get('error', '')}")
                    continue
                m = Measurement.from_reply(exp, r["measurements"])
                pred = float(predict_biased(ForwardModel(scene, twins), exp, theta, None, m.load)["force_mean_N"][0])
                y = m.values["force_mean_N"]
                sig = float(noise.sigma("force_mean_N", np.array([pred]), m.reported_sigma["force_mean_N"])[0])
                ratios.append(float(np.log(y / pred)))
                sds.append(sig / pred)
                done += 1
                say(f"{exp.render()}: {y:.3f} N (twin at the truth {pred:.3f} N)")
    finally:
        twins.close()
    return ratios, sds


def _weigh(bench, label: str, attempts: int) -> tuple[float, float]:
    """(mass, the sigma the skill reported) of one weigh."""
    err = ""
    for _ in range(attempts):
        r = bench.execute("weigh", {"object": label})
        if r.get("ok"):
            m = r["measurements"]
            return float(m["mass_kg"]), float(m.get("mass_sigma_kg", 0.0) or 0.0)
        err = r.get("error", "")
    raise RuntimeError(f"weigh {label} failed {attempts} times: {err}")
