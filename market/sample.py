"""Synthetic recordings for tests, benchmarks and the docs' walkthrough: an MCAP file with a wrist
wrench and joint states at declared rates (JSON channels, readable without the bus), plus a lab
notebook. `copy_recording` disguises a copy (noise, offsets, re-timing, no compression) to exercise duplicate
detection; `write_push` records one fixed push experiment as independent honest runs would (the same smooth
profile, each run with its own sensor noise), for the false-positive side of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mcap.writer import CompressionType, Writer

NOTEBOOK = """<|question_start|>estimate friction of red_block within 0.05<|question_end|>
<|scene_start|>red_block cube 0.05 at 0.55 0.00<|scene_end|>
<|experiment_start|>push red_block +x 0.10 0.05<|experiment_end|>
<|observation_start|>force {force:.2f} moved {moved:.3f}<|observation_end|>
<|belief_start|>friction red_block {mu_b:.2f} {sd:.2f}<|belief_end|>
<|conclusion_start|>friction red_block {mu_c:.2f} {hw:.2f}<|conclusion_end|>
"""


def notebook_text(seed: int, friction: float) -> str:
    """A lab notebook of one push: its measured values vary from run to run as real measurements do."""
    return NOTEBOOK.format(
        force=1.0 + friction + (seed % 97) / 100,
        moved=0.090 + (seed % 17) / 1000,
        mu_b=max(0.01, friction + ((seed * 37) % 11 - 5) / 100),
        sd=0.03 + (seed % 5) / 100,
        mu_c=max(0.01, friction + ((seed * 53) % 7 - 3) / 100),
        hw=0.02 + (seed % 3) / 100,
    )


def write_recording(
    folder: Path,
    seed: int = 0,
    seconds: float = 1.0,
    wrench_hz: float = 100.0,
    joint_hz: float = 50.0,
    friction: float = 0.4,
    start_ns: int = 1_700_000_000_000_000_000,
    noise: float = 0.0,
    force_offset: float = 0.0,
    notebook: bool = True,
    stamp_glitch_at: int | None = None,
) -> Path:
    """A recording folder like `loopylab record` leaves: recording.mcap (+ notebook.nb)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.2, size=(int(seconds * wrench_hz) + 1, 3)), axis=0)
    joints = np.cumsum(rng.normal(0, 0.01, size=(int(seconds * joint_hz) + 1, 7)), axis=0)
    jitter = np.random.default_rng(seed + 10_000)
    events = []
    for i, f in enumerate(walk):
        f = f + force_offset + (jitter.normal(0, noise, 3) if noise else 0)
        stamp = start_ns + int((i - (i == stamp_glitch_at)) * 1e9 / wrench_hz)  # a glitch repeats a stamp
        events.append(
            (
                start_ns + int(i * 1e9 / wrench_hz),
                "wrist/wrench",
                {
                    "seq": i,
                    "stamp_ns": stamp,
                    "frame_id": "tool0",
                    "force": [float(x) for x in f],
                    "torque": [0.0, 0.0, 0.0],
                },
            )
        )
    for i, q in enumerate(joints):
        q = q + (jitter.normal(0, noise, 7) if noise else 0)
        events.append(
            (
                start_ns + int(i * 1e9 / joint_hz),
                "arm/joint_state",
                {
                    "seq": i,
                    "stamp_ns": start_ns + int(i * 1e9 / joint_hz),
                    "frame_id": "",
                    "name": [f"j{k}" for k in range(7)],
                    "position": [float(x) for x in q],
                    "velocity": [0.0] * 7,
                    "effort": [0.0] * 7,
                },
            )
        )
    events.sort(key=lambda e: e[0])
    with open(folder / "recording.mcap", "wb") as fh:
        w = Writer(fh)
        w.start(profile="", library="loopylab-market-sample")
        channels = {}
        for topic in ("wrist/wrench", "arm/joint_state"):
            sid = w.register_schema(name=topic.replace("/", "_"), encoding="jsonschema", data=b"{}")
            channels[topic] = w.register_channel(topic=topic, message_encoding="json", schema_id=sid)
        for t, topic, msg in events:
            w.add_message(channels[topic], log_time=t, data=json.dumps(msg).encode(), publish_time=t)
        w.finish()
    if notebook:
        (folder / "notebook.nb").write_text(notebook_text(seed, friction))
    return folder


def standard_bounty(reward_wei: int = 10**16, slots: int = 3, **over) -> dict:
    """Terms asking for the sample recording's topics with plausibility checks it passes."""
    terms = dict(
        title="Push friction of household objects",
        description="Push a block 10 cm at 5 cm/s.",
        task_spec={
            "topics": ["wrist/wrench", "arm/joint_state"],
            "notebook": True,
            "protocol": "push +x 0.10 m at 0.05 m/s",
        },
        acceptance=[
            {"check": "range", "topic": "wrist/wrench", "field": "force.2", "min": -50, "max": 50},
            {"check": "monotonic", "topic": "*"},
            {"check": "rate", "topic": "wrist/wrench", "hz": 100, "tolerance": 0.1},
            {"check": "notebook_range", "quantity": "friction", "min": 0.05, "max": 1.5},
        ],
        slots=slots,
        reward_wei=reward_wei,
        auto_approve_s=3600,
        claim_ttl_s=600,
    )
    terms.update(over)
    return terms


def write_mcap(path: Path, events: list, compression: CompressionType = CompressionType.ZSTD) -> None:
    """events: (log_time, topic, message dict) as JSON channels."""
    with open(path, "wb") as fh:
        w = Writer(fh, compression=compression)
        w.start(profile="", library="loopylab-market-sample")
        channels = {}
        for _t, topic, _m in events:
            if topic not in channels:
                sid = w.register_schema(name=topic.replace("/", "_"), encoding="jsonschema", data=b"{}")
                channels[topic] = w.register_channel(topic=topic, message_encoding="json", schema_id=sid)
        for t, topic, msg in events:
            w.add_message(channels[topic], log_time=t, data=json.dumps(msg).encode(), publish_time=t)
        w.finish()


def copy_recording(
    src: Path,
    dst: Path,
    noise: float = 0.0,
    offset: float = 0.0,
    shift_ns: int = 0,
    scale: float = 1.0,
    seed: int = 0,
    compress: bool = True,
) -> Path:
    """A disguised copy of a recording folder (what a cheater submits): every float measurement gets
    N(0, noise) and `offset` added, every stamp is moved to start + (t - start) * scale + shift_ns, and the
    notebook is copied as it is. `compress=False` writes an uncompressed MCAP (whose bytes can be edited)."""
    from mcap.reader import make_reader

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(src / "recording.mcap", "rb") as f:
        rows = [(m.log_time, c.topic, json.loads(m.data)) for _s, c, m in make_reader(f).iter_messages()]
    t0 = rows[0][0]

    def when(t: int) -> int:
        return int(t0 + (t - t0) * scale + shift_ns)

    def disguise(v):
        if isinstance(v, list):
            return [disguise(x) for x in v]
        if isinstance(v, float):
            return v + offset + (float(rng.normal(0, noise)) if noise else 0.0)
        return v

    events = []
    for t, topic, msg in rows:
        out = {k: (disguise(v) if k not in ("seq", "stamp_ns", "name", "frame_id") else v) for k, v in msg.items()}
        out["stamp_ns"] = when(msg["stamp_ns"])
        events.append((when(t), topic, out))
    write_mcap(dst / "recording.mcap", events, CompressionType.ZSTD if compress else CompressionType.NONE)
    if (src / "notebook.nb").exists():
        (dst / "notebook.nb").write_text((src / "notebook.nb").read_text())
    return dst


def write_push(
    folder: Path,
    run: int,
    sensor_noise: float = 0.02,
    encoder_noise: float = 2e-4,
    seconds: float = 2.0,
    contact_s: float = 0.5,
) -> Path:
    """One honest run of a fixed experiment: push a block at 5 cm/s, 100 Hz wrench, 50 Hz joints. Every run
    follows the same smooth profile (the friction plateau within 2 % run to run, the contact a few ms early
    or late) and carries its own sensor noise (`sensor_noise` N, `encoder_noise` rad): what independent
    contributors doing the same experiment submit. `contact_s`: when the hand meets the block."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([run, 4242])
    start = 1_700_000_000_000_000_000 + run * 3_600_000_000_000
    plateau = 1.6 * (1 + rng.normal(0, 0.01))
    onset = contact_s + rng.normal(0, 0.005)
    events = []
    for i in range(int(seconds * 100) + 1):
        t = i / 100
        ramp = 1 / (1 + np.exp(-(t - onset) / 0.03))
        f = [-plateau * ramp, 0.05 * ramp, -9.3 - 0.4 * ramp] + rng.normal(0, sensor_noise, 3)
        tq = [0.0, -0.2 * ramp, 0.01] + rng.normal(0, sensor_noise / 10, 3)
        stamp = start + i * 10_000_000
        msg = {"seq": i, "stamp_ns": stamp, "frame_id": "tool0", "force": f.tolist(), "torque": tq.tolist()}
        events.append((stamp, "wrist/wrench", msg))
    home = np.array([0.0, 0.3, 0.0, -2.2, 0.0, 2.5, 0.785])
    for i in range(int(seconds * 50) + 1):
        t = i / 50
        q = home + np.array([0.0, 0.05, 0.0, 0.08, 0.0, -0.03, 0.0]) * min(t, 1.8) + rng.normal(0, encoder_noise, 7)
        stamp = start + i * 20_000_000
        msg = {
            "seq": i,
            "stamp_ns": stamp,
            "frame_id": "",
            "name": [f"panda_joint{k}" for k in range(1, 8)],
            "position": q.tolist(),
            "velocity": [0.0] * 7,
            "effort": [0.0] * 7,
        }
        events.append((stamp, "arm/joint_state", msg))
    events.sort(key=lambda e: e[0])
    write_mcap(folder / "recording.mcap", events)
    (folder / "notebook.nb").write_text(notebook_text(run, 0.4))
    return folder
