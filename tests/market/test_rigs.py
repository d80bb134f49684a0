"""One slot per verified rig, not per key (issue 26): rig keys are free, so a market that pays per key pays a
person with three keys three times. A verified rig is a key a trusted attester (the rig's maker, a calibration
lab, the market's onboarding) vouched is one physical device; a device has one key and fills one slot per
bounty, whatever accounts its owner opens."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from loopylab.market import manifest as mf
from loopylab.market.client import MarketHTTPError
from loopylab.market.sample import write_recording
from tests.market.conftest import World, make_market

ATTESTER = Account.create()


@pytest.fixture
def verified(sqlite_store, chain, tmp_path):
    """A market that verifies rigs, trusting one attester."""
    return World(make_market(sqlite_store, chain, tmp_path, rig_attesters=ATTESTER.address), chain)


def attest(rig: str, device: str, attester=ATTESTER) -> dict:
    sig = attester.sign_message(encode_defunct(text=mf.rig_attestation_text(rig, device))).signature.hex()
    return {"device": device, "signature": "0x" + sig.removeprefix("0x")}


def status(fn, *a, **kw) -> tuple[int, str]:
    try:
        fn(*a, **kw)
    except MarketHTTPError as e:
        return e.status, e.detail
    return 200, ""


def test_three_keys_on_one_rig_take_one_slot(verified, tmp_path):
    """Before: one person registered three free rig keys under three accounts and took all three slots. Now:
    unverified keys get no slot, the attester vouches for the one device once, and that device holds one slot."""
    w = verified
    requester = w.user(eth=10)
    b = w.funded_bounty(requester, reward_wei=10**15, slots=3)
    sybils = [w.user() for _ in range(3)]
    for u in sybils:
        u.register_rig()  # free keys, no attestation
        code, detail = status(u.claim, b["id"], u.rig.address)
        assert code == 403 and "is not verified" in detail
        code, detail = status(u.claim, b["id"])
        assert code == 422 and "one slot per verified rig" in detail
    # the one device, attested once; its other keys cannot be attested as the same device
    assert sybils[0].register_rig(attestation=attest(sybils[0].rig.address, "so101-serial-0042"))["device"]
    for u in sybils[1:]:
        code, detail = status(u.register_rig, attestation=attest(u.rig.address, "so101-serial-0042"))
        assert code == 409 and "already registered as rig" in detail
    claim = sybils[0].claim(b["id"], sybils[0].rig.address)
    assert claim["rig"] == sybils[0].rig.address
    # the device's key lent to another of the person's accounts: registered elsewhere, refused
    lender = sybils[1]
    lender.rig = sybils[0].rig
    assert status(lender.register_rig)[0] == 409
    assert status(lender.claim, b["id"], sybils[0].rig.address)[0] == 403
    sub = sybils[0].submit_folder(claim["id"], write_recording(tmp_path / "r", seed=81))
    assert sub["state"] == "pending_review"
    assert requester.request("GET", f"/bounties/{b['id']}")["slots_free"] == 2


def test_a_self_made_attestation_does_not_verify(verified):
    w = verified
    u = w.user()
    code, detail = status(u.register_rig, attestation=attest(u.rig.address, "my-own-device", attester=u.account))
    assert code == 403 and "is not one of this market's rig attesters" in detail


def test_honest_rigs_each_take_a_slot_and_sign_their_own_data(verified, tmp_path):
    w = verified
    requester = w.user(eth=10)
    b = w.funded_bounty(requester, reward_wei=10**15, slots=3)
    people = [w.user() for _ in range(3)]
    for i, u in enumerate(people):
        u.register_rig(attestation=attest(u.rig.address, f"koch-{i}"))
        c = u.claim(b["id"], u.rig.address)
        if i == 0:  # data signed by another (verified) rig than the claim's: refused
            other = Account.create()
            m = mf.build(write_recording(tmp_path / "x", seed=90), b["id"], other.address)
            sig = other.sign_message(encode_defunct(text=mf.rig_registration_text(other.address, u.address)))
            w.market.register_rig(u.address, other.address, sig.signature.hex(), "", attest(other.address, "koch-x"))
            for f in m["files"]:
                u.upload(tmp_path / "x" / f["path"])
            sub = u.submit(c["id"], m, signature=mf.sign(m, other))
            sig_check = next(x for x in sub["checks"] if x["name"] == "signature")
            assert sub["state"] == "invalid" and f"is for rig {u.rig.address}" in sig_check["detail"]
        sub = u.submit_folder(c["id"], write_recording(tmp_path / f"r{i}", seed=91 + i))
        assert sub["state"] == "pending_review", sub["checks"]
