"""An agent's process stops when its evaluator dies, even mid-job: it would otherwise go on calling a gateway that
died with the evaluator (four agents outlived a killed lab_eval by 17 minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.waiting import wait_until

# The evaluator stand-in starts the agent as lab/sealed.py does, tells its pid, and waits to be killed. The agent's
# stdin is a pipe whose write end this test holds, so the agent never sees end-of-input: only the watch can end it.
EVALUATOR = """
import os, signal, subprocess, sys
rfd = int(sys.argv[1])
child = subprocess.Popen([sys.executable, "-m", "loopylab.lab.sealed"], stdin=rfd, stdout=subprocess.DEVNULL,
                         start_new_session=True, pass_fds=(rfd,))
print(child.pid, flush=True)
signal.pause()  # until the test kills it
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent, now init, reaps it)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_agent_whose_evaluator_died_exits():
    rfd, wfd = os.pipe()
    evaluator = subprocess.Popen(
        [sys.executable, "-c", EVALUATOR, str(rfd)], stdout=subprocess.PIPE, text=True, pass_fds=(rfd,)
    )
    os.close(rfd)
    try:
        agent = int(evaluator.stdout.readline())
        assert wait_until(lambda: _alive(agent), 30)
        # alive while its evaluator lives (the watch does not fire by itself)
        assert not wait_until(lambda: not _alive(agent), 3)
        evaluator.send_signal(signal.SIGKILL)
        evaluator.wait(30)
        assert wait_until(lambda: not _alive(agent), 60), "the agent outlived its evaluator"
    finally:
        os.close(wfd)
        evaluator.kill()
        evaluator.wait(30)
        try:
            os.kill(agent, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass
