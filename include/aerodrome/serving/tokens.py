"""The gateway's two bearer tokens (serving, admin): from the environment, else made once for a local start."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

TOKEN_ENV, ADMIN_TOKEN_ENV, URL_ENV = (
    "AERODROME_GATEWAY_TOKEN",
    "AERODROME_GATEWAY_ADMIN_TOKEN",
    "AERODROME_GATEWAY_URL",
)


def gateway_tokens(data_root: str) -> tuple[str, str]:
    """(serving, admin) tokens: the environment's, else `<data root>/gateway/tokens.json` (made once, mode 0600)."""
    serving, admin = os.environ.get(TOKEN_ENV), os.environ.get(ADMIN_TOKEN_ENV)
    if serving and admin:
        return serving, admin
    if "://" in data_root:
        raise SystemExit(f"set {TOKEN_ENV} and {ADMIN_TOKEN_ENV} (from your secret store) for a remote data root")
    path = Path(data_root) / "gateway" / "tokens.json"
    if path.is_file():
        known = json.loads(path.read_text())
        return serving or known["token"], admin or known["admin_token"]
    made = {"token": serving or secrets.token_urlsafe(24), "admin_token": admin or secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made))
    return made["token"], made["admin_token"]
