"""`loopylab market ...` (run the service) and `loopylab bounty ...` (use it with a local key file)."""

from __future__ import annotations

import json
import logging
import os
import time
from decimal import Decimal
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

log = logging.getLogger("loopylab.market.cli")
console = Console(soft_wrap=True)  # long addresses and paths stay on one line
err = Console(soft_wrap=True, stderr=True)

DEFAULT_URL = os.environ.get("LOOPYLAB_MARKET_URL", "http://127.0.0.1:8000")
DEFAULT_KEY = os.environ.get("LOOPYLAB_KEY", str(Path.home() / ".loopylab" / "key"))

market_app = typer.Typer(
    help="Run the data market: HTTP API + web pages, SQL store, escrow relay.", no_args_is_help=True
)
bounty_app = typer.Typer(
    help="Post, claim, submit to and review data bounties (signs in with your key file).", no_args_is_help=True
)

UrlOpt = typer.Option(DEFAULT_URL, "--url", help="Market server URL ($LOOPYLAB_MARKET_URL).")
KeyOpt = typer.Option(DEFAULT_KEY, "--key", help="Your key file: hex private key or keystore JSON ($LOOPYLAB_KEY).")


def _fail(msg: str, code: int = 1):
    """One line on stderr, then exit (2: bad input, 1: refused or unreachable)."""
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(msg)}", highlight=False)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(market_app, name="market")
    app.add_typer(bounty_app, name="bounty")


# ---------------------------------------------------------------------- market (server side)


@market_app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    db: str = typer.Option(
        "", help="Database URL (default: SQLite file under --home; postgresql+psycopg://user@host/db for PostgreSQL)."
    ),
    home: Path = typer.Option(None, help="Folder for market.db and uploaded blobs (default ~/.loopylab/market)."),
    chain_url: str = typer.Option(
        "",
        help="EVM JSON-RPC URL (default: in-process chain). The relay key comes "
        "from $LOOPYLAB_CHAIN_KEY or --keystore.",
    ),
    keystore: str = typer.Option(
        "", help="Encrypted keystore of the relay account (password in $LOOPYLAB_KEYSTORE_PASSWORD)."
    ),
    escrow: str = typer.Option("", help="Escrow contract address on --chain-url (see `market deploy`)."),
    confirmations: int = typer.Option(None, help="Blocks before a payout counts as final."),
    config: Path = typer.Option(None, help="TOML file with a [market] table (same names as these options)."),
    workers: int = typer.Option(
        1,
        help="uvicorn worker processes. Beside them run one relay process (started here unless --no-relay) and, "
        "without --chain-url, one shared in-process test chain served over JSON-RPC.",
    ),
    relay: bool = typer.Option(True, help="With --workers > 1: start the relay process (`market relay`) too."),
):
    """Start the market. With no options: SQLite file + in-process EVM + a fresh escrow, nothing to set up."""
    import uvicorn

    from loopylab.market.api import create_app

    cfg = _config(
        config,
        db,
        home,
        chain_url,
        keystore,
        escrow,
        confirmations,
        domain=f"{host}:{port}",
        base_url=f"http://{host}:{port}",
    )
    if workers > 1:
        _serve_workers(cfg, host, port, workers, relay)
        return
    app = create_app(cfg)
    chain = app.state.market.chain
    console.print(f"[bold]loopylab market[/] at [link]http://{host}:{port}/[/]  (API docs: http://{host}:{port}/docs)")
    console.print(f"  database  {cfg.database_url}")
    console.print(
        f"  chain     {'in-process EVM (test money; fresh at every start)' if chain.embedded else cfg.chain_url}"
        f"  chain id {chain.chain_id}"
    )
    console.print(f"  escrow    {chain.escrow.address}   relay account {chain.operator.address}")
    stale = app.state.market.bounties_on_other_escrows()
    if stale:
        console.print(
            f"[yellow]  {len(stale)} open/closed bounties were funded on another escrow "
            f"(an earlier in-process chain?): their payouts cannot be paid here[/]"
        )
    uvicorn.run(app, host=host, port=port, log_level="info")


def _serve_workers(cfg, host: str, port: int, workers: int, relay: bool) -> None:
    """N API workers (no background thread each), one relay process, one chain and escrow for all of them."""
    import signal
    import subprocess
    import sys

    from loopylab.market import migrate
    from loopylab.market.db import Store

    env = {
        "LOOPYLAB_MARKET_DB_URL": cfg.database_url,
        "LOOPYLAB_MARKET_HOME": str(cfg.home),
        "LOOPYLAB_MARKET_DOMAIN": cfg.domain,
        "LOOPYLAB_MARKET_BASE_URL": cfg.base_url,
        "LOOPYLAB_MARKET_ESCROW_ADDRESS": cfg.escrow_address,
        "LOOPYLAB_MARKET_RUN_BACKGROUND": "0",  # the sweeper and the relay run in the relay process only
    }
    devchain = None
    if cfg.chain_url:
        env["LOOPYLAB_CHAIN_URL"] = cfg.chain_url
    else:
        from loopylab.market.devchain import DevChain

        devchain = DevChain().start()
        env.update(devchain.env())
    os.environ.update(env)
    store = Store(cfg.database_url)
    migrate.upgrade(store)  # once, before the workers race to
    store.dispose()
    console.print(f"[bold]loopylab market[/] at http://{host}:{port}/ with {workers} workers")
    console.print(f"  database  {cfg.database_url}")
    if devchain:
        console.print(f"  chain     shared test chain at {devchain.url} (test money; fresh at every start)")
    console.print(f"  escrow    {env['LOOPYLAB_MARKET_ESCROW_ADDRESS']}")
    relay_proc = None
    if relay:
        relay_proc = subprocess.Popen([sys.executable, "-m", "loopylab.market.cli", "relay"], env=os.environ.copy())
        console.print(f"  relay     process {relay_proc.pid}")
    # the workers come from `python -m uvicorn`, a fresh interpreter: uvicorn.run(workers=N) called from this
    # CLI process saw every worker die at start (uvicorn 0.55)
    api = [sys.executable, "-m", "uvicorn", "loopylab.market.api:app_from_env", "--factory"]
    api += ["--workers", str(workers), "--host", host, "--port", str(port), "--log-level", "warning"]
    api_proc = subprocess.Popen(api, env=os.environ.copy())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the finally below stops what was started
    try:
        api_proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (api_proc, relay_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        if devchain is not None:
            devchain.stop()


def _config(config, db: str, home, chain_url: str, keystore: str, escrow: str, confirmations, **more):
    """The market's config from serve's and relay's shared options (empty strings mean "not given")."""
    from loopylab.market.config import MarketConfig

    return MarketConfig.load(
        config,
        db_url=db or None,
        home=home,
        chain_url=chain_url or None,
        keystore=keystore or None,
        escrow_address=escrow or None,
        confirmations=confirmations,
        **more,
    )


@market_app.command("relay")
def relay_cmd(
    db: str = typer.Option(
        "", help="Database URL (as for serve; default: $LOOPYLAB_MARKET_DB_URL or the SQLite file)."
    ),
    home: Path = typer.Option(None, help="Folder of market.db and blobs (as for serve)."),
    chain_url: str = typer.Option("", help="EVM JSON-RPC URL (the relay key from $LOOPYLAB_CHAIN_KEY or --keystore)."),
    keystore: str = typer.Option("", help="Encrypted keystore of the relay account."),
    escrow: str = typer.Option("", help="Escrow contract address on --chain-url."),
    confirmations: int = typer.Option(None, help="Blocks before a payout counts as final."),
    interval: float = typer.Option(None, help="Seconds between passes (default: background_interval_s)."),
    config: Path = typer.Option(None, help="TOML file with a [market] table."),
):
    """Run the payout relay and the sweeper (claim expiry, auto-approve, deadlines) as their own process.

    For multi-worker deployments: the API workers run with run_background off, and this one process signs and
    sends every payout (several relays would only contend for the same rows)."""
    import signal

    from loopylab.market.api import Background, build

    cfg = _config(config, db, home, chain_url, keystore, escrow, confirmations)
    if not cfg.chain_url:
        _fail("the relay needs the chain the API uses: --chain-url (or $LOOPYLAB_CHAIN_URL) and --escrow", 2)
    market, relay = build(cfg)
    bg = Background(market, relay, interval if interval is not None else cfg.background_interval_s)
    signal.signal(signal.SIGTERM, lambda *_: bg.stop.set())
    console.print(f"relay: {cfg.database_url} -> escrow {market.chain.escrow.address} on {cfg.chain_url}")
    try:
        bg.run()
    except KeyboardInterrupt:
        pass
    console.print(f"relay: stopped ({relay.stats})")


@market_app.command()
def deploy(
    chain_url: str = typer.Option(..., help="EVM JSON-RPC URL."),
    keystore: str = typer.Option("", help="Keystore of the deploying (operator) account; else $LOOPYLAB_CHAIN_KEY."),
):
    """Deploy the escrow contract once on a real chain; prints its address for `serve --escrow`."""
    from web3 import Web3

    from loopylab.market.chain import Chain, load_key

    w3 = Web3(Web3.HTTPProvider(chain_url))
    chain = Chain(w3, load_key(keystore=keystore))
    console.print(chain.deploy_escrow())


@market_app.command()
def reconcile(url: str = UrlOpt, key: str = KeyOpt):
    """Ask a running market to compare its DB payouts with the escrow's events and balance (signs in)."""
    c = _client(url, key)
    r = _run(lambda: c.request("GET", "/chain/reconcile"))
    if r.get("ok"):
        console.print("[green]books agree with the chain[/]")
        return
    for m in r.get("mismatches", [r.get("detail")]):
        console.print(f"[red]mismatch[/] {m}")
    raise typer.Exit(1)


# ---------------------------------------------------------------------- bounty (client side)


def _client(url: str, key: str, rig_key: str | None = None):
    from loopylab.market.client import MarketClient, load_key_file

    try:
        account = load_key_file(key)
        rig = load_key_file(rig_key) if rig_key else None
    except FileNotFoundError as e:
        _fail(f"no key file {e.filename}: create one with `loopylab bounty keygen` (or pass --key)", 2)
    c = MarketClient(url, account, rig)
    _current_context().call_on_close(c.close)  # no sockets left open when the command ends
    _run(c.login)
    return c


def _current_context():
    try:  # typer >= 0.20 vendors click
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context()


def _run(fn):
    """Turn HTTP errors into one readable line and exit code 1."""
    import httpx

    from loopylab.market.client import MarketHTTPError

    try:
        return fn()
    except MarketHTTPError as e:
        _fail(f"refused ({e.status}): {e.detail}")
    except httpx.TransportError as e:
        try:
            where = f" at {e.request.url}"
        except RuntimeError:  # no request attached
            where = ""
        _fail(f"cannot reach the market{where}: {e or type(e).__name__} (is `loopylab market serve` running?)")


def _eth(wei) -> str:
    v = Decimal(int(wei)) / Decimal(10**18)
    return f"{v.normalize():f} ETH" if v else "0 ETH"


def _wei(amount: str) -> int:
    """'0.01' or '0.01eth' -> wei; '123wei' -> 123."""
    a = amount.strip().lower()
    try:
        wei = int(a[:-3]) if a.endswith("wei") else int(Decimal(a.removesuffix("eth")) * 10**18)
    except (ValueError, ArithmeticError):
        raise typer.BadParameter(
            f"{amount!r} is not an amount: say 0.01 (ETH), 0.01eth or 5000wei", param_hint="--reward"
        ) from None
    if wei <= 0:
        raise typer.BadParameter(f"{amount!r}: a reward must be more than 0", param_hint="--reward")
    return wei


@bounty_app.command()
def keygen(key: str = KeyOpt):
    """Create a new key file (hex private key, mode 600). Use it for --key or --rig-key."""
    from loopylab.market.client import new_key_file

    try:
        console.print(f"{key}: address {new_key_file(key)}")
    except FileExistsError as e:
        _fail(str(e))


@bounty_app.command()
def faucet(url: str = UrlOpt, key: str = KeyOpt):
    """Embedded chain only: get 100 test ETH for your address (to fund bounties)."""
    c = _client(url, key)
    r = _run(lambda: c.request("POST", "/chain/faucet"))
    console.print(f"{r['address']} received {_eth(r['value_wei'])}")


@bounty_app.command()
def post(
    title: str = typer.Option(..., help="Short title."),
    reward: str = typer.Option(..., help="Reward per accepted submission: ETH ('0.01') or wei ('5000wei')."),
    slots: int = typer.Option(1, help="Number of submissions wanted."),
    spec: Path = typer.Option(
        None,
        help="TOML with description, [task_spec] and [[acceptance]] checks "
        "(the fields of market.terms.BountyTerms a spec may set).",
    ),
    description: str = typer.Option("", help="What to record and how."),
    topic: list[str] = typer.Option(None, help="Required MCAP topic (repeatable)."),
    hours: float = typer.Option(168, help="Deadline, hours from now."),
    auto_approve_hours: float = typer.Option(72, help="Submissions not reviewed in time are approved."),
    claim_minutes: float = typer.Option(60, help="How long a claimed slot is held."),
    fund: bool = typer.Option(True, help="Sign and send the escrow funding transaction now."),
    url: str = UrlOpt,
    key: str = KeyOpt,
):
    """Post a bounty and lock slots x reward in the escrow."""
    from loopylab.market.terms import load_spec
    from loopylab.world.config import ConfigError

    reward_wei = _wei(reward)
    terms: dict = {"description": description, "task_spec": {}, "acceptance": []}
    if spec:
        try:
            terms.update(load_spec(spec))
        except ConfigError as e:
            _fail(str(e), 2)
    if topic:
        terms["task_spec"]["topics"] = list(topic)
    c = _client(url, key)
    b = _run(
        lambda: c.post_bounty(
            title=title,
            reward_wei=reward_wei,
            slots=slots,
            deadline=time.time() + hours * 3600,
            auto_approve_s=auto_approve_hours * 3600,
            claim_ttl_s=claim_minutes * 60,
            **terms,
        )
    )
    console.print(f"bounty {b['id']} posted (draft)")
    if fund:
        b = _run(lambda: c.fund(b["id"]))
        console.print(f"bounty {b['id']} funded with {_eth(b['funded_wei'])}: [green]{b['state']}[/]")


@bounty_app.command("list")
def list_(state: str = typer.Option(None, help="draft|open|closed|refunded|cancelled"), url: str = UrlOpt):
    """Bounties on the market (no sign-in needed)."""
    import httpx

    with httpx.Client(timeout=30) as h:
        rows = _run(lambda: h.get(f"{url}/bounties", params={"state": state} if state else {}).json())
    t = Table("id", "title", "state", "reward", "free", "approved", "deadline")
    for b in rows:
        t.add_row(
            str(b["id"]),
            b["title"],
            b["state"],
            _eth(b["reward_wei"]),
            f"{b['slots_free']}/{b['slots']}",
            str(b["approved"]),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(b["deadline"])),
        )
    console.print(t)


@bounty_app.command()
def show(bounty_id: int, url: str = UrlOpt, key: str = KeyOpt):
    """A bounty's terms and the submissions you may see (all of them if it is yours)."""
    c = _client(url, key)
    b = _run(lambda: c.request("GET", f"/bounties/{bounty_id}"))
    console.print_json(
        json.dumps(
            {
                k: b[k]
                for k in (
                    "id",
                    "title",
                    "state",
                    "description",
                    "task_spec",
                    "acceptance",
                    "slots",
                    "slots_free",
                    "approved",
                    "reward_wei",
                    "escrow_address",
                )
            }
        )
    )
    subs = _run(lambda: c.request("GET", f"/bounties/{bounty_id}/submissions"))
    t = Table("submission", "contributor", "state", "failed checks / reason")
    for s in subs:
        t.add_row(str(s["id"]), s["contributor"], s["state"], s["reason"][:80])
    console.print(t)


@bounty_app.command()
def claim(bounty_id: int, url: str = UrlOpt, key: str = KeyOpt):
    """Reserve a slot on a bounty (held for the bounty's claim time)."""
    c = _client(url, key)
    r = _run(lambda: c.claim(bounty_id))
    console.print(
        f"claim {r['id']} on bounty {bounty_id}, held until "
        f"{time.strftime('%H:%M:%S UTC', time.gmtime(r['expires_at']))}"
    )


@bounty_app.command()
def submit(
    claim_id: int,
    folder: Path = typer.Argument(
        ..., exists=True, help="Recording folder from `loopylab run`, or one .mcap from `loopylab record`."
    ),
    rig_key: str = typer.Option(None, help="The rig's key file (signs the manifest); default: --key."),
    url: str = UrlOpt,
    key: str = KeyOpt,
):
    """Upload a recording folder, sign its manifest with the rig key and submit it on a claim."""
    from rich.progress import Progress

    from loopylab.market import manifest as mf

    c = _client(url, key, rig_key)
    _run(lambda: c.register_rig(label=Path(rig_key or key).name))
    bounty_id = _run(lambda: c.request("GET", f"/claims/{claim_id}"))["bounty_id"]
    m = mf.build(folder, bounty_id, c.rig.address)
    base = folder.parent if folder.is_file() else folder
    with Progress(console=console) as progress:
        task = progress.add_task("uploading", total=sum(f["size"] for f in m["files"]))
        for f in m["files"]:
            _run(lambda f=f: c.upload(base / f["path"]))
            progress.advance(task, f["size"])
    s = _run(lambda: c.submit(claim_id, m))
    for chk in s["checks"]:
        console.print(f"  {'[green]pass[/]' if chk['ok'] else '[red]FAIL[/]'} {chk['name']}: {chk['detail']}")
    console.print(f"submission {s['id']}: [bold]{s['state']}[/]")
    if s["state"] == "invalid":
        raise typer.Exit(1)


@bounty_app.command()
def review(
    submission_id: int,
    approve: bool = typer.Option(None, "--approve/--reject", help="Your decision."),
    reason: str = typer.Option("", help="Required with --reject: what the contributor should fix."),
    url: str = UrlOpt,
    key: str = KeyOpt,
):
    """Approve a submission (signs its EIP-712 payout approval; the payout is queued) or reject it with a reason."""
    if approve is None:
        _fail("say --approve or --reject", 2)
    c = _client(url, key)
    s = _run(lambda: c.review(submission_id, approve, reason))
    console.print(
        f"submission {submission_id}: {s['state']}" + (f", payout {s['payout']['state']}" if s["payout"] else "")
    )


@bounty_app.command()
def refund(bounty_id: int, url: str = UrlOpt, key: str = KeyOpt):
    """Take back a settled bounty's unspent escrow (signs escrow.refund; refused while payouts are unpaid)."""
    c = _client(url, key)
    b = _run(lambda: c.refund(bounty_id))
    console.print(f"bounty {bounty_id}: {b['state']}; run `loopylab bounty withdraw` to collect the refund")


@bounty_app.command()
def withdraw(url: str = UrlOpt, key: str = KeyOpt):
    """Send everything the escrow credited to you to your address, and list your payouts."""
    c = _client(url, key)
    p = _run(c.payouts)
    t = Table("bounty", "submission", "amount", "state", "tx")
    for x in p["payouts"]:
        t.add_row(str(x["bounty_id"]), str(x["submission_id"]), _eth(x["amount_wei"]), x["state"], x["tx_hash"][:18])
    console.print(t)
    if int(p["withdrawable_wei"]) == 0:
        console.print("nothing to withdraw yet")
        return
    r = _run(c.withdraw)
    console.print(f"withdrew {_eth(r['amount_wei'])} to {r['address']}")


if __name__ == "__main__":  # `python -m loopylab.market.cli relay`: how serve --workers starts the relay process
    market_app()
