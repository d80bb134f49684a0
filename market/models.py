"""The API's request and response bodies (pydantic). The bounty's models are built from `terms.BountyTerms`, the
one definition of a bounty's terms; the rest are written here once. The OpenAPI document at /openapi.json is
generated from these, so every route's answer is typed there.

A response model forbids extra keys too: a service view that grows a key the model does not list fails the
tests loudly instead of vanishing from the API.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopylab.market.terms import BountyTerms, Strict, derive


class Out(BaseModel):
    """A response body: every key always present (so the OpenAPI schema marks them all required)."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


# ---------------------------------------------------------------------- bounties (from the one definition)

BountyPatch = derive("BountyPatch", optional=True, doc="Edit a draft bounty: name only the terms that change.")


class _BountyKey(Out):
    id: int
    requester: str


class BountyOut(BountyTerms, _BountyKey):
    """A bounty: its id and requester, its terms, then what the market knows about it. (Field order follows
    the bases right to left: id, requester, the terms, then these.)"""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)
    state: str
    created_at: float
    slots_taken: int
    slots_free: int
    approved: int
    funded_wei: str = Field(description="what the requester put into the escrow for this bounty")
    paid_wei: str = Field(description="payouts released on chain (credited to their payees)")
    owed_wei: str = Field(description="approved payouts not yet released on chain")
    escrow_wei: str = Field(
        description="what the escrow still holds for this bounty: funded less paid (0 once refunded)"
    )
    escrow_address: str
    refund_after: float


class FundIn(Strict):
    raw_tx: str | None = Field(
        None,
        max_length=20_000,
        pattern=r"^(0x)?[0-9a-fA-F]*$",
        description="the requester's signed escrow.fund transaction; omit if already sent. "
        "The server broadcasts only the requester's own call of this "
        "bounty's fund (or refund) on its escrow.",
    )


class RefundIn(FundIn):
    """The requester's signed escrow.refund(bounty_id) transaction (from GET /bounties/{id}/refunding)."""


class TxOut(Out):
    """An escrow transaction for the requester's wallet to sign (from the requester's own address)."""

    to: str
    value: str
    data: str
    chain_id: int
    nonce: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    gas: int


class RefundingOut(TxOut):
    """escrow.announce_refund(bounty_id) until the refund is announced, then escrow.refund(bounty_id)."""

    function: str = Field(description="announce_refund (starts the escrow's notice) or refund")
    refund_at: int = Field(description="unix time from which the escrow refunds (0: not announced yet)")


class FundingOut(TxOut):
    """The escrow.fund(bounty_id, refund_after) transaction the requester's wallet signs."""

    refund_after: int


# ---------------------------------------------------------------------- sign-in


class LoginIn(Strict):
    message: str = Field(max_length=8192, description="the EIP-4361 message text that was signed")
    signature: str = Field(max_length=200, description="0x-prefixed 65-byte EIP-191 signature")


class NonceIn(Strict):
    address: str | None = Field(
        None,
        max_length=42,
        pattern="^0x[0-9a-fA-F]{40}$",
        description="the account about to sign in: its EIP-55 spelling comes back in `address` "
        "(wallets report lower-case addresses; the EIP-4361 message must carry the checksummed one)",
    )


class NonceOut(Out):
    nonce: str
    expires_at: float
    domain: str
    uri: str
    chain_id: int
    address: str = Field("", description="the EIP-55 form of the address sent, if one was")


class LoginOut(Out):
    token: str
    address: str
    expires_at: float


class OkOut(Out):
    ok: bool


class AddressOut(Out):
    address: str


# ---------------------------------------------------------------------- claims, rigs, uploads, submissions


class ClaimOut(Out):
    id: int
    bounty_id: int
    state: str
    created_at: float
    expires_at: float
    rig: str = Field("", description="the verified rig the slot is for (empty in an open market)")


class AttestationIn(Strict):
    device: str = Field(min_length=1, max_length=66, description="the device's identity as the attester knows it")
    signature: str = Field(
        max_length=200,
        description="the attester's EIP-191 signature of 'loopylab rig attestation\\nrig: <rig>\\ndevice: <device>'",
    )


class RigIn(Strict):
    address: str = Field(max_length=42)
    signature: str = Field(
        max_length=200, description="rig key's EIP-191 signature of 'loopylab rig <rig> belongs to <your address>'"
    )
    label: str = Field("", max_length=200)
    attestation: AttestationIn | None = Field(
        None, description="a trusted attester's word that this key is one physical device (a verified rig)"
    )


class ClaimIn(Strict):
    rig: str | None = Field(None, max_length=42, description="the verified rig the slot is for")


class RigOut(Out):
    address: str
    owner: str
    label: str
    device: str | None = Field(None, description="the attested device (null: not verified)")
    attested_by: str = ""


class BlobOut(Out):
    sha256: str
    size: int


class SubmissionIn(Strict):
    manifest: dict[str, Any] = Field(description="{version, bounty_id, rig, created_at, files: [{path, sha256, size}]}")
    signature: str = Field(max_length=200, description="rig key's EIP-191 signature of the canonical manifest JSON")


_SIG = r"^0x[0-9a-fA-F]{130}$"


class ReviewIn(Strict):
    approve: bool
    reason: str = Field("", max_length=2000, description="required when rejecting")
    signature: str | None = Field(
        None,
        pattern=_SIG,
        description="required when approving: the requester's "
        "EIP-712 signature of the Release approval from GET /submissions/{id}/approval",
    )


class ApprovalIn(Strict):
    signature: str = Field(pattern=_SIG, description="the requester's EIP-712 signature of the Release approval")


class ApprovalOut(Out):
    """EIP-712 typed data (eth_signTypedData_v4's argument): the requester's approval of one payout."""

    types: dict[str, list[dict[str, str]]]
    primaryType: str
    domain: dict[str, Any]
    message: dict[str, Any]


class PayoutOut(Out):
    payout_id: str
    bounty_id: int
    submission_id: int
    payee: str
    amount_wei: str
    state: str
    tx_hash: str
    block_number: int
    error: str
    approval: str = Field(
        description="the requester's signed Release approval: anyone, the payee too, may "
        "submit it to the escrow's release()"
    )
    created_at: float


class SubmissionOut(Out):
    id: int
    bounty_id: int
    bounty_title: str
    claim_id: int
    contributor: str
    rig: str
    state: str
    checks: list[dict[str, Any]] = Field(
        description="[{name, ok, detail, status}], the verification pipeline's results; status pass | fail | "
        "unavailable (a check that could not run here, e.g. the twin replay without its plug-in)"
    )
    reason: str
    reviewed_by: str = Field(description="the reviewer's address, or 'auto'")
    created_at: float
    reviewed_at: float
    manifest: dict[str, Any]
    auto_approve_at: float | None = Field(description="while pending review: when it is approved unless reviewed")
    payout: PayoutOut | None


# ---------------------------------------------------------------------- money, standings, chain


class WithdrawOut(Out):
    address: str
    amount_wei: str


class PayoutsOut(Out):
    payouts: list[PayoutOut]
    withdrawable_wei: str
    paid_wei: str


class LeaderOut(Out):
    rank: int
    address: str
    approved: int
    rejected: int
    invalid: int
    earned_wei: str
    reputation: float


class ChainOut(Out):
    chain_id: int
    escrow_address: str
    embedded: bool
    operator: str
    confirmations: int


class FaucetOut(Out):
    address: str
    value_wei: str


class ReconcileOut(Out):
    ok: bool
    mismatches: list[str]


# ---------------------------------------------------------------------- errors


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loc: list[str] = Field(description="where: 'body', 'path', 'query' and the field names")
    msg: str


class ErrorOut(BaseModel):
    """Every error answer (4xx, and 503 when the server has no chain): `detail` says what went wrong; a 422
    from a malformed request also lists each field it refused in `errors`."""

    model_config = ConfigDict(extra="forbid")
    detail: str
    errors: list[ErrorItem] | None = None


class HealthOut(Out):
    ok: bool
    time: float
