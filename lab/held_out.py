"""The held-out action a predict question is graded on, run undisturbed.

On a starved host the safety gate steps into the held-out strike or push: a protective stop (the arm's joint
states lapsed), a deadman hold (the skill's stream paused past `deadman_ms`) that the stream then resumed after,
rejected targets, an e-stop. Such a strike slides its block 17-49 mm off where a quiet one does (0.2-3.7 mm at
load 100+ against a quiet host), so its outcome grades the host, not the answer. The gate reports every
intervention on `safety/state` (actuation/gate.py); `GateWatch` reads them for the window of one try, and
`graded_outcome` runs a disturbed try again from the same reset state, up to `TRIES` times. If every try was
disturbed the world is `Ungradable`, with the reason: not a wrong answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopylab.bus import JointCommand, SafetyState
from loopylab.lab import kinds
from loopylab.world import notebook as g

TRIES = 3  # a held-out action disturbed this many times in a row leaves the world ungradable
# how long to wait, after the action's reply, for a gate state stamped after it (the gate republishes at its
# state_hz, 10 Hz; the reply and the state travel on different sockets); sized for a busy host
STATE_WAIT_S = 10.0


class Ungradable(RuntimeError):
    """Every try of the held-out action was disturbed by the safety gate: the world cannot be graded."""

    def __init__(self, tries: list[list[str]]):
        self.tries = tries
        super().__init__(
            f"held-out action disturbed in all {len(tries)} tries: " + " | ".join("; ".join(t) for t in tries)
        )


@dataclass
class HeldOut:
    """A clean try's outcome, and what disturbed the tries before it (one list of interventions per try)."""

    outcome: Any
    disturbed: list[list[str]] = field(default_factory=list)

    @property
    def tries(self) -> int:
        return len(self.disturbed) + 1


@dataclass(frozen=True)
class Mark:
    """The start of a window: wall-clock ns (the bus stamps messages with it)."""

    t0: int


def interventions(states: list[SafetyState], first_target_ns: int | None, end_ns: int) -> list[str]:
    """The gate's interventions in the gate states `states` (in publication order) between the action's first
    target and `end_ns`: protective stops, e-stops, deadman holds that the stream resumed after, and targets the
    gate rejected. A deadman hold after the last target (the skill is measuring, the arm at rest) is no
    intervention, nor is a stop that cleared before the action sent anything."""
    if first_target_ns is None:
        return []
    before = [s for s in states if s.stamp_ns < first_target_ns]
    inside = [s for s in states if first_target_ns <= s.stamp_ns <= end_ns]
    found: list[str] = []

    def add(what: str) -> None:
        if what not in found:
            found.append(what)

    held: SafetyState | None = None  # the state that reported a deadman hold not yet resumed from
    deadman_ok = before[-1].deadman_ok if before else True
    for s in inside:
        if s.estop:
            add(f"e-stop: {s.reason}")
        if s.protective_stop:
            add(f"protective stop: {s.fault or s.reason}")
        if deadman_ok and not s.deadman_ok:
            held = s
        elif held is not None and s.deadman_ok:
            add(f"deadman hold mid-action: {held.reason}")
            held = None
        deadman_ok = s.deadman_ok
    if inside:
        base = before[-1].rejected_count if before else inside[0].rejected_count
        rejected = inside[-1].rejected_count - base
        if rejected > 0:
            add(f"{rejected} target(s) rejected by the gate")
    return found


class GateWatch:
    """Every `safety/state` the gate publishes, and the first `arm/joint_target` of a window, on `node`."""

    def __init__(self, node: Any, keep: int = 20000):
        self._lock = threading.Lock()
        self._states: deque[SafetyState] = deque(maxlen=keep)
        self._targets: deque[int] = deque(maxlen=4)  # the stamps of the latest targets
        self._window: int | None = None  # a window's start: its first target is kept
        self._first: int | None = None
        self._node = node
        self._subs = [
            node.subscribe("safety/state", SafetyState, callback=self._on_state, queue_size=keep),
            node.subscribe("arm/joint_target", JointCommand, callback=self._on_target, queue_size=keep),
        ]

    def _on_state(self, msg: SafetyState) -> None:
        with self._lock:
            self._states.append(msg)

    def _on_target(self, msg: JointCommand) -> None:
        with self._lock:
            if self._window is not None and self._first is None and msg.stamp_ns >= self._window:
                self._first = msg.stamp_ns

    def mark(self) -> Mark:
        """Open a window now."""
        t0 = time.time_ns()
        with self._lock:
            self._window, self._first = t0, None
        return Mark(t0)

    def interventions(self, mark: Mark, wait_s: float = STATE_WAIT_S) -> list[str]:
        """The gate's interventions since `mark`'s action sent its first target, up to now (see `interventions`).
        Waits for a gate state stamped from now on, so that every state published before has arrived (one
        publisher's messages come in order); a bench without a gate has none to wait for."""
        end = time.time_ns()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._states or self._states[-1].stamp_ns >= end:
                    break
            time.sleep(0.01)
        with self._lock:
            states = [s for s in self._states if s.stamp_ns >= mark.t0 - 5 * 10**9]  # with the state before it
            first = self._first
        return interventions(sorted(states, key=lambda s: s.seq), first, end)

    def close(self) -> None:
        for sub in self._subs:
            self._node.unsubscribe(sub)

    def __enter__(self) -> GateWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def graded_outcome(
    question: g.Question,
    reset: Callable[[], Any],
    execute: Callable[[g.Experiment], dict],
    oracle: Callable[[], dict],
    watch: GateWatch,
    tries: int = TRIES,
) -> HeldOut:
    """Reset the hidden world and run the question's held-out action (`kinds.held_out_outcome`) until a try the
    gate did not step into, at most `tries` times. An action that failed undisturbed raises as it did; one that
    failed while the gate intervened is tried again. `Ungradable` when every try was disturbed."""
    disturbed: list[list[str]] = []
    for _ in range(tries):
        reset()
        mark = watch.mark()
        try:
            outcome, failed = kinds.held_out_outcome(question, execute, oracle), None
        except RuntimeError as e:
            outcome, failed = None, e
        seen = watch.interventions(mark)
        if not seen:
            if failed is not None:
                raise failed
            return HeldOut(outcome, disturbed)
        disturbed.append(seen + ([f"failed: {failed}"] if failed is not None else []))
    raise Ungradable(disturbed)


def on_bench(question: g.Question, bench: Any, reset: Callable[[], Any]) -> HeldOut:
    """`graded_outcome` on a bench (lab/bench.py: its node hears the gate; `reset` loads the graded world)."""
    with GateWatch(bench.node) as watch:
        return graded_outcome(question, reset, bench.runner.execute, bench.oracle, watch)


__all__ = ["TRIES", "GateWatch", "HeldOut", "Ungradable", "graded_outcome", "interventions", "on_bench"]
