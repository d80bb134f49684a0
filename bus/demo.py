"""Demo nodes for graphs/demo.toml (`loopylab demo-bus`): a 7-joint arm at 100 Hz, a VGA camera at
30 Hz, and a monitor that prints what it receives. Synthetic data; no hardware, no simulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from loopylab.bus.introspect import human_bytes
from loopylab.bus.messages import CameraInfo, Image, JointState
from loopylab.bus.node import Node

DEMO_GRAPH = Path(__file__).resolve().parents[1] / "graphs" / "demo.toml"
DEMO_TOML = """\
[graph]
name = "demo"
transport = "ipc"

[nodes.arm]
run = "loopylab.bus.demo:joint_states"
params = { hz = 100.0, joints = 7 }

[nodes.camera]
run = "loopylab.bus.demo:camera"
params = { hz = 30.0, width = 640, height = 480 }

[nodes.monitor]
run = "loopylab.bus.demo:rate_monitor"
params = { period = 1.0 }
"""


def joint_states(node: Node, hz: float = 100.0, joints: int = 7) -> None:
    """Publish `arm/joint_state`: each joint swings on its own sine."""
    pub = node.publisher("arm/joint_state", JointState)
    names = [f"joint{i + 1}" for i in range(joints)]
    freq = np.linspace(0.2, 0.5, joints)
    t0 = time.monotonic()

    def tick() -> None:
        t = time.monotonic() - t0
        pub.publish(
            JointState(
                name=names,
                position=0.5 * np.sin(2 * np.pi * freq * t),
                velocity=np.pi * freq * np.cos(2 * np.pi * freq * t),
                effort=np.zeros(joints),
            )
        )

    node.timer(hz, tick, "joint_state")


def camera(node: Node, hz: float = 30.0, width: int = 640, height: int = 480, name: str = "front") -> None:
    """Publish `camera/<name>/image` (rgb8, a moving gradient) and a latched `camera/<name>/info`."""
    pub = node.publisher(f"camera/{name}/image", Image)
    f = 0.8 * width
    node.publisher(f"camera/{name}/info", CameraInfo, latched=True).publish(
        CameraInfo(
            width=width, height=height, K=np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]), frame_id=name
        )
    )
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    count = [0]

    def tick() -> None:
        k = count[0] = count[0] + 1
        frame = np.empty((height, width, 3), np.uint8)  # a new buffer per frame: sends are zero-copy
        frame[..., 0] = (x + 4 * k) % 256
        frame[..., 1] = (y + 2 * k) % 256
        frame[..., 2] = 128
        pub.publish(Image.from_array(frame, frame_id=name))

    node.timer(hz, tick, "image")


def rate_monitor(node: Node, topics: list[str] | None = None, period: float = 1.0) -> None:
    """Print each topic's rate and message size every `period` seconds."""
    topics = topics or ["arm/joint_state", "camera/front/image"]
    counts = dict.fromkeys(topics, 0)
    sizes = dict.fromkeys(topics, 0)
    for t in topics:

        def on_msg(msg: Any, t: str = t) -> None:
            counts[t] += 1
            sizes[t] = msg.data.nbytes if isinstance(msg, Image) else sizes[t]

        node.subscribe(t, callback=on_msg)
    last_t, last_counts = time.monotonic(), dict(counts)

    def report() -> None:
        nonlocal last_t, last_counts
        now = time.monotonic()
        dt = now - last_t
        if dt < 0.5 * period:  # the timer's first tick comes at once: nothing to report yet
            return
        parts = []
        for t in topics:
            hz = (counts[t] - last_counts[t]) / dt
            parts.append(f"{t} {hz:6.1f} Hz" + (f" ({human_bytes(sizes[t])}/msg)" if sizes[t] else ""))
        print(" | ".join(parts), flush=True)
        last_t, last_counts = now, dict(counts)

    node.timer(1.0 / period, report, "report")


def demo_graph_path() -> Path | None:
    return DEMO_GRAPH if DEMO_GRAPH.exists() else None
