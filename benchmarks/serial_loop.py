"""The arm driver's control cycle against the pty emulators: rate, CPU time, and the 1 Mbps wire limit.

One cycle is what the hardware arm driver does every period: a SYNC READ of position, velocity and
load/current from 6 motors, conversion to SI units, and a SYNC WRITE of 6 goal positions. The
emulator runs in another process, so the CPU time measured (this thread's `thread_time`) is the
driver's alone. The baseline is the vendor SDK (dynamixel-sdk / feetech-servo-sdk GroupSyncRead +
GroupSyncWrite) doing the same cycle against the same emulator.

The wire limit is what a real 1 Mbps bus allows: the exact bytes of the instruction packets and of
the six status packets at 10 bits per byte (return delay 0, no USB latency). A pty has no baud rate,
so the measured cycle rate can exceed it; the figure that matters on hardware is
cpu_us_per_cycle / wire_us_per_cycle: below 25 % the wire, not Python, is the limit.

    .venv/bin/python benchmarks/serial_loop.py [--reps 5] [--cycles 400]

Last line JSON: cycle_hz, cpu_us_per_cycle, wire_limit_hz, cpu_fraction_of_wire (Dynamixel, the
headline) plus the Feetech figures and the vendor-SDK baseline.
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

from firmware_bridge.servo.bus import MotorBus  # noqa: E402

NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
BLOCK = {"dynamixel": ["Present_Current", "Present_Velocity", "Present_Position"],
         "feetech": ["Present_Position", "Present_Velocity", "Present_Load"]}
EMULATOR = ("import sys; from firmware_bridge.emulators.servo_arm import ServoArmEmulator; "
            "e = ServoArmEmulator(sys.argv[1], check_baud=False).start(); print(e.path, flush=True); "
            "sys.stdin.read(); e.stop()")


def start_emulator(kind: str):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=root)
    return proc, proc.stdout.readline().strip()


def wire_bytes(bus: MotorBus, kind: str) -> int:
    addr, length = bus.block(BLOCK[kind])
    reg = bus.reg("Goal_Position")
    read = len(bus.proto.sync_read(addr, length, list(range(1, 7))))
    replies = 6 * bus.proto.status_size(length)
    write = len(bus.proto.sync_write(reg.address, reg.size, {i: bytes(reg.size) for i in range(1, 7)}))
    return read + replies + write


def ours(path: str, kind: str, cycles: int) -> tuple[float, float]:
    bus = MotorBus(path, kind, {n: i + 1 for i, n in enumerate(NAMES)}, latency_s=0.05).open()
    bus.set_torque(True)
    block = BLOCK[kind]
    scale, centre = 2 * math.pi / 4096, 2048
    goal = {n: 2048 for n in NAMES}
    t0, c0 = time.perf_counter(), time.thread_time()
    for k in range(cycles):
        state = bus.sync_read(block)
        _ = [(s["Present_Position"] - centre) * scale for s in state.values()]   # what the driver publishes
        for i, n in enumerate(NAMES):
            goal[n] = 2048 + ((k + i) % 200) - 100
        bus.sync_write("Goal_Position", goal)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    bus.set_torque(False)
    bus.close()
    return cycles / wall, cpu / cycles * 1e6


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
        _ = [(reader.getData(i, addr + (6 if kind == "dynamixel" else 0), goal_len) - 2048) * 2 * math.pi / 4096
             for i in range(1, 7)]
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
            runs = {"ours": [], "vendor": []}
            for _ in range(args.reps):   # alternate, so drifts in machine load hit both alike
                runs["ours"].append(ours(path, kind, args.cycles))
                runs["vendor"].append(vendor(path, kind, args.cycles))
        finally:
            proc.stdin.close()
            proc.wait(5)
        hz = statistics.median(r[0] for r in runs["ours"])
        cpu = statistics.median(r[1] for r in runs["ours"])
        vhz = statistics.median(r[0] for r in runs["vendor"])
        vcpu = statistics.median(r[1] for r in runs["vendor"])
        print(f"{kind:9s}: {nbytes} bytes/cycle on the wire = {wire_us:.0f} us at 1 Mbps ({1e6 / wire_us:.0f} Hz limit)")
        print(f"{'':9s}  ours   {hz:7.0f} Hz on a pty, {cpu:6.1f} us CPU/cycle = {cpu / wire_us:5.1%} of the wire time")
        print(f"{'':9s}  vendor {vhz:7.0f} Hz on a pty, {vcpu:6.1f} us CPU/cycle   (ours/vendor CPU: {cpu / vcpu:.2f})")
        prefix = "" if kind == "dynamixel" else "feetech_"
        result.update({f"{prefix}cycle_hz": round(hz, 1), f"{prefix}cpu_us_per_cycle": round(cpu, 1),
                       f"{prefix}wire_limit_hz": round(1e6 / wire_us, 1),
                       f"{prefix}cpu_fraction_of_wire": round(cpu / wire_us, 3),
                       f"{prefix}wire_bytes_per_cycle": nbytes,
                       f"{prefix}vendor_cycle_hz": round(vhz, 1), f"{prefix}vendor_cpu_us_per_cycle": round(vcpu, 1),
                       f"{prefix}cpu_ratio_ours_vs_vendor": round(cpu / vcpu, 3)})
    result["target_cpu_fraction"] = 0.25
    result["meets_target"] = result["cpu_fraction_of_wire"] < 0.25 and result["feetech_cpu_fraction_of_wire"] < 0.25
    print(json.dumps(result))


if __name__ == "__main__":
    main()
