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


# ---------------------------------------------------------------------- the whole flow from a browser wallet

PROVIDER = """
window.ethereum = {
  isLoopylabKeyWallet: true,
  request: async ({method, params}) => {
    const out = await window.__testWallet(method, params || []);
    if (out.error) throw Object.assign(new Error(out.error), {code: 4001});
    return out.result;
  },
};
"""


class KeyWallet:
    """An EIP-1193 wallet backed by an eth-account key, exposed to the page (playwright `expose_function`).
    Like MetaMask it hands out the lower-case address; it records every text it was asked to sign."""

    def __init__(self, account):
        self.account, self.signed = account, []

    def __call__(self, method: str, params: list):
        import json

        from eth_account.messages import encode_defunct, encode_typed_data

        a = self.account
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [a.address.lower()]}
        if method == "personal_sign":
            if params[1].lower() != a.address.lower():
                return {"error": "unknown account"}
            data = bytes.fromhex(params[0].removeprefix("0x"))
            self.signed.append(data.decode())
            return {"result": "0x" + a.sign_message(encode_defunct(primitive=data)).signature.hex().removeprefix("0x")}
        if method == "eth_signTypedData_v4":
            typed = json.loads(params[1])
            self.signed.append(typed)
            sig = a.sign_message(encode_typed_data(full_message=typed)).signature
            return {"result": "0x" + sig.hex().removeprefix("0x")}
        return {"error": f"unsupported method {method}"}


def _wallet_page(browser, account):
    wallet = KeyWallet(account)
    ctx = browser.new_context()
    ctx.expose_function("__testWallet", wallet)
    ctx.add_init_script(PROVIDER)
    return ctx.new_page(), wallet


def _sign_in(page, url: str, address: str) -> None:
    page.goto(url + "/")
    page.click("#sign-in")
    page.wait_for_selector("#me")
    assert page.locator("#me").inner_text() == address  # the checksummed address, from a lower-case wallet


def test_whole_flow_from_a_browser_wallet(served, tmp_path):
    """Sign in, claim, upload and submit, review with a reason (reject one, approve one), payout, withdraw: all
    from pages in Chromium, signing with an injected EIP-1193 wallet, against the real EVM escrow."""
    from eth_account import Account
    from playwright.sync_api import sync_playwright

    world, url = served
    host = url.split("//")[1]
    requester_client = world.user(eth=10)
    b = world.funded_bounty(requester_client, reward_wei=10**16, slots=2, title="Friction of a kitchen table")
    bob = world.user()  # submits through the API; rejected from the browser
    bob.register_rig()
    bob_sub = bob.submit_folder(bob.claim(b["id"])["id"], write_recording(tmp_path / "bob", seed=52))
    alice = Account.create()
    world.chain.faucet(alice.address, 10**17)  # gas is paid by the server's withdraw_for; this is just a balance
    rec = write_recording(tmp_path / "alice", seed=51)
    out = Path(os.environ.get("LOOPYLAB_ARTIFACTS", "/tmp/loopylab-artifacts")) / "market"
    out.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, wallet = _wallet_page(browser, alice)
            page.goto(url + "/payouts")  # a signed-in page answers 401 with a way in
            assert "sign in" in page.locator("h1").inner_text()
            page.locator("main [data-action=signIn]").click()
            page.wait_for_selector("#me")
            assert page.url.endswith("/payouts")
            siwe_text = wallet.signed[0]
            assert siwe_text.startswith(f"{host} wants you to sign in") and f"URI: {url}/" in siwe_text
            assert alice.address in siwe_text.splitlines()[1]

            page.goto(url + f"/bounty/{b['id']}")
            page.click("#claim")
            page.wait_for_selector("#files")
            page.set_input_files("#files", sorted(str(f) for f in rec.iterdir()))
            page.click("#submit")
            page.wait_for_url("**/submission/*", timeout=60_000)
            assert page.locator("#submission-state").inner_text() == "pending_review"
            checks = page.locator("#checks").inner_text()
            assert "FAIL" not in checks and "signature" in checks, checks
            sub_id = int(page.url.rsplit("/", 1)[1])
            page.screenshot(path=str(out / "flow_submitted.png"), full_page=True)

            rpage, rwallet = _wallet_page(browser, requester_client.account)
            _sign_in(rpage, url, requester_client.address)
            rpage.goto(url + f"/submission/{bob_sub['id']}")
            rpage.click("#reject")  # no reason: refused in the page, nothing sent
            assert "needs a reason" in rpage.locator("#status").inner_text()
            rpage.fill("#reason", "the wrist force saturates at 50 N in the second push")
            rpage.click("#reject")
            rpage.wait_for_selector("#submission-state:text('rejected')")
            assert "saturates at 50 N" in rpage.locator("main").inner_text()
            rpage.goto(url + f"/submission/{sub_id}")
            rpage.fill("#reason", "clean pushes")
            rpage.click("#approve")
            rpage.wait_for_selector("#submission-state:text('approved')")
            assert rwallet.signed[-1]["primaryType"] == "Release"
            rpage.screenshot(path=str(out / "flow_reviewed.png"), full_page=True)

            world.relay.run_once()  # the payout, signed by the requester's wallet, goes on chain
            rpage.goto(url + f"/bounty/{b['id']}")
            assert rpage.locator("#escrow-held").inner_text() == "0.01 ETH"  # 0.01 of 0.02 paid
            assert rpage.locator("#escrow-paid").inner_text() == "0.01 ETH"
            rpage.screenshot(path=str(out / "flow_escrow.png"), full_page=True)

            page.goto(url + "/payouts")
            assert "final" in page.locator("#payouts").inner_text()
            assert page.locator("#withdrawable").inner_text() == "0.01 ETH"
            before = world.chain.w3.eth.get_balance(alice.address)
            page.click("#withdraw")
            page.wait_for_selector("#status.ok:text('withdrew')")
            assert page.locator("#withdrawable").inner_text() == "0 ETH"
            assert world.chain.w3.eth.get_balance(alice.address) - before == 10**16
            page.screenshot(path=str(out / "flow_withdrawn.png"), full_page=True)
            page.goto(url + f"/submission/{sub_id}")  # reachable after sign-in
            assert page.locator("#submission-state").inner_text() == "approved"
        finally:
            browser.close()


def test_the_pages_sign_the_manifest_bytes_the_server_checks():
    """market.js's canonical JSON (what the wallet signs as the rig) equals manifest.canonical for any file
    names, non-ASCII and astral characters included (property test, in Chromium)."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st
    from playwright.sync_api import sync_playwright

    from loopylab.market.manifest import canonical

    script = Path(__file__).parents[2] / "market" / "static" / "market.js"
    files = st.lists(
        st.fixed_dictionaries(
            {"path": st.text(min_size=1, max_size=20), "sha256": st.just("ab" * 32), "size": st.integers(0, 2**40)}
        ),
        min_size=1,
        max_size=4,
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_content("<body></body>")
            page.add_script_tag(path=str(script))

            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(files=files, bounty_id=st.integers(1, 2**31 - 1), created_at=st.integers(0, 2**33))
            @example(
                files=[{"path": "a\x7fb\x80\u00e9\U0001f600", "sha256": "ab" * 32, "size": 0}],
                bounty_id=1,
                created_at=0,
            )
            def same(files, bounty_id, created_at):
                m = {"version": 1, "bounty_id": bounty_id, "rig": "0x" + "Ab" * 20, "created_at": created_at}
                m["files"] = files
                assert page.evaluate("m => canonical(m)", m).encode() == canonical(m)

            same()
        finally:
            browser.close()
