"""The server-rendered pages in a real headless Chromium against a real uvicorn server: bounty list,
bounty detail, submission status with its checks, leaderboard and my payouts. A screenshot of each
page lands in $LOOPYLAB_ARTIFACTS/market/ (default /tmp/loopylab-artifacts/market/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopylab.market.sample import write_recording

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is absent: install Debian's chromium (scripts/install-chromium.sh) to run the browser test",
)


def test_pages_in_headless_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    world, url = served
    requester, alice, bob = world.user(eth=10), world.user(), world.user()
    b = world.funded_bounty(requester, reward_wei=2 * 10**16, slots=3, title="Slide distance of wooden blocks")
    alice.register_rig()
    bob.register_rig()
    good = alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp_path / "a", seed=31))
    bad = bob.submit_folder(bob.claim(b["id"])["id"], write_recording(tmp_path / "b", seed=32, force_offset=80))
    requester.review(good["id"], True)
    world.relay.run_once()
    out = Path(os.environ.get("LOOPYLAB_ARTIFACTS", "/tmp/loopylab-artifacts")) / "market"
    out.mkdir(parents=True, exist_ok=True)
    host = url.split("//")[1].split(":")[0]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            anon = browser.new_page()
            anon.goto(url + "/")
            assert anon.locator("#bounties").inner_text().count("Slide distance of wooden blocks") == 1
            # alice approved, bob's claim still active after his invalid submission: 1 of 3 free
            assert "1 / 3" in anon.locator("#bounties").inner_text()
            anon.screenshot(path=str(out / "bounties.png"), full_page=True)
            anon.goto(url + f"/submission/{good['id']}")
            assert "sign in" in anon.locator("h1").inner_text()

            ctx = browser.new_context()
            ctx.add_cookies([{"name": "loopylab_session", "value": alice.token, "domain": host, "path": "/"}])
            page = ctx.new_page()
            page.goto(url + f"/submission/{good['id']}")
            assert page.locator("#submission-state").inner_text() == "approved"
            checks = page.locator("#checks").inner_text()
            assert "manifest" in checks and "FAIL" not in checks and checks.count("pass") == 10
            page.screenshot(path=str(out / "submission.png"), full_page=True)
            page.goto(url + f"/submission/{bad['id']}")  # bob's: not alice's to read
            assert "only the contributor and the bounty's requester" in page.locator("h1").inner_text()
            page.goto(url + "/payouts")
            assert "final" in page.locator("#payouts").inner_text()
            assert page.locator("#withdrawable").inner_text() == "0.02 ETH"
            page.screenshot(path=str(out / "payouts.png"), full_page=True)
            page.goto(url + "/board")
            first_row = page.locator("#leaderboard tr").nth(1).inner_text()
            assert alice.address in first_row and "0.02 ETH" in first_row
            page.screenshot(path=str(out / "leaderboard.png"), full_page=True)

            rctx = browser.new_context()
            rctx.add_cookies([{"name": "loopylab_session", "value": requester.token, "domain": host, "path": "/"}])
            rpage = rctx.new_page()
            rpage.goto(url + f"/bounty/{b['id']}")
            subs = rpage.locator("#submissions").inner_text()
            assert "approved" in subs and "invalid" in subs  # the requester sees both
            rpage.goto(url + f"/submission/{bad['id']}")
            assert "FAIL" in rpage.locator("#checks").inner_text()
            rpage.screenshot(path=str(out / "bounty_review.png"), full_page=True)
        finally:
            browser.close()
    assert (out / "submission.png").stat().st_size > 10_000
