"""A content digest of a folder, so a model artifact can be checked against the one recorded at training."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: str | Path, exclude: Collection[str] = ()) -> str:
    """sha256 over every file under `folder`: relative path and content digest, in path order.

    A renamed, added, removed or changed file (one byte is enough) changes the digest; timestamps and
    permissions do not. `exclude` names relative paths left out (files a download adds).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder, nothing to digest")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.relative_to(root).as_posix() in exclude:
            continue
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
