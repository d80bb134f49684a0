"""Node functions that tests run in child processes (spawned, so each is a fresh interpreter) and in
launched graphs. They talk only through the bus, like real nodes do."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from loopylab.bus import Image, JointState, Node
from tests.waiting import wait_until

JOINTS = [f"joint{i}" for i in range(1, 8)]


def joint_state(i: int) -> JointState:
    return JointState(name=JOINTS, position=np.arange(7) * 0.1 + i, velocity=np.full(7, i * 0.5), effort=np.zeros(7))


def frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), i % 256, np.uint8)


def publish_series(url: str, n: int, topic: str = "arm/joint_state", image: bool = False) -> None:
    """Wait for one subscriber (condition, not a sleep), then publish n messages as fast as allowed."""
    with Node("talker", url) as node:
        pub = node.publisher(topic, Image if image else JointState)
        if not pub.wait_for_subscribers(1, timeout=20):
            raise SystemExit(3)
        for i in range(n):
            pub.publish(Image.from_array(frame(i, 480, 640)) if image else joint_state(i))
        # Stay until the listener says it is done, so nothing is lost at close.
        done = node.subscribe("test/done")
        done.wait_for(timeout=20)


def publish_forever(url: str, hz: float = 200.0, heartbeat_hz: float = 20.0) -> None:
    """A node that streams joint states until it is killed."""
    node = Node("streamer", url, heartbeat_hz=heartbeat_hz)
    pub = node.publisher("arm/joint_state", JointState)
    counter = itertools.count()
    node.timer(hz, lambda: pub.publish(joint_state(next(counter))))
    node.spin()


def spin_until_signal(url: str) -> None:
    node = Node("sleeper", url)
    node.handle_signals()  # before anyone can see us: a signal from then on is a clean shutdown
    node.publisher("sleeper/alive", JointState, latched=True).publish(joint_state(0))
    node.spin()  # returns on SIGTERM/SIGINT, then closes (says bye to the directory)


# -- graph nodes for the launcher tests ---------------------------------------------------------------


def steady(node: Node, hz: float = 50.0):
    pub = node.publisher("test/steady", JointState)
    node.timer(hz, lambda: pub.publish(joint_state(0)))


def crash(node: Node, message: str = "boom", after_file: str = "", after_topic: str = ""):
    """Raise once the rest of the graph is up: `after_file` exists, or `after_topic` carries a message."""
    if after_file:
        wait_until(Path(after_file).exists, 30)
    if after_topic:
        node.subscribe(after_topic).wait_for(timeout=30)
    raise RuntimeError(message)


def crash_first(node: Node, counter: str, failures: int = 2):
    """Crash on the first `failures` starts (counted in a file), then run quietly."""
    path = Path(counter)
    starts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(starts))
    if starts <= failures:
        raise RuntimeError(f"start {starts} fails on purpose")
    print(f"start {starts} ok", flush=True)  # then return: the launcher keeps the node up until shutdown


def write_pid(node: Node, path: str):
    print("ready", flush=True)
    Path(path).write_text(str(os.getpid()))


def own_directory_and_publish(url: str, topic: str) -> None:
    """Start first (so this process serves the graph's directory), publish a latched value, wait."""
    node = Node("founder", url)
    node.handle_signals()
    node.publisher(topic, JointState, latched=True).publish(joint_state(1))
    node.spin()


def serve_secret(node: Node, allow: tuple = ("grader",)):
    """A node with a privileged service (`test/secret`, for `allow` only) and an open one (`test/open`)."""
    node.service("test/secret", lambda req: {"secret": 42}, allow=allow)
    node.service("test/open", lambda req: {"role": node.config.keys.role if node.config.keys else ""})
