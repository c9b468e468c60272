"""A content-addressed store for uploaded and fetched statement files.

A file lives at ``<var_dir>/files/<sha256[:2]>/<sha256>``: storing the same bytes twice is one
file, and a run's ``file_sha256`` names exactly the bytes it read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from clearing.config import Settings
from clearing.errors import NotFound


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_for(settings: Settings, sha: str) -> Path:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise NotFound(f"not a SHA-256: {sha!r}")
    return Path(settings.var_dir) / "files" / sha[:2] / sha


def store(settings: Settings, data: bytes) -> str:
    """Store ``data`` (once) and return its SHA-256; written atomically (temp file + rename)."""
    sha = sha256_of(data)
    target = path_for(settings, sha)
    if target.exists():
        return sha
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha


def open_file(settings: Settings, sha: str) -> bytes:
    """The stored bytes of ``sha`` (NotFound if absent)."""
    target = path_for(settings, sha)
    try:
        return target.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no stored file {sha}") from None
