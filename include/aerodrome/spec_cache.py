"""A checked spec kept on disk, so re-parsing a DAG file skips YAML, the spec checks and extension imports.

The dag-processor parses each DAG file in a fresh process every few seconds; the spec behind it rarely
changes. `load_usecase_cached` keeps the checked spec as JSON keyed by everything the check reads: the
spec file's path and bytes, the name, size and mtime of every other file of the use-case folder (feature
and extension modules), and the code that checks it (every module of the `aerodrome` package, and the
pydantic version). A hit is re-read with `UseCase.model_validate_json` (pydantic's compiled validator,
~1 ms); only the fields the spec set are kept, so validators that look at what was set still hold. Any
change is a miss that checks the spec again. A broken spec is never cached: it fails alike each time.
JSON, not pickle, so a cache file can at worst describe a spec, never run code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pydantic

from aerodrome.usecase import SPEC_FILE, UseCase, load_usecase

CACHE_FORMAT = "1"
_PACKAGE_DIR = Path(__file__).resolve().parent
_code_fingerprint: str | None = None


def _tree_signature(root: Path, digest: hashlib._Hash, suffix: str = "") -> None:
    """Feed `digest` the relative name, size and mtime of each file under `root` (caches and dot-files left out)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(suffix):
                continue
            path = Path(folder, name)
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())


def code_fingerprint() -> str:
    """The version of the code that checks a spec: the `aerodrome` package's modules and pydantic (once per process)."""
    global _code_fingerprint
    if _code_fingerprint is None:
        digest = hashlib.sha256(f"{CACHE_FORMAT}\0{pydantic.VERSION}\n".encode())
        _tree_signature(_PACKAGE_DIR, digest, ".py")
        _code_fingerprint = digest.hexdigest()
    return _code_fingerprint


def spec_cache_key(spec_file: Path) -> str:
    """What the checked spec depends on: its file (path and bytes), its folder's other files, the code."""
    digest = hashlib.sha256(f"{code_fingerprint()}\0{spec_file.resolve()}\n".encode())
    digest.update(spec_file.read_bytes())
    _tree_signature(spec_file.parent, digest)
    return digest.hexdigest()


def load_usecase_cached(path: str | Path, cache_dir: str | Path | None) -> UseCase:
    """`load_usecase(path)`, served from `cache_dir` when nothing it depends on changed (`None`: no cache).

    The cache is best-effort: an unreadable, unwritable or stale entry means the spec is checked again.
    """
    path = Path(path)
    spec_file = path / SPEC_FILE if path.is_dir() else path
    if cache_dir is None or not spec_file.is_file():
        return load_usecase(spec_file)
    entry = Path(cache_dir) / f"{spec_file.parent.name}-{spec_cache_key(spec_file)[:32]}.json"
    try:
        return UseCase.model_validate_json(entry.read_bytes()).located(spec_file.parent)
    except (OSError, ValueError):  # missing, unreadable or written by other code (pydantic's ValidationError)
        pass
    spec = load_usecase(spec_file)
    _write_atomically(entry, spec.model_dump_json(exclude_unset=True).encode())
    return spec


def _write_atomically(entry: Path, data: bytes) -> None:
    """Write `entry` whole or not at all (parsers run in parallel); a failure only costs the next parse."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, entry)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return
    usecase = entry.name.rsplit("-", 1)[0]
    for stale in entry.parent.glob(f"{usecase}-*.json"):  # the spec's earlier versions
        if stale != entry:
            stale.unlink(missing_ok=True)


def spec_cache_dir(data_root: str) -> Path:
    """Where checked specs are kept: `<data root>/cache/specs` for a local data root, else the user's cache
    folder (`$XDG_CACHE_HOME` or `~/.cache`, then `aerodrome/specs`): never on remote storage, it is per machine."""
    if "://" not in data_root:
        return Path(data_root) / "cache" / "specs"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aerodrome" / "specs"
