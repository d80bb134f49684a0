"""Polled subscriptions (`polled=True`): read by the thread that calls `poll()`, never in the background."""

import threading

import pytest

from loopylab.bus import JointState, Node
from tests.bus import helpers
from tests.waiting import wait_until


def _connected(pub, sub) -> bool:
    sub.poll()  # the polling thread opens the sockets
    pub.poll_subscriptions()
    return pub.subscribers >= 1


def test_polled_subscription_delivers_on_the_polling_thread(inproc_url):
    threads = []
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_command", JointState)
        sub = b.subscribe(
            "arm/joint_command", JointState, callback=lambda m: threads.append(threading.get_ident()), polled=True
        )
        assert wait_until(lambda: _connected(pub, sub), 5)
        pub.publish(helpers.joint_state(1))
        assert wait_until(lambda: sub.poll() or sub.count, 5)
        assert sub.latest().seq == 1
        assert threads == [threading.get_ident()]  # the callback ran inside poll(), here
        assert not b._receiver._cmds.qsize()  # and nothing was handed to the node's I/O thread
        with pytest.raises(RuntimeError):
            b.subscribe("x", JointState).poll()  # a background subscription has no poll()


def test_a_backlog_is_taken_whole_and_the_newest_wins(inproc_url):
    """A loop that stalled (a reconnect) takes everything that came at its next poll and sees the newest, not the
    oldest few that a tiny receive buffer would keep while the rest wait behind it (a replayed command stream)."""
    n = 300
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_command", JointState)
        sub = b.subscribe("arm/joint_command", JointState, mode="latest", polled=True)
        assert wait_until(lambda: _connected(pub, sub), 5)
        for i in range(n):
            pub.publish(helpers.joint_state(i))
        assert wait_until(lambda: sub.poll() >= 0 and sub.latest() is not None and sub.latest().seq == n, 10, 0.1)
        assert sub.count <= 20, sub.count  # a handful of polls, not one per couple of messages
        assert sub.skipped >= n - sub.count


def test_unsubscribe_and_close_release_the_sockets(inproc_url):
    with Node("a", inproc_url) as a, Node("b", inproc_url) as b:
        pub = a.publisher("arm/joint_command", JointState)
        gone = b.subscribe("arm/joint_command", JointState, polled=True)
        kept = b.subscribe("arm/joint_command", JointState, polled=True)
        assert wait_until(lambda: _connected(pub, gone) and kept.poll() >= 0 and kept.socks, 5)
        b.unsubscribe(gone)
        gone.poll()  # its poller closes it
        assert not gone.socks
        pub.publish(helpers.joint_state(1))
        assert wait_until(lambda: kept.poll() or kept.count, 5)
        assert gone.count == 0
    assert not kept.socks and kept.poll() == 0  # the node's close took them; a late poll finds none
