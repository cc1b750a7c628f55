"""Input images kept for later: Re-roll and restart recovery need a job's inputs after Discord's
attachment links have expired (about a day). Stored by content hash beside the database, so the
same picture edited ten times is kept once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

_REF_CHARS = frozenset("0123456789abcdef")
_PNG = b"\x89PNG\r\n\x1a\n"


class InputStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        if len(ref) != 64 or not set(ref) <= _REF_CHARS:  # refs come from the database: still check
            raise ValueError("not an input reference")
        return self.root / ref[:2] / ref

    def _put(self, data: bytes) -> str:
        ref = hashlib.sha256(data).hexdigest()
        path = self._path(ref)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unique per call: jobs with the same picture store it from several threads at once.
            tmp = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: a crash never leaves half a file under the real name
        return ref

    async def put_data_uris(self, uris: Sequence[str]) -> tuple[str, ...]:
        def work() -> tuple[str, ...]:
            return tuple(self._put(base64.b64decode(u.split(",", 1)[1])) for u in uris)

        return await asyncio.to_thread(work) if uris else ()

    async def put_many(self, blobs: Sequence[bytes]) -> tuple[str, ...]:
        """Store images (a job's results, kept until they are delivered); returns their refs."""

        def work() -> tuple[str, ...]:
            return tuple(self._put(b) for b in blobs)

        return await asyncio.to_thread(work) if blobs else ()

    async def data_uris(self, refs: Sequence[str]) -> list[str] | None:
        """The stored inputs as the data URIs a provider takes (they are JPEG or PNG, as
        images.prepare_input wrote them), or None when any is missing."""

        def work() -> list[str] | None:
            try:
                blobs = [self._path(r).read_bytes() for r in refs]
            except (OSError, ValueError):
                return None
            return [
                f"data:{'image/png' if b.startswith(_PNG) else 'image/jpeg'};base64,"
                + base64.b64encode(b).decode("ascii")
                for b in blobs
            ]

        return await asyncio.to_thread(work) if refs else []

    async def get_many(self, refs: Sequence[str]) -> list[bytes] | None:
        """The stored bytes, or None when any is missing (pruned, or a database from elsewhere)."""

        def work() -> list[bytes] | None:
            try:
                return [self._path(r).read_bytes() for r in refs]
            except (OSError, ValueError):
                return None

        return await asyncio.to_thread(work)
