"""
### Latency probe (benchmarks only)

Five trivial tasks in a chain, triggered through the REST API by `bench/bench_airflow_startup.py`:
their run time is almost all scheduling and task start-up, which is what the benchmark measures.
Never deployed: the benchmark copies this file into a temporary dags folder.
"""

from datetime import UTC, datetime

from airflow.sdk import chain, dag, task

CHAIN_LENGTH = 5


@dag(
    dag_id="aerodrome_latency_probe",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    doc_md=__doc__,
    default_args={"owner": "ml-platform", "retries": 0},
    tags=["aerodrome", "bench"],
)
def aerodrome_latency_probe():
    @task
    def step() -> None:
        return None

    chain(*(step.override(task_id=f"step_{i}")() for i in range(CHAIN_LENGTH)))


aerodrome_latency_probe()
