"""Cross-site request forgery: a browser's session cookie alone cannot change anything (issue 26: SameSite=Lax
was the only defence). A state-changing request that rides the cookie needs the page's CSRF token, and one
from another origin is refused, sign-in included; bearer-token clients are unaffected."""

from __future__ import annotations

from fastapi.testclient import TestClient

from loopylab.market.routes.csrf import csrf_token


def _browser(world, user) -> TestClient:
    """A client holding only the session cookie, as a browser does."""
    b = TestClient(world.app)
    b.cookies.set("loopylab_session", user.token)
    return b


def test_the_cookie_alone_changes_nothing(world):
    requester, alice = world.user(eth=10), world.user()
    bounty = world.funded_bounty(requester, slots=2)
    browser = _browser(world, alice)
    # a forged form post or fetch from another site: no token, or the wrong one
    for headers in ({}, {"X-CSRF-Token": "0" * 40}, {"X-CSRF-Token": csrf_token(requester.token)}):
        r = browser.post(f"/bounties/{bounty['id']}/claims", headers=headers)
        assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"], (headers, r.text)
    assert world.market.my_claims(alice.address) == []
    # the page's token, from the page's own origin: allowed
    r = browser.post(
        f"/bounties/{bounty['id']}/claims",
        headers={"X-CSRF-Token": csrf_token(alice.token), "Origin": "http://testserver"},
    )
    assert r.status_code == 201, r.text


def test_another_origin_is_refused_even_with_the_token(world):
    requester, alice = world.user(eth=10), world.user()
    bounty = world.funded_bounty(requester, slots=2)
    browser = _browser(world, alice)
    good = {"X-CSRF-Token": csrf_token(alice.token)}
    for origin in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/x"}):
        r = browser.post(f"/bounties/{bounty['id']}/claims", headers={**good, **origin})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"], (origin, r.text)
    # login CSRF: another site cannot sign the victim's browser in (as the attacker)
    r = TestClient(world.app).post("/auth/nonce", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_bearer_clients_and_reads_are_unaffected(world):
    requester = world.user(eth=10)
    bounty = world.funded_bounty(requester, slots=2)  # the CLI's client: bearer token, no Origin, no token
    alice = world.user()
    assert alice.claim(bounty["id"])["state"] == "active"
    browser = _browser(world, alice)
    assert browser.get("/bounties", headers={"Origin": "https://evil.example"}).status_code == 200
    assert browser.get("/payouts").status_code == 200


def test_the_pages_carry_the_token_of_their_session(world):
    alice = world.user()
    html = _browser(world, alice).get("/payouts").text
    assert f'<meta name="csrf-token" content="{csrf_token(alice.token)}">' in html
    assert 'name="csrf-token"' not in TestClient(world.app).get("/").text  # signed out: no session, no token
