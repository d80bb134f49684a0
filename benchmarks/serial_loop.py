"""The arm driver's control cycle against the pty emulators: rate, CPU time, and the 1 Mbps wire limit.

One cycle is what the hardware arm driver does every period: a SYNC READ of position, velocity and
load/current from 6 motors, conversion to SI units, and a SYNC WRITE of 6 goal positions. Measured
twice: the real `ArmDriver.cycle()` (headline: it also publishes the JointState and GripperState on
an inproc bus and takes the JointCommand from its subscription), and the bare motor-bus cycle, which
is compared with the baseline: the vendor SDK (dynamixel-sdk / feetech-servo-sdk GroupSyncRead +
GroupSyncWrite) doing the same cycle against the same emulator. The emulator runs in another process,
so the CPU time measured (this thread's `thread_time`) is the driver's alone.

The wire limit is what a real 1 Mbps bus allows: the exact bytes of the instruction packets and of
the six status packets at 10 bits per byte (return delay 0, no USB latency). A pty has no baud rate,
so the measured cycle rate can exceed it; the figure that matters on hardware is
cpu_us_per_cycle / wire_us_per_cycle: below 25 % the wire, not Python, is the limit.

    .venv/bin/python benchmarks/serial_loop.py [--reps 5] [--cycles 400]

Last line JSON: cycle_hz, cpu_us_per_cycle, wire_limit_hz, cpu_fraction_of_wire (ArmDriver.cycle on
the Dynamixel arm, the headline), the same with a feetech_ prefix, the bare bus cycle (bus_*) and the
vendor-SDK baseline (vendor_*).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopylab.firmware_bridge.servo.bus import MotorBus, MotorBusError

STALLS = {"count": 0}  # cycles lost to a starved emulator process on a loaded machine (reported)

NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
BLOCK = {
    "dynamixel": ["Present_Current", "Present_Velocity", "Present_Position"],
    "feetech": ["Present_Position", "Present_Velocity", "Present_Load"],
}
EMULATOR = (
    "import sys; from loopylab.firmware_bridge.emulators.servo_arm import ServoArmEmulator; "
    "e = ServoArmEmulator.for_robot('koch' if sys.argv[1] == 'dynamixel' else 'so101', check_baud=False)"
    ".start(); print(e.path, flush=True); sys.stdin.read(); e.stop()"
)


def start_emulator(kind: str):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root
    )
    return proc, proc.stdout.readline().strip()


def wire_bytes(bus: MotorBus, kind: str) -> int:
    addr, length = bus.block(BLOCK[kind])
    reg = bus.reg("Goal_Position")
    read = len(bus.proto.sync_read(addr, length, list(range(1, 7))))
    replies = 6 * bus.proto.status_size(length)
    write = len(bus.proto.sync_write(reg.address, reg.size, {i: bytes(reg.size) for i in range(1, 7)}))
    return read + replies + write


def ours(path: str, kind: str, cycles: int) -> tuple[float, float]:
    bus = MotorBus(path, kind, {n: i + 1 for i, n in enumerate(NAMES)}, latency_s=0.2).open()
    try:
        bus.set_torque(True)
        block = BLOCK[kind]
        scale, centre = 2 * math.pi / 4096, 2048
        goal = dict.fromkeys(NAMES, 2048)
        wall = cpu = 0.0
        done = 0
        for k in range(cycles):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                state = bus.sync_read(block)
                _ = [(s["Present_Position"] - centre) * scale for s in state.values()]  # what the driver publishes
                for i, n in enumerate(NAMES):
                    goal[n] = 2048 + ((k + i) % 200) - 100
                bus.sync_write("Goal_Position", goal)
            except MotorBusError:
                STALLS["count"] += 1
                continue
            wall, cpu, done = wall + time.perf_counter() - t0, cpu + time.thread_time() - c0, done + 1
        bus.set_torque(False)
    finally:
        bus.close()
    return done / wall, cpu / done * 1e6


def driver(path: str, kind: str, cycles: int) -> tuple[float, float]:
    """The real ArmDriver.cycle(): only the cycle itself is timed (publishing the commands is not)."""
    import tempfile
    import uuid

    from loopylab.bus import JointCommand, Node
    from loopylab.firmware_bridge.arm_node import ArmConfig, ArmDriver
    from loopylab.firmware_bridge.servo import calibration

    robot = "koch" if kind == "dynamixel" else "so101"
    calib = calibration.save(
        Path(tempfile.mkdtemp()) / "arm.json", calibration.identity({n: i + 1 for i, n in enumerate(NAMES)})
    )
    node = Node("bench_arm", f"inproc://{uuid.uuid4().hex}", heartbeat_hz=0)
    drv = ArmDriver(node, ArmConfig(port=path, robot=robot, latency_s=0.2, calibration=str(calib)), start=False)
    try:
        drv.connect()
        pub = node.publisher("arm/joint_command", JointCommand)
        deadline = time.monotonic() + 10  # the driver's subscriptions are polled: they connect when polled
        while not (drv._poll_inputs() or pub.wait_for_subscribers(1, 0.01)):
            if time.monotonic() > deadline:
                raise TimeoutError("the driver did not subscribe to the commands")
        wall = cpu = 0.0
        done = 0
        for k in range(cycles):
            msg = JointCommand(name=drv.arm_joints, position=[0.01 * ((k + i) % 20 - 10) for i in range(5)])
            pub.publish(msg)
            # the driver's loop polls its inputs (polled subscriptions, commands as their fields): poll them here
            deadline = time.monotonic() + 5
            while (drv._poll_inputs() or drv.cmd_sub.latest() or {}).get("seq") != msg.seq:
                if time.monotonic() > deadline:
                    raise TimeoutError("the command did not arrive")
                time.sleep(0.0005)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                drv.cycle()
            except MotorBusError:
                STALLS["count"] += 1
                continue
            wall, cpu, done = wall + time.perf_counter() - t0, cpu + time.thread_time() - c0, done + 1
        assert drv.commands_applied == done, "every cycle must carry a sync write"
    finally:
        drv.close()
        node.close()
    return done / wall, cpu / done * 1e6


def vendor(path: str, kind: str, cycles: int) -> tuple[float, float]:
    if kind == "dynamixel":
        import dynamixel_sdk as sdk

        ph, addr, length, goal_addr, goal_len = sdk.PacketHandler(2.0), 126, 10, 116, 4
    else:
        import scservo_sdk as sdk

        ph, addr, length, goal_addr, goal_len = sdk.PacketHandler(0), 56, 6, 42, 2
    port = sdk.PortHandler(path)
    port.openPort()
    port.setBaudRate(1_000_000)
    reader = sdk.GroupSyncRead(port, ph, addr, length)
    for i in range(1, 7):
        reader.addParam(i)
    writer = sdk.GroupSyncWrite(port, ph, goal_addr, goal_len)
    ok = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for k in range(cycles):
        if reader.txRxPacket() == 0:
            ok += 1
        _ = [
            (reader.getData(i, addr + (6 if kind == "dynamixel" else 0), goal_len) - 2048) * 2 * math.pi / 4096
            for i in range(1, 7)
        ]
        writer.clearParam()
        for i in range(1, 7):
            writer.addParam(i, list((2048 + ((k + i) % 200) - 100).to_bytes(goal_len, "little")))
        writer.txPacket()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    port.closePort()
    return cycles / wall, cpu / cycles * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=400)
    args = ap.parse_args()
    result = {}
    for kind in ("dynamixel", "feetech"):
        proc, path = start_emulator(kind)
        try:
            bus = MotorBus(path, kind, {n: i + 1 for i, n in enumerate(NAMES)})
            nbytes = wire_bytes(bus, kind)
            wire_us = nbytes * 10 / 1_000_000 * 1e6
            ours(path, kind, 50)  # warm up (imports, caches, the emulator's first packets)
            runs = {"driver": [], "ours": [], "vendor": []}
            for _ in range(args.reps):  # alternate, so drifts in machine load hit all alike
                runs["driver"].append(driver(path, kind, args.cycles))
                runs["ours"].append(ours(path, kind, args.cycles))
                runs["vendor"].append(vendor(path, kind, args.cycles))
        finally:
            proc.stdin.close()
            proc.wait(5)
        dhz = statistics.median(r[0] for r in runs["driver"])
        dcpu = statistics.median(r[1] for r in runs["driver"])
        hz = statistics.median(r[0] for r in runs["ours"])
        cpu = statistics.median(r[1] for r in runs["ours"])
        vhz = statistics.median(r[0] for r in runs["vendor"])
        vcpu = statistics.median(r[1] for r in runs["vendor"])
        print(
            f"{kind:9s}: {nbytes} bytes/cycle on the wire = {wire_us:.0f} us at 1 Mbps ({1e6 / wire_us:.0f} Hz limit)"
        )
        print(
            f"{'':9s}  driver {dhz:7.0f} Hz on a pty, {dcpu:6.1f} us CPU/cycle = {dcpu / wire_us:5.1%} of the wire time"
            f"   (ArmDriver.cycle, bus publish included)"
        )
        print(f"{'':9s}  bus    {hz:7.0f} Hz on a pty, {cpu:6.1f} us CPU/cycle = {cpu / wire_us:5.1%} of the wire time")
        print(f"{'':9s}  vendor {vhz:7.0f} Hz on a pty, {vcpu:6.1f} us CPU/cycle   (bus/vendor CPU: {cpu / vcpu:.2f})")
        prefix = "" if kind == "dynamixel" else "feetech_"
        result.update(
            {
                f"{prefix}cycle_hz": round(dhz, 1),
                f"{prefix}cpu_us_per_cycle": round(dcpu, 1),
                f"{prefix}wire_limit_hz": round(1e6 / wire_us, 1),
                f"{prefix}cpu_fraction_of_wire": round(dcpu / wire_us, 3),
                f"{prefix}bus_cycle_hz": round(hz, 1),
                f"{prefix}bus_cpu_us_per_cycle": round(cpu, 1),
                f"{prefix}wire_bytes_per_cycle": nbytes,
                f"{prefix}vendor_cycle_hz": round(vhz, 1),
                f"{prefix}vendor_cpu_us_per_cycle": round(vcpu, 1),
                f"{prefix}bus_cpu_ratio_vs_vendor": round(cpu / vcpu, 3),
            }
        )
    result["stalled_cycles"] = STALLS["count"]
    result["target_cpu_fraction"] = 0.25
    result["meets_target"] = result["cpu_fraction_of_wire"] < 0.25 and result["feetech_cpu_fraction_of_wire"] < 0.25
    print(json.dumps(result))


if __name__ == "__main__":
    main()
