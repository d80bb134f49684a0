"""Waiting on a condition with a deadline: the one place tests (and their helper nodes) poll.

A test never sleeps "long enough" for something to happen; it waits until what it expects is
observable, and gives up at a deadline that is generous because the machine may be busy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.005) -> bool:
    """True as soon as `predicate()` is truthy; False if it is still falsy after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_for_value(
    read: Callable[[], T], accept: Callable[[T], object], timeout: float, interval: float = 0.005
) -> T | None:
    """The first `read()` result that `accept` takes, or None if none did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
