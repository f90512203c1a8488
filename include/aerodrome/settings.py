"""Platform settings from environment variables: backends are chosen here, never in DAG code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    """Where data lives and which engines run it.

    `data_root` is a local folder or an `s3://bucket/prefix` URI; every stage writes below it
    (`landing/`, `raw/`, `validated/`, `quarantine/`, ...).
    """

    data_root: str
    usecases_dir: Path
    s3_region: str = "me-central-1"
    allowed_regions: tuple[str, ...] = field(default=("me-central-1",))
    s3_endpoint_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_root=_env("AERODROME_DATA_ROOT", str(PROJECT_ROOT / ".aerodrome" / "data")),
            usecases_dir=Path(_env("AERODROME_USECASES_DIR", str(PROJECT_ROOT / "include" / "usecases"))),
            s3_region=_env("AERODROME_S3_REGION", "me-central-1"),
            allowed_regions=tuple(
                r.strip() for r in _env("AERODROME_ALLOWED_REGIONS", "me-central-1").split(",") if r.strip()
            ),
            s3_endpoint_url=os.environ.get("AERODROME_S3_ENDPOINT_URL") or None,
        )
