"""Where the model gateway is: the Airflow connection `aerodrome_gateway`, else the environment.

The connection (host, port, schema `http`/`https`; password = the admin token; extra
`{"token": "<serving token>"}`) can come from any secrets backend. Without it the gateway that
`make up` starts is used (`AERODROME_GATEWAY_URL` and its tokens, set for every component).
"""

from __future__ import annotations

import os

GATEWAY_CONN_ID = "aerodrome_gateway"


def gateway_client(conn_id: str = GATEWAY_CONN_ID):
    from aerodrome.serving.client import DEFAULT_URL, GatewayClient
    from aerodrome.serving.tokens import URL_ENV, gateway_tokens
    from aerodrome.settings import Settings

    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not defined: the local gateway
        conn = None
    if conn is not None and conn.host:
        scheme = conn.schema or "http"
        url = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
        return GatewayClient(url, conn.extra_dejson.get("token", ""), conn.password or "")
    token, admin = gateway_tokens(Settings.from_env().data_root)
    return GatewayClient(os.environ.get(URL_ENV, DEFAULT_URL), token, admin)
