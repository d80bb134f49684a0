"""Content-addressed blob storage: every upload is streamed to a temporary file while its sha256 is
computed, refused past the size limit, and then renamed to blobs/<aa>/<sha256> (atomic, so a crash
never leaves half a blob under a real name; the same content is stored once)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterable


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

    def _begin(self):
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        return os.fdopen(fd, "wb"), Path(tmp), hashlib.sha256()

    def _finish(self, f, tmp: Path, h) -> tuple[str, int]:
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
        f.close()
        digest = h.hexdigest()
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        if dest.exists():
            tmp.unlink()
        else:
            tmp.replace(dest)
        return digest, size

    def put_chunks(self, chunks: Iterable[bytes], limit: int) -> tuple[str, int]:
        f, tmp, h = self._begin()
        try:
            n = 0
            for chunk in chunks:
                n += len(chunk)
                if n > limit:
                    raise TooLarge(f"upload larger than the limit of {limit} bytes")
                h.update(chunk)
                f.write(chunk)
            return self._finish(f, tmp, h)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    async def put_stream(self, chunks: AsyncIterator[bytes], limit: int) -> tuple[str, int]:
        f, tmp, h = self._begin()
        try:
            n = 0
            async for chunk in chunks:
                n += len(chunk)
                if n > limit:
                    raise TooLarge(f"upload larger than the limit of {limit} bytes")
                h.update(chunk)
                f.write(chunk)
            return self._finish(f, tmp, h)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_chunks([data], limit=len(data))
