"""The rich GX run (failures only) and the Data Docs site of a use case.

The site lives under `<data root>/data_docs/<usecase>/` with GX's validation-results store beside
it (`_store/`), so every failed run ever recorded stays listed on the index. An ephemeral GX
context is pointed at those folders: no `gx/` project scaffolding, ~5 ms to create. Storage that
is not a local folder (S3) gets the site built in a temporary folder and mirrored up.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

from aerodrome.storage import LocalStorage, Storage
from aerodrome.validate.custom import CustomOutcome, merge_results

DOCS_ZONE = "data_docs"
SITE = "aerodrome"
STORE_DIR = "_store"
DATASOURCE = "raw"
# Row-level detail: every unexpected value with its row position (the frame's index) in the file.
RICH_RESULT_FORMAT = {"result_format": "COMPLETE", "partial_unexpected_count": 20}


def docs_prefix(usecase: str) -> str:
    return f"{DOCS_ZONE}/{usecase}"


def docs_index_key(usecase: str) -> str:
    return f"{docs_prefix(usecase)}/index.html"


@contextmanager
def site_folder(storage: Storage, usecase: str) -> Iterator[Path]:
    """A local folder holding the use case's site; mirrored to `storage` when that is not local.

    GX lists on the index the pages present in the site, checked against the result store, so
    both are fetched first; only new or changed files go back (static assets once).
    """
    prefix = docs_prefix(usecase)
    if isinstance(storage, LocalStorage):
        folder = Path(storage.uri(prefix))
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="aerodrome-docs-") as tmp:
        folder = Path(tmp)
        fetched: dict[str, bytes] = {}
        has_static = False
        for key in storage.list(prefix):
            name = key[len(prefix) + 1 :]
            if name.startswith("static/"):
                has_static = True
                continue
            fetched[name] = storage.read_bytes(key)
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(fetched[name])
        yield folder
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            if name.startswith("static/") and has_static:
                continue
            data = path.read_bytes()
            if fetched.get(name) != data:
                storage.write_bytes(f"{prefix}/{name}", data)


def _context(folder: Path):
    stores = InMemoryStoreBackendDefaults().stores
    stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "root_directory": str(folder),
            "base_directory": STORE_DIR,
        },
    }
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "root_directory": str(folder),
            "base_directory": ".",
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        stores=stores,
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        data_docs_sites={SITE: site},
        progress_bars={"globally": False, "metric_calculations": False},
        analytics_enabled=False,
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _own_copy(suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    """A fresh suite object: adding one to a context stamps ids on it, and the cached one is shared."""
    return gx.ExpectationSuite(
        name=suite.name,
        meta=dict(suite.meta),
        expectations=[e.configuration.to_domain_obj() for e in suite.expectations],
    )


def run_and_document(
    suite: gx.ExpectationSuite,
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    folder: Path,
    ds: str,
    now: datetime,
) -> tuple[ExpectationSuiteValidationResult, Path]:
    """Run GX with row-level results, store the result, rebuild the site; returns (result, page)."""
    context = _context(folder)
    batch_definition = (
        context.data_sources.add_pandas(DATASOURCE)
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("partition")
    )
    registered = context.suites.add(_own_copy(suite))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=registered)
    )
    run_id = RunIdentifier(run_name=ds, run_time=now)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format=RICH_RESULT_FORMAT,
        run_id=run_id,
    )
    keys = [
        k
        for k in context.validation_results_store.list_keys()
        if k.run_id == run_id and k.expectation_suite_identifier.name == suite.name
    ]
    context.build_data_docs(
        site_names=[SITE], resource_identifiers=[ExpectationSuiteIdentifier(name=suite.name), *keys]
    )
    page = folder / "validations" / suite.name / ds
    pages = sorted(page.rglob("*.html")) if page.is_dir() else []
    return result, (pages[-1] if pages else folder / "index.html")


def build_suite_docs(suite: gx.ExpectationSuite, folder: Path) -> Path:
    """Render the suite page and the index (listing every stored result); returns the index path."""
    context = _context(folder)
    context.suites.add(_own_copy(suite))
    context.build_data_docs(site_names=[SITE], resource_identifiers=[ExpectationSuiteIdentifier(name=suite.name)])
    return folder / "index.html"


def result_document(result: ExpectationSuiteValidationResult, custom: Sequence[CustomOutcome] = ()) -> bytes:
    """GX's result as JSON, the custom rules' results merged in (`aerodrome.validate.custom.merge_results`)."""
    return json.dumps(merge_results(result.to_json_dict(), custom), indent=2, default=str).encode()
