"""A small client of the gateway's HTTP routes, for the pipelines (canary, rollback) and the replayer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8090"


class GatewayError(RuntimeError):
    """The gateway answered with an error or could not be reached."""


@dataclass
class GatewayClient:
    base_url: str = DEFAULT_URL
    token: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    timeout_s: float = 30.0

    def _call(self, method: str, path: str, admin: bool = False, **kwargs: Any) -> Any:
        import httpx

        token = self.admin_token if admin else self.token
        try:
            answer = httpx.request(
                method,
                f"{self.base_url.rstrip('/')}{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout_s,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway {self.base_url} unreachable ({method} {path}): {exc}") from None
        if answer.status_code >= 400:
            raise GatewayError(f"gateway {method} {path}: HTTP {answer.status_code}: {answer.text[:500]}")
        return answer.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def predict(self, usecase: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return self._call("POST", f"/v1/{usecase}/predict", json={"rows": rows, **extra})

    def labels(self, usecase: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/v1/{usecase}/labels", json={"labels": labels})

    def window(self, usecase: str, seconds: float) -> dict[str, Any]:
        return self._call("GET", f"/v1/{usecase}/window", params={"seconds": seconds})

    def set_traffic(self, usecase: str, challenger_percent: float, actor: str | None = None) -> dict[str, Any]:
        """Set the challenger's share; `actor` (default: this Airflow task's DAG run, else this process) is audited."""
        from aerodrome.security.audit import default_actor

        body = {"challenger_percent": challenger_percent, "actor": actor or default_actor()}
        return self._call("POST", f"/admin/{usecase}/traffic", admin=True, json=body)

    def reload(self, usecase: str, force: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/admin/{usecase}/reload", admin=True, params={"force": force})

    def fault(self, usecase: str, **fault: Any) -> dict[str, Any]:
        return self._call("POST", f"/admin/{usecase}/faults", admin=True, json=fault)

    def clear_faults(self, usecase: str) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/{usecase}/faults", admin=True)
