"""Content-addressed blob storage: every upload is streamed to a temporary file while its sha256 is
computed, refused past the size limit, and then renamed to blobs/<aa>/<sha256> (atomic, so a crash
never leaves half a blob under a real name; the same content is stored once)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path


class TooLarge(ValueError):
    pass


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("blob id must be 64 lowercase hex digits (sha256)")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def _keep(self, upload: _Upload) -> tuple[str, int]:
        """Give the finished upload its content address (the same content is stored once)."""
        upload.close()
        digest = upload.hash.hexdigest()
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        if dest.exists():
            upload.tmp.unlink()
        else:
            upload.tmp.replace(dest)
        return digest, upload.size

    def put_chunks(self, chunks: Iterable[bytes], limit: int) -> tuple[str, int]:
        with _Upload(self.root / "tmp", limit) as upload:
            for chunk in chunks:
                upload.write(chunk)
            return self._keep(upload)

    async def put_stream(self, chunks: AsyncIterator[bytes], limit: int) -> tuple[str, int]:
        with _Upload(self.root / "tmp", limit) as upload:
            async for chunk in chunks:
                upload.write(chunk)
            return self._keep(upload)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_chunks([data], limit=len(data))


class _Upload:
    """One upload in progress: counted against the limit, hashed and written to a temporary file,
    which is removed if anything goes wrong before the blob is kept."""

    def __init__(self, tmp_dir: Path, limit: int):
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        self.file, self.tmp, self.limit = os.fdopen(fd, "wb"), Path(tmp), limit
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"upload larger than the limit of {self.limit} bytes")
        self.hash.update(chunk)
        self.file.write(chunk)

    def close(self) -> None:
        """Flush to disk (a kept blob survives a crash) and close."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def __enter__(self) -> _Upload:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
