"""Simulated bench throughput, in one run on the same scene (seed 0, Panda):

1. raw PyBullet stepping (position servos set each control period) vs our SimArm ticking in lockstep
   while publishing joint states over a real ZeroMQ bus (ipc) to a subscriber process that receives every
   one (`step_ratio`, the issue's definition: SimArm skips sensor streams nobody subscribes to), measured
   as many short raw and SimArm blocks that alternate, each pair giving one ratio, `step_ratio` their
   median (a burst of a neighbour's load spoils one pair, not the figure); in the same rounds, the floor of
   any process graph (raw PyBullet plus one raw pyzmq send per tick to the same subscriber); and, as
   medians over a few repetitions, the same with the wrench, gripper and mocap streams subscribed too, as
   in the skills graph (`step_ratio_all_sensors`: four messages per 2-physics-step tick), and with the
   subscriber a thread on an inproc graph;
2. one push experiment end to end through skills/execute (SimArm + safety gate + skills, inproc graph);
3. twin rollouts per second (push predictions) in one process vs the TwinPool.

On a shared, loaded machine wall time says more about the neighbours than about the code, so stepping
rates are also measured in process CPU time (the subscriber is another process on an ipc graph, as the
gate and the skills are in graphs/sim_bench.toml); `step_ratio` uses CPU time, `step_ratio_wall` wall time.
Last line: JSON with step_ratio (ours/raw, target >= 0.8), push_ms and more.
    .venv/bin/python benchmarks/sim_throughput.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid

import numpy as np
import pybullet as p

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from loopylab.bus import JointState, Node
from loopylab.sim.node import SimArm
from loopylab.sim.world import World
from loopylab.world.scene import scene_from_seed

QUICK = "--quick" in sys.argv
REPS = 3 if QUICK else 5
TICKS = 300 if QUICK else 1200
# the public world of seed 0: this benchmark times the sim and the skills, grades nothing and hands no agent a world,
# so the hidden properties' key does not matter (a sealed world runs as fast)
SCENE = scene_from_seed(0)


STEPS_PER_TICK = 2  # physics steps per control period, as in SimArm at 120 Hz


def _raw_ticks(w: World, ticks: int, each=None) -> None:
    """The baseline's control loop: position servo targets set each period, then its physics steps;
    `each()` (the floor's send) after every tick."""
    r = w.robot
    q, forces = np.asarray(r.spec.home), r.effort.tolist()
    for k in range(ticks):
        p.setJointMotorControlArray(
            r.body,
            r.arm,
            p.POSITION_CONTROL,
            targetPositions=(q + 1e-4 * k).tolist(),
            forces=forces,
            physicsClientId=w.cid,
        )
        for _ in range(STEPS_PER_TICK):
            p.stepSimulation(physicsClientId=w.cid)
        if each is not None:
            each()


def _simarm_ticks(sim: SimArm, cmd, ticks: int) -> None:
    """Ours: a command in, a tick (physics plus publishing what the sensors see) out."""
    for _ in range(ticks):
        sim.apply_command(cmd)
        sim.tick()


def raw_steps_per_s() -> float:
    w = World(SCENE)
    t0, c0 = time.perf_counter(), time.process_time()
    _raw_ticks(w, TICKS)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    w.close()
    return TICKS * STEPS_PER_TICK / dt, TICKS * STEPS_PER_TICK / cpu


SENSORS = ("wrist/wrench", "gripper/state", "perception/objects")


def _subscriber(url: str, n: int, ready, done, all_sensors: bool) -> None:
    """Another process on the graph, receiving joint states (as the gate would) until the last; with
    all_sensors also the wrench, gripper and mocap streams (as the skills node does)."""
    import threading

    node = Node("probe", url)
    last = threading.Event()

    def on_state(msg: JointState) -> None:  # on the node's I/O thread, as a driver's consumer would
        if msg.seq >= n:
            last.set()

    node.subscribe("arm/joint_state", JointState, callback=on_state)
    for topic in SENSORS if all_sensors else ():
        node.subscribe(topic, None, mode="latest")
    ready.set()
    if last.wait(60 + n / 100):
        done.set()
    node.close()


def simarm_steps_per_s(all_sensors: bool = False) -> tuple[float, float]:
    import multiprocessing as mp

    url = f"ipc://bench-{uuid.uuid4().hex[:8]}"
    node = Node("sim_arm", url)
    sim = SimArm(node, SCENE, cameras=False, start=False)
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_subscriber, args=(url, TICKS, ready, done, all_sensors), daemon=True)
    proc.start()
    ready.wait(60)
    for pub in [sim.js_pub] + ([sim.wrench_pub, sim.grip_pub, sim.obj_pub] if all_sensors else []):
        pub.wait_for_subscribers(1, 30)
    from loopylab.bus import JointCommand

    cmd = JointCommand(name=sim.names, position=np.asarray(sim.world.robot.spec.home))
    t0, c0 = time.perf_counter(), time.process_time()
    _simarm_ticks(sim, cmd, TICKS)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not done.wait(30):
        raise SystemExit("the subscriber did not receive the last joint state")
    proc.join(10)
    steps = TICKS * sim.steps_per_tick
    node.close()
    sim.world.close()
    return steps / dt, steps / cpu


def paired_step_ratio(pairs: int, ticks: int) -> dict:
    """`step_ratio`: raw PyBullet and SimArm (joint states to a subscriber process over ipc) in many short
    blocks that alternate, each SimArm block against the raw block just before it: a neighbour's burst or
    a slow minute hits one pair, and the median over pairs leaves it out. One world of each and one
    subscriber process serve every block. A third block in each round is the floor of any process graph:
    the raw loop plus one raw pyzmq send per tick of an encoded joint state, through the same socket to the
    same subscriber (PyBullet and ZeroMQ, none of our code). -> medians: ratios in CPU and wall time, the
    floor's CPU ratio, SimArm against the floor, raw and SimArm steps per CPU second."""
    import multiprocessing as mp

    import zmq

    from loopylab.bus import JointCommand, codec

    url = f"ipc://bench-{uuid.uuid4().hex[:8]}"
    node = Node("sim_arm", url)
    sim = SimArm(node, SCENE, cameras=False, start=False)
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_subscriber, args=(url, pairs * ticks, ready, done, False), daemon=True)
    proc.start()
    ready.wait(60)
    sim.js_pub.wait_for_subscribers(1, 30)
    cmd = JointCommand(name=sim.names, position=np.asarray(sim.world.robot.spec.home))
    w = World(SCENE)
    n = sim.steps_per_tick
    assert n == STEPS_PER_TICK
    sock, prefix = sim.js_pub._sock, sim.js_pub._prefix  # the floor's sends: same socket, raw pyzmq
    q0 = np.asarray(sim.world.robot.spec.home)
    header, _ = codec.encode(
        JointState(name=sim.names, position=q0, velocity=0 * q0, effort=0 * q0, seq=1, stamp_ns=1, frame_id="base")
    )  # seq 1: the subscriber waits for the last

    def send():
        sock.send(prefix, zmq.SNDMORE)
        sock.send(header)

    def block(run):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        return time.perf_counter() - t0, time.process_time() - c0

    rows = []
    for _ in range(pairs):
        raw_w, raw_c = block(lambda: _raw_ticks(w, ticks))
        our_w, our_c = block(lambda: _simarm_ticks(sim, cmd, ticks))
        _, floor_c = block(lambda: _raw_ticks(w, ticks, each=send))
        rows.append(
            (raw_c / our_c, raw_w / our_w, raw_c / floor_c, floor_c / our_c, ticks * n / raw_c, ticks * n / our_c)
        )
    if not done.wait(30):
        raise SystemExit("the subscriber did not receive the last joint state")
    proc.join(10)
    node.close()
    sim.world.close()
    w.close()
    keys = ("cpu", "wall", "floor", "vs_floor", "raw_rate", "our_rate")
    return {k: statistics.median(col) for k, col in zip(keys, zip(*rows))}


def simarm_inproc_steps_per_s() -> tuple[float, float]:
    """The same, with the subscriber a thread node on an inproc graph (how `loopylab run` and `eval` wire
    the bench: lab.bench.sim_bench). CPU time is the whole process: the subscriber's too."""
    import threading

    url = f"inproc://bench-{uuid.uuid4().hex[:8]}"
    node = Node("sim_arm", url)
    sim = SimArm(node, SCENE, cameras=False, start=False)
    probe = Node("probe", url)
    sub = probe.subscribe("arm/joint_state", JointState)
    got = threading.Event()

    def receive():
        while True:
            try:
                if sub.get(timeout=30).seq >= TICKS:
                    break
            except TimeoutError:
                break
        got.set()

    threading.Thread(target=receive, daemon=True).start()
    sim.js_pub.wait_for_subscribers(1, 30)
    from loopylab.bus import JointCommand

    cmd = JointCommand(name=sim.names, position=np.asarray(sim.world.robot.spec.home))
    t0, c0 = time.perf_counter(), time.process_time()
    _simarm_ticks(sim, cmd, TICKS)
    if not got.wait(30):
        raise SystemExit("the inproc subscriber did not receive the last joint state")
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = TICKS * sim.steps_per_tick
    probe.close()
    node.close()
    sim.world.close()
    return steps / dt, steps / cpu


def push_ms() -> tuple[float, float]:
    from loopylab.lab.bench import sim_bench

    walls, ok = [], 0
    with sim_bench(robot="panda", seed=0, mocap_noise=0.0005) as bench:
        for _ in range(REPS):
            bench.reset(0)
            t0 = time.perf_counter()
            r = bench.execute("push", {"object": "red_block", "direction": "+x", "distance": 0.1, "speed": 0.05})
            walls.append((time.perf_counter() - t0) * 1000)
            ok += bool(r["ok"])
    if ok != REPS:
        raise SystemExit(f"push failed in {REPS - ok} of {REPS} runs")
    return statistics.median(walls), 2.0 + 0.1 / 0.05  # sim seconds ~ approach + push


def twin_rates() -> tuple[float, float, float]:
    from loopylab.lab.twin import Twin, TwinPool

    seen = SCENE.perceived()
    rng = np.random.default_rng(0)
    n = 16 if QUICK else 48
    params = [
        {"red_block": {"mass": float(m), "friction": float(f)}}
        for m, f in zip(rng.uniform(0.05, 0.6, n), rng.uniform(0.2, 0.9, n))
    ]
    args = {"object": "red_block", "direction": "+x", "distance": 0.1, "speed": 0.05}
    twin = Twin(seen)
    twin.predict("push", args, params[0])  # warm
    t0, c0 = time.perf_counter(), time.process_time()
    for prm in params:
        twin.predict("push", args, prm)
    one = n / (time.perf_counter() - t0)
    per_ms = 1000 * (time.process_time() - c0) / n  # CPU ms per prediction
    twin.close()
    workers = os.cpu_count() or 2
    with TwinPool(workers=workers) as pool:
        pool.predict_many(seen, "push", args, params[:workers])  # warm the workers' twins
        t0 = time.perf_counter()
        pool.predict_many(seen, "push", args, params)
        pooled = n / (time.perf_counter() - t0)
    return one, pooled, per_ms


def main() -> None:
    pairs, block = (12, 150) if QUICK else (30, 200)
    paired = paired_step_ratio(pairs, block)
    ratio_c, ratio_w = paired["cpu"], paired["wall"]
    raw, full, inproc = [], [], []
    for _ in range(REPS):  # the secondary figures: alternate, so that a neighbour's burst hits them all
        raw.append(raw_steps_per_s())
        full.append(simarm_steps_per_s(all_sensors=True))
        inproc.append(simarm_inproc_steps_per_s())
    raw_w, raw_c = (statistics.median(v) for v in zip(*raw))
    full_w, full_c = (statistics.median(v) for v in zip(*full))
    inproc_w, inproc_c = (statistics.median(v) for v in zip(*inproc))
    print(
        f"raw PyBullet vs SimArm lockstep publishing joint states to a subscriber process (ipc), {pairs} rounds"
        f" of {block}-tick blocks:"
    )
    print(f"  raw {paired['raw_rate']:8.0f} steps per CPU-second, SimArm {paired['our_rate']:8.0f} (medians)")
    print(f"  -> ratio {ratio_c:.2f} in CPU time, {ratio_w:.2f} in wall time (median of the pairs; target >= 0.8)")
    print(
        f"  floor (raw PyBullet + one raw pyzmq send per tick to the same subscriber, in the same rounds): "
        f"{paired['floor']:.2f} of raw; SimArm reaches {paired['vs_floor']:.2f} of the floor"
    )
    print(f"raw PyBullet stepping      : {raw_w:8.0f} steps/s wall, {raw_c:8.0f} per CPU-second (median of {REPS})")
    print("SimArm lockstep, joint states + wrench + gripper + mocap all subscribed (what the skills graph does):")
    print(
        f"                             {full_w:8.0f} steps/s wall, {full_c:8.0f} per CPU-second"
        f" -> ratio {full_c / raw_c:.2f}"
    )
    print("SimArm lockstep, joint states to a thread node (inproc, the lab's bench):")
    print(
        f"                             {inproc_w:8.0f} steps/s wall, {inproc_c:8.0f} per CPU-second"
        f" -> ratio {inproc_c / raw_c:.2f}"
    )
    pm, sim_s = push_ms()
    print(f"push 0.1 m @ 0.05 m/s, end to end through skills/execute: {pm:.0f} ms wall (median of {REPS})")
    one, pooled, per = twin_rates()
    print(
        f"twin push rollouts: {one:.1f}/s in one process ({per:.1f} CPU ms each), {pooled:.1f}/s in the pool "
        f"({os.cpu_count()} workers) -> x{pooled / one:.2f}"
    )
    print(
        json.dumps(
            {
                "step_ratio": round(ratio_c, 3),
                "step_ratio_wall": round(ratio_w, 3),
                "step_ratio_all_sensors": round(full_c / raw_c, 3),
                "step_ratio_inproc": round(inproc_c / raw_c, 3),
                "floor_ratio_ipc": round(paired["floor"], 3),
                "step_ratio_vs_floor": round(paired["vs_floor"], 3),
                "push_ms": round(pm, 1),
                "raw_steps_per_cpu_s": round(paired["raw_rate"]),
                "simarm_steps_per_cpu_s": round(paired["our_rate"]),
                "twin_rollouts_per_s": round(one, 1),
                "twin_pool_rollouts_per_s": round(pooled, 1),
                "twin_cpu_ms_per_push": round(per, 2),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
