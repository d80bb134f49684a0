"""What a contributor's rig brings: its signing key (registered to the contributor's account) and its files
(streamed up, stored under their sha256; downloaded by their uploader or the reviewing requester)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from loopylab.market.models import BlobOut, RigIn, RigOut
from loopylab.market.routes.deps import ConfigDep, MarketDep, User
from loopylab.market.service import MarketError
from loopylab.market.storage import TooLarge

router = APIRouter()
RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/rigs",
    status_code=201,
    tags=["rigs"],
    summary="Register a rig's signing key to your account",
    response_model=RigOut,
)
def register_rig(body: RigIn, address: User, market: MarketDep):
    att = body.attestation.model_dump() if body.attestation else None
    r = market.register_rig(address, body.address, body.signature, body.label, att)
    return {"address": r.address, "owner": r.owner, "label": r.label, "device": r.device, "attested_by": r.attested_by}


@router.put(
    "/blobs",
    status_code=201,
    tags=["uploads"],
    summary="Upload one file (raw body, streamed); stored under its sha256",
    openapi_extra=RAW_BODY,
    response_model=BlobOut,
)
async def upload(request: Request, address: User, market: MarketDep, config: ConfigDep):
    limit = config.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise MarketError(f"upload larger than the limit of {limit} bytes", 413)
    try:
        sha, size = await market.blobs.put_stream(request.stream(), limit)
    except TooLarge as e:
        raise MarketError(str(e), 413) from None
    await run_in_threadpool(market.record_upload, address, sha, size)
    return {"sha256": sha, "size": size}


@router.get(
    "/blobs/{sha256}",
    tags=["uploads"],
    summary="Download a file you uploaded or were submitted",
    response_class=FileResponse,
)
def download(sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")], address: User, market: MarketDep):
    return FileResponse(market.blob_for(address, sha256), media_type="application/octet-stream")
