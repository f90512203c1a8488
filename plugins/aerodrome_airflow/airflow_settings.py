"""Load `airflow_settings.yaml` (Astro CLI format: connections, variables, pools) into Airflow's DB."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aerodrome.errors import SpecError


@dataclass(frozen=True)
class SettingsCounts:
    connections: int
    variables: int
    pools: int


def read_airflow_settings(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read as YAML: {exc}") from exc
    section = raw.get("airflow") or {}
    unknown = set(section) - {"connections", "variables", "pools"}
    if unknown:
        raise SpecError(f"{path}: unknown section(s) under 'airflow': {', '.join(sorted(unknown))}")
    return {k: [e for e in (section.get(k) or []) if e] for k in ("connections", "variables", "pools")}


def load_airflow_settings(path: Path) -> SettingsCounts:
    """Create or update every connection, variable and pool named in `path` (idempotent)."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    entries = read_airflow_settings(path)
    with create_session() as session:
        for c in entries["connections"]:
            extra = c.get("conn_extra")
            session.query(Connection).filter(Connection.conn_id == c["conn_id"]).delete()
            session.add(
                Connection(
                    conn_id=c["conn_id"],
                    conn_type=c["conn_type"],
                    host=c.get("conn_host"),
                    schema=c.get("conn_schema"),
                    login=c.get("conn_login"),
                    password=c.get("conn_password"),
                    port=c.get("conn_port"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
    for v in entries["variables"]:
        value = v["variable_value"]
        Variable.set(v["variable_name"], value, serialize_json=not isinstance(value, str))
    for p in entries["pools"]:
        Pool.create_or_update_pool(
            name=p["pool_name"],
            slots=int(p["pool_slot"]),
            description=p.get("pool_description", ""),
            include_deferred=False,
        )
    return SettingsCounts(len(entries["connections"]), len(entries["variables"]), len(entries["pools"]))
