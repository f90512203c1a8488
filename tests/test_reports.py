"""Reports in the Airflow UI: the reports app over a data root with sample reports, then inside the real API server."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from aerodrome.reports import create_app, report_key, served_path
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from conftest import ROOT
from fastapi import HTTPException
from fastapi.testclient import TestClient

UC = "flight_delay"
DAY = "2013-01-05"
DRIFT_HTML = b"<html><body>Evidently drift report</body></html>"


def write_samples(storage: LocalStorage) -> None:
    prefix = f"drift/{UC}/date={DAY}"
    storage.write_bytes(f"{prefix}/report.html", DRIFT_HTML)
    storage.write_bytes(f"{prefix}/summary.json", b'{"dataset_drift": false}')
    storage.write_bytes(f"drift/{UC}/date=2013-01-04/summary.json", b"{}")
    storage.write_bytes(f"data_docs/{UC}/index.html", b"<html>GX site</html>")
    storage.write_bytes(f"data_docs/{UC}/static/styles/site.css", b"body{}")
    storage.write_bytes(f"data_docs/{UC}/_store/{UC}/result.json", b"{}")  # raw results: never served
    storage.write_bytes(f"registry/{UC}/promotions/v2.json", json.dumps({"passed": True}).encode())
    storage.write_bytes(f"registry/{UC}/canary/v2/step-12.5.json", b'{"passed": true}')
    storage.write_bytes("secret.json", b'{"token": "x"}')


@pytest.fixture
def reports(tmp_path) -> TestClient:
    usecases = tmp_path / "usecases"
    (usecases / UC).mkdir(parents=True)
    (usecases / UC / "usecase.yaml").write_text("name: flight_delay\n")
    write_samples(LocalStorage(tmp_path / "data"))
    settings = dataclasses.replace(Settings.from_env(), data_root=str(tmp_path / "data"), usecases_dir=usecases)
    return TestClient(create_app(settings))


def test_index_lists_every_kind_of_report(reports):
    assert f"href='{UC}/'" in reports.get("/").text
    page = reports.get(f"/{UC}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for href in (
        f"drift/{DAY}/report.html",
        "drift/2013-01-04/summary.json",  # no Evidently HTML that day: our summary
        "data_docs/index.html",
        "promotions/v2.json",
        "canary/v2/step-12.5.json",
    ):
        assert f"href='{href}'" in page.text, href
    assert "_store" not in page.text
    assert reports.get(f"/{UC}", follow_redirects=False).headers["location"] == f"{UC}/"


def test_reports_are_served_with_their_content_type(reports):
    html = reports.get(f"/{UC}/drift/{DAY}/report.html")
    assert html.status_code == 200 and html.content == DRIFT_HTML
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.headers["x-content-type-options"] == "nosniff"
    assert reports.get(f"/{UC}/promotions/v2.json").json() == {"passed": True}
    assert reports.get(f"/{UC}/canary/v2/step-12.5.json").headers["content-type"] == "application/json"
    assert reports.get(f"/{UC}/data_docs/index.html").text == "<html>GX site</html>"
    assert reports.get(f"/{UC}/data_docs/static/styles/site.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        f"/{UC}/drift/../../secret.json",
        f"/{UC}/drift/%2e%2e/%2e%2e/secret.json",
        f"/{UC}/drift/..%2F..%2Fsecret.json",
        f"/{UC}/data_docs/_store/{UC}/result.json",
        f"/{UC}/data_docs/.hidden.html",
        f"/{UC}/data_docs/validations/page.py",
        f"/{UC}/data_docs/styles/site.css",  # style assets only under static/
        f"/{UC}/drift/{DAY}/../../../../secret.json",
        f"/{UC}/drift/{DAY}/reference.parquet",
        f"/{UC}/promotions/../v2.json",
        f"/{UC}/canary/v2/step-x.json",
        f"/{UC}/raw/date={DAY}/part-0.parquet",  # not a report zone
        f"/{UC}/registry/{UC}/promotions/v2.json",
        "/other_uc/promotions/v2.json",  # not a use case
        "/../secret.json",
    ],
)
def test_traversal_unknown_zones_and_other_files_are_refused(reports, path):
    answer = reports.get(path)
    assert answer.status_code in (400, 404), (path, answer.status_code)
    assert "token" not in answer.text


def test_a_missing_report_is_a_readable_404(reports):
    answer = reports.get(f"/{UC}/drift/2013-02-01/report.html")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/plain")
    assert "flight_delay: no drift report '2013-02-01/report.html'" in answer.text
    unknown = reports.get(f"/{UC}/raw/x.html")
    assert unknown.status_code == 404 and "no report zone 'raw' (known: drift, data_docs" in unknown.text


def test_every_route_takes_the_callers_auth(tmp_path):
    def login_required() -> None:
        raise HTTPException(status_code=401, detail="Not authenticated")

    settings = dataclasses.replace(Settings.from_env(), data_root=str(tmp_path), usecases_dir=tmp_path)
    client = TestClient(create_app(settings, dependencies=[login_required]))
    assert {client.get(p).status_code for p in ("/", f"/{UC}/", f"/{UC}/drift/{DAY}/report.html")} == {401}


def test_the_drift_link_points_at_the_served_report():
    from types import SimpleNamespace

    from aerodrome_airflow.drift import DriftReportLink

    task = SimpleNamespace(report_uri=f"/data/drift/{UC}/date={DAY}/report.html")
    assert DriftReportLink().get_link(task, ti_key=None) == f"aerodrome/reports/{UC}/drift/{DAY}/report.html"
    assert served_path(f"/data/drift/{UC}/date={DAY}/report.html") == f"aerodrome/reports/{UC}/drift/{DAY}/report.html"
    assert served_path(f"s3://bucket/pre/drift/{UC}/date={DAY}/summary.json").endswith(f"{DAY}/summary.json")
    assert served_path("/data/raw/x.parquet") is None
    assert report_key(UC, "drift", f"{DAY}/report.html") == f"drift/{UC}/date={DAY}/report.html"


def test_the_plugin_module_stays_cheap_to_import():
    code = "import sys; import aerodrome_reports; print(sorted({'fastapi', 'aerodrome.reports'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "aerodrome.reports" not in out


@pytest.mark.slow
@pytest.mark.scheduler
def test_the_airflow_api_server_serves_reports_behind_its_login(tmp_path):
    """`make up` as users run it: the plugin is mounted, the UI lists its view, reports need the login."""
    import httpx
    from aerodrome_airflow.stack import EmbeddedStack

    data = tmp_path / "data"
    write_samples(LocalStorage(data))
    home = tmp_path / "airflow"
    env = {
        "AERODROME_DATA_ROOT": str(data),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__PARALLELISM": "2",
    }
    with EmbeddedStack(home, env) as stack:
        url = f"{stack.base_url}/aerodrome/reports/{UC}/drift/{DAY}/report.html"
        assert httpx.get(url).status_code == 401  # Airflow mounts plugin apps open: ours asks for the login
        token = stack.api.configuration.access_token
        served = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert served.status_code == 200 and served.content == DRIFT_HTML, served.text[:300]
        cookie = httpx.get(f"{stack.base_url}/aerodrome/reports/{UC}/", cookies={"_token": token})
        assert "promotions/v2.json" in cookie.text  # the UI's session cookie is enough, as in the browser
        plugins = httpx.get(f"{stack.base_url}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
        (ours,) = [p for p in plugins.json()["plugins"] if p["name"] == "aerodrome_reports"]
        assert ours["external_views"][0]["href"] == "aerodrome/reports/"


def test_reports_are_read_from_s3_too(tmp_path):
    import boto3
    from aerodrome.storage import S3Storage
    from moto import mock_aws

    (tmp_path / UC).mkdir()
    (tmp_path / UC / "usecase.yaml").write_text("name: flight_delay\n")
    settings = dataclasses.replace(Settings.from_env(), data_root="s3://lake/prod", usecases_dir=tmp_path)
    with mock_aws():
        client = boto3.client("s3", region_name=settings.s3_region)
        client.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": settings.s3_region})
        write_samples(S3Storage(settings.data_root, settings, client))
        reports = TestClient(create_app(settings))
        assert f"href='drift/{DAY}/report.html'" in reports.get(f"/{UC}/").text
        assert reports.get(f"/{UC}/drift/{DAY}/report.html").content == DRIFT_HTML
        assert reports.get(f"/{UC}/promotions/v9.json").status_code == 404
