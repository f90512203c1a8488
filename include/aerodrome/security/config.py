"""Security settings from environment variables: the signing key, the keys trusted to verify, the audit trail.

- `AERODROME_SIGNING_KEY`: the Ed25519 private key (PEM) that signs models; default
  `<state>/signing/ed25519.pem`, made on first use (0600) with its public key beside (`.pub`).
- `AERODROME_SIGNING_TRUSTED_KEYS`: the public keys a verifier accepts (PEM files or folders of `*.pub`,
  comma-separated); default the `.pub` beside the signing key.
- `AERODROME_REQUIRE_SIGNATURE` (default `true`): `false` lets a version registered without a signature
  load; a signature that does not verify is refused either way.
- `AERODROME_AUDIT_DSN`: a `postgresql://` URL, the audit trail is a table there (`AERODROME_AUDIT_TABLE`,
  default `aerodrome_audit`, `schema.table` allowed); unset: a JSONL file, `AERODROME_AUDIT_LOG`
  (default `<state>/audit/audit.jsonl`).

`<state>` is the data root when it is a local folder, else `.aerodrome/` of the project (a key or a
file lock cannot live on S3).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from aerodrome.settings import PROJECT_ROOT, Settings, redacted_uri

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
FALSE = ("0", "false", "no", "off")


def state_dir(settings: Settings) -> Path:
    """The local folder for keys and the audit file: the data root, or the project's `.aerodrome/` under S3."""
    if "://" in settings.data_root:
        return PROJECT_ROOT / ".aerodrome"
    return Path(settings.data_root).resolve()


@dataclass(frozen=True)
class SecuritySettings:
    signing_key: Path | None = None  # None: the embedded default under the state folder
    trusted_keys: tuple[Path, ...] = ()  # empty: the public key beside the signing key
    require_signature: bool = True
    audit_dsn: str | None = field(default=None, repr=False)  # may hold a password
    audit_table: str = "aerodrome_audit"
    audit_log: Path | None = None

    def __post_init__(self) -> None:
        if self.audit_dsn and not self.audit_dsn.startswith(POSTGRES_SCHEMES):
            raise ValueError(
                f"AERODROME_AUDIT_DSN={redacted_uri(self.audit_dsn)!r} is not supported: give a "
                "postgresql://user:password@host/db URL, or leave it empty for the JSONL file"
            )
        if not TABLE_NAME.match(self.audit_table):
            raise ValueError(
                f"AERODROME_AUDIT_TABLE={self.audit_table!r} is not a table name (letters, digits, _; schema.table)"
            )

    @classmethod
    def from_env(cls) -> SecuritySettings:
        def path(name: str) -> Path | None:
            value = os.environ.get(name, "").strip()
            return Path(value).expanduser() if value else None

        trusted = os.environ.get("AERODROME_SIGNING_TRUSTED_KEYS", "")
        return cls(
            signing_key=path("AERODROME_SIGNING_KEY"),
            trusted_keys=tuple(Path(p.strip()).expanduser() for p in trusted.split(",") if p.strip()),
            require_signature=os.environ.get("AERODROME_REQUIRE_SIGNATURE", "true").strip().lower() not in FALSE,
            audit_dsn=os.environ.get("AERODROME_AUDIT_DSN", "").strip() or None,
            audit_table=os.environ.get("AERODROME_AUDIT_TABLE", "").strip() or "aerodrome_audit",
            audit_log=path("AERODROME_AUDIT_LOG"),
        )

    def signing_key_path(self, settings: Settings) -> Path:
        return self.signing_key or state_dir(settings) / "signing" / "ed25519.pem"

    def audit_log_path(self, settings: Settings) -> Path:
        return self.audit_log or state_dir(settings) / "audit" / "audit.jsonl"
