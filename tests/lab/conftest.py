"""Fixtures of the lab's tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def logging_restored():
    """The command line configures logging: put it back as the test found it."""
    root, ours = logging.getLogger(), logging.getLogger("loopylab")
    saved = root.handlers[:], root.level, ours.level
    yield
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
