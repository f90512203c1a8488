"""`python -m aerodrome.serving`: the model gateway on loopback (see aerodrome.serving.app for routes).

Tokens come from AERODROME_GATEWAY_TOKEN / AERODROME_GATEWAY_ADMIN_TOKEN; when unset (a local
start) two random tokens are made and written to `<data root>/gateway/tokens.json` (mode 0600).
Several replicas behind one Service share their state through the data root: `--sync-seconds`
(default AERODROME_GATEWAY_SYNC_SECONDS, else 0 = one process; see aerodrome.serving.replicas).
"""

from __future__ import annotations

import argparse
import logging
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--usecase", action="append", help="serve only these use cases (default: every one)")
    parser.add_argument("--flush-seconds", type=float, default=1.0, help="prediction log flush interval")
    parser.add_argument(
        "--sync-seconds",
        type=float,
        default=None,
        help="replicas: poll the shared traffic share, reloads and drills, and share the window, this often "
        "(default: AERODROME_GATEWAY_SYNC_SECONDS, else 0 = a single gateway)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import uvicorn

    from aerodrome.serving.app import create_app
    from aerodrome.serving.gateway import Gateway
    from aerodrome.serving.replicas import sync_seconds_from_env
    from aerodrome.serving.tokens import gateway_tokens
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import discover_usecases

    settings = Settings.from_env()
    specs = [s for s in discover_usecases(settings.usecases_dir) if not args.usecase or s.name in args.usecase]
    sync = sync_seconds_from_env() if args.sync_seconds is None else args.sync_seconds
    if sync < 0:
        parser.error(f"--sync-seconds must be >= 0, not {sync}")
    gateway = Gateway(specs, settings, open_storage(settings.data_root, settings), args.flush_seconds, sync)
    token, admin_token = gateway_tokens(settings.data_root)
    uvicorn.run(
        create_app(gateway, token, admin_token), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
