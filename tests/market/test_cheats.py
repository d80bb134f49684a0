"""The cheater and the forger, through the real API: disguised copies of another contributor's data, physically
impossible streams, a forged joint stream made by a script, the download-and-reject requester, and what is
auto-approved. Each test fails on the market before verification resisted copies and fakes."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from loopylab.market.chain import Chain
from loopylab.market.sample import copy_recording, notebook_text, standard_bounty, write_mcap, write_recording
from loopylab.market.verify import twin
from tests.market.helpers import write_replayable_recording

REWARD = 10**15


def checks(sub) -> dict:
    return {c["name"]: (c["ok"], c["detail"]) for c in sub["checks"]}


def rewrite(src: Path, dst: Path, edit) -> Path:
    """A copy of a recording folder whose messages went through edit(topic, index, msg) -> msg."""
    dst.mkdir(parents=True, exist_ok=True)
    with open(src / "recording.mcap", "rb") as f:
        rows = [(m.log_time, c.topic, json.loads(m.data)) for _s, c, m in make_reader(f).iter_messages()]
    counts: dict[str, int] = {}
    events = []
    for t, topic, msg in rows:
        i = counts[topic] = counts.get(topic, -1) + 1
        events.append((t, topic, edit(topic, i, msg)))
    write_mcap(dst / "recording.mcap", events)
    for extra in src.iterdir():
        if extra.name != "recording.mcap":
            (dst / extra.name).write_bytes(extra.read_bytes())
    return dst


@pytest.fixture(scope="module")
def own_chain():
    """This module's own chain: its many fundings stay off the session chain, whose length other modules'
    whole-chain event scans (the reconcile endpoint under the fuzzer) pay for."""
    return Chain.embedded_chain(deploy=False)


@pytest.fixture
def chain(own_chain):
    c = Chain(own_chain.w3, own_chain.operator, embedded=True)
    c.lock = own_chain.lock
    c.deploy_escrow()
    return c


@pytest.fixture
def market(world):
    """A funded open bounty that declares no plausibility checks of its own (the market's bounds still hold)."""
    requester = world.user(eth=10)
    terms = standard_bounty(reward_wei=REWARD, slots=8)
    terms["acceptance"] = []
    b = requester.fund(requester.post_bounty(**terms)["id"])

    def submit(folder: Path, bounty=None) -> dict:
        u = world.user()
        u.register_rig()
        return u.submit_folder(u.claim((bounty or b)["id"])["id"], folder)

    return world, requester, b, submit


# ------------------------------------------------------------------ copies


def _digit_edit(src: Path, dst: Path) -> Path:
    copy = copy_recording(src, dst, compress=False)
    data = bytearray((copy / "recording.mcap").read_bytes())
    pos = re.search(rb'"force": \[-?(\d)\.\d', bytes(data)[len(data) // 2 :]).start(1) + len(data) // 2
    data[pos] = ord("7") if data[pos] != ord("7") else ord("3")
    (copy / "recording.mcap").write_bytes(bytes(data))
    return copy


def _notebook_edit(src: Path, dst: Path) -> Path:
    dst.mkdir()
    text = (src / "notebook.nb").read_text()
    (dst / "notebook.nb").write_text(
        re.sub(r"moved (\d\.\d+)", lambda m: f"moved {float(m.group(1)) + 0.001:.3f}", text)
    )
    return dst


@pytest.mark.parametrize(
    "disguise",
    [
        pytest.param(lambda s, d: copy_recording(s, d, noise=1e-3, seed=1), id="noise-1mN"),
        pytest.param(lambda s, d: copy_recording(s, d, offset=1e-3), id="offset-1mN"),
        pytest.param(lambda s, d: copy_recording(s, d, shift_ns=86_400 * 10**9, scale=1.25), id="retimed"),
        pytest.param(_digit_edit, id="digit-in-uncompressed-mcap"),
        pytest.param(_notebook_edit, id="one-notebook-value"),
    ],
)
def test_a_disguised_copy_of_someone_elses_data_is_refused(market, tmp_path, disguise):
    w, requester, b, submit = market
    original = write_recording(tmp_path / "orig", seed=31)
    if disguise is _notebook_edit:  # a notebook-only bounty: the notebook is the data
        terms = standard_bounty(reward_wei=REWARD, slots=4, task_spec={"topics": [], "notebook": True})
        terms["acceptance"] = []
        b = requester.fund(requester.post_bounty(**terms)["id"])
        nb_only = tmp_path / "nb"
        nb_only.mkdir()
        (nb_only / "notebook.nb").write_text((original / "notebook.nb").read_text())
        original = nb_only
    assert submit(original, b)["state"] == "pending_review"
    copy = disguise(original, tmp_path / "copy")
    if disguise is not _notebook_edit:  # a notebook of its own: the identical file would give the copy away
        (copy / "notebook.nb").write_text(notebook_text(1031, 0.4))
    sub = submit(copy, b)
    ok, detail = checks(sub)["duplicate"]
    assert sub["state"] == "invalid" and not ok and "a near-copy of submission" in detail, detail


def test_honest_runs_of_the_same_experiment_all_pass(market, tmp_path):
    from loopylab.market.sample import write_push

    w, requester, b, submit = market
    for run in range(4):
        sub = submit(write_push(tmp_path / f"run{run}", run=200 + run))
        assert sub["state"] == "pending_review", checks(sub)["duplicate"]


# ------------------------------------------------------------------ fakes


def _set(path: str, value):
    def edit(topic, i, msg):
        key, _, idx = path.partition(".")
        if i == 40 and key in msg:
            if idx:
                msg[key][int(idx)] = value
            else:
                msg[key] = value
        return msg

    return edit


@pytest.mark.parametrize(
    "edit,fragment",
    [
        pytest.param(_set("force.2", 1e6), "beyond any wrist sensor's range", id="1e6-N"),
        pytest.param(_set("force.0", math.nan), "not a finite number", id="nan"),
        pytest.param(_set("torque.1", math.inf), "not a finite number", id="inf"),
        pytest.param(_set("stamp_ns", 4_102_444_800 * 10**9), "in the future (2100-01-01)", id="year-2100"),
        pytest.param(_set("stamp_ns", 1_600_000_000 * 10**9), "goes back", id="stamp-back"),
        pytest.param(_set("position.3", 1000.0), "at 1000 rad, outside its limits", id="joint-1000-rad"),
        pytest.param(_set("velocity.1", 500.0), "beyond the motor's", id="joint-speed"),
    ],
)
def test_physically_impossible_data_fails_whatever_the_bounty_declared(market, tmp_path, edit, fragment):
    w, requester, b, submit = market
    sub = submit(rewrite(write_recording(tmp_path / "r", seed=41), tmp_path / "bad", edit))
    ok, detail = checks(sub)["bounds"]
    assert sub["state"] == "invalid" and not ok and fragment in detail, detail


def test_a_teleporting_panda_joint_fails(market, tmp_path):
    """Positions within the Panda's limits, but joint 1 jumps 2 rad in one 8 ms tick: faster than its motor."""
    w, requester, b, submit = market
    rec = write_replayable_recording(tmp_path / "r", seed=42)

    def edit(topic, i, msg):
        if topic == "arm/joint_state" and i == 50:
            msg["position"][0] += 2.0
        return msg

    sub = submit(rewrite(rec, tmp_path / "bad", edit))
    ok, detail = checks(sub)["bounds"]
    assert not ok and "faster than its motor" in detail, detail


def test_the_twin_replay_passes_a_recorded_run_and_fails_a_forged_one(market, tmp_path):
    """The forger's script writes joint states that follow the commands perfectly, velocities from the
    positions, and efforts it makes up (zeros, or a plausible constant): plausible numbers the twin's
    physics disagrees with. The honest recording of the same reach passes."""
    w, requester, b, submit = market
    rec = write_replayable_recording(tmp_path / "r", seed=43)
    honest = submit(rec)
    ok, detail = checks(honest)["twin"]
    assert honest["state"] == "pending_review" and ok and "replayed in the twin" in detail, detail
    assert next(c for c in honest["checks"] if c["name"] == "twin")["status"] == "pass"

    commands: dict[int, list] = {}

    def forge(effort):
        def edit(topic, i, msg):
            if topic == "arm/joint_command":
                commands[i] = msg["position"]
            elif topic == "arm/joint_state" and i > 0 and i - 1 in commands:
                q, prev = commands[i - 1], commands.get(i - 2, commands[i - 1])
                msg["position"] = list(q)
                msg["velocity"] = [(a - c) * 120.0 for a, c in zip(q, prev)]
                msg["effort"] = list(effort)
            return msg

        return edit

    for k, effort in enumerate(([0.0] * 7, [0.0, -25.0, 0.0, 15.0, 0.0, 2.0, 0.0])):
        sub = submit(rewrite(rec, tmp_path / f"forged{k}", forge(effort)))
        ok, detail = checks(sub)["twin"]
        assert sub["state"] == "invalid" and not ok and "physics disagrees" in detail, detail


def test_without_the_replay_plugin_the_check_says_unavailable_and_nothing_auto_approves(market, tmp_path, monkeypatch):
    w, requester, b, submit = market
    monkeypatch.setattr(twin, "_loaded", {})  # a market-only install: no loopylab.verifiers plug-in
    sub = submit(write_replayable_recording(tmp_path / "r", seed=44))
    c = next(c for c in sub["checks"] if c["name"] == "twin")
    assert c["status"] == "unavailable" and "twin replay unavailable" in c["detail"]
    assert w.market.sweep(now=time.time() + 7200)["auto_approved"] == 0  # waits for its reviewer


def test_only_submissions_that_passed_every_check_auto_approve(market, tmp_path):
    """A recording without commands cannot be replayed: it waits for the requester; a replayed one is approved
    after the delay (before, both were auto-approved after 3 days, unread)."""
    w, requester, b, submit = market
    plain = submit(write_recording(tmp_path / "plain", seed=45))
    replayed = submit(write_replayable_recording(tmp_path / "rep", seed=46))
    assert next(c for c in plain["checks"] if c["name"] == "twin")["status"] == "unavailable"
    assert w.market.sweep(now=time.time() + 7200)["auto_approved"] == 1
    got = {s["id"]: s["state"] for s in requester.request("GET", f"/bounties/{b['id']}/submissions")}
    assert got == {plain["id"]: "pending_review", replayed["id"]: "approved"}


# ------------------------------------------------------------------ the requester's side


def test_a_requester_cannot_download_then_reject_and_keep_the_data(market, tmp_path):
    """Before: the requester downloaded a pending submission's files, rejected it, and the contributor's files
    were then refused everywhere as duplicates. Now: the files are withheld until approval (a preview shows
    counts, ranges and a few messages), and a rejection frees them for other bounties."""
    w, requester, b, submit = market
    alice = w.user()
    alice.register_rig()
    rec = write_recording(tmp_path / "r", seed=47)
    sub = alice.submit_folder(alice.claim(b["id"])["id"], rec)
    sha = next(f["sha256"] for f in sub["manifest"]["files"] if f["path"] == "recording.mcap")
    r = w.http.get(f"/blobs/{sha}", headers=requester._headers())
    assert r.status_code == 403 and "once the submission is approved" in r.json()["detail"]
    pv = requester.request("GET", f"/submissions/{sub['id']}/preview")
    wrench = pv["recordings"]["recording.mcap"]["wrist/wrench"]
    assert pv["withheld"] and wrench["messages"] == 101 and len(wrench["sample"]) == 5
    assert pv["notebooks"]["notebook.nb"]["results"] == ["observation", "belief", "conclusion"]
    assert not any("force" in line for line in pv["notebooks"]["notebook.nb"]["protocol"])  # results withheld
    requester.review(sub["id"], False, "not what I wanted")
    other = w.user(eth=10)
    terms = standard_bounty(reward_wei=REWARD, slots=1)
    b2 = other.fund(other.post_bounty(**terms)["id"])
    again = alice.submit_folder(alice.claim(b2["id"])["id"], rec, bounty_id=b2["id"])
    assert again["state"] == "pending_review", checks(again)["duplicate"]
    assert other.review(again["id"], True)["state"] == "approved"
    assert w.http.get(f"/blobs/{sha}", headers=other._headers()).content == (rec / "recording.mcap").read_bytes()
    assert np.isfinite(wrench["rate_hz"])
