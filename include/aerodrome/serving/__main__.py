"""`python -m aerodrome.serving`: the model gateway on loopback (see aerodrome.serving.app for routes).

Tokens come from AERODROME_GATEWAY_TOKEN / AERODROME_GATEWAY_ADMIN_TOKEN; when unset (a local
start) two random tokens are made and written to `<data root>/gateway/tokens.json` (mode 0600).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
from pathlib import Path


def tokens(data_root: str) -> tuple[str, str]:
    serving, admin = os.environ.get("AERODROME_GATEWAY_TOKEN"), os.environ.get("AERODROME_GATEWAY_ADMIN_TOKEN")
    if serving and admin:
        return serving, admin
    if "://" in data_root:
        raise SystemExit("set AERODROME_GATEWAY_TOKEN and AERODROME_GATEWAY_ADMIN_TOKEN (from a secret store)")
    path = Path(data_root) / "gateway" / "tokens.json"
    if path.is_file():
        known = json.loads(path.read_text())
        return serving or known["token"], admin or known["admin_token"]
    made = {"token": serving or secrets.token_urlsafe(24), "admin_token": admin or secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made))
    logging.getLogger("aerodrome.serving").warning("gateway tokens written to %s", path)
    return made["token"], made["admin_token"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--usecase", action="append", help="serve only these use cases (default: every one)")
    parser.add_argument("--flush-seconds", type=float, default=1.0, help="prediction log flush interval")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import uvicorn

    from aerodrome.serving.app import create_app
    from aerodrome.serving.gateway import Gateway
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import discover_usecases

    settings = Settings.from_env()
    specs = [s for s in discover_usecases(settings.usecases_dir) if not args.usecase or s.name in args.usecase]
    gateway = Gateway(specs, settings, open_storage(settings.data_root, settings), args.flush_seconds)
    token, admin_token = tokens(settings.data_root)
    uvicorn.run(create_app(gateway, token, admin_token), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
