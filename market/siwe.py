"""Sign-In with Ethereum (EIP-4361) messages, built, parsed and verified with eth-account alone
(the PyPI `siwe` package breaks with current `abnf` and downgrades eth-account).

The text is signed as an EIP-191 personal message; the server checks the domain, the times, the chain,
that the signature recovers to the stated address, and then burns the nonce (auth.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

HEADER = " wants you to sign in with your Ethereum account:"
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_FIELDS = (
    ("uri", "URI"),
    ("version", "Version"),
    ("chain_id", "Chain ID"),
    ("nonce", "Nonce"),
    ("issued_at", "Issued At"),
    ("expiration_time", "Expiration Time"),
    ("not_before", "Not Before"),
    ("request_id", "Request ID"),
)


class SiweError(ValueError):
    """The message is malformed or does not verify; the text says which check failed."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SiweError(f"bad RFC 3339 time {text!r}") from None


@dataclass
class SiweMessage:
    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    statement: str = ""
    version: str = "1"
    expiration_time: str = ""
    not_before: str = ""
    request_id: str = ""
    resources: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [f"{self.domain}{HEADER}", self.address, ""]
        if self.statement:
            lines += [self.statement, ""]
        else:
            lines += [""]
        for attr, label in _FIELDS:
            value = getattr(self, attr)
            if value not in ("", None):
                lines.append(f"{label}: {value}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        if not isinstance(text, str) or len(text) > 8192:
            raise SiweError("message must be text of at most 8192 characters")
        lines = text.split("\n")
        if len(lines) < 7 or not lines[0].endswith(HEADER):
            raise SiweError(f"first line must be '<domain>{HEADER}'")
        domain = lines[0][: -len(HEADER)]
        if not domain or " " in domain:
            raise SiweError("missing or malformed domain")
        address = lines[1]
        if not _ADDRESS.match(address):
            raise SiweError("second line must be a 0x-prefixed 40-hex-digit address")
        if lines[2] != "":
            raise SiweError("expected an empty line after the address")
        i, statement = 3, ""
        if lines[3] != "":
            statement, i = lines[3], 4
            if lines[4] != "":
                raise SiweError("expected an empty line after the statement")
        i += 1
        labels = {label: attr for attr, label in _FIELDS}
        values: dict = {}
        resources: list[str] = []
        while i < len(lines):
            line = lines[i]
            if line == "Resources:":
                resources = [r[2:] for r in lines[i + 1 :] if r.startswith("- ")]
                if len(resources) != len(lines) - i - 1:
                    raise SiweError("each resource line must start with '- '")
                break
            label, sep, value = line.partition(": ")
            if not sep or label not in labels or labels[label] in values:
                raise SiweError(f"unexpected line {line[:60]!r}")
            values[labels[label]] = value
            i += 1
        for required in ("uri", "version", "chain_id", "nonce", "issued_at"):
            if required not in values:
                raise SiweError(f"missing field {dict(_FIELDS)[required]!r}")
        if values["version"] != "1":
            raise SiweError("Version must be 1")
        if not values["chain_id"].isdigit():
            raise SiweError("Chain ID must be a decimal integer")
        if not _NONCE.match(values["nonce"]):
            raise SiweError("Nonce must be at least 8 alphanumeric characters")
        values["chain_id"] = int(values["chain_id"])
        for t in ("issued_at", "expiration_time", "not_before"):
            if values.get(t):
                parse_time(values[t])
        return cls(domain=domain, address=address, statement=statement, resources=resources, **values)


def sign(message: SiweMessage, account) -> str:
    """What a wallet does: EIP-191 personal_sign of the message text."""
    return "0x" + account.sign_message(encode_defunct(text=message.to_text())).signature.hex().removeprefix("0x")


def recover(text: str, signature: str) -> str:
    try:
        return Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as e:  # malformed signatures raise several different error types
        raise SiweError(f"signature does not decode: {e}") from None


def check_uri(msg: SiweMessage) -> None:
    """The URI must be an http(s) address on the signed domain: a message signed for one origin's page says so,
    and cannot be presented as a sign-in to a resource elsewhere."""
    uri = urlsplit(msg.uri)
    if uri.scheme not in ("http", "https") or uri.netloc != msg.domain:
        raise SiweError(f"URI {msg.uri[:80]!r} is not an http(s) address on the signed domain {msg.domain!r}")


def verify(
    text: str,
    signature: str,
    *,
    domain: str | tuple[str, ...],
    now: float,
    chain_id: int | None = None,
    skew_s: float = 60.0,
) -> SiweMessage:
    """Every check except the nonce (which the caller burns atomically). Returns the parsed message.
    `domain` may list every host[:port] the server is reachable under."""
    msg = SiweMessage.parse(text)
    domains = (domain,) if isinstance(domain, str) else tuple(domain)
    if msg.domain not in domains:
        raise SiweError(f"message is for domain {msg.domain!r}, this server is {' or '.join(map(repr, domains))}")
    if chain_id is not None and msg.chain_id != chain_id:
        raise SiweError(f"message is for chain {msg.chain_id}, this server uses {chain_id}")
    if parse_time(msg.issued_at) > now + skew_s:
        raise SiweError("Issued At is in the future")
    if msg.expiration_time and parse_time(msg.expiration_time) <= now:
        raise SiweError("message has expired")
    if msg.not_before and parse_time(msg.not_before) > now:
        raise SiweError("message is not valid yet (Not Before)")
    check_uri(msg)
    if msg.address != Web3.to_checksum_address(msg.address):
        # EIP-4361: the address MUST be EIP-55 mixed-case; one spelling per account keeps sessions, claims and
        # payouts keyed alike
        raise SiweError(
            f"address {msg.address} is not EIP-55 checksummed (expected {Web3.to_checksum_address(msg.address)})"
        )
    signer = recover(text, signature)
    if signer != msg.address:
        raise SiweError("signature was made by another address than the one in the message")
    return msg
