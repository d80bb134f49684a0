"""GET /bounties: a cached body that never goes stale (writes from this process, another process's store, the
relay), ETag / If-None-Match, keyset pages, a fixed number of queries however long the page, and escrow figures
that follow the payouts."""

from __future__ import annotations

from sqlalchemy import event

from loopylab.market.db import Store
from loopylab.market.sample import write_recording
from tests.market.conftest import make_market


def test_etag_answers_304_and_a_write_changes_the_body(world):
    requester, alice = world.user(eth=10), world.user()
    b = world.funded_bounty(requester, slots=2)
    first = world.http.get("/bounties")
    assert first.status_code == 200 and first.headers["etag"]
    again = world.http.get("/bounties", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    alice.claim(b["id"])
    after = world.http.get("/bounties", headers={"If-None-Match": first.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != first.headers["etag"]
    assert after.json()[0]["slots_taken"] == 1 and after.json()[0]["slots_free"] == 1


def test_a_write_through_another_store_invalidates_the_cache(world, tmp_path):
    """Another worker process (or the relay process) writes through its own engine: the cache sees it."""
    requester = world.user(eth=10)
    b = world.funded_bounty(requester, slots=3)
    assert world.http.get("/bounties").json()[0]["slots_taken"] == 0
    other = Store(world.market.store.url)  # a second engine on the same file, as a second process has
    try:
        make_market(other, world.chain, tmp_path).claim(world.user().address, b["id"])
    finally:
        other.dispose()
    assert world.http.get("/bounties").json()[0]["slots_taken"] == 1


def test_keyset_pages_follow_the_link_header(world):
    requester = world.user(eth=10)
    ids = [requester.post_bounty(**_terms(i))["id"] for i in range(5)]
    seen, url = [], "/bounties?limit=2"
    while url:
        r = world.http.get(url)
        seen += [x["id"] for x in r.json()]
        link = r.headers.get("link")
        url = link.split(">")[0].lstrip("<") if link else None
    assert seen == sorted(ids, reverse=True)
    assert [x["id"] for x in world.http.get(f"/bounties?before={ids[2]}").json()] == [ids[1], ids[0]]


def test_a_page_costs_the_same_queries_for_3_or_30_bounties(world):
    requester = world.user(eth=10)
    engine = world.market.store.read_engine
    statements: list[str] = []

    def count(_conn, _cursor, sql, *_args):
        if not sql.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT")):
            statements.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        costs = []
        for n in (3, 27):
            for i in range(n):
                requester.post_bounty(**_terms(i))
            statements.clear()
            assert len(world.market.list_bounties(limit=200)) in (3, 30)
            costs.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert costs[0] == costs[1] <= 3, costs


def test_escrow_figures_follow_the_payouts(world, tmp_path):
    """After paying 0.01 of 0.02 ETH, the bounty says the escrow still holds 0.01."""
    requester, alice = world.user(eth=10), world.user()
    b = world.funded_bounty(requester, reward_wei=10**16, slots=2)
    alice.register_rig()
    sub = alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp_path / "a", seed=41))
    requester.review(sub["id"], True)
    owed = world.http.get(f"/bounties/{b['id']}").json()
    assert (owed["funded_wei"], owed["owed_wei"], owed["paid_wei"]) == (str(2 * 10**16), str(10**16), "0")
    world.relay.run_once()
    for view in (world.http.get(f"/bounties/{b['id']}").json(), world.http.get("/bounties").json()[0]):
        assert view["paid_wei"] == str(10**16) and view["owed_wei"] == "0"
        assert view["escrow_wei"] == str(10**16)
    _, funded, released, *_ = world.chain.escrow.functions.bounties(requester.address, b["id"]).call()
    assert funded - released == 10**16  # the chain agrees


def _terms(i: int) -> dict:
    from loopylab.market.sample import standard_bounty

    return standard_bounty(title=f"bounty {i}")
