"""`aerodrome usecase new <name>`: a commented starter folder that passes `aerodrome usecase check` as written.

The starter is a small, generic domain (will an order be returned?) whose every section says what it
means and what else it may say; a generated sample (two days of drops) lets the check run at once.
Replace the columns, expectations and sample with your own data, then add features and a model.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aerodrome.errors import SpecError
from aerodrome.usecase import SPEC_FILE

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SAMPLES_DIR = "samples"
START = date(2024, 1, 1)
SAMPLE_DAYS = 14  # two weeks: enough for `make demo` to train and promote a first model
CHANNELS = ("web", "app", "store")

SPEC_TEMPLATE = """\
# {name}: TODO one line: what the model predicts, for whom, and when the prediction is made.
# Written by `aerodrome usecase new {name}`: a starter domain (will an order be returned?) that passes
# the check as written. Replace its columns, expectations and samples with your own, then check again:
#   python -m aerodrome.cli usecase check {folder} --sample {folder}/{samples}
# Every field and its default: docs/authoring.md and the models in include/aerodrome/usecase.py.
name: {name}                 # must equal the folder name; names every DAG (ingest_{name}, ...)
description: >-
  TODO: what is predicted and why. Shown on every generated DAG's page.
owner: my-team               # the owner of every generated task in the Airflow UI
tags: [starter]

# -- source: where one day of data comes from (one partition = one day, keyed YYYY-MM-DD) -----------
# file_drop: one file per day in a landing folder (relative to the data root, absolute, or s3://);
#   {{ds}} in the pattern is the day. format: csv or parquet.
# postgres: the rows of a table whose timestamp falls in the day, through an Airflow connection:
#   source: {{kind: postgres, table: public.orders, conn_id: aerodrome_source_db, timestamp_column: ordered_at}}
source:
  kind: file_drop
  path: landing/{name}
  pattern: "orders_{{ds}}.csv"
  format: csv

# -- columns: every column the checks, features or model read, with its type -----------------------
# string, int, float, bool or timestamp. Ingest casts each one and fails at once (no retry) naming
# the file, the column, the row and the value that does not fit. Undeclared columns are kept as they are.
columns:
  order_id: string
  customer_id: string
  ordered_at: timestamp
  channel: string
  basket_value: float
  items: int
  returned: bool

natural_key: [order_id]        # columns that identify one row (make it unique with an expectation below)
entity_keys: [customer_id]     # what a prediction is about
event_timestamp: ordered_at    # when the row happened (a timestamp column)
target:
  column: returned
  task: classification         # or regression (then promotion.metric is mae or rmse)
  # threshold: 15              # classification of a number: label = column > threshold (not for bool)

# -- schedule: the partitions --------------------------------------------------------------------
schedule:
  start_date: {start}          # the first day (partition) to ingest; `make demo` replays DAYS days from here
  # end_date: 2024-12-31       # the last day; open-ended without it
  catchup: false               # true: one ingest run for every past day since start_date
  # ingest: "30 2 * * *"       # when a day is ingested (once a day, UTC); default @daily

# -- expectations: the Great Expectations gate between raw/ and validated/ --------------------------
# Types: not_null, between (min/max), in_set (values), unique (column or columns), row_count (min/max),
# type (values: [dtype]), freshness (column: the newest value lies min..max hours after the day's start,
# UTC). `mostly: 0.99` lets 1 % of the non-null rows fail. A failing day is quarantined with the reason.
expectations:
  - {{type: row_count, min: 50, max: 100000}}
  - {{type: not_null, column: order_id}}
  - {{type: not_null, column: customer_id}}
  - {{type: not_null, column: ordered_at}}
  - {{type: unique, columns: [order_id]}}
  - {{type: in_set, column: channel, values: [web, app, store]}}
  - {{type: between, column: basket_value, min: 0, max: 10000}}
  - {{type: between, column: items, min: 1, max: 100}}
  - {{type: freshness, column: ordered_at, min: 0, max: 24}}

# -- features: the Feast repository (optional; without it the DAGs are ingest, validate, reconcile) --
# Declarative kinds, no Python (docs/features.md): `trailing` aggregates per entity over N days/hours,
# `lag` (a column's latest known value per entity), `asof` (a second ingested source, e.g. weather);
# where YAML ends, `compute: module:function` from this folder. Every row is stamped when its value
# became known, so the point-in-time join never sees the future. A feature of the outcome (say the
# customer's return rate) needs `known_at: <column: when the return was known>` (or `known_after_minutes: N`)
# on its view, so it counts only the returns known by then: the check refuses a view over the target or a
# model.leaky_columns column stamped at its own event time (a label leak).
features:
  calendar: {{hour: hour, weekday: weekday}}          # parts of the local event time, as columns
  entities: {{customer_id: string, channel: string}}  # join keys of the views; string keys can be categories
  request_features: [basket_value, items, hour, weekday]   # numbers known when the request is made
  views:
    - name: customer_orders
      kind: trailing                                 # one row per customer at midnight after each day
      entities: [customer_id]
      ttl_hours: 48                                  # older rows are neither served nor joined
      features:
        customer_orders_28d: {{type: int, agg: count, days: 28}}
        customer_basket_mean_28d: {{type: float, agg: mean, column: basket_value, days: 28}}
      description: The customer's orders over the last 28 days.
    - name: customer_last_order
      kind: lag                                      # the latest known value, stamped when it was known
      entities: [customer_id]
      ttl_hours: 720
      features:
        customer_prev_basket: {{type: float, column: basket_value}}
      description: The value of the customer's previous order.

# -- model: what is trained on each week's sliding window (aerodrome.train) -------------------------
model:
  flavor: xgboost                      # or pytorch (an MLP)
  params: {{n_estimators: 200, max_depth: 4, learning_rate: 0.1}}
  categorical: [channel]               # entity keys fed as categories (default: every string entity key)
  slices: [channel]                    # columns with their own metrics (and the promotion's slice gate);
                                       # a value needs 100 holdout rows, else only its row count is recorded
  window_days: 28                      # the sliding training window, ending with the week
  # leaky_columns: []                  # known only after the prediction moment: never features
  # resources: {{cpu: "2", memory: 4Gi, gpu: 0}}   # the training pod on Kubernetes

# -- promotion, rollout, drift: defaults shown; uncomment to change -------------------------------
# promotion: {{metric: roc_auc, min_improvement: 0.0, max_slice_regression: 0.02, latency_budget_ms: 50}}
# rollout: canary                      # or ab (then an `ab:` section)
# canary: {{steps: [5, 25, 50, 100], analysis_minutes: 30}}
# drift: {{schedule: "@daily", max_drifted_share: 0.3}}
"""

README_TEMPLATE = """\
# Use case `{name}`

Scaffolded by `aerodrome usecase new {name}`. The spec is `usecase.yaml` (every section commented);
its DAGs are generated from it: `ingest_{name}`, `validate_{name}`, `reconcile_{name}`, and with the
`features:` section `features_`, `train_`, `promote_`, `canary_` (or `abtest_`), `rollback_` and
`drift_{name}`. `make usecase NAME={name}` also writes the use case's own DAG file,
`dags/usecases/{name}.py`, so a broken spec hides only this use case's DAGs.

## Sample data

`{samples}/` holds {days} generated day(s) of the starter domain as the source would drop them
(`orders_YYYY-MM-DD.csv`: the day is read from the file name, as the spec's `source.pattern` says).
They are made up; replace them with a few real days of your source (the same format, one day per
file) and run the check, which takes seconds and needs no Airflow:

    python -m aerodrome.cli usecase check {folder} --sample {folder}/{samples}

It validates the spec, casts each sample to the declared columns (naming the file, column and row of a
value that does not fit), runs the expectations on each day, computes the features of every sample
day and prints the head of each feature table.

## Running the lifecycle

Put the daily files where the source expects them (`source.path` under the data root, by default
`.aerodrome/data/landing/{name}/`), then run the DAGs on the embedded Airflow, one day after another:

    mkdir -p .aerodrome/data/landing/{name} && cp {folder}/{samples}/*.csv .aerodrome/data/landing/{name}/
    make demo USECASE={name} DAYS={days}

The demo replays DAYS days from the spec's `schedule.start_date` ({start}): the landing folder must hold a
file for each of them (`START=YYYY-MM-DD` replays from another day). Each value of `model.slices` needs 100
rows in the holdout (the latest quarter of the training window) to get its own metrics; with fewer, only
its row count is recorded and the slice gate has nothing to compare.

See docs/authoring.md.
"""


@dataclass(frozen=True)
class Scaffold:
    """What `new_usecase` wrote."""

    folder: Path
    files: list[Path]


def sample_orders(day: date, rows: int = 120, seed: int = 0) -> str:
    """One day of the starter domain as CSV: deterministic per day, valid against the starter spec."""
    rng = random.Random(f"{seed}-{day.isoformat()}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    lines = ["order_id,customer_id,ordered_at,channel,basket_value,items,returned"]
    for i in range(rows):
        at = start + timedelta(seconds=int(i * 86_000 / rows) + rng.randrange(0, 300))
        items = rng.randint(1, 8)
        value = round(rng.uniform(5, 60) * items, 2)
        returned = rng.random() < (0.08 + 0.02 * items)
        lines.append(
            f"{day:%Y%m%d}-{i:05d},c{rng.randrange(1, 60):04d},{at.isoformat()},{rng.choice(CHANNELS)},"
            f"{value},{items},{str(returned).lower()}"
        )
    return "\n".join(lines) + "\n"


def write_dag_loader(name: str, dags_folder: Path | None) -> list[Path]:
    """HOOK (per-use-case DAG loader): the use case's own DAG file, so a broken spec is an import error of that
    file alone (`aerodrome.dag_files`: `<dags folder>/usecases/<name>.py`). Without a dags folder nothing is
    written; `dags/aerodrome_usecases.py` then builds the use case with the others that have no file."""
    if dags_folder is None:
        return []
    from aerodrome.dag_files import write_dag_file

    return [write_dag_file(name, dags_folder)]


def new_usecase(
    name: str,
    usecases_dir: Path,
    *,
    force: bool = False,
    dags_folder: Path | None = None,
    sample_days: int = SAMPLE_DAYS,
) -> Scaffold:
    """Write `<usecases_dir>/<name>/` with a commented usecase.yaml, a README and generated samples, and with
    `dags_folder` the use case's DAG file."""
    if not NAME.match(name):
        raise SpecError(
            f"use-case name {name!r}: use lower-case letters, digits and underscores, starting with a letter "
            "(it names the folder, the DAGs and the registered model)"
        )
    folder = Path(usecases_dir) / name
    if (folder / SPEC_FILE).exists() and not force:
        raise SpecError(f"{folder / SPEC_FILE} exists already: pick another name, or pass --force to overwrite it")
    shown = _shown(folder)
    files = {
        folder / SPEC_FILE: SPEC_TEMPLATE.format(name=name, folder=shown, samples=SAMPLES_DIR, start=START),
        folder / "README.md": README_TEMPLATE.format(
            name=name, folder=shown, samples=SAMPLES_DIR, days=sample_days, start=START
        ),
    }
    for offset in range(sample_days):
        day = START + timedelta(days=offset)
        files[folder / SAMPLES_DIR / f"orders_{day.isoformat()}.csv"] = sample_orders(day)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Scaffold(folder, sorted([*files, *write_dag_loader(name, dags_folder)]))


def _shown(folder: Path) -> str:
    """The folder as a user would type it: relative to the current directory when below it."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)
