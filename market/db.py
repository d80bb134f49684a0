"""SQL store: the tables (SQLAlchemy 2 declarative), engines and transactions.

SQLite is the default (WAL, one writer at a time: write transactions start with BEGIN IMMEDIATE so two
claims never both read "9 of 10 slots taken"); PostgreSQL by URL (rows locked with SELECT ... FOR
UPDATE). The schema is created and upgraded only by the Alembic migrations in market/migrations/.
Times are unix seconds (float); wei amounts are decimal strings (they overflow 64-bit integers).
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Wei(TypeDecorator):
    """Non-negative integer of any size, stored as a decimal string."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(int(value))

    def process_result_value(self, value, dialect):
        return None if value is None else int(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[type, Any]] = {dict: JSON, list: JSON}


def now() -> float:
    return time.time()


class Bounty(Base):
    __tablename__ = "bounties"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester: Mapped[str] = mapped_column(String(42), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    task_spec: Mapped[dict] = mapped_column(JSON, default=dict)  # topics, protocol, data schema
    acceptance: Mapped[list] = mapped_column(JSON, default=list)  # plausibility checks (verify.py)
    slots: Mapped[int] = mapped_column(Integer)
    reward_wei: Mapped[int] = mapped_column(Wei)
    deadline: Mapped[float] = mapped_column(Float)
    auto_approve_s: Mapped[float] = mapped_column(Float)
    claim_ttl_s: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    funded_wei: Mapped[int] = mapped_column(Wei, default=0)
    escrow_address: Mapped[str] = mapped_column(String(42), default="")
    refund_after: Mapped[float] = mapped_column(Float, default=0.0)  # on-chain deadline for refunds


class Claim(Base):
    __tablename__ = "claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bounty_id: Mapped[int] = mapped_column(ForeignKey("bounties.id"))
    contributor: Mapped[str] = mapped_column(String(42), index=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float)
    rig: Mapped[str] = mapped_column(String(42), default="")  # the verified rig the slot is for ("" in open mode)
    device: Mapped[str | None] = mapped_column(String(66), nullable=True)  # its attested device: one slot each
    __table_args__ = (Index("ix_claims_bounty_state", "bounty_id", "state"),)


class Rig(Base):
    __tablename__ = "rigs"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # a verified rig: a trusted attester signed that this key is device `device` (one key per device)
    device: Mapped[str | None] = mapped_column(String(66), nullable=True, unique=True)
    attested_by: Mapped[str] = mapped_column(String(42), default="")


class Blob(Base):
    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class BlobOwner(Base):
    """Who uploaded which content (the same bytes may be uploaded by several people)."""

    __tablename__ = "blob_owners"
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), primary_key=True)


class Submission(Base):
    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    bounty_id: Mapped[int] = mapped_column(ForeignKey("bounties.id"), index=True)
    contributor: Mapped[str] = mapped_column(String(42), index=True)
    rig: Mapped[str] = mapped_column(String(42))
    manifest: Mapped[dict] = mapped_column(JSON)
    manifest_sha256: Mapped[str] = mapped_column(String(64), index=True)
    signature: Mapped[str] = mapped_column(String(140))
    state: Mapped[str] = mapped_column(String(16), index=True)
    checks: Mapped[list] = mapped_column(JSON, default=list)  # [{name, ok, detail}]
    fingerprint: Mapped[dict] = mapped_column(JSON, default=dict)  # near-duplicate fingerprint (verify/dupes.py)
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[str] = mapped_column(String(42), default="")  # address, or "auto"
    created_at: Mapped[float] = mapped_column(Float, default=now)
    reviewed_at: Mapped[float] = mapped_column(Float, default=0.0)


class FingerprintBand(Base):
    """The near-duplicate index: each counted submission's LSH keys (verify/dupes.bands), so a new submission
    loads only the earlier ones sharing a key, not every fingerprint."""

    __tablename__ = "fingerprint_bands"
    band: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)


class SubmissionFile(Base):
    __tablename__ = "submission_files"
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class Payout(Base):
    """The outbox row of one approved submission, then the record of its transaction."""

    __tablename__ = "payouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payout_id: Mapped[str] = mapped_column(String(66), unique=True)  # keccak(bounty_id, submission_id)
    bounty_id: Mapped[int] = mapped_column(ForeignKey("bounties.id"), index=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    payee: Mapped[str] = mapped_column(String(42), index=True)
    amount_wei: Mapped[int] = mapped_column(Wei)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    sender: Mapped[str] = mapped_column(String(42), default="")
    tx_nonce: Mapped[int] = mapped_column(Integer, default=-1)
    raw_tx: Mapped[str] = mapped_column(Text, default="")
    tx_hash: Mapped[str] = mapped_column(String(66), default="")
    block_number: Mapped[int] = mapped_column(Integer, default=-1)
    block_hash: Mapped[str] = mapped_column(String(66), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    approval: Mapped[str] = mapped_column(String(140), default="")  # the requester's EIP-712 Release signature
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # signed transactions that reverted
    signed_block: Mapped[int] = mapped_column(Integer, default=-1)  # chain head when first signed: where
    # the search for its Released event starts
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Reputation(Base):
    __tablename__ = "reputations"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    earned_wei: Mapped[int] = mapped_column(Wei, default=0)


class AuthNonce(Base):
    __tablename__ = "auth_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float] = mapped_column(Float, default=0.0)


class AuthSession(Base):
    __tablename__ = "auth_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    expires_at: Mapped[float] = mapped_column(Float)


class ChainAccount(Base):
    """The relay's next transaction nonce per sender: a DB counter, so a crash never reuses one."""

    __tablename__ = "chain_accounts"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(Integer)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# ---------------------------------------------------------------- engines and transactions


class Store:
    """Engines and sessions for one database URL. Use `with store.write() as s:` for anything that
    changes rows (one transaction, committed on exit) and `with store.read() as s:` for queries."""

    def __init__(self, url: str, pool_size: int = 5, connect_args: dict | None = None):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {"future": True}
        if self.is_sqlite:
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False, **(connect_args or {})}
            self.engine = _sqlite_engine(url, immediate=True, **kwargs)
            self.read_engine = _sqlite_engine(url, immediate=False, **kwargs)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=20, pool_pre_ping=True)
            if connect_args:
                kwargs["connect_args"] = connect_args
            self.engine = create_engine(url, **kwargs)
            self.read_engine = self.engine
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        _count_generations(self._write)

    @contextlib.contextmanager
    def write(self):
        with self._write() as s, s.begin():
            yield s

    @contextlib.contextmanager
    def read(self):
        with self._read() as s:
            yield s

    def get_setting(self, key: str, default: str = "") -> str:
        with self.read() as s:
            row = s.get(Setting, key)
            return row.value if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as s:
            s.merge(Setting(key=key, value=value))

    def generation(self) -> str | None:
        """A token that changes whenever a write transaction changes bounties, claims or payouts (any worker
        process, the relay process included): what caches of listings compare. None before `seed_generation`."""
        with self.read_engine.connect() as c:
            return c.execute(_GENERATION_SQL).scalar()

    def seed_generation(self) -> None:
        """Create the generation row (once per database; a concurrent seeder's duplicate is ignored)."""
        from sqlalchemy.exc import IntegrityError

        with contextlib.suppress(IntegrityError), self.write() as s:
            if s.get(Setting, GENERATION) is None:
                s.add(Setting(key=GENERATION, value=secrets.token_hex(8)))

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


GENERATION = "generation"
WATCHED_TABLES = frozenset({"bounties", "claims", "payouts"})  # what a bounty listing is made of
_GENERATION_SQL = text("SELECT value FROM settings WHERE key = 'generation'")


def _count_generations(factory: sessionmaker) -> None:
    """Write sessions that touch WATCHED_TABLES replace the generation token in the same transaction, so a
    reader that sees the new rows sees the new token too (and a cached listing built before is dropped)."""

    @event.listens_for(factory, "after_flush")
    def _flushed(session, _ctx):
        for obj in itertools.chain(session.new, session.dirty, session.deleted):
            if getattr(obj, "__tablename__", None) in WATCHED_TABLES:
                session.info["changed"] = True
                return

    @event.listens_for(factory, "do_orm_execute")
    def _executed(state):
        if state.is_insert or state.is_update or state.is_delete:
            if getattr(state.statement.table, "name", None) in WATCHED_TABLES:
                state.session.info["changed"] = True

    @event.listens_for(factory, "before_commit")
    def _committing(session):
        session.flush()  # the last flush runs after this event: see what it writes now
        if session.info.pop("changed", False):
            session.execute(update(Setting).where(Setting.key == GENERATION).values(value=secrets.token_hex(8)))


def _sqlite_engine(url: str, immediate: bool, **kwargs) -> Engine:
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's is broken)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def lock(session: Session, model, key):
    """Load a row for update: SELECT ... FOR UPDATE on PostgreSQL; on SQLite the IMMEDIATE write
    transaction already holds the database's write lock."""
    from sqlalchemy import select

    pk = model.__mapper__.primary_key[0]
    return session.execute(select(model).where(pk == key).with_for_update()).scalar_one_or_none()
