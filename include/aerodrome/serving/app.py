"""The gateway's HTTP face (FastAPI): predict, models, health, Prometheus metrics, admin routes.

Routes: `POST /v1/{usecase}/predict`, `POST /v1/{usecase}/labels`, `GET /v1/{usecase}/models` and
`GET /v1/{usecase}/window` need the serving token; `POST /admin/{usecase}/traffic`, `.../reload` and
`.../faults` (fault drills) need the separate admin token;
`GET /health` and `GET /metrics` are open (loopback or the cluster network only). When the gateway runs
as several replicas (`aerodrome.serving.replicas`), an admin call reaches every replica within the sync
interval and the window is every replica's.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from aerodrome.errors import AerodromeError
from aerodrome.serving.faults import Fault
from aerodrome.serving.gateway import Gateway, NoModelError
from aerodrome.serving.inputs import RequestError

log = logging.getLogger("aerodrome.serving")
MAX_ROWS = 1000


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ROWS, description="Raw event columns per row")
    request_id: str | None = Field(default=None, max_length=128, description="Echoed and logged; default: new")
    routing_key: str | None = Field(default=None, max_length=256, description="Sticky routing; default: entity keys")


class PredictResponse(BaseModel):
    request_id: str
    usecase: str
    alias: str
    model_version: str
    predictions: list[float]
    fallback: bool
    latency_ms: float


class TrafficRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenger_percent: float = Field(ge=0, le=100)
    actor: str | None = Field(default=None, max_length=300, description="Who asks: recorded in the audit trail")


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(max_length=128)
    row: int = Field(default=0, ge=0, lt=MAX_ROWS)
    label: float


class LabelsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[Label] = Field(min_length=1, max_length=10_000)


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: Literal["champion", "challenger"] = "challenger"
    error_share: float = Field(default=0.0, ge=0, le=1)
    extra_latency_ms: float = Field(default=0.0, ge=0, le=10_000)
    shift: float = Field(default=0.0, ge=-1e6, le=1e6)


class Metrics:
    """Prometheus series per use case, alias and model version (a registry of its own per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        labels = ["usecase", "alias", "version"]
        self.requests = Counter(
            "aerodrome_predictions_total", "Answered predict requests", labels, registry=self.registry
        )
        self.errors = Counter("aerodrome_prediction_errors_total", "Model errors", labels, registry=self.registry)
        self.latency = Histogram(
            "aerodrome_prediction_latency_seconds",
            "Predict latency (features + model), per request",
            labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )


def _bearer_matches(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    given = next((v for k, v in headers if k == b"authorization"), b"")
    scheme, _, value = given.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), token)


class TokenGuard:
    """Every /v1/ route wants the serving token, every /admin/ route the admin token: checked before
    anything is parsed, so an anonymous caller learns nothing about a request's shape.

    A plain ASGI middleware (Starlette's `BaseHTTPMiddleware` costs a task and a stream per request).
    """

    def __init__(self, app: Any, tokens: dict[str, bytes]) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            wanted = next((t for prefix, t in self.tokens.items() if path.startswith(prefix)), None)
            if wanted is not None and not _bearer_matches(scope["headers"], wanted):
                refused = JSONResponse(
                    status_code=401,
                    content={"detail": "a valid bearer token is required"},
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(gateway: Gateway, token: str, admin_token: str) -> FastAPI:
    """The FastAPI app around a gateway; the gateway starts and stops with the app."""
    if not token or not admin_token or token == admin_token:
        raise ValueError("the gateway needs two different, non-empty tokens (serving and admin)")
    metrics = Metrics()
    tokens = {"/v1/": token.encode(), "/admin/": admin_token.encode()}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        gateway.start()
        try:
            yield
        finally:
            gateway.close()

    app = FastAPI(title="Aerodrome model gateway", version="1", lifespan=lifespan)

    app.add_middleware(TokenGuard, tokens=tokens)

    def service(usecase: str):
        found = gateway.services.get(usecase)
        if found is None:
            raise HTTPException(
                status_code=404, detail=f"unknown use case {usecase!r} (served: {', '.join(gateway.services)})"
            )
        return found

    @app.exception_handler(RequestError)
    async def bad_request(_request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.post("/v1/{usecase}/predict", response_model=PredictResponse)
    def predict(usecase: str, body: PredictRequest) -> PredictResponse:
        svc = service(usecase)
        began = time.perf_counter()
        try:
            answer, errors = svc.predict(body.rows, body.request_id, body.routing_key)
        except NoModelError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except RequestError:
            raise
        except AerodromeError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except Exception as exc:
            champion = svc.models.get("champion")
            version = champion.version if champion else "none"
            metrics.errors.labels(usecase, "champion", version).inc()
            log.exception("%s: prediction failed", usecase)
            raise HTTPException(status_code=500, detail=f"prediction failed: {type(exc).__name__}") from None
        for error in errors:
            log.warning("%s: %s; answered by the champion", usecase, error)
            challenger = svc.models.get("challenger")
            metrics.errors.labels(usecase, "challenger", challenger.version if challenger else "?").inc()
        metrics.requests.labels(usecase, answer.alias, answer.version).inc()
        metrics.latency.labels(usecase, answer.alias, answer.version).observe(time.perf_counter() - began)
        return PredictResponse(
            request_id=answer.request_id,
            usecase=answer.usecase,
            alias=answer.alias,
            model_version=answer.version,
            predictions=answer.predictions,
            fallback=answer.fallback,
            latency_ms=round(answer.latency_ms, 3),
        )

    @app.get("/v1/{usecase}/models")
    def models(usecase: str) -> dict[str, Any]:
        svc = service(usecase)
        return {"usecase": usecase, **svc.status()}

    @app.post("/v1/{usecase}/labels")
    def labels(usecase: str, body: LabelsRequest) -> dict[str, Any]:
        """Outcomes of earlier predictions (by request id and row), as they become known."""
        return {"usecase": usecase, "accepted": service(usecase).add_labels([x.model_dump() for x in body.labels])}

    @app.get("/v1/{usecase}/window")
    def window(usecase: str, seconds: float = Query(default=300, gt=0, le=86_400)) -> dict[str, Any]:
        """Per alias over the last `seconds`: requests, errors, latency, predictions, online metric."""
        svc = service(usecase)
        return {"usecase": usecase, "seconds": seconds, **svc.status(), **svc.window_summary(seconds)}

    @app.post("/admin/{usecase}/faults")
    def start_fault(usecase: str, body: FaultRequest) -> dict[str, Any]:
        fault = Fault(body.error_share, body.extra_latency_ms, body.shift)
        service(usecase).set_fault(body.alias, fault)
        return {"usecase": usecase, "alias": body.alias, "fault": body.model_dump()}

    @app.delete("/admin/{usecase}/faults")
    def end_faults(usecase: str) -> dict[str, Any]:
        svc = service(usecase)
        for alias in list(svc.faults):
            svc.set_fault(alias, None)
        return {"usecase": usecase, "faults": {}}

    @app.post("/admin/{usecase}/traffic")
    def traffic(usecase: str, body: TrafficRequest) -> dict[str, Any]:
        svc = service(usecase)
        svc.set_traffic(body.challenger_percent, body.actor)
        log.info("%s: challenger traffic %.1f %%", usecase, body.challenger_percent)
        return {"usecase": usecase, **svc.status()}

    @app.post("/admin/{usecase}/reload")
    def reload(usecase: str, force: bool = False) -> dict[str, Any]:
        svc = service(usecase)
        try:
            svc.reload(force, announce=True)
        except AerodromeError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return {"usecase": usecase, **svc.status()}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "usecases": {name: svc.status() for name, svc in gateway.services.items()},
            "logged": gateway.predictions.written,
            "replica": gateway.replica,
        }

    @app.get("/metrics")
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
