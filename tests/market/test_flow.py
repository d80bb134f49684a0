"""End to end through the HTTP API on SQLite and PostgreSQL: post, fund (escrow), claim, upload,
submit (verification), review, relay payout, withdraw, reconcile; plus authorization and claims."""

from __future__ import annotations

import time

import pytest

from loopylab.market.client import MarketHTTPError
from loopylab.market.relay import double_pays, reconcile
from loopylab.market.sample import write_recording
from tests.market.helpers import write_replayable_recording
from tests.waiting import wait_until

REWARD = 10**16


def test_bounty_to_withdrawal(any_world, tmp_path):
    w = any_world
    requester, alice = w.user(eth=10), w.user()
    b = w.funded_bounty(requester, reward_wei=REWARD, slots=2)
    assert b["state"] == "open" and int(b["funded_wei"]) == 2 * REWARD
    assert w.chain.balance() == 2 * REWARD
    alice.register_rig("bench rig 1")
    claim = alice.claim(b["id"])
    assert claim["state"] == "active"
    sub = alice.submit_folder(claim["id"], write_recording(tmp_path / "rec", seed=1))
    assert sub["state"] == "pending_review", sub["checks"]
    assert [c["name"] for c in sub["checks"]][:3] == ["manifest", "signature", "parse"]
    assert all(c["ok"] for c in sub["checks"])
    reviewed = requester.review(sub["id"], approve=True)
    assert reviewed["state"] == "approved" and reviewed["payout"]["state"] == "pending"
    w.relay.run_once()
    payouts = alice.payouts()
    assert [p["state"] for p in payouts["payouts"]] == ["final"]
    assert int(payouts["withdrawable_wei"]) == REWARD
    before = w.chain.balance(alice.address)
    assert int(alice.withdraw()["amount_wei"]) == REWARD
    assert w.chain.balance(alice.address) == before + REWARD  # the operator paid the gas
    assert w.chain.balance() == REWARD  # one slot still funded
    with pytest.raises(MarketHTTPError) as e:
        alice.withdraw()
    assert e.value.status == 409
    assert reconcile(w.market.store, w.chain) == [] and double_pays(w.chain) == 0
    board = w.http.get("/leaderboard").json()
    assert board[0]["address"] == alice.address and board[0]["approved"] == 1
    assert int(board[0]["earned_wei"]) == REWARD


def test_authorization_rules(world, tmp_path):
    w = world
    requester, alice, bob = w.user(eth=10), w.user(), w.user()
    b = w.funded_bounty(requester, reward_wei=REWARD)
    alice.register_rig()
    rec = write_recording(tmp_path / "a", seed=2)
    sub = alice.submit_folder(alice.claim(b["id"])["id"], rec)
    sha = next(f["sha256"] for f in sub["manifest"]["files"] if f["path"] == "recording.mcap")

    def status(fn, *a, **k):
        with pytest.raises(MarketHTTPError) as e:
            fn(*a, **k)
        return e.value.status, e.value.detail

    assert status(requester.claim, b["id"])[0] == 403  # own bounty
    assert status(bob.request, "GET", f"/submissions/{sub['id']}")[0] == 403  # someone else's work
    assert status(bob.request, "GET", f"/blobs/{sha}")[0] == 403  # unaccepted data
    assert status(bob.review, sub["id"], True) == (403, "only the bounty's requester reviews its submissions")
    assert status(alice.review, sub["id"], True) == (403, "you cannot review your own submission")
    assert status(requester.review, sub["id"], False, " ")[0] == 422  # rejection needs a reason
    assert bob.request("GET", f"/bounties/{b['id']}/submissions") == []
    assert len(requester.request("GET", f"/bounties/{b['id']}/submissions")) == 1
    # the requester reviews the preview; the files are withheld until approval
    assert status(requester.request, "GET", f"/blobs/{sha}")[0] == 403
    assert requester.request("GET", f"/submissions/{sub['id']}/preview")["withheld"] is True
    assert alice.request("GET", f"/blobs/{sha}") == (rec / "recording.mcap").read_bytes()
    r = w.http.get(f"/submissions/{sub['id']}")
    assert r.status_code == 401 and "sign in" in r.json()["detail"]
    rej = requester.review(sub["id"], False, "force sensor saturated during the push")
    assert rej["state"] == "rejected" and rej["reason"].startswith("force sensor")
    assert status(requester.review, sub["id"], True)[0] == 409  # decided once
    assert status(bob.request, "PATCH", f"/bounties/{b['id']}", json={"title": "mine"})[0] == 403
    assert status(requester.request, "PATCH", f"/bounties/{b['id']}", json={"title": "x"})[0] == 409  # frozen


def test_slots_claims_expiry_and_auto_approve(world, tmp_path):
    w = world
    requester = w.user(eth=10)
    b = w.funded_bounty(requester, reward_wei=REWARD, slots=2, claim_ttl_s=30, auto_approve_s=60)
    a, c, d = w.user(), w.user(), w.user()
    ca = a.claim(b["id"])
    with pytest.raises(MarketHTTPError) as e:
        a.claim(b["id"])
    assert e.value.status == 409 and "already hold" in e.value.detail
    c.claim(b["id"])
    with pytest.raises(MarketHTTPError) as e:
        d.claim(b["id"])
    assert e.value.status == 409 and "slots are taken" in e.value.detail
    # c's claim lapses: the slot opens again for d
    assert w.market.sweep(now=time.time() + 31)["expired"] == 2
    d_claim = d.claim(b["id"])
    assert d_claim["state"] == "active"
    with pytest.raises(MarketHTTPError) as e:
        a.request("DELETE", f"/claims/{ca['id']}")  # an expired claim cannot be given back
    assert e.value.status == 409 and e.value.detail == "claim is expired; it cannot become released"
    extra = w.user()
    assert a.claim(b["id"])["state"] == "active"  # a claims again, takes the last slot ...
    with pytest.raises(MarketHTTPError):
        extra.claim(b["id"])
    assert a.request("DELETE", f"/claims/{a.request('GET', '/claims')[0]['id']}")["state"] == "released"
    assert extra.claim(b["id"])["state"] == "active"  # ... and gives it back for extra
    d.register_rig()
    sub = d.submit_folder(d_claim["id"], write_replayable_recording(tmp_path / "d", seed=3))
    assert sub["state"] == "pending_review" and sub["auto_approve_at"] == pytest.approx(sub["created_at"] + 60)
    assert w.market.sweep(now=time.time() + 61)["auto_approved"] == 1
    got = d.request("GET", f"/submissions/{sub['id']}")
    assert got["state"] == "approved" and got["reviewed_by"] == "auto" and got["payout"]["state"] == "pending"


def test_every_error_is_a_clear_4xx(world):
    h = world.http
    assert h.get("/bounties/999").status_code == 404
    assert h.get("/bounties/999").json()["detail"] == "no bounty 999"
    assert h.post("/bounties", json={}).status_code == 401
    u = world.user()
    r = h.post(
        "/bounties",
        json={"title": "t", "slots": 0, "reward_wei": "1", "deadline": 1},
        headers={"Authorization": f"Bearer {u.token}"},
    )
    assert r.status_code == 422 and "slots" in r.json()["detail"]
    r = h.post(
        "/bounties",
        json={"title": "t", "slots": 1, "reward_wei": "1", "deadline": 1},
        headers={"Authorization": f"Bearer {u.token}"},
    )
    assert r.status_code == 422 and "deadline" in r.json()["detail"]
    r = h.post(
        "/bounties",
        json={
            "title": "t",
            "slots": 1,
            "reward_wei": "1",
            "deadline": time.time() + 99,
            "acceptance": [{"check": "teleport"}],
        },
        headers={"Authorization": f"Bearer {u.token}"},
    )
    assert r.status_code == 422 and "acceptance[0].check" in r.json()["detail"]


def test_upload_is_content_addressed_and_size_limited(world, tmp_path):
    w = world
    w.market.config.max_upload_bytes = 1000
    u = w.user()
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 1000)
    first, second = u.upload(p), u.upload(p)
    assert first == second and first["size"] == 1000
    stored = w.market.blobs.path(first["sha256"])
    assert stored.read_bytes() == p.read_bytes()
    p.write_bytes(b"x" * 1001)
    with pytest.raises(MarketHTTPError) as e:
        u.upload(p)
    assert e.value.status == 413 and "1000 bytes" in e.value.detail
    # a streamed body without Content-Length is cut off at the limit too
    r = w.http.put("/blobs", content=iter([b"y" * 600, b"y" * 600]), headers={"Authorization": f"Bearer {u.token}"})
    assert r.status_code == 413
    assert not any((w.market.blobs.root / "tmp").iterdir())  # nothing half-written left behind


def test_server_background_loop_pays_approved_submissions(sqlite_store, chain, tmp_path):
    from fastapi.testclient import TestClient

    from tests.market.conftest import World, make_market

    w = World(make_market(sqlite_store, chain, tmp_path, background_interval_s=0.05), chain)
    w.market.config.run_background = True
    with TestClient(w.app) as http:  # runs the lifespan: the sweeper/relay thread starts
        w.http = http
        requester, alice = w.user(eth=10), w.user()
        b = w.funded_bounty(requester, reward_wei=REWARD, slots=1)
        alice.register_rig()
        sub = alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp_path / "bg", seed=51))
        requester.review(sub["id"], True)
        assert wait_until(lambda: alice.payouts()["payouts"][0]["state"] == "final", 30, interval=0.05), (
            "the background relay did not pay within 30 s"
        )
    assert chain.pending_of(alice.address) == REWARD
    assert w.app.state.background.stop.is_set()


def test_refund_after_settlement_returns_the_unspent_escrow(sqlite_store, tmp_path):
    from loopylab.market.chain import Chain
    from tests.market.conftest import World, make_market

    chain = Chain.embedded_chain()  # its own chain: this test moves block time forward
    w = World(make_market(sqlite_store, chain, tmp_path), chain)
    requester, alice = w.user(eth=10), w.user()
    b = w.funded_bounty(requester, reward_wei=REWARD, slots=3, deadline=time.time() + 120)
    alice.register_rig()
    sub = alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp_path / "rf", seed=52))
    requester.review(sub["id"], True)
    with pytest.raises(MarketHTTPError) as e:
        requester.request("POST", f"/bounties/{b['id']}/refund")
    assert e.value.status == 409 and "only a closed bounty" in e.value.detail
    w.market.sweep(now=time.time() + 121)  # deadline passed: closed
    with pytest.raises(MarketHTTPError) as e:
        requester.request("POST", f"/bounties/{b['id']}/refund")
    assert e.value.status == 409 and "1 approved payouts are not yet released" in e.value.detail
    w.relay.run_once()
    with pytest.raises(MarketHTTPError) as e:  # the escrow's refund time is later
        requester.refund(b["id"])
    assert e.value.status == 409 and "refund time is not reached" in e.value.detail
    chain.time_travel(int(b["refund_after"]) + 10)
    with pytest.raises(MarketHTTPError) as e:  # the server makes no refund itself
        requester.request("POST", f"/bounties/{b['id']}/refund")
    assert e.value.status == 409 and "has not refunded" in e.value.detail
    assert requester.refund(b["id"])["state"] == "closed"  # announced: the escrow's notice runs
    with pytest.raises(MarketHTTPError) as e:
        requester.refund(b["id"])  # within the notice the escrow refuses: the server says so
    assert e.value.status == 400 and "refund transaction reverted" in e.value.detail
    notice = requester.request("GET", f"/bounties/{b['id']}/refunding")
    assert notice["function"] == "refund" and notice["refund_at"] > 0
    chain.time_travel(notice["refund_at"] + 1)
    assert requester.refund(b["id"])["state"] == "refunded"
    assert chain.pending_of(requester.address) == 2 * REWARD  # the two unfilled slots
    assert chain.pending_of(alice.address) == REWARD  # the paid one is untouched
    assert reconcile(w.market.store, chain) == []
