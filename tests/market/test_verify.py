"""The verification pipeline through the real API: each check fails on the data it exists to catch
and passes on good data; a failed submission leaves the claim usable for a corrected one."""

from __future__ import annotations

import json

import pytest

from loopylab.market import manifest as mf
from loopylab.market.sample import write_recording
from tests.waiting import wait_until

REWARD = 10**15


@pytest.fixture
def setup(world):
    requester = world.user(eth=10)
    b = world.funded_bounty(requester, reward_wei=REWARD, slots=5)

    def contributor(register=True):
        u = world.user()
        if register:
            u.register_rig()
        return u, u.claim(b["id"])["id"]

    return world, b, contributor


def checks(sub) -> dict:
    return {c["name"]: (c["ok"], c["detail"]) for c in sub["checks"]}


def test_good_data_passes_every_check(setup, tmp_path):
    w, b, contributor = setup
    u, cid = contributor()
    sub = u.submit_folder(cid, write_recording(tmp_path / "r", seed=11))
    got = checks(sub)
    assert sub["state"] == "pending_review"
    assert set(got) == {
        "manifest",
        "signature",
        "parse",
        "bounds",
        "range wrist/wrench.force.2",
        "monotonic *",
        "rate wrist/wrench",
        "notebook friction",
        "twin",
        "duplicate",
    }
    assert all(ok for ok, _ in got.values())
    assert "101 values within [-50, 50]" in got["range wrist/wrench.force.2"][1]


def test_manifest_must_match_the_uploaded_bytes(setup, tmp_path):
    w, b, contributor = setup
    u, cid = contributor()
    rec = write_recording(tmp_path / "r", seed=12)
    manifest = mf.build(rec, b["id"], u.rig.address)
    for f in manifest["files"]:
        u.upload(rec / f["path"])
    forged = json.loads(json.dumps(manifest))
    forged["files"][0]["sha256"] = "ab" * 32  # a file nobody uploaded
    sub = u.submit(cid, forged)
    assert sub["state"] == "invalid" and "no upload with sha256" in checks(sub)["manifest"][1]
    forged = json.loads(json.dumps(manifest))
    forged["files"][0]["size"] += 1
    assert "do not match" in checks(u.submit(cid, forged))["manifest"][1]
    forged = {**manifest, "bounty_id": b["id"] + 1}
    assert checks(u.submit(cid, forged))["manifest"][1] == f"manifest is for bounty {b['id'] + 1}, not {b['id']}"
    # the claim is still active: the honest manifest goes through
    assert u.submit(cid, manifest)["state"] == "pending_review"
    rep = w.http.get("/leaderboard").json()
    assert rep[0]["invalid"] == 3 and rep[0]["reputation"] == 0.2  # (0 + 1) / (3 + 2)


def test_rig_signature_must_come_from_a_registered_rig(setup, tmp_path):
    w, b, contributor = setup
    u, cid = contributor(register=False)
    rec = write_recording(tmp_path / "r", seed=13)
    sub = u.submit_folder(cid, rec)
    assert sub["state"] == "invalid" and "is not registered" in checks(sub)["signature"][1]
    u.register_rig()
    manifest = mf.build(rec, b["id"], u.rig.address)
    from eth_account import Account

    other = Account.create()
    sub = u.submit(cid, manifest, signature=mf.sign(manifest, other))  # signed by a different key
    assert "manifest names rig" in checks(sub)["signature"][1]
    assert u.submit(cid, manifest)["state"] == "pending_review"


@pytest.mark.parametrize(
    "kwargs,check,fragment",
    [
        (dict(force_offset=100.0), "range wrist/wrench.force.2", "outside [-50, 50]"),
        (dict(stamp_glitch_at=40), "monotonic *", "does not increase"),
        (dict(wrench_hz=80.0), "rate wrist/wrench", "declared 100 Hz"),
        (dict(friction=1.9), "notebook friction", "outside [0.05, 1.5]"),
        (dict(notebook=False), "parse", "asks for a lab notebook"),
    ],
)
def test_plausibility_checks_catch_implausible_data(setup, tmp_path, kwargs, check, fragment):
    w, b, contributor = setup
    u, cid = contributor()
    sub = u.submit_folder(cid, write_recording(tmp_path / "r", seed=14, **kwargs))
    ok, detail = checks(sub)[check]
    assert sub["state"] == "invalid" and not ok and fragment in detail, detail
    assert fragment in sub["reason"]


def test_unparseable_files_and_missing_topics(setup, tmp_path):
    w, b, contributor = setup
    u, cid = contributor()
    rec = write_recording(tmp_path / "r", seed=15)
    (rec / "recording.mcap").write_bytes(b"\x89MCAP0\r\n" + b"garbage" * 10)
    assert "not a readable MCAP file" in checks(u.submit_folder(cid, rec))["parse"][1]
    rec = write_recording(tmp_path / "r2", seed=15)
    (rec / "notebook.nb").write_text("<|question_start|>what is love<|question_end|>\n")
    assert "not a notebook under the lab grammar" in checks(u.submit_folder(cid, rec))["parse"][1]
    requester = w.user(eth=10)
    from loopylab.market.sample import standard_bounty

    terms = standard_bounty(reward_wei=REWARD, slots=1)
    terms["task_spec"]["topics"].append("camera/top/image")
    b2 = requester.fund(requester.post_bounty(**terms)["id"])
    sub = u.submit_folder(u.claim(b2["id"])["id"], write_recording(tmp_path / "r3", seed=16))
    assert "declared topics missing: camera/top/image" in checks(sub)["parse"][1]


def test_duplicates_exact_and_near(setup, tmp_path):
    w, b, contributor = setup
    alice, a_claim = contributor()
    bob, b_claim = contributor()
    carol, c_claim = contributor()
    original = write_recording(tmp_path / "orig", seed=21)
    assert alice.submit_folder(a_claim, original)["state"] == "pending_review"
    sub = bob.submit_folder(b_claim, original)  # the very same bytes
    assert "identical file already submitted" in checks(sub)["duplicate"][1]
    # re-timed by an hour, with sensor-level noise, no notebook: still the same data
    copy = write_recording(tmp_path / "copy", seed=21, start_ns=1_700_003_600_000_000_000, noise=1e-7)
    (copy / "notebook.nb").write_text((original / "notebook.nb").read_text() + "\n")
    sub = bob.submit_folder(b_claim, copy)
    assert sub["state"] == "invalid" and "a near-copy of submission" in checks(sub)["duplicate"][1]
    fresh = carol.submit_folder(c_claim, write_recording(tmp_path / "new", seed=22))
    assert fresh["state"] == "pending_review", checks(fresh)["duplicate"]


def test_a_real_bus_recording_verifies(setup, tmp_path):
    """A folder written by the bus recorder (what `loopylab record` leaves) goes through the checks."""
    import uuid

    from loopylab.bus import Node, Wrench
    from loopylab.bus.record import Recorder

    w, b, contributor = setup
    folder = tmp_path / "run-bus"
    folder.mkdir()
    with Node("rig", f"inproc://{uuid.uuid4().hex}") as node:
        rec = Recorder(node, folder / "run.mcap", topics=["wrist/wrench", "arm/joint_state"])
        pub = node.publisher("wrist/wrench", Wrench)
        assert pub.wait_for_subscribers(1, timeout=10)
        t0 = 1_700_000_000_000_000_000
        for i in range(101):
            pub.publish(Wrench(force=[0.1 * i, 0.0, -2.0 + 0.01 * i], torque=[0, 0, 0], stamp_ns=t0 + i * 10_000_000))
        assert wait_until(lambda: rec.written == 101, 10), f"recorder wrote only {rec.written} of 101"
        rec.close()
    (folder / "notebook.nb").write_text(write_recording(tmp_path / "nb", seed=61).joinpath("notebook.nb").read_text())
    requester = w.user(eth=10)
    from loopylab.market.sample import standard_bounty

    terms = standard_bounty(reward_wei=REWARD, slots=1)
    terms["task_spec"]["topics"] = ["wrist/wrench"]
    terms["acceptance"][2] = {"check": "min_messages", "topic": "wrist/wrench", "count": 101}
    b2 = requester.fund(requester.post_bounty(**terms)["id"])
    u, _ = contributor()
    sub = u.submit_folder(u.claim(b2["id"])["id"], folder)
    got = checks(sub)
    assert sub["state"] == "pending_review", got
    assert "run.mcap: 101 messages" in got["parse"][1]
    assert got["range wrist/wrench.force.2"] == (True, "101 values within [-50, 50]")


def test_a_single_recording_file_can_be_submitted(setup, tmp_path):
    w, b, contributor = setup
    requester = w.user(eth=10)
    from loopylab.market.sample import standard_bounty

    terms = standard_bounty(reward_wei=REWARD, slots=1)
    terms["task_spec"]["notebook"] = False
    terms["acceptance"] = terms["acceptance"][:3]
    b2 = requester.fund(requester.post_bounty(**terms)["id"])
    u, _ = contributor()
    rec = write_recording(tmp_path / "one", seed=71, notebook=False) / "recording.mcap"
    sub = u.submit_folder(u.claim(b2["id"])["id"], rec)
    assert sub["state"] == "pending_review" and [f["path"] for f in sub["manifest"]["files"]] == ["recording.mcap"]
