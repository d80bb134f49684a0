"""Submission manifests: which files (path, sha256, size) a rig recorded for which bounty, signed by
the rig's key (EIP-191 over the canonical JSON), so data cannot be swapped after recording."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

MANIFEST_VERSION = 1
DATA_SUFFIXES = (".mcap", ".nb", ".notebook", ".txt", ".json", ".toml", ".csv", ".md")


def canonical(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_sha256(manifest: dict) -> str:
    return hashlib.sha256(canonical(manifest)).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(folder: Path, bounty_id: int, rig: str) -> dict:
    """The manifest of a recording folder (from `loopylab run`), or of one file (`loopylab record -o x.mcap`)."""
    folder = Path(folder)
    if folder.is_file():
        folder, files = folder.parent, [folder]
    else:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no files")
    return {
        "version": MANIFEST_VERSION,
        "bounty_id": int(bounty_id),
        "rig": rig,
        "created_at": int(time.time()),
        "files": [
            {"path": p.relative_to(folder).as_posix(), "sha256": file_sha256(p), "size": p.stat().st_size}
            for p in files
        ],
    }


def sign(manifest: dict, rig_account) -> str:
    sig = rig_account.sign_message(encode_defunct(primitive=canonical(manifest))).signature
    return "0x" + sig.hex().removeprefix("0x")


def signer(manifest: dict, signature: str) -> str:
    return Account.recover_message(encode_defunct(primitive=canonical(manifest)), signature=signature)


def rig_registration_text(rig: str, owner: str) -> str:
    """What a rig key signs to prove it belongs to an owner's account."""
    return f"loopylab rig {rig} belongs to {owner}"


def rig_attestation_text(rig: str, device: str) -> str:
    """What a trusted attester signs (EIP-191) to vouch that a rig key lives in one physical device: `device` is
    the device's identity as the attester knows it (a secure element's serial, the hash of its factory
    calibration)."""
    return f"loopylab rig attestation\nrig: {rig}\ndevice: {device}"
