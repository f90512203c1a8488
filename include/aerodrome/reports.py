"""The stored reports of each use case, served over HTTP: drift reports, Data Docs, promotion and canary records.

URLs are `<use case>/<zone>/<path>` below the mount point (the Airflow plugin mounts the app at
`/aerodrome/reports`); each maps to one storage key, read through `open_storage`, so S3 works too:

| zone         | URL path                    | storage key                                   |
|--------------|-----------------------------|-----------------------------------------------|
| `drift`      | `<day>/report.html`         | `drift/<uc>/date=<day>/report.html` (+ .json) |
| `data_docs`  | `index.html`, `validations/…` | `data_docs/<uc>/…` (the GX site, not `_store/`) |
| `promotions` | `v<N>.json`                 | `registry/<uc>/promotions/v<N>.json`          |
| `canary`     | `v<N>/step-<p>.json`        | `registry/<uc>/canary/v<N>/step-<p>.json`     |

Anything else is refused before storage is touched. Authentication is the caller's: pass it as
`dependencies` (the Airflow plugin passes the UI's login check).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from aerodrome.errors import SourceError
from aerodrome.settings import Settings
from aerodrome.storage import Storage, open_storage

MOUNT = "/aerodrome/reports"
ZONES = ("drift", "data_docs", "promotions", "canary")
DRIFT_FILES = ("report.html", "summary.json", "report.json")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# the Data Docs site's own look (GX package assets), only below its `static/`
STATIC_TYPES = {
    ".css": "text/css",
    ".png": "image/png",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".otf": "font/otf",
}
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_VERSION = re.compile(r"v(\d+)")
_STEP = re.compile(r"step-\d+(\.\d+)?\.json")
_DRIFT_KEY = re.compile(r"(?:^|/)drift/([^/]+)/date=(\d{4}-\d{2}-\d{2})/([^/]+)$")


class ReportError(Exception):
    """A request that names no servable report; `status` is the HTTP answer (400 or 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class UseCaseReports:
    """What is stored for one use case, as URL paths relative to the use case's index."""

    usecase: str
    drift: dict[str, list[str]] = field(default_factory=dict)  # day -> file names
    data_docs: str | None = None
    promotions: list[str] = field(default_factory=list)
    canary: dict[str, list[str]] = field(default_factory=dict)  # v<N> -> step files


def served_path(key_or_uri: str) -> str | None:
    """The URL (relative to the API server's base) of a stored drift report, or None if it is not one.

    Relative on purpose: the Airflow UI resolves it against its `<base href>`, so a sub-path deployment works.
    """
    found = _DRIFT_KEY.search(key_or_uri)
    if not found:
        return None
    usecase, day, name = found.groups()
    return f"{MOUNT.lstrip('/')}/{usecase}/drift/{day}/{name}"


def _segments(path: str) -> list[str]:
    parts = path.split("/")
    for part in parts:
        if not _SEGMENT.fullmatch(part) or ".." in part:
            raise ReportError(400, f"{path!r}: not a report path (names of letters, digits, `_.=-` only)")
    return parts


def report_key(usecase: str, zone: str, path: str) -> str:
    """The storage key of `<zone>/<path>` of `usecase`; ReportError when the path is not a servable report."""
    _segments(usecase)
    if zone not in ZONES:
        raise ReportError(404, f"no report zone {zone!r} (known: {', '.join(ZONES)})")
    parts = _segments(path)
    if zone == "drift":
        if len(parts) != 2 or not _DAY.fullmatch(parts[0]) or parts[1] not in DRIFT_FILES:
            raise ReportError(400, f"drift reports are <YYYY-MM-DD>/{{{','.join(DRIFT_FILES)}}}, not {path!r}")
        return f"drift/{usecase}/date={parts[0]}/{parts[1]}"
    if zone == "promotions":
        if len(parts) != 1 or not (parts[0].endswith(".json") and _VERSION.fullmatch(parts[0][:-5])):
            raise ReportError(400, f"promotion reports are v<N>.json, not {path!r}")
        return f"registry/{usecase}/promotions/{parts[0]}"
    if zone == "canary":
        if len(parts) != 2 or not _VERSION.fullmatch(parts[0]) or not _STEP.fullmatch(parts[1]):
            raise ReportError(400, f"canary verdicts are v<N>/step-<percent>.json, not {path!r}")
        return f"registry/{usecase}/canary/{path}"
    suffix = _suffix(parts[-1])
    if suffix not in MEDIA_TYPES and not (parts[0] == "static" and suffix in STATIC_TYPES):
        raise ReportError(400, f"{path!r}: Data Docs pages are .html/.json (style assets only under static/)")
    return f"data_docs/{usecase}/{path}"


def _suffix(name: str) -> str:
    return name[name.rfind(".") :].lower() if "." in name else ""


def media_type(key: str) -> str:
    suffix = _suffix(key)
    return MEDIA_TYPES.get(suffix) or STATIC_TYPES[suffix]


def list_reports(storage: Storage, usecase: str) -> UseCaseReports:
    """The use case's stored reports; each zone is one listing of its own prefix."""
    found = UseCaseReports(usecase)
    for key in storage.list(f"drift/{usecase}/"):
        served = served_path(key)
        day, name = served.rsplit("/", 2)[-2:] if served else ("", "")
        if name in DRIFT_FILES:
            found.drift.setdefault(day, []).append(name)
    if storage.exists(f"data_docs/{usecase}/index.html"):
        found.data_docs = "data_docs/index.html"
    versions = (k.rsplit("/", 1)[-1] for k in storage.list(f"registry/{usecase}/promotions/"))
    found.promotions = sorted((v for v in versions if _VERSION.fullmatch(v.removesuffix(".json"))), key=_number)
    for key in storage.list(f"registry/{usecase}/canary/"):
        version, step = key.split("/")[-2:]
        if _VERSION.fullmatch(version) and _STEP.fullmatch(step):
            found.canary.setdefault(version, []).append(step)
    return found


def _number(name: str) -> float:
    return float(re.sub(r"[^0-9.]", "", name.removesuffix(".json")) or 0)


def _page(title: str, body: str) -> HTMLResponse:
    style = "body{font-family:sans-serif;margin:2em;max-width:60em}li{margin:.2em 0}h2{margin-top:1.5em}"
    text = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    return HTMLResponse(f"{text}<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _links(items: Sequence[tuple[str, str]]) -> str:
    if not items:
        return "<p><i>none yet</i></p>"
    rows = "".join(f"<li><a href='{html.escape(href)}'>{html.escape(text)}</a></li>" for text, href in items)
    return f"<ul>{rows}</ul>"


def usecase_index(found: UseCaseReports) -> HTMLResponse:
    drift = [
        (f"{day}: {', '.join(sorted(names, key=DRIFT_FILES.index))}", f"drift/{day}/{_main(names)}")
        for day, names in sorted(found.drift.items(), reverse=True)
    ]
    promotions = [(p.removesuffix(".json"), f"promotions/{p}") for p in reversed(found.promotions)]
    canary = [
        (f"{version} {step.removesuffix('.json')}", f"canary/{version}/{step}")
        for version in sorted(found.canary, key=_number, reverse=True)
        for step in sorted(found.canary[version], key=_number)
    ]
    docs = [("Great Expectations Data Docs", found.data_docs)] if found.data_docs else []
    body = (
        "<p><a href='../'>all use cases</a></p>"
        f"<h2>Drift reports</h2>{_links(drift)}<h2>Validation (Data Docs)</h2>{_links(docs)}"
        f"<h2>Promotion reports</h2>{_links(promotions)}<h2>Canary verdicts</h2>{_links(canary)}"
    )
    return _page(f"Reports: {found.usecase}", body)


def _main(names: list[str]) -> str:
    return next(n for n in DRIFT_FILES if n in names)


def known_usecases(settings: Settings) -> list[str]:
    """Use cases with a spec folder (`<usecases dir>/<name>/usecase.yaml`)."""
    return sorted(p.parent.name for p in settings.usecases_dir.glob("*/usecase.yaml"))


def create_app(settings: Settings | None = None, dependencies: Sequence[Any] = ()) -> FastAPI:
    """The reports app; `dependencies` (FastAPI callables) guard every route, e.g. the Airflow login."""
    settings = settings or Settings.from_env()
    storage = open_storage(settings.data_root, settings)
    app = FastAPI(
        title="Aerodrome reports",
        dependencies=[Depends(d) for d in dependencies],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(ReportError)
    def refuse(request: Request, exc: ReportError) -> Response:
        return PlainTextResponse(str(exc), status_code=exc.status)

    def checked(usecase: str) -> str:
        if usecase not in known_usecases(settings):
            raise ReportError(404, f"no use case {usecase!r} (known: {', '.join(known_usecases(settings))})")
        return usecase

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        names = known_usecases(settings)
        return _page("Aerodrome reports", _links([(n, f"{n}/") for n in names]))

    @app.get("/{usecase}", include_in_schema=False)
    def usecase_redirect(usecase: str) -> Response:
        return Response(status_code=307, headers={"location": f"{checked(usecase)}/"})

    @app.get("/{usecase}/", response_class=HTMLResponse)
    def usecase_page(usecase: str) -> HTMLResponse:
        return usecase_index(list_reports(storage, checked(usecase)))

    @app.get("/{usecase}/{zone}/{path:path}")
    def report(usecase: str, zone: str, path: str) -> Response:
        key = report_key(checked(usecase), zone, path)
        try:
            data = storage.read_bytes(key)
        except SourceError:
            raise ReportError(404, f"{usecase}: no {zone} report {path!r} (not written yet?)") from None
        return Response(data, media_type=media_type(key), headers={"X-Content-Type-Options": "nosniff"})

    return app
