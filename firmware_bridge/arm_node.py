"""The hardware arm driver: a bus-servo arm behind the same bus contract as `loopylab.sim.SimArm`.

- `arm/joint_state` (JointState: rad, rad/s, N·m) at `rate_hz`, one SYNC READ per cycle of
  position, velocity and load/current;
- `arm/joint_command` (JointCommand, radians, from the safety gate only) -> one SYNC WRITE of goals;
- `gripper/state` / `gripper/command` when one motor is the gripper (opening in metres);
- `arm/fault` (DeviceFault, latched): a failed cycle (after the bus's retries), a motor's hardware
  error, a calibration mismatch or a lost port. On a fault the driver turns torque off, stops
  publishing joint states (so the gate's heartbeat check stops the rest of the graph) and keeps
  trying to reconnect every `reconnect_s`; once every motor answers again it holds the present pose
  and clears the fault. Service `arm/torque` {on: bool} switches torque by hand.
Torque goes off on shutdown. The driver never clamps: limits live in the safety gate.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from loopylab.bus import GripperCommand, GripperState, JointCommand, JointState, Node
from loopylab.firmware_bridge.messages import DeviceFault
from loopylab.firmware_bridge.servo import calibration as calib_mod
from loopylab.firmware_bridge.servo.bus import (Motor, MotorBus, MotorBusError, MotorFaultError, NoResponseError,
                                       PortLostError)
from loopylab.firmware_bridge.servo.dynamixel import X_CURRENT_UNIT, X_MODELS, X_TORQUE_CONSTANT
from loopylab.firmware_bridge.servo.feetech import STS_MODELS, STS_STALL_TORQUE
from loopylab.world.joints import JointMismatch, indices, reorder
from loopylab.world.robots import CATALOGUE, hardware_robots, robot_spec

log = logging.getLogger("loopylab.arm")
TWO_PI = 2.0 * math.pi
CENTRE = 2048

# model name -> model number (what each motor answers to a PING), both servo families
MODEL_NUMBERS = {name: number for number, name in {**X_MODELS, **STS_MODELS}.items()}
# per catalogue arm on bus servos: motor id -> model number (the emulators answer as these motors)
PRESET_MODEL_NUMBERS = {name: {i: MODEL_NUMBERS[m] for i, m in robot_spec(name).hardware.motors.values()}
                        for name in hardware_robots()}


@dataclass
class ArmConfig:
    port: str = "/dev/ttyUSB0"
    robot: str = "so101"                       # catalogue arm (`loopylab.world.robots`): motor layout and gripper
    kind: str = ""                             # feetech | dynamixel; default from the catalogue
    motors: dict[str, tuple[int, str]] = field(default_factory=dict)   # default from the catalogue
    gripper: str = "gripper"                   # motor driven by gripper/command ("" = a plain joint)
    gripper_open_rad: float | None = None      # joint angle of the fully open gripper; default from the catalogue
    gripper_closed_rad: float | None = None    # (1.2, 0.0 and 0.06 for an arm outside it)
    gripper_max_opening_m: float | None = None
    rate_hz: float = 100.0
    baudrate: int = 1_000_000
    retries: int = 2
    latency_s: float = 0.02
    calibration: str = ""                      # JSON from `loopylab arm calibrate`; "" = raw 2048 is 0 rad
    reconnect_s: float = 0.5
    hold_on_connect: bool = True               # torque on, goal = present pose, after (re)connecting

    def __post_init__(self):
        rs = CATALOGUE.get(self.robot)
        layout = rs.hardware if rs is not None else None
        if layout is None and not (self.kind and self.motors):
            known = f"pick one of {hardware_robots()} or give kind and motors"
            raise ValueError(f"unknown robot {self.robot!r}: {known}" if rs is None else
                             f"robot {self.robot!r} has no bus-servo motors in the catalogue: {known}")
        self.kind = self.kind or layout.kind
        self.motors = {n: tuple(v) for n, v in (self.motors or layout.motors).items()}
        if self.gripper and self.gripper not in self.motors:
            raise ValueError(f"gripper motor {self.gripper!r} is not one of {list(self.motors)}")
        grip = ((rs.gripper_open[0], rs.gripper_closed[0], rs.max_opening) if rs is not None and rs.gripper_joints
                else (1.2, 0.0, 0.06))
        for name, default in zip(("gripper_open_rad", "gripper_closed_rad", "gripper_max_opening_m"), grip):
            if getattr(self, name) is None:
                setattr(self, name, default)


class ArmDriver:
    def __init__(self, node: Node, cfg: ArmConfig, start: bool = True):
        self.node, self.cfg = node, cfg
        self.bus = MotorBus(cfg.port, cfg.kind, {n: Motor(i, m) for n, (i, m) in cfg.motors.items()},
                            baudrate=cfg.baudrate, retries=cfg.retries, latency_s=cfg.latency_s)
        self.names = list(cfg.motors)
        self.arm_joints = [n for n in self.names if n != cfg.gripper]
        self.calib = calib_mod.load(cfg.calibration) if cfg.calibration else None
        self.sign = {n: -1.0 if self.calib and self.calib[n].drive_mode else 1.0 for n in self.names}
        self._scales()
        self.js_pub = node.publisher("arm/joint_state", JointState)
        self.fault_pub = node.publisher("arm/fault", DeviceFault, latched=True)
        self.grip_pub = node.publisher("gripper/state", GripperState) if cfg.gripper else None
        self.cmd_sub = node.subscribe("arm/joint_command", JointCommand, mode="latest")
        self.grip_sub = node.subscribe("gripper/command", GripperCommand, mode="latest") if cfg.gripper else None
        node.service("arm/torque", self._on_torque)
        self.fault: DeviceFault | None = None
        self.connected = False
        self.cycles = 0
        self.commands_applied = 0
        self._last_cmd_seq = self._last_grip_seq = None
        self._io = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="arm:loop", daemon=True)
        if start:
            self._thread.start()

    # -- units -----------------------------------------------------------------------------------
    def _scales(self) -> None:
        """Per-motor factors from raw register values to SI units."""
        self.pos_scale = TWO_PI / 4096
        if self.cfg.kind == "dynamixel":
            self.block = ["Present_Current", "Present_Velocity", "Present_Position"]
            self.vel_scale = 0.229 * TWO_PI / 60.0                      # 0.229 rpm per unit
            self.eff_scale = {n: X_CURRENT_UNIT.get(m, 0.00269) * X_TORQUE_CONSTANT.get(m, 1.0)
                              for n, (_, m) in self.cfg.motors.items()}
            self.effort_reg = "Present_Current"
        else:
            self.block = ["Present_Position", "Present_Velocity", "Present_Load"]
            self.vel_scale = TWO_PI / 4096                               # steps/s
            self.eff_scale = {n: 0.001 * STS_STALL_TORQUE.get(m, 1.9) for n, (_, m) in self.cfg.motors.items()}
            self.effort_reg = "Present_Load"
        # vectorised decoding of the whole sync-read block (6 replies -> 3 arrays) in a few microseconds
        self.block_addr, self.block_len = self.bus.block(self.block)
        t = self.bus.proto.table
        self.block_dtype = np.dtype({"names": self.block, "offsets": [t[r].address - self.block_addr for r in self.block],
                                     "formats": [("<i2" if t[r].signed == "twos" else "<u2") if t[r].size == 2 else
                                                 ("<i4" if t[r].signed == "twos" else "<u4") for r in self.block],
                                     "itemsize": self.block_len})
        self.ids = [self.cfg.motors[n][0] for n in self.names]
        self.sign_arr = np.array([self.sign[n] for n in self.names])
        self.eff_arr = np.array([self.eff_scale[n] for n in self.names])
        self.arm_idx = indices(self.names, self.arm_joints)

    def _decode_block(self, raw: dict[int, bytes]) -> dict[str, np.ndarray]:
        rec = np.frombuffer(b"".join(raw[i] for i in self.ids), dtype=self.block_dtype)
        out = {}
        for r in self.block:
            v = rec[r].astype(np.int64)
            bit = self.bus.proto.table[r].signed
            if isinstance(bit, int):            # Feetech sign-magnitude
                v = np.where(v & (1 << bit), -(v & ((1 << bit) - 1)), v)
            out[r] = v
        return out

    def to_rad(self, name: str, ticks: int) -> float:
        return self.sign[name] * (ticks - CENTRE) * self.pos_scale

    def to_ticks(self, name: str, rad: float) -> int:
        return int(round(CENTRE + self.sign[name] * rad / self.pos_scale))

    def _opening(self, rad: float) -> float:
        c = self.cfg
        frac = (rad - c.gripper_closed_rad) / (c.gripper_open_rad - c.gripper_closed_rad)
        return float(np.clip(frac, 0.0, 1.0) * c.gripper_max_opening_m)

    def _gripper_rad(self, opening_m: float) -> float:
        c = self.cfg
        frac = float(np.clip(opening_m / c.gripper_max_opening_m, 0.0, 1.0))
        return c.gripper_closed_rad + frac * (c.gripper_open_rad - c.gripper_closed_rad)

    # -- connection ----------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open, ping every motor, check the calibration, then hold the present pose."""
        with self._io:
            try:
                self.bus.connect()
                if self.calib is not None:
                    calib_mod.check(self.bus, self.calib)
                if self.cfg.hold_on_connect:
                    present = self.bus.sync_read("Present_Position")
                    self.bus.sync_write("Goal_Position", present)
                    self.bus.set_torque(True)
            except BaseException:
                self.bus.close()
                raise
        self.connected = True
        self._last_cmd_seq = self._cmd_key(self.cmd_sub.latest())   # never replay a command from before
        log.info("arm on %s: %d %s motors connected", self.cfg.port, len(self.names), self.cfg.kind)
        if self.fault is not None:
            self._publish_fault(DeviceFault(device="arm", active=False, code=self.fault.code,
                                            message=f"recovered: {self.fault.message}"))
            self.fault = None

    def _publish_fault(self, f: DeviceFault) -> None:
        self.fault_pub.publish(f)

    def _on_fault(self, code: str, err: Exception, ids: list[int] | None = None) -> None:
        log.error("arm fault (%s): %s", code, err)
        with self._io:
            if not isinstance(err, PortLostError) and self.bus.is_open:
                try:  # torque off, best effort: the bus may be the thing that is broken
                    self.bus.write_broadcast("Torque_Enable", 0)
                except MotorBusError as e:
                    log.warning("could not turn torque off: %s", e)
            self.bus.close()
        self.connected = False
        self.fault = DeviceFault(device="arm", active=True, code=code, motor_ids=list(ids or []), message=str(err))
        self._publish_fault(self.fault)

    # -- the cycle --------------------------------------------------------------------------------
    @staticmethod
    def _cmd_key(msg):
        return None if msg is None else (msg.seq, msg.stamp_ns)

    def cycle(self) -> None:
        """One sync read -> publish; then one sync write if a new command came in."""
        with self._io:
            raw = self.bus.sync_read_raw(self.block_addr, self.block_len, self.ids, "SYNC READ state")
            stamp = time.time_ns()
            st = self._decode_block(raw)
            pos = self.sign_arr * (st["Present_Position"] - CENTRE) * self.pos_scale
            vel = self.sign_arr * st["Present_Velocity"] * self.vel_scale
            eff = self.sign_arr * st[self.effort_reg] * self.eff_arr
            a = self.arm_idx
            self.js_pub.publish(JointState(name=self.arm_joints, position=pos[a], velocity=vel[a], effort=eff[a],
                                           stamp_ns=stamp, frame_id="base"))
            if self.grip_pub is not None:
                g = self.names.index(self.cfg.gripper)
                self.grip_pub.publish(GripperState(position=self._opening(float(pos[g])), velocity=0.0,
                                                   effort=abs(float(eff[g])), ready=True, stamp_ns=stamp))
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
                    goals[g] = self.to_ticks(g, self._gripper_rad(gm.position))
            if goals:
                self.bus.sync_write("Goal_Position", goals)
                self.commands_applied += 1
        self.cycles += 1

    def _goals(self, msg: JointCommand) -> dict[str, int]:
        """Goal ticks for the motors `msg` commands (any of them, by name; unnamed: the arm joints in order)."""
        if len(msg.position) == 0 and len(msg.velocity):
            log.warning("velocity commands are not supported: the servos run in position mode; ignored")
            return {}
        names = list(msg.name) or self.arm_joints
        commanded = [n for n in self.names if n in set(names)]  # bus order
        try:
            q = reorder(msg.position, names, commanded, exact=True)
        except JointMismatch as e:
            log.warning("joint command ignored: %s (the arm's joints: %s)", e, self.names)
            return {}
        return {n: self.to_ticks(n, float(v)) for n, v in zip(commanded, q)}

    def _loop(self) -> None:
        period = 1.0 / self.cfg.rate_hz
        next_t = time.monotonic()
        while not self._stop.is_set() and self.node.running:
            if not self.connected:
                try:
                    self.connect()
                except PortLostError as e:
                    if self.fault is None or self.fault.code != "port_lost":
                        self._on_fault("port_lost", e)
                except calib_mod.CalibrationMismatch as e:
                    if self.fault is None or self.fault.code != "calibration":
                        self._on_fault("calibration", e)
                except NoResponseError as e:
                    if self.fault is None or self.fault.code != "no_response":
                        self._on_fault("no_response", e, e.motor_ids)
                except MotorBusError as e:
                    if self.fault is None or self.fault.code != "motor_fault":
                        self._on_fault("motor_fault", e, [getattr(e, "motor_id", 0)])
                if not self.connected:
                    self._stop.wait(self.cfg.reconnect_s)
                    continue
                next_t = time.monotonic()
            try:
                self.cycle()
            except PortLostError as e:
                self._on_fault("port_lost", e)
            except NoResponseError as e:
                self._on_fault("no_response", e, e.motor_ids)
            except MotorFaultError as e:
                self._on_fault("motor_fault", e, [e.motor_id])
            except MotorBusError as e:
                self._on_fault("corrupt", e)
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_t = time.monotonic()   # overrun: skip, never bunch up

    def _on_torque(self, req) -> dict:
        on = bool((req or {}).get("on", False))
        with self._io:
            if not self.bus.is_open:
                return {"ok": False, "error": "arm not connected"}
            if on:
                self.bus.sync_write("Goal_Position", self.bus.sync_read("Present_Position"))
            self.bus.set_torque(on)
        return {"ok": True, "torque": on}

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


def run_arm(node: Node, port: str = "/dev/ttyUSB0", robot: str = "so101", **params) -> ArmDriver:
    """Graph entry point (`loopylab.firmware_bridge.arm_node:run_arm`). `$LOOPYLAB_ARM_PORT` overrides `port`."""
    port = os.environ.get("LOOPYLAB_ARM_PORT") or port
    return ArmDriver(node, ArmConfig(port=port, robot=robot, **params))
