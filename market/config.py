"""Market settings: one dataclass, defaults that run everything embedded on one machine.

Environment variables override the defaults (`LOOPYLAB_MARKET_DB`, `LOOPYLAB_CHAIN_URL`, ...), and
`MarketConfig.load(path)` reads the same names from a TOML file's `[market]` table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from loopylab.world.config import check_keys, read_table


def _default_home() -> Path:
    return Path(os.environ.get("LOOPYLAB_MARKET_HOME", Path.home() / ".loopylab" / "market"))


@dataclass
class MarketConfig:
    db_url: str = ""  # empty: SQLite file under `home`
    home: Path = field(default_factory=_default_home)  # blobs/ and market.db live here
    domain: str = "localhost:8000"  # SIWE domain(s) this server answers for: host[:port][,host[:port]...]
    base_url: str = "http://localhost:8000"
    nonce_ttl_s: float = 300.0  # SIWE nonce lifetime
    session_ttl_s: float = 24 * 3600.0
    clock_skew_s: float = 60.0  # tolerated difference in SIWE "Issued At"
    max_upload_bytes: int = 256 * 1024 * 1024
    default_claim_ttl_s: float = 3600.0
    max_slots: int = 10_000
    # verified rigs: addresses (comma-separated) whose signed attestation makes a rig key a verified device
    # (its maker, a calibration lab, the market's onboarding). With any set, a slot needs a verified rig and a
    # device fills one slot per bounty, however many keys or accounts its owner has. Empty: an open market,
    # where a slot is one per account (and three keys can be three "rigs").
    rig_attesters: str = ""
    # chain: empty URL = in-process EVM (eth-tester / py-evm)
    chain_url: str = ""
    chain_key_env: str = "LOOPYLAB_CHAIN_KEY"  # hex private key of the relay (operator) account
    keystore: str = ""  # or an encrypted keystore file ...
    keystore_password_env: str = "LOOPYLAB_KEYSTORE_PASSWORD"  # ... and where its password is
    escrow_address: str = ""  # empty: deploy a fresh escrow (embedded chain) on start
    confirmations: int = 0  # blocks on top of the receipt before a payout is final
    background_interval_s: float = 1.0  # sweeper (claim expiry, auto-approve) and relay period
    run_background: bool = True

    def __post_init__(self):
        self.home = Path(self.home)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'market.db'}"

    @property
    def attesters(self) -> set[str]:
        from web3 import Web3

        return {Web3.to_checksum_address(a.strip()) for a in self.rig_attesters.split(",") if a.strip()}

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> MarketConfig:
        cfg = cls()
        names = {f.name: f.type for f in fields(cls)}
        values = {}
        if path is not None:
            data = read_table(path, "market")
            check_keys(data, names, f"{path}: [market]")
            values.update(data)
        for name in names:
            env = os.environ.get(f"LOOPYLAB_MARKET_{name.upper()}")
            if env is not None:
                default = getattr(cfg, name)
                values[name] = (
                    type(default)(env) if not isinstance(default, bool) else env.lower() in ("1", "true", "yes")
                )
        if os.environ.get("LOOPYLAB_CHAIN_URL"):
            values.setdefault("chain_url", os.environ["LOOPYLAB_CHAIN_URL"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cfg, **values)
