"""Alerts: a canary rolled back, a model refused. Logged always; also sent to the user's callback.

`AERODROME_ALERT_CALLBACK=package.module:function` names a callable taking one dict (kind, use case,
version, reason, ...): point it at Slack, e-mail or a pager. A failing callback is logged, never raised.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

log = logging.getLogger("aerodrome.alerts")
CALLBACK_ENV = "AERODROME_ALERT_CALLBACK"


def alert(kind: str, usecase: str, reason: str, **details: Any) -> dict[str, Any]:
    event = {"kind": kind, "usecase": usecase, "reason": reason, "at": datetime.now(UTC).isoformat(), **details}
    log.error("ALERT %s %s: %s %s", kind, usecase, reason, details or "")
    target = os.environ.get(CALLBACK_ENV, "").strip()
    if target:
        try:
            module, _, name = target.partition(":")
            getattr(import_module(module), name)(event)
        except Exception:
            log.exception("alert callback %s failed", target)
    return event
