"""Content hashes of files: the one SHA-256 of a file that every part of deepimagej uses.

Bundles declare the SHA-256 of their weights and test tensors; trust records, the memory-model
cache and remote uploads are keyed by it. A file is read in 1 MiB blocks (weights may be
gigabytes) and its digest is cached per path, size and modification time, so that checking a
bundle before each run costs nothing after the first.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

#: Bytes read at a time.
BLOCK = 1 << 20


def sha256_of(path: str | Path, *, cached: bool = True) -> str:
    """SHA-256 of a file (hexadecimal), streamed.

    Args:
        path: the file.
        cached: reuse the digest computed for the same path, size and modification time
            (``False``: read the file again, e.g. to verify an upload that just arrived).

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    if not cached:
        return _sha256(path)
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    """``size`` and ``mtime_ns`` are part of the cache key only: a changed file is read again."""
    return _sha256(Path(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
