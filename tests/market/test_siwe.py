"""Sign-In with Ethereum: message round trip (property test) and every rejection the server owes."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.market import siwe
from loopylab.market.client import MarketClient


def _msg(**over) -> siwe.SiweMessage:
    fields = dict(
        domain="market.example:8000",
        address=Account.create().address,
        uri="https://market.example/",
        chain_id=1,
        nonce="abcDEF12345",
        issued_at=siwe.iso(time.time()),
    )
    fields.update(over)
    return siwe.SiweMessage(**fields)


@settings(max_examples=60, deadline=None)
@given(
    statement=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.strip),
    chain_id=st.integers(1, 2**40),
    nonce=st.text("abcXYZ0189", min_size=8, max_size=32),
    expiry=st.booleans(),
    resources=st.lists(st.from_regex(r"ipfs://[a-z0-9]{4,20}", fullmatch=True), max_size=3),
)
def test_message_text_round_trips(statement, chain_id, nonce, expiry, resources):
    m = _msg(
        statement=statement,
        chain_id=chain_id,
        nonce=nonce,
        resources=resources,
        expiration_time=siwe.iso(time.time() + 60) if expiry else "",
    )
    text = m.to_text()
    assert siwe.SiweMessage.parse(text) == m
    assert text.splitlines()[0] == "market.example:8000 wants you to sign in with your Ethereum account:"


@pytest.mark.parametrize(
    "bad,why",
    [
        ("hello", "first line"),
        (
            "x wants you to sign in with your Ethereum account:\n0x12\n\n\nURI: a\nVersion: 1\nChain ID: 1\nNonce: abcdefgh\nIssued At: 2024-01-01T00:00:00Z",
            "address",
        ),
    ],
)
def test_malformed_messages_are_refused(bad, why):
    with pytest.raises(siwe.SiweError, match=why):
        siwe.SiweMessage.parse(bad)


def test_short_nonce_and_bad_version_are_refused():
    for over, why in (({"nonce": "abc"}, "Nonce"), ({"version": "2"}, "Version")):
        with pytest.raises(siwe.SiweError, match=why):
            siwe.SiweMessage.parse(_msg(**over).to_text())


def test_server_rejects_replay_expiry_domain_and_foreign_signatures(world):
    h = world.http
    alice = MarketClient(h, Account.create())
    mallory = Account.create()

    def login(msg: siwe.SiweMessage, signer) -> tuple[int, str]:
        r = h.post("/auth/login", json={"message": msg.to_text(), "signature": siwe.sign(msg, signer)})
        return r.status_code, r.json().get("detail", "")

    # a good sign-in works once; replaying the same signed message is refused
    good = alice.siwe_message(h.post("/auth/nonce").json())
    text, sig = good.to_text(), siwe.sign(good, alice.account)
    r = h.post("/auth/login", json={"message": text, "signature": sig})
    assert r.status_code == 200 and r.json()["address"] == alice.address
    token = r.json()["token"]
    r = h.post("/auth/login", json={"message": text, "signature": sig})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    # the session is bound to the address that signed
    assert h.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json() == {"address": alice.address}
    # wrong domain (a phishing site relaying our nonce)
    m = alice.siwe_message(h.post("/auth/nonce").json(), domain="evil.example")
    assert login(m, alice.account) == (
        401,
        "sign-in refused: message is for domain 'evil.example', this server is 'testserver'",
    )
    # signature by another key than the address in the message
    m = alice.siwe_message(h.post("/auth/nonce").json())
    code, detail = login(m, mallory)
    assert code == 401 and "another address" in detail
    # a nonce this server never issued
    code, detail = login(alice.siwe_message({**h.post("/auth/nonce").json(), "nonce": "neverIssued123"}), alice.account)
    assert code == 401 and "unknown nonce" in detail
    # an expired nonce
    auth = world.app.state.auth
    auth.nonce_ttl_s = -1
    m = alice.siwe_message(h.post("/auth/nonce").json())
    auth.nonce_ttl_s = 300
    code, detail = login(m, alice.account)
    assert code == 401 and "nonce expired" in detail
    # an expired message, a message from the future, another chain
    m = alice.siwe_message(h.post("/auth/nonce").json(), expiration_time=siwe.iso(time.time() - 5))
    assert "expired" in login(m, alice.account)[1]
    m = alice.siwe_message(h.post("/auth/nonce").json(), issued_at=siwe.iso(time.time() + 3600))
    assert "future" in login(m, alice.account)[1]
    m = alice.siwe_message(h.post("/auth/nonce").json(), chain_id=5)
    assert "chain 5" in login(m, alice.account)[1]
    # a URI on another host than the signed domain (issue 26: the sign-in URI was not checked)
    m = alice.siwe_message(h.post("/auth/nonce").json(), uri="https://evil.example/login")
    code, detail = login(m, alice.account)
    assert code == 401 and "not an http(s) address on the signed domain" in detail
    m = alice.siwe_message(h.post("/auth/nonce").json(), uri="javascript://testserver/")
    assert "URI" in login(m, alice.account)[1]
    # a lower-case (not EIP-55) address is refused: one spelling per account (issue 26: it was accepted)
    m = alice.siwe_message(h.post("/auth/nonce").json(), address=alice.address.lower())
    code, detail = login(m, alice.account)
    assert code == 401 and "not EIP-55 checksummed" in detail
    # garbage signature
    m = alice.siwe_message(h.post("/auth/nonce").json())
    r = h.post("/auth/login", json={"message": m.to_text(), "signature": "0x1234"})
    assert r.status_code == 401 and "signature" in r.json()["detail"]
    # logging out kills the session
    assert h.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert h.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
