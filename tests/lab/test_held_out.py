"""The held-out action is graded from a try the safety gate did not disturb (lab/held_out.py): on the real bench,
a fault the test raises through the real bus mid-action (the gate's protective stop) makes the grader run the
action again from the same reset state, and a world disturbed in every try is ungradable, not wrong."""

from __future__ import annotations

import threading

import pytest

from loopylab.bus import DeviceFault, JointCommand, SafetyState
from loopylab.lab.bench import sim_bench
from loopylab.lab.held_out import GateWatch, Ungradable, graded_outcome, interventions
from loopylab.lab.investigation import grammar_scene
from loopylab.lab.questions import make_question
from tests.waiting import wait_until

SEED = 4  # a train world whose red block a held-out strike reaches


def state(stamp: int, **kw) -> SafetyState:
    return SafetyState(stamp_ns=stamp, seq=stamp, **kw)


def test_only_interventions_after_the_first_target_and_a_resumed_deadman_hold_count():
    quiet = [state(1, deadman_ok=False, reason="deadman: no arm/joint_target for 500 ms"), state(5), state(9)]
    assert interventions(quiet, first_target_ns=4, end_ns=10) == []  # the last action's hold, released by ours
    # the hold after the action's last target (the skill measuring, the arm at rest) is no intervention
    assert interventions([*quiet, state(10, deadman_ok=False, reason="deadman")], 4, 11) == []
    mid = [state(5), state(6, deadman_ok=False, reason="deadman: no arm/joint_target for 500 ms"), state(7)]
    assert interventions(mid, 4, 10) == ["deadman hold mid-action: deadman: no arm/joint_target for 500 ms"]
    stop = [state(2, protective_stop=True, reason="reset"), state(5), state(6, protective_stop=True, reason="lost")]
    assert interventions(stop, 4, 10) == ["protective stop: lost"]  # the one before the action does not count
    assert interventions([state(3, rejected_count=2), state(6, rejected_count=5)], 4, 10) == [
        "3 target(s) rejected by the gate"
    ]
    assert interventions([state(6, estop=True, reason="button")], 4, 10)[0] == "e-stop: button"
    assert interventions(stop, None, 10) == []  # the action sent nothing: nothing it did was disturbed


class FaultOnTarget:
    """Raises an arm fault on the real bus at the `nth` target of each armed try, and clears it once the gate
    reports the protective stop: the gate steps into the held-out action as it does on a starved host."""

    def __init__(self, node, nth: int = 40):
        self.node, self.nth = node, nth
        self.armed, self.count, self.raised = 0, 0, 0
        self.fault = node.publisher("arm/fault", DeviceFault, latched=True)
        self.gate = node.subscribe("safety/state", SafetyState, mode="latest")
        node.subscribe("arm/joint_target", JointCommand, callback=self._on_target)

    def arm(self, tries: int) -> None:
        self.armed, self.count = tries, 0

    def _on_target(self, msg: JointCommand) -> None:
        self.count += 1
        if self.armed and self.count == self.nth:
            self.armed -= 1
            threading.Thread(target=self._fault, daemon=True).start()

    def _fault(self) -> None:
        self.fault.publish(
            DeviceFault(device="arm", active=True, code="no_response", motor_ids=[3], label="no_response(3)")
        )
        seen = wait_until(lambda: (s := self.gate.latest()) is not None and s.protective_stop, timeout=30)
        self.fault.publish(DeviceFault(device="arm", active=False, code="no_response", motor_ids=[3]))
        self.raised += bool(seen)


@pytest.fixture(scope="module")
def bench():
    with sim_bench(seed=SEED) as b:
        yield b


def test_a_held_out_action_the_gate_stepped_into_is_run_again_and_graded_on_the_clean_try(bench):
    scene = bench.reset(SEED)
    question = make_question("predict", grammar_scene(scene), SEED)
    injector = FaultOnTarget(bench.node)
    replies: list[dict] = []

    def reset() -> None:
        bench.reset(SEED)
        injector.count = 0  # the count starts with each try's first target

    def execute(action) -> dict:
        replies.append(bench.runner.execute(action))
        return replies[-1]

    with GateWatch(bench.node) as watch:
        injector.arm(1)  # the first try is disturbed, the next is not
        held = graded_outcome(question, reset, execute, bench.oracle, watch)
        assert injector.raised == 1
        assert held.tries >= 2 and len(replies) == held.tries  # (a loaded host may disturb another try itself)
        assert any("protective stop" in r and "no_response(3)" in r for r in held.disturbed[0]), held.disturbed
        # graded on the try the gate left alone: the last one's slide, not the disturbed first one's
        assert held.outcome == replies[-1]["measurements"]["slide_m"]
        injector.arm(2)
        with pytest.raises(Ungradable, match="disturbed in all 2 tries.*protective stop") as e:
            graded_outcome(question, reset, execute, bench.oracle, watch, tries=2)
        assert len(e.value.tries) == 2 and all(any("no_response(3)" in r for r in t) for t in e.value.tries)
