"""The lab gateway's relay of `perception/objects` (lab/sealed.py LabGateway): the bench publishes poses at the
sim's rate; the agent's side gets the newest at a bounded rate, and always the last of a burst (where the objects
came to rest). Real nodes: the bench's on an inproc graph, the agent's on the gateway's sealed ipc graph."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from loopylab.bus import BusConfig, Node, ObjectPose, ObjectPoses
from loopylab.bus.directory import stop_local
from loopylab.lab.sealed import LabGateway
from tests.waiting import wait_until

BURST = 60


@dataclass
class _Bench:
    """What a LabGateway takes of a bench: its node (no simulator, so no sim services are offered)."""

    node: Node
    has_sim: bool = False

    def call(self, service: str, req: Any, timeout: float = 30.0) -> Any:
        raise AssertionError(f"the relay test calls no service ({service})")


def _poses(i: int) -> ObjectPoses:
    return ObjectPoses(objects=[ObjectPose(id=1, label="red_block", position=[0.5, 0.01 * i, 0.02])])


@pytest.fixture
def relay(monkeypatch):
    """(bench publisher, agent-side subscription), the gateway relaying at POSES_HZ = 2."""
    monkeypatch.setattr(LabGateway, "POSES_HZ", 2.0)
    url = f"inproc://{uuid.uuid4().hex}"
    bench_node = Node("lab", url, heartbeat_hz=0)
    gateway = LabGateway(_Bench(bench_node))
    agent = Node("agent", BusConfig.parse(gateway.url).with_keys(gateway.keys.only("lab")), heartbeat_hz=0)
    try:
        pub = bench_node.publisher("perception/objects", ObjectPoses)
        sub = agent.subscribe("perception/objects", ObjectPoses, queue_size=1000)
        yield pub, sub
    finally:
        agent.close()
        gateway.close()
        bench_node.close()
        stop_local(url)


def _y(msg: ObjectPoses) -> float:
    return float(msg.get("red_block").position[1])


def _received(sub) -> list[ObjectPoses]:
    got = []
    while True:
        try:
            got.append(sub.get(timeout=0))
        except TimeoutError:
            return got


def test_the_newest_poses_reach_the_lab_and_the_older_ones_of_a_burst_are_dropped(relay):
    pub, sub = relay
    # connected end to end (warm-up poses, at y < 0, until one goes through)
    assert wait_until(lambda: (pub.publish(_poses(-1)), sub.count > 0)[1], 20, interval=0.05)
    t0 = time.monotonic()
    for i in range(1, BURST + 1):
        pub.publish(_poses(i))
    burst_s = time.monotonic() - t0
    # the last of the burst arrives, though no pose follows it (where the objects came to rest)
    assert wait_until(lambda: _y(sub.latest()) == pytest.approx(0.01 * BURST), 20)
    got = [_y(m) for m in _received(sub) if _y(m) > 0]
    assert got[-1] == pytest.approx(0.01 * BURST)
    # at most one relay per window of 1/POSES_HZ (and one that was due at the start), not one per pose: a burst
    # published in under 29 s is cut short whatever the machine's load
    assert len(got) <= 2 + int(burst_s * LabGateway.POSES_HZ), (len(got), burst_s)
    assert len(got) < BURST
    assert got == sorted(got)  # never an older pose after a newer one
