"""Aerodrome's reports in the Airflow UI: drift reports, Data Docs, promotion and canary records.

Every Airflow component imports this file, so it defines the plugin only: the FastAPI app
(`aerodrome.reports`) is built by the API server at its first request. Airflow mounts plugin apps
without any auth, so every route requires the UI's login (the `_token` cookie or a bearer token).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

MOUNT = "/aerodrome/reports"  # = aerodrome.reports.MOUNT, not imported: FastAPI stays out of other components


class LazyReportsApp:
    """ASGI app that builds the reports app, guarded by the Airflow login, on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = build_reports_app()
        await self._app(scope, receive, send)


def build_reports_app() -> Any:
    from aerodrome.reports import create_app
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return create_app(dependencies=[requires_access_view(AccessView.WEBSITE)])


class AerodromeReportsPlugin(AirflowPlugin):
    name = "aerodrome_reports"
    fastapi_apps = [{"app": LazyReportsApp(), "url_prefix": MOUNT, "name": "Aerodrome reports"}]
    # relative href: the UI resolves it against its base URL (a sub-path deployment included)
    external_views = [
        {
            "name": "Aerodrome reports",
            "href": f"{MOUNT.lstrip('/')}/",
            "url_route": "aerodrome-reports",
            "destination": "nav",
            "category": "browse",
        }
    ]
