"""Synthetic recordings for tests, benchmarks and the docs' walkthrough: an MCAP file with a wrist
wrench and joint states at declared rates (JSON channels, readable without the bus), plus a lab
notebook. `perturb` makes a near-copy (re-timed, tiny noise) to exercise duplicate detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mcap.writer import Writer

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
