"""Where the arm driver's CPU goes each cycle: per part of its control loop and per thread of its process.

The set-up of `serial_faults.py` (the pty emulator at SCHED_FIFO where allowed, a commander at the driver's
rate on an ipc graph, a probe subscribed to the states, the driver in a process of its own), without
spinners or faults. In the driver's process each part of the loop is wrapped in `time.thread_time_ns` (its
own cost, a system call or two, is in each figure); its threads' CPU and context switches come from /proc.

    .venv/bin/python benchmarks/serial_profile.py [--robot so101] [--seconds 10]

Last line JSON: cycle_hz, process_us_per_cycle, per part (`parts`, µs and calls per cycle) and per thread
(`threads`, µs and context switches per cycle; the loop is `arm:loop`, ZeroMQ's I/O thread `ZMQbg/IO/0`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serial_faults as sf  # this folder's: the emulator, the driver's process

PARTS = {  # (module, class, method) -> label; nested parts are indented
    ("loopylab.firmware_bridge.arm_driver", "ArmDriver", "_poll_inputs"): "take the inputs (poll, receive, decode)",
    ("loopylab.firmware_bridge.arm_driver", "ArmDriver", "_follow_estop"): "follow the e-stop",
    ("loopylab.firmware_bridge.arm_driver", "ArmDriver", "cycle"): "cycle",
    ("loopylab.firmware_bridge.arm_driver", "ArmDriver", "_new_goals"): "  the goals",
    ("loopylab.firmware_bridge.arm_driver", "ArmDriver", "_goal_packet"): "  the SYNC WRITE packet",
    ("loopylab.firmware_bridge.servo.cycle", "CyclicSyncRead", "__call__"): "  the serial transfer",
    ("loopylab.firmware_bridge.servo.cycle", "CyclicSyncRead", "_drop_stale"): "    its stale check",
    ("loopylab.firmware_bridge.arm_codec", "ArmCodec", "decode"): "  decode the answer",
    ("loopylab.bus.pubsub", "Publisher", "publish_template"): "  publish the states",
    ("loopylab.bus.template", "FieldsTemplate", "encode"): "    encode",
    ("loopylab.bus.pubsub", "Publisher", "_send"): "    ZeroMQ's send",
}


def driver_main(robot: str, calib_path: str, url: str, port: str) -> None:
    import importlib

    from loopylab.bus import Node
    from loopylab.firmware_bridge.arm_node import ArmConfig, ArmDriver

    acc: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    clock = time.thread_time_ns

    def wrap(cls: type, name: str, label: str) -> None:
        f = getattr(cls, name)

        def timed(*args, **kw):
            c0 = clock()
            try:
                return f(*args, **kw)
            finally:
                acc[label] += clock() - c0
                calls[label] += 1

        setattr(cls, name, timed)

    for (module, cls, name), label in PARTS.items():
        wrap(getattr(importlib.import_module(module), cls), name, label)
    node = Node("arm", url, heartbeat_hz=0)
    drv = ArmDriver(node, ArmConfig(port=port, robot=robot, calibration=calib_path))
    deadline = time.monotonic() + 20
    while not drv.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    print(
        json.dumps({"connected": drv.connected, "arm_joints": drv.arm_joints, "rate_hz": drv.cfg.rate_hz}), flush=True
    )
    for _ in sys.stdin:
        t = os.times()
        out = {"cycles": drv.cycles, "process_cpu_s": t.user + t.system, "acc": dict(acc), "calls": dict(calls)}
        out["names"] = {t.native_id: t.name for t in threading.enumerate()}
        print(json.dumps(out), flush=True)
    drv.close()
    node.close()


def threads(pid: int, names: dict) -> dict[str, tuple[float, int]]:
    """Per thread of `pid`: (CPU s, context switches)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(tid, stat[stat.index("(") + 1 : stat.rindex(")")])
        switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
        cpu = (int(fields[11]) + int(fields[12])) / tick
        old = out.get(name, (0.0, 0))
        out[name] = (old[0] + cpu, old[1] + switches)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        driver_main(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--robot", default="so101", choices=sorted(sf.ROBOTS))
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    import subprocess

    from loopylab.bus import GripperState, JointCommand, JointState, Node
    from loopylab.firmware_bridge.servo import calibration

    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    calib = calibration.save(
        Path(tempfile.mkdtemp()) / "arm.json", calibration.identity({n: i + 1 for i, n in enumerate(names)})
    )
    emu = sf.Emulator(args.robot)
    url = f"ipc://serial-profile-{uuid.uuid4().hex[:8]}"
    probe = Node("bench", url, heartbeat_hz=0)
    pub = probe.publisher("arm/joint_command", JointCommand)
    probe.subscribe("arm/joint_state", JointState, mode="latest")
    probe.subscribe("gripper/state", GripperState, mode="latest")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--driver", args.robot, str(calib), url, emu.path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    def ask() -> dict:
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    try:
        info = json.loads(proc.stdout.readline())
        if not info["connected"]:
            raise RuntimeError(f"the {args.robot} driver did not connect to the emulator")

        def commander():  # the gate's stream: the hold pose, at the driver's rate
            while not stop.is_set():
                pub.publish(JointCommand(name=info["arm_joints"], position=[0.0] * len(info["arm_joints"])))
                stop.wait(1.0 / info["rate_hz"])

        threading.Thread(target=commander, daemon=True).start()
        time.sleep(1.0)
        s0 = ask()
        t0, th0 = time.monotonic(), threads(proc.pid, {str(k): v for k, v in s0["names"].items()})
        time.sleep(args.seconds)
        s1 = ask()
        dt, th1 = time.monotonic() - t0, threads(proc.pid, {str(k): v for k, v in s1["names"].items()})
    finally:
        stop.set()
        proc.stdin.close()
        proc.wait(15)
        probe.close()
        emu.close()
    n = max(s1["cycles"] - s0["cycles"], 1)
    parts = {
        label: {
            "us": round((s1["acc"].get(label, 0) - s0["acc"].get(label, 0)) / n / 1e3, 1),
            "calls": round((s1["calls"].get(label, 0) - s0["calls"].get(label, 0)) / n, 2),
        }
        for label in PARTS.values()
    }
    per_thread = {
        name: {
            "us": round((cpu - th0.get(name, (0.0, 0))[0]) / n * 1e6, 1),
            "switches": round((sw - th0.get(name, (0.0, 0))[1]) / n, 2),
        }
        for name, (cpu, sw) in th1.items()
    }
    result = {
        "robot": args.robot,
        "cycle_hz": round(n / dt, 1),
        "process_us_per_cycle": round((s1["process_cpu_s"] - s0["process_cpu_s"]) / n * 1e6, 1),
        "load_1min": os.getloadavg()[0],
        "parts": parts,
        "threads": {k: v for k, v in per_thread.items() if v["us"] or v["switches"]},
    }
    for label, v in parts.items():
        print(f"{label:42s} {v['us']:7.1f} µs/cycle  {v['calls']:5.2f} calls/cycle")
    for name, v in result["threads"].items():
        print(f"thread {name:35s} {v['us']:7.1f} µs/cycle  {v['switches']:5.2f} switches/cycle")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
