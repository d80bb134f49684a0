"""The fixed calibration run behind `loopylab lab calibrate-twin`: a few experiments on known objects, on a
hardware bench (`loopylab.lab.rig_bench.HardwareBench`, real or emulated), fitted by `loopylab.lab.twin_fit`.

1. the wrist sensor's stream while the arm stands still (`still_s` seconds) -> its force noise;
2. `weighs` weighs of every object whose mass is known -> the weigh's sd and bias against the known masses (and
   the rms of the sigma the skill reported, the sensor noise it already accounts for);
3. the gate's joint commands and the driver's joint readings during those weighs -> the arm's tracking lag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loopylab.bus import JointCommand, JointState, Wrench
from loopylab.lab.twin_fit import KnownObject, TwinCalibration, noise_sd, offset, tracking_lag


@dataclass(frozen=True)
class Plan:
    weighs: int = 3  # per object of known mass (two or more in all)
    still_s: float = 2.0  # seconds of the still sensor's stream
    attempts: int = 2  # a skill that fails cleanly (a starved bus, a lost grasp) is run again, as the lab does


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
    return TwinCalibration(**fields)


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
