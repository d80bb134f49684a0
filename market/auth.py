"""Server side of Sign-In with Ethereum: single-use nonces with expiry, and sessions bound to the
address that signed. Nonces are burned with one conditional UPDATE, so a replay (even a concurrent
one) finds the nonce used; only a hash of each session token is stored."""

from __future__ import annotations

import hashlib
import secrets
import string
import time

from sqlalchemy import delete, update

from loopylab.market import siwe
from loopylab.market.db import AuthNonce, AuthSession, Store

_ALPHABET = string.ascii_letters + string.digits


class AuthError(ValueError):
    """Sign-in refused; the message says why (the API answers 401)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    def __init__(
        self,
        store: Store,
        domain: str,
        chain_id: int | None,
        nonce_ttl_s: float = 300.0,
        session_ttl_s: float = 86400.0,
        skew_s: float = 60.0,
    ):
        self.store, self.domain, self.chain_id = store, domain, chain_id
        self.nonce_ttl_s, self.session_ttl_s, self.skew_s = nonce_ttl_s, session_ttl_s, skew_s

    def new_nonce(self) -> tuple[str, float]:
        nonce = "".join(secrets.choice(_ALPHABET) for _ in range(17))
        expires = time.time() + self.nonce_ttl_s
        with self.store.write() as s:
            s.add(AuthNonce(nonce=nonce, expires_at=expires, used_at=0.0))
            # keep the table small: forget nonces that expired an hour ago
            s.execute(delete(AuthNonce).where(AuthNonce.expires_at < time.time() - 3600))
        return nonce, expires

    def login(self, message: str, signature: str) -> tuple[str, str, float]:
        """Verify a signed EIP-4361 message; returns (session token, address, expiry)."""
        now = time.time()
        try:
            msg = siwe.verify(
                message,
                signature,
                domain=tuple(self.domain.split(",")),
                now=now,
                chain_id=self.chain_id,
                skew_s=self.skew_s,
            )
        except siwe.SiweError as e:
            raise AuthError(str(e)) from None
        with self.store.write() as s:
            burned = s.execute(
                update(AuthNonce)
                .where(AuthNonce.nonce == msg.nonce, AuthNonce.used_at == 0.0, AuthNonce.expires_at > now)
                .values(used_at=now)
            ).rowcount
            if burned != 1:
                row = s.get(AuthNonce, msg.nonce)
                if row is None:
                    raise AuthError("unknown nonce: ask POST /auth/nonce for one")
                if row.used_at:
                    raise AuthError("nonce already used (replayed sign-in)")
                raise AuthError("nonce expired: ask for a new one")
            token = secrets.token_urlsafe(32)
            expires = now + self.session_ttl_s
            address = siwe.Web3.to_checksum_address(msg.address)
            s.add(AuthSession(token_hash=_hash(token), address=address, expires_at=expires))
        return token, address, expires

    def address_of(self, token: str | None) -> str | None:
        if not token:
            return None
        with self.store.read() as s:
            row = s.get(AuthSession, _hash(token))
            if row is None or row.expires_at <= time.time():
                return None
            return row.address

    def logout(self, token: str) -> None:
        with self.store.write() as s:
            s.execute(delete(AuthSession).where(AuthSession.token_hash == _hash(token)))
