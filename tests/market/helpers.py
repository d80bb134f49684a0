"""Service-level market helpers (no HTTP): funded bounties and signed submissions, made the way real
requesters and rigs make them. Shared by the tests and benchmarks/market_load.py."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

from loopylab.market import manifest as mf
from loopylab.market.chain import Chain, sign_release
from loopylab.market.service import BountyTerms, Market


def open_bounty(market: Market, chain: Chain, slots: int, reward: int, **over):
    """A bounty posted through the service and funded by a real signed escrow transaction."""
    requester = Account.create()
    chain.faucet(requester.address, slots * reward + 10**18)
    terms = dict(
        title="direct",
        description="",
        task_spec={"topics": ["wrist/wrench"]},
        acceptance=[],
        slots=slots,
        reward_wei=str(reward),
        deadline=time.time() + 3600,
        auto_approve_s=3600,
        claim_ttl_s=3600,
    )
    terms.update(over)
    b = market.post_bounty(requester.address, BountyTerms(**terms))
    raw = chain.fund_tx(requester, b.id, math.ceil(b.refund_after), slots * reward)
    market.fund(requester.address, b.id, raw.hex())
    return requester, b


def prepared_submission(market: Market, contributor, bounty_id: int, folder: Path) -> dict:
    """Register a rig and store the files; returns the submission body (manifest + signature)."""
    rig = Account.create()
    text = mf.rig_registration_text(rig.address, contributor.address)
    market.register_rig(contributor.address, rig.address, rig.sign_message(encode_defunct(text=text)).signature.hex())
    m = mf.build(folder, bounty_id, rig.address)
    for f in m["files"]:
        sha, size = market.blobs.put_bytes((folder / f["path"]).read_bytes())
        market.record_upload(contributor.address, sha, size)
    return {"manifest": m, "signature": mf.sign(m, rig)}


def submit_direct(market: Market, contributor, claim_id: int, bounty_id: int, folder: Path):
    """Register a rig, store the files and submit, all through the service."""
    return market.submit(contributor.address, claim_id, **prepared_submission(market, contributor, bounty_id, folder))


def approve(market: Market, requester, submission_id: int):
    """The requester approves a submission with a signed EIP-712 Release approval, as a wallet would."""
    typed = market.approval_request(requester.address, submission_id)
    return market.review(requester.address, submission_id, True, signature=sign_release(requester, typed))


def approved_bounty(market: Market, chain: Chain, n: int, reward: int, recording: Callable[[int], Path]):
    """A funded bounty with `n` contributors' submissions (recording(i) each) approved: the relay's work."""
    requester, b = open_bounty(market, chain, slots=n, reward=reward)
    payees = []
    for i in range(n):
        a = Account.create()
        c = market.claim(a.address, b.id)
        approve(market, requester, submit_direct(market, a, c.id, b.id, recording(i)).id)
        payees.append(a)
    return b, payees


def write_replayable_recording(folder: Path, seed: int = 0, seconds: float = 1.0) -> Path:
    """A recording the twin can replay: the sample's wrist wrench and notebook, with the joint commands and
    joint states of a Panda reach recorded in the simulator (what a rig on a real graph records)."""
    import json

    from mcap.reader import make_reader

    from loopylab.market.sample import write_mcap, write_recording
    from loopylab.sim.verifier import recorded_run

    folder = write_recording(folder, seed=seed, seconds=seconds)
    with open(folder / "recording.mcap", "rb") as f:
        events = [
            (m.log_time, c.topic, json.loads(m.data))
            for _s, c, m in make_reader(f).iter_messages()
            if c.topic == "wrist/wrench"
        ]
    for topic, rows in recorded_run("panda", seconds=seconds, seed=seed).items():
        events += [(lt, topic, msg) for lt, msg in rows]
    write_mcap(folder / "recording.mcap", sorted(events, key=lambda e: e[0]))
    return folder
