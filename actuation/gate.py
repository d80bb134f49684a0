"""The safety gate node: the one place where limits are enforced, and the only publisher of `arm/joint_command`.

`GateNode` applies the pure limits of `loopylab.world.limits` (`SafetyLimits`) on the bus with the deadman
(no fresh `arm/joint_target` within `deadman_ms` -> hold), the `arm/joint_state` heartbeat (lost ->
protective stop), and the e-stop latch (`safety/estop`, released only by `safety/reset`). Every intervention
is reported on `safety/state`, and so is the arm driver's fault (`arm/fault`, by class: `no_response(id)`,
`corrupt`, `protocol_error(id, code)`, `motor_error(id, bits)`, `port_lost`...): while one is active the
arm does not follow commands (the driver holds, lowers to rest or has torque off), so the gate reports a
protective stop and ignores targets until it clears; the next stream then starts from where the arm is.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from loopylab.bus import DeviceFault, JointCommand, JointState, Node, SafetyState
from loopylab.world.config import check_keys, field_names
from loopylab.world.joints import JointMismatch, reorder
from loopylab.world.kinematics import Kinematics
from loopylab.world.limits import GateConfig, SafetyLimits
from loopylab.world.robots import robot_spec

log = logging.getLogger("loopylab.gate")
RESET_ROLES = ("operator",)  # who may release a latched e-stop (safety/reset)


class GateNode:
    """Bus wrapper: arm/joint_target -> SafetyLimits -> arm/joint_command, plus deadman, heartbeat, e-stop."""

    def __init__(self, node: Node, limits: SafetyLimits, joint_names: list[str], cfg: GateConfig):
        self.node, self.limits, self.names, self.cfg = node, limits, list(joint_names), cfg
        self._lock = threading.Lock()
        self.state = SafetyState()
        self.estop = False
        self.protective = False
        self.holding = False
        self.device_fault: DeviceFault | None = None  # the arm driver's active fault
        self._last_target_t = 0.0
        self._cmd_stamp = 0  # the last command's stamp (the arm's clock)
        self.cmd_pub = node.publisher("arm/joint_command", JointCommand)
        self.state_pub = node.publisher("safety/state", SafetyState, latched=True)
        self.js = node.subscribe("arm/joint_state", JointState, mode="latest")
        node.subscribe("arm/joint_target", JointCommand, callback=self._on_target)
        node.subscribe("arm/fault", DeviceFault, callback=self._on_fault)
        node.service("safety/estop", self._on_estop)
        node.service("safety/reset", self._on_reset, allow=RESET_ROLES)  # a person releases an e-stop
        self._publish_state()
        self._timer = node.timer(max(cfg.state_hz, 1000.0 / max(cfg.deadman_ms, 1) * 2), self._watchdog, "watchdog")

    # -- helpers -----------------------------------------------------------------
    def _measured(self, field: str) -> np.ndarray | None:
        """`field` (position or effort) of the latest arm/joint_state in the gate's joint order; None when
        there is none or it does not cover the gate's joints."""
        js = self.js.latest()
        if js is None:
            return None
        try:
            return reorder(getattr(js, field), js.name, self.names)
        except JointMismatch:
            return None

    def _position(self) -> np.ndarray | None:
        return self._measured("position")

    def _effort(self) -> np.ndarray | None:
        return self._measured("effort")

    def _fault_stop(self) -> bool:
        """An arm fault that stops the arm (the driver's own report of an e-stop is the gate's latch)."""
        return self.device_fault is not None and self.device_fault.code != "estop"

    def _publish_state(self, reason: str | None = None) -> None:
        s, f = self.state, self.device_fault
        if reason is not None:
            s.reason = reason
        self.state_pub.publish(
            SafetyState(
                estop=self.estop,
                reason=s.reason,
                deadman_ok=not self.holding,
                clamped_count=s.clamped_count,
                rejected_count=s.rejected_count,
                protective_stop=self.protective or self._fault_stop(),
                fault=f"{f.device}: {f.describe()}" if f is not None else "",
            )
        )

    def _send(self, q: np.ndarray) -> None:
        # stamped with the arm's clock (the latest state's stamp: the state it answers), so a recording's
        # commands keep the arm's time base; a lockstep sim runs faster than the wall clock, and log times
        # alone make an honest recording's commands look faster than the motors (market/verify/bounds.py)
        # (and strictly increasing: two commands may answer the same state)
        js = self.js.latest()
        stamp = max(int(js.stamp_ns), self._cmd_stamp + 1) if js is not None and js.stamp_ns else 0
        self._cmd_stamp = stamp
        self.cmd_pub.publish(JointCommand(name=self.names, position=q, stamp_ns=stamp))

    def _hold(self, reason: str) -> None:
        """Stop where the arm is: command the measured position once, forget the command history."""
        x = self._position()
        if x is not None:
            self._send(x)
            self.limits.reset(x)
        log.warning("hold: %s", reason)
        self._publish_state(reason)

    # -- bus callbacks -------------------------------------------------------------
    def _on_target(self, msg: JointCommand) -> None:
        with self._lock:
            now, previous_t = time.monotonic(), self._last_target_t
            self._last_target_t = now
            if self.estop or self.protective or self._fault_stop():
                self.state.rejected_count += 1
                if self.estop:
                    why = "e-stop latched: target ignored"
                elif self.protective:
                    why = "protective stop: no arm/joint_state"
                else:
                    why = f"protective stop: arm fault {self.device_fault.describe()}: target ignored"
                self._publish_state(why)
                return
            x = self._position()
            if x is None:
                self.state.rejected_count += 1
                self._publish_state("no arm/joint_state yet: target ignored")
                return
            if self.holding:  # a fresh stream after a deadman hold starts again from rest
                self.holding = False
                self.limits.reset(x)
            target = np.asarray(msg.position, float)
            if len(msg.name):
                try:
                    target = reorder(msg.position, msg.name, self.names, exact=True)
                except JointMismatch as e:
                    self.state.rejected_count += 1
                    self._publish_state(f"target names do not match the arm's joints: {e}")
                    return
            paused = (now - previous_t) * 1000 > self.cfg.pause_ms
            cmd, iv = self.limits.filter(target, x, self._effort(), paused=paused)
            if cmd is None:
                self.state.rejected_count += 1
            elif any(i.kind != "resync" for i in iv):
                self.state.clamped_count += 1
            if cmd is not None:
                self._send(cmd)
            if iv:
                self._publish_state("; ".join(f"{i.kind}: {i.detail}" for i in iv))

    def _watchdog(self) -> None:
        with self._lock:
            now = time.monotonic()
            stale = self.js.age() * 1000 > self.cfg.heartbeat_ms
            if stale and not self.protective:
                self.protective = True
                self.limits.reset()
                if self.js.count == 0:
                    self._publish_state("protective stop: waiting for the first arm/joint_state")
                else:
                    self._publish_state(
                        f"protective stop: arm/joint_state heartbeat lost ({self.js.age() * 1000:.0f} ms)"
                    )
                    log.warning("protective stop: no arm/joint_state for %.0f ms", self.js.age() * 1000)
            elif not stale and self.protective:
                self.protective = False
                # no command went out during the stop: the next stream starts from wherever the arm is when
                # it comes (at start-up the arm may still be settling, and a sim reset may move it before then)
                self.limits.reset()
                self._publish_state("arm/joint_state back: protective stop cleared")
            if (
                self._last_target_t
                and not self.holding
                and not self.estop
                and not self._fault_stop()  # the driver takes no command then: nothing to hold
                and (now - self._last_target_t) * 1000 > self.cfg.deadman_ms
            ):
                self.holding = True
                self._hold(f"deadman: no arm/joint_target for {self.cfg.deadman_ms:.0f} ms")
            self._publish_state()

    def _on_fault(self, msg: DeviceFault) -> None:
        """Relay the arm driver's fault (by class) on safety/state; while it is active the arm is stopped."""
        with self._lock:
            label = msg.describe()
            if msg.active:
                self.device_fault = msg
                log.warning("arm fault %s: %s", label, msg.message)
                self._publish_state(f"arm fault {label}: {msg.message}")
                return
            if self.device_fault is None:
                return
            self.device_fault = None
            self.limits.reset()  # the arm may have been lowered meanwhile: the next stream starts where it is
            log.info("arm fault %s cleared", label)
            self._publish_state(f"arm fault {label} cleared: {msg.message}")

    def _on_estop(self, req) -> dict:
        with self._lock:
            self.estop = True
            self._hold(f"e-stop: {(req or {}).get('reason', 'requested')}")
        return {"ok": True}

    def _on_reset(self, req) -> dict:
        with self._lock:
            was = self.estop
            self.estop = False
            self.limits.reset(self._position())
            self._publish_state("e-stop released" if was else "reset")
        return {"ok": True, "was_estopped": was}

    def close(self) -> None:
        self._timer.cancel()


def run_gate(
    node: Node,
    robot: str = "panda",
    urdf: str = "",
    ee_link: str = "",
    joints: list | None = None,
    config: str | None = None,
    **overrides,
) -> GateNode:
    """Graph entry point: the gate for `robot` (a catalogue name) or any URDF given with ee_link and joints."""
    cfg = GateConfig.from_toml(config)
    check_keys(overrides, field_names(GateConfig), "gate parameters")
    cfg = dataclasses.replace(cfg, **overrides)
    acc = cfg.acceleration or 15.0
    if not urdf:
        rs = robot_spec(robot)
        urdf, ee_link, joints, acc = rs.urdf, rs.ee_link, list(rs.arm_joints), cfg.acceleration or rs.acc_limit
    kin = Kinematics(urdf, ee_link, joints)
    return GateNode(node, SafetyLimits.from_kinematics(kin, cfg, acc), list(kin.joint_names), cfg)
