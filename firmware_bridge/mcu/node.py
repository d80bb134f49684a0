"""The MCU bridge driver node: a hobby-servo board behind the arm's bus contract.

- `arm/joint_state` (JointState, rad, rad/s) and `mcu/sensors` (Readings, raw ADC counts) each cycle;
- `arm/joint_command` (radians, from the safety gate) -> TARGETS; otherwise a HEARTBEAT keeps the
  firmware's watchdog fed (the board stops on its own when this node goes quiet);
- `safety/state` with `estop` -> the board's own e-stop latch (ESTOP, then CLEAR when released);
- `mcu/fault` (DeviceFault, latched): lost port, no answer, board-side errors (watchdog, e-stop, range).
The topic prefix (`arm`) is a parameter so a board can also be a second device on the same bus.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from loopylab.bus import JointCommand, JointState, Node, SafetyState
from loopylab.firmware_bridge.mcu.link import McuLink, McuTimeout
from loopylab.firmware_bridge.mcu.protocol import McuError
from loopylab.firmware_bridge.messages import DeviceFault, Readings
from loopylab.firmware_bridge.servo.bus import PortLostError
from loopylab.world.joints import JointMismatch, reorder

log = logging.getLogger("loopylab.mcu")


@dataclass
class McuConfig:
    port: str = "/dev/ttyACM0"
    baudrate: int = 115200
    joints: list[str] = field(default_factory=lambda: ["joint0", "joint1", "joint2", "joint3"])
    sensors: list[str] = field(default_factory=lambda: ["a0", "a1"])
    rate_hz: float = 50.0
    prefix: str = "arm"
    timeout_s: float = 0.1
    reconnect_s: float = 0.5


class McuDriver:
    def __init__(self, node: Node, cfg: McuConfig, start: bool = True):
        self.node, self.cfg = node, cfg
        self.link = McuLink(cfg.port, cfg.baudrate, cfg.timeout_s)
        self.js_pub = node.publisher(f"{cfg.prefix}/joint_state", JointState)
        self.sensor_pub = node.publisher("mcu/sensors", Readings)
        self.fault_pub = node.publisher("mcu/fault", DeviceFault, latched=True)
        self.cmd_sub = node.subscribe(f"{cfg.prefix}/joint_command", JointCommand, mode="latest")
        self.safety_sub = node.subscribe("safety/state", SafetyState, mode="latest")
        self.connected = False
        self.fault: DeviceFault | None = None
        self.board_estop = False
        self._last_cmd = None
        self._seen_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mcu:loop", daemon=True)
        if start:
            self._thread.start()

    def _set_fault(self, code: str, message: str) -> None:
        self.fault = DeviceFault(device="mcu", active=True, code=code, message=message)
        self.fault_pub.publish(self.fault)
        log.error("mcu fault (%s): %s", code, message)

    def _clear_fault(self) -> None:
        if self.fault is not None:
            self.fault_pub.publish(
                DeviceFault(
                    device="mcu", active=False, code=self.fault.code, message=f"recovered: {self.fault.message}"
                )
            )
            self.fault = None

    def connect(self) -> None:
        self.link.open()
        try:
            info = self.link.hello()
        except BaseException:
            self.link.close()
            raise
        if info.n_joints != len(self.cfg.joints) or info.n_sensors != len(self.cfg.sensors):
            self.link.close()
            raise RuntimeError(
                f"board has {info.n_joints} joints / {info.n_sensors} sensors, config names "
                f"{len(self.cfg.joints)} / {len(self.cfg.sensors)}"
            )
        self.connected, self.board_estop = True, False
        self._last_cmd = self._key(self.cmd_sub.latest())  # never replay a command from before
        log.info("MCU on %s: firmware %s, watchdog %d ms", self.cfg.port, info.firmware, info.watchdog_ms)
        self._clear_fault()

    @staticmethod
    def _key(msg):
        return None if msg is None else (msg.seq, msg.stamp_ns)

    def cycle(self) -> None:
        safety = self.safety_sub.latest()
        want_estop = bool(safety is not None and safety.estop)
        if want_estop and not self.board_estop:
            self.link.estop()
            self.board_estop = True
        elif not want_estop and self.board_estop:
            self.link.clear()
            self.board_estop = False
        msg = self.cmd_sub.latest()
        key = self._key(msg)
        if msg is not None and key != self._last_cmd and not want_estop:
            self._last_cmd = key
            try:
                q = reorder(msg.position, msg.name, self.cfg.joints, exact=True)
            except JointMismatch as e:
                log.warning("joint command ignored: %s (board joints %s)", e, self.cfg.joints)
                state = self.link.heartbeat()
            else:
                state = self.link.send_targets([int(round(v * 1000)) for v in q])
        else:
            state = self.link.heartbeat()
        stamp = time.time_ns()
        self.js_pub.publish(
            JointState(
                name=self.cfg.joints,
                position=[p / 1000 for p in state.position_mrad],
                velocity=[v / 1000 for v in state.velocity_mrad_s],
                stamp_ns=stamp,
            )
        )
        self.sensor_pub.publish(Readings(name=self.cfg.sensors, value=state.sensors, stamp_ns=stamp))
        new = self.link.errors[self._seen_errors :]
        self._seen_errors = len(self.link.errors)
        for err in new:
            self._report(err)

    def _report(self, err: McuError) -> None:
        code = {8: "watchdog", 7: "estop"}.get(err.code, "device_fault")
        self.fault_pub.publish(DeviceFault(device="mcu", active=False, code=code, message=f"board reported: {err}"))

    def _loop(self) -> None:
        period = 1.0 / self.cfg.rate_hz
        while not self._stop.is_set() and self.node.running:
            t0 = time.monotonic()
            if not self.connected:
                try:
                    self.connect()
                except (PortLostError, McuTimeout, RuntimeError) as e:
                    if self.fault is None:
                        self._set_fault("port_lost" if isinstance(e, PortLostError) else "no_response", str(e))
                    self._stop.wait(self.cfg.reconnect_s)
                    continue
            try:
                self.cycle()
            except (PortLostError, McuTimeout) as e:
                self.link.close()
                self.connected = False
                self._set_fault("port_lost" if isinstance(e, PortLostError) else "no_response", str(e))
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)
        if self.connected:
            try:
                self.link.estop()  # the board stops driving its outputs now, not when the watchdog fires
            except (PortLostError, McuTimeout):
                pass
        self.link.close()


def run_mcu(node: Node, **params) -> McuDriver:
    """Graph entry point (`loopylab.firmware_bridge.mcu.node:run_mcu`)."""
    return McuDriver(node, McuConfig(**params))
