"""DAGs of the use case `flight_delay`, generated from its spec (`<usecases dir>/flight_delay/usecase.yaml`).

A file of its own, so a broken spec is an import error of this file alone and every other use case's
DAGs stay up. Generated (edit the spec, not this file) by `aerodrome.dag_files.write_dag_file`:
`make usecase NAME=flight_delay`.
"""

from aerodrome_airflow.dag_factory import usecase_dags
from airflow.sdk import get_parsing_context

# a task process needs only its own DAG: Airflow names it in the parsing context
globals().update(usecase_dags("flight_delay", only=get_parsing_context().dag_id))
