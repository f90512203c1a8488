"""
### Batch scoring of the flight-delay champion (an example of a hand-written DAG)

Written against Aerodrome's public API (`aerodrome_airflow`, `aerodrome_airflow.tasks`), as an ML
engineer would write a DAG of their own next to the generated ones (docs/authoring.md).

* **When**: once per featured day. Each `features/flight_delay` event (the features DAG finished a
  day) starts one run keyed by that day (partitioned asset, identity mapping): nightly in steady
  state, day by day in a catch-up. By hand: the day in **ds**, or empty for the newest featured day.
* **What**: the `@champion` model (or the **alias** in the form) scores the day's flights, their
  features taken by the same point-in-time join as training, and the scores replace
  `scores/flight_delay/date=YYYY-MM-DD/` under the data root (Parquet + manifest with the model
  version and sha256). Re-running a day gives the same file, never duplicates.
* **Emits**: `scores/flight_delay` keyed by the day, for whatever consumes the scores next.
* No champion yet (the first weeks of a catch-up): the run is skipped, not failed.
"""

from datetime import UTC, datetime, timedelta

from aerodrome_airflow import features_asset, tasks, zone_asset
from airflow.sdk import IdentityMapper, Param, PartitionedAssetTimetable, dag, task

USECASE = "flight_delay"
SCORES = zone_asset("scores", USECASE)


@dag(
    dag_id=f"example_batch_scoring_{USECASE}",
    description="Example hand-written DAG: the champion scores each featured flight day into scores/",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=features_asset(USECASE), default_partition_mapper=IdentityMapper()),
    start_date=datetime(2013, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    default_args={"owner": "ml-engineering", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["aerodrome", "example", "scoring", USECASE],
    params={
        "ds": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Partition (day)",
            description="The day to score. Empty: the run's partition key, else the newest featured day.",
        ),
        "alias": Param("champion", enum=["champion", "challenger"], title="Model alias to score with"),
    },
)
def example_batch_scoring():
    @task
    def pick_partition(**context) -> str:
        """The day: the run's partition key, the form's ds, or the newest featured day."""
        return tasks.run_partition(context, USECASE, zone="features")

    @task(outlets=[SCORES])
    def score_partition(day: str, **context) -> dict:
        """Score the day with the model alias and replace its scores partition; announce it."""
        # (an argument may not be called `ds`: Airflow reserves the context's names)
        scored = tasks.score_partition(USECASE, day, alias=context["params"]["alias"])
        tasks.emit_partition(context, SCORES, day, rows=scored["rows"], version=scored["version"])
        return scored

    score_partition(pick_partition())


example_batch_scoring()
