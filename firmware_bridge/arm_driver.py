"""The hardware arm driver: a bus-servo arm behind the same bus contract as `loopylab.sim.SimArm`.

- `arm/joint_state` (JointState: rad, rad/s, N·m) at `rate_hz`, one SYNC READ per cycle of position,
  velocity and load/current; `arm/joint_command` (radians, from the safety gate only) -> one SYNC WRITE;
  `gripper/state` / `gripper/command` when one motor is the gripper (opening in metres);
- `arm/fault` (DeviceFault, latched), by class: `no_response`, `corrupt`, `protocol_error`,
  `motor_error`, `port_lost`, `calibration`, `configuration`, `estop`; `active=False` when it clears.

Faults never drop the arm. A transient fault (no reply, corrupt reply, protocol-error byte) is retried
every cycle while the motors hold the last goal with torque on; joint states pause meanwhile. Only a
fault lasting past `fault_window_s` is published and starts a protective stop (`arm_stop`): hold, then,
on a brakeless arm, lower slowly to the rest pose. When the bus answers again the arm holds where it is
and the fault clears. Torque goes off only on an e-stop (`safety/state`), a motor's own hardware error
(cleared by the `arm/reboot` service) or a lost port (reopened every `reconnect_s`), and on shutdown.
Services: `arm/torque` {on}, `arm/reboot` {ids}. The driver never clamps: limits live in the gate.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from loopylab.bus import DeviceFault, GripperCommand, GripperState, JointCommand, JointState, Node, SafetyState
from loopylab.bus.polled import PollGroup
from loopylab.bus.template import FieldsTemplate
from loopylab.firmware_bridge.arm_codec import ArmCodec
from loopylab.firmware_bridge.arm_stop import FaultWindow, LowerToRest
from loopylab.firmware_bridge.servo import calibration as calib_mod
from loopylab.firmware_bridge.servo.bus import Motor, MotorBus, MotorBusError, MotorFaultError, PortLostError
from loopylab.firmware_bridge.servo.calibration import TICK_RAD
from loopylab.firmware_bridge.servo.cycle import CyclicSyncRead
from loopylab.firmware_bridge.servo.setup import write_gains
from loopylab.world.joints import JointMismatch, indices

if TYPE_CHECKING:
    from loopylab.firmware_bridge.arm_node import ArmConfig

log = logging.getLogger("loopylab.arm")


class NotCalibrated(ValueError):
    """The arm has no calibration file: its angles would be guesses."""


class ArmDriver:
    def __init__(self, node: Node, cfg: ArmConfig, start: bool = True):
        self.node, self.cfg = node, cfg
        calib_path = cfg.calibration or str(calib_mod.default_path(cfg.robot))
        if not os.path.exists(calib_path):
            raise NotCalibrated(
                f"arm {cfg.robot} on {cfg.port} is not calibrated (no {calib_path}): run `loopylab arm "
                f"calibrate --robot {cfg.robot} --port {cfg.port}` (or import LeRobot's with "
                "--from-lerobot FILE), or give the file as the arm node's `calibration`"
            )
        self.bus = MotorBus(
            cfg.port,
            cfg.kind,
            {n: Motor(i, m, cfg.modes.get(n, "")) for n, (i, m) in cfg.motors.items()},
            baudrate=cfg.baudrate,
            retries=cfg.retries,
            latency_s=cfg.latency_s,
        )
        self.names = list(cfg.motors)
        self.arm_joints = [n for n in self.names if n != cfg.gripper]
        self.arm_idx = indices(self.names, self.arm_joints)
        self.calib = calib_mod.load(calib_path)
        missing = [n for n in self.names if n not in self.calib]
        if missing:
            raise NotCalibrated(f"calibration {calib_path} has no entry for {missing}")
        self.codec = ArmCodec(self.bus, self.names, {n: m for n, (_, m) in cfg.motors.items()}, self.calib)
        self.reader = CyclicSyncRead(self.bus, self.codec.addr, self.codec.length, self.codec.ids, "SYNC READ state")
        self._grip_i = self.names.index(cfg.gripper) if cfg.gripper else -1
        # command names -> per motor commanded (name, index in the command, zero ticks, ticks per rad), or why not
        self._plans: dict[tuple[str, ...], list[tuple[str, int, float, float]] | str] = {}
        self._packet: tuple[tuple, bytes] = ((), b"")  # the last SYNC WRITE built (a held goal is re-sent)
        self._last_goals: tuple[list | None, list | None, dict[str, int]] = (None, None, {})  # (position, name, goals)
        self.js_pub = node.publisher("arm/joint_state", JointState)
        self.fault_pub = node.publisher("arm/fault", DeviceFault, latched=True)
        self.grip_pub = node.publisher("gripper/state", GripperState) if cfg.gripper else None
        # their messages differ only in the numbers: the rest is packed once
        k = len(self.arm_joints)
        self._js_template = FieldsTemplate(
            JointState, {"position": k, "velocity": k, "effort": k}, name=self.arm_joints, frame_id="base"
        )
        self._grip_template = FieldsTemplate(GripperState, {"position": None, "effort": None}, velocity=0.0, ready=True)
        # the arm joints' places in the bus order: a slice when they come first, as they do on every catalogue arm
        self._arm_slice = slice(0, k) if self.arm_idx == list(range(k)) else None
        # the loop takes its inputs once a cycle (polled: no thread wakes up for each command; one poll for all of
        # them); the commands as their fields (`codec.decode_fields`: plain floats, no message, no arrays)
        self.cmd_sub = node.subscribe("arm/joint_command", JointCommand, mode="latest", polled=True, fields=True)
        self.grip_sub = (
            node.subscribe("gripper/command", GripperCommand, mode="latest", polled=True, fields=True)
            if cfg.gripper
            else None
        )
        self.safety_sub = node.subscribe("safety/state", SafetyState, mode="latest", polled=True)
        self._inputs = PollGroup([s for s in (self.safety_sub, self.cmd_sub, self.grip_sub) if s is not None])
        node.service("arm/torque", self._on_torque)
        node.service("arm/reboot", self._on_reboot)
        self.fault: DeviceFault | None = None
        self.connected = False
        self.motor_error: MotorFaultError | None = None  # torque off until `arm/reboot`
        self.estopped = False
        self.window = FaultWindow(cfg.fault_window_s)
        self.stop: LowerToRest | None = None
        self.goal: dict[str, int] = {}  # the last goal written (ticks): what the motors hold
        self.cycles = self.failed_cycles = self.commands_applied = self.protective_stops = 0
        self.stop_log: deque[dict] = deque(maxlen=32)  # the last protective stops: when, why, how the cycles went
        self._last_cmd_seq = self._last_grip_seq = None
        self._io = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="arm:loop", daemon=True)
        if start:
            self._thread.start()

    # -- units -----------------------------------------------------------------------------------
    def to_rad(self, name: str, ticks: int) -> float:
        return self.codec.to_rad(name, ticks)

    def to_ticks(self, name: str, rad: float) -> int:
        return self.codec.to_ticks(name, rad)

    def _opening(self, rad: float) -> float:
        c = self.cfg
        frac = (rad - c.gripper_closed_rad) / (c.gripper_open_rad - c.gripper_closed_rad)
        return min(max(frac, 0.0), 1.0) * c.gripper_max_opening_m

    def _gripper_rad(self, opening_m: float) -> float:
        c = self.cfg
        frac = min(max(float(opening_m) / c.gripper_max_opening_m, 0.0), 1.0)
        return c.gripper_closed_rad + frac * (c.gripper_open_rad - c.gripper_closed_rad)

    # -- connection ----------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open, ping every motor, check models, modes and calibration, then hold the present pose."""
        self._poll_inputs()  # the e-stop as it is now; the commands from before are not replayed
        with self._io:
            try:
                self.bus.connect()
                calib_mod.check(self.bus, self.calib)
                write_gains(self.bus, ram_only=True)
                estop = self._estop_requested()
                if estop:  # e.g. the port came back during an e-stop: torque stays off
                    self.bus.set_torque(False)
                elif self.cfg.hold_on_connect:
                    self._hold_present()
            except BaseException:
                self.bus.close()
                raise
        self.connected, self.motor_error, self.stop, self.estopped = True, None, None, estop
        self.window.ok()
        self._last_cmd_seq = self._cmd_key(self.cmd_sub.latest())  # never replay a command from before
        self._last_grip_seq = self._cmd_key(self.grip_sub.latest()) if self.grip_sub else None
        log.info(
            "arm on %s: %d %s motors connected (latency allowance %.0f ms, fault window %.0f ms)",
            self.cfg.port,
            len(self.names),
            self.cfg.kind,
            self.cfg.latency_s * 1e3,
            self.cfg.fault_window_s * 1e3,
        )
        self._clear_fault()
        if estop:
            self._publish_fault("estop", "estop: torque off until safety/reset")

    def _hold_present(self) -> None:
        present = self.bus.sync_read("Present_Position")
        self.bus.sync_write("Goal_Position", present)
        self.goal = dict(present)
        self.bus.set_torque(True)

    def _publish_fault(self, code: str, err: Exception | str, ids: list[int] | None = None, label: str = "") -> None:
        """`label`: the class with its details (no_response(3), protocol_error(3, 0x03)...); default `code`."""
        self.fault = DeviceFault(
            device="arm", active=True, code=code, motor_ids=list(ids or []), message=str(err), label=label or code
        )
        self.fault_pub.publish(self.fault)

    def _clear_fault(self) -> None:
        if self.fault is not None:
            self.fault_pub.publish(
                DeviceFault(
                    device="arm",
                    active=False,
                    code=self.fault.code,
                    motor_ids=self.fault.motor_ids,
                    message=f"recovered: {self.fault.message}",
                    label=self.fault.label,
                )
            )
            self.fault = None

    def _drop(self, code: str, err: MotorBusError, ids: list[int] | None = None) -> None:
        """The two faults that take torque off: a motor's own hardware error (torque off on every motor, the
        port stays open for `arm/reboot`) and a lost port (closed; reopened by the loop)."""
        log.error("arm fault %s: %s", err.label, err)
        with self._io:
            if not isinstance(err, PortLostError) and self.bus.is_open:
                try:
                    self.bus.write_broadcast("Torque_Enable", 0)
                except MotorBusError as e:
                    log.warning("could not turn torque off: %s", e)
            if not isinstance(err, MotorFaultError):
                self.bus.close()
                self.connected = False
        self.stop = None
        self.window.ok()
        self._publish_fault(code, f"{err.label}: {err}", ids, err.label)

    # -- the cycle --------------------------------------------------------------------------------
    def _poll_inputs(self) -> None:
        """Take the commands and the safety state that came since the last look (on the loop's thread)."""
        self._inputs.poll()

    @staticmethod
    def _cmd_key(fields: dict | None) -> tuple[int, int] | None:
        return None if fields is None else (fields["seq"], fields["stamp_ns"])

    def cycle(self) -> None:
        """One write to the port per cycle: the SYNC WRITE of any new goals (unless stopped), then the
        SYNC READ of the state, which is published."""
        with self._io:
            goals = {} if self.estopped or self.stop is not None else self._new_goals()
            prefix = self._goal_packet(goals) if goals else b""
            if goals:
                self.goal.update(goals)
                self.commands_applied += 1
            raw = self.reader(prefix)
            stamp = time.time_ns()
            _, pos, vel, eff = self.codec.decode(raw)
            # the bytes publish(JointState(...)) would send, without building the message and its arrays
            a = self._arm_slice
            if a is not None:
                arm = (pos[a], vel[a], eff[a])
            else:
                arm = tuple([x[i] for i in self.arm_idx] for x in (pos, vel, eff))
            self.js_pub.publish_template(self._js_template, arm, stamp)
            if self.grip_pub is not None:
                g = self._grip_i
                self.grip_pub.publish_template(self._grip_template, (self._opening(pos[g]), abs(eff[g])), stamp)
            if self.window.active:
                self._recovered()
        self.cycles += 1

    def _new_goals(self) -> dict[str, int]:
        """Goal ticks of the commands that came in since the last cycle (never one from before a connect)."""
        goals = {}
        msg = self.cmd_sub.latest()
        key = self._cmd_key(msg)
        if msg is not None and key != self._last_cmd_seq:
            self._last_cmd_seq = key
            goals.update(self._goals(msg))
        if self.grip_sub is not None:
            gm = self.grip_sub.latest()
            gkey = self._cmd_key(gm)
            if gm is not None and gkey != self._last_grip_seq:
                self._last_grip_seq = gkey
                g = self.cfg.gripper
                goals[g] = self.to_ticks(g, self._gripper_rad(gm["position"]))
        return goals

    def _goals(self, msg: dict) -> dict[str, int]:
        """Goal ticks for the motors a JointCommand (its fields) commands (any of them, by name; unnamed: the arm
        joints in order)."""
        q, named = msg["position"], msg["name"]
        last = self._last_goals
        if q == last[0] and named == last[1] and type(q) is list:  # the gate streams the same pose while it holds
            return last[2]
        if not q and msg["velocity"]:
            log.warning("velocity commands are not supported: the servos run in position mode; ignored")
            return {}
        key = tuple(named)
        plan = self._plans.get(key)
        if plan is None:  # once per list of names: which motors, from which of the command's values
            names = list(named) or self.arm_joints
            commanded = [n for n in self.names if n in set(names)]  # bus order
            try:
                where = indices(names, commanded, exact=True)
                c = self.codec
                plan = [(n, j, c.zero[c.index[n]], c.sign[c.index[n]] / TICK_RAD) for n, j in zip(commanded, where)]
            except JointMismatch as e:
                plan = str(e)
            if len(self._plans) < 64:
                self._plans[key] = plan
        if isinstance(plan, str):
            log.warning("joint command ignored: %s (the arm's joints: %s)", plan, self.names)
            return {}
        if type(q) is not list or len(q) != len(named or self.arm_joints):  # (a 2-D array's rows: not a command)
            log.warning("joint command ignored: %s values for joints %s", np.shape(q), list(named))
            return {}
        try:
            finite = all(map(math.isfinite, q))
        except TypeError:  # rows of a 2-D array
            finite = False
        if not finite:  # (the gate passes none; never let one end the loop)
            log.warning("joint command ignored: not a finite position in %s", q)
            return {}
        goals = {n: int(round(zero + k * q[j])) for n, j, zero, k in plan}
        # copies: a caller's list changed in place later is a new pose (the goals: read only, by the packet, `goal`)
        self._last_goals = (list(q), list(named), goals)
        return goals

    def _goal_packet(self, goals: dict[str, int]) -> bytes:
        """The SYNC WRITE of `goals` (the last one built is kept: a held goal goes out again as it was)."""
        key = tuple(goals.items())
        if key != self._packet[0]:
            self._packet = (key, self.bus.sync_write_packet("Goal_Position", goals))
        return self._packet[1]

    # -- transient faults and the protective stop -------------------------------------------------
    def _transient(self, err: MotorBusError, now: float, took: float = 0.0) -> None:
        """A failed cycle (after the bus's own retries; it took `took` s): hold the last goal; past the window,
        stop."""
        self.failed_cycles += 1
        first = not self.window.active
        if not self.window.failed(err, now, took):
            if first:
                log.warning("arm transient %s: %s (retrying, torque on, holding the last goal)", err.label, err)
            self._write_goal(self.goal)
            return
        if self.stop is None:
            self.protective_stops += 1
            self._start_stop(err, now)
        self._write_goal({n: self.to_ticks(n, float(q)) for n, q in zip(self.names, self.stop.goal(now))})

    def _start_stop(self, err: MotorBusError, now: float) -> None:
        c = self.cfg
        start = np.array([self.to_rad(n, self.goal.get(n, self.to_ticks(n, 0.0))) for n in self.names])
        rest = np.array([c.rest.get(n, start[i]) for i, n in enumerate(self.names)])
        mask = np.array([n in c.rest for n in self.names])
        self.stop = LowerToRest(start, rest, now, c.stop_hold_s, c.stop_speed, lower=not c.brakes, mask=mask)
        what = "holding, then lowering to rest" if not c.brakes else "holding"
        w = self.window
        # how many cycles failed and the longest of them: one far past its tries' deadlines is the host's stall
        msg = (
            f"protective stop: {err.label} for {(now - w.since) * 1e3:.0f} ms "
            f"(window {c.fault_window_s * 1e3:.0f} ms; {w.count} failed cycles, the longest "
            f"{w.longest * 1e3:.0f} ms), {what}, torque on: {err}"
        )
        self.stop_log.append(
            {
                "t": now,
                "label": err.label,
                "ms": (now - w.since) * 1e3,
                "cycles": w.count,
                "longest_ms": w.longest * 1e3,
            }
        )
        log.error("arm %s", msg)
        self._publish_fault(err.fault_class, msg, getattr(err, "motor_ids", []), err.label)

    def _write_goal(self, goals: dict[str, int]) -> None:
        """Best effort (a SYNC WRITE needs no reply, so it often gets through a bus that loses replies)."""
        if not goals or self.estopped:
            return
        with self._io:
            try:
                self.bus.sync_write("Goal_Position", goals)
            except PortLostError:
                raise
            except MotorBusError:
                pass
        if self.stop is not None:
            self.goal.update(goals)

    def _recovered(self) -> None:
        """Called with the lock held after a good read that ends a run of failed cycles."""
        if self.stop is not None:  # stay where the stop has brought the arm (a fresh read: a retried
            present = self.bus.sync_read("Present_Position")  # read's first answers may be older)
            self.bus.sync_write("Goal_Position", present)
            self.goal = present
            self._last_cmd_seq = self._cmd_key(self.cmd_sub.latest())
            self.stop = None
            log.info("arm bus answers again: holding where the protective stop left it")
            self._clear_fault()
        else:
            log.info("arm transient %s cleared after %d failed cycles", self.window.first.label, self.window.count)
        self.window.ok()

    # -- the loop ---------------------------------------------------------------------------------
    def _try_connect(self) -> None:
        try:
            self.connect()
        except calib_mod.CalibrationMismatch as e:
            self._refused("calibration", e)
        except PortLostError as e:
            self._refused("port_lost", e)
        except MotorFaultError as e:
            self._refused("motor_error", e, e.motor_ids)
        except MotorBusError as e:
            code = "configuration" if e.fault_class == "bus" else e.fault_class
            self._refused(code, e, getattr(e, "motor_ids", []))

    def _refused(self, code: str, err: Exception, ids: list[int] | None = None) -> None:
        if self.fault is None or self.fault.code != code or self.fault.message != f"{code}: {err}":
            log.error("arm cannot start (%s): %s", code, err)
            label = err.label if isinstance(err, MotorBusError) and err.fault_class == code else code
            self._publish_fault(code, f"{code}: {err}", ids, label)

    def _estop_requested(self) -> bool:
        safety = self.safety_sub.latest()
        return bool(safety is not None and safety.estop)

    def _follow_estop(self) -> None:
        want = self._estop_requested()
        if want == self.estopped or not self.connected:
            return
        with self._io:
            if want:
                self.bus.set_torque(False)
                log.warning("arm e-stop: torque off")
            else:
                self._hold_present()
                self._last_cmd_seq = self._cmd_key(self.cmd_sub.latest())
                log.info("arm e-stop released: holding the present pose, torque on")
        self.estopped = want
        if want:
            self._publish_fault("estop", "estop: torque off until safety/reset")
        else:
            self._clear_fault()

    def _loop(self) -> None:
        period = 1.0 / self.cfg.rate_hz
        next_t = time.monotonic()
        while not self._stop.is_set() and self.node.running:
            if not self.connected or self.motor_error is not None:
                if self.motor_error is None:
                    self._try_connect()
                if not self.connected or self.motor_error is not None:
                    self._stop.wait(self.cfg.reconnect_s)
                    next_t = time.monotonic()
                    continue
            try:
                self._poll_inputs()
                self._follow_estop()
                self.cycle()
            except PortLostError as e:
                self._drop("port_lost", e)
            except MotorFaultError as e:
                self.motor_error = e
                self._drop("motor_error", e, e.motor_ids)
            except MotorBusError as e:
                try:
                    now = time.monotonic()
                    self._transient(e, now, now - next_t)  # (next_t: when this cycle was due)
                except PortLostError as e2:
                    self._drop("port_lost", e2)
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                # a plain sleep costs less than an Event's wait; close() waits for at most one period of it
                time.sleep(delay) if delay < 0.05 else self._stop.wait(delay)
            else:
                next_t = time.monotonic()  # overrun: skip, never bunch up

    # -- services -------------------------------------------------------------------------------------
    def _on_torque(self, req) -> dict:
        on = bool((req or {}).get("on", False))
        with self._io:
            if not self.bus.is_open:
                return {"ok": False, "error": "arm not connected"}
            if on:
                self._hold_present()
            else:
                self.bus.set_torque(False)
        return {"ok": True, "torque": on}

    def _on_reboot(self, req) -> dict:
        """REBOOT motors (default: the one with the hardware error), then reconnect holding the present pose."""
        ids = list((req or {}).get("ids") or (self.motor_error.motor_ids if self.motor_error else []))
        if not ids:
            return {"ok": False, "error": "no motor to reboot: give ids"}
        with self._io:
            try:
                if not self.bus.is_open:
                    self.bus.open()
                for i in ids:
                    self.bus.reboot(int(i))
            except MotorBusError as e:
                return {"ok": False, "error": f"{e.label}: {e}"}
            self.bus.close()
            self.connected, self.motor_error = False, None  # the loop reconnects: present pose, torque on
        log.info("arm: rebooted motors %s", ids)
        return {"ok": True, "rebooted": ids}

    def close(self) -> None:
        """Stop the loop, torque off, close the port."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)
        with self._io:
            if self.bus.is_open:
                try:
                    self.bus.set_torque(False)
                except MotorBusError as e:
                    log.warning("torque off at shutdown failed: %s", e)
                self.bus.close()
