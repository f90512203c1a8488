"""DAGs of the use case `grid_load`, generated from its spec (`<usecases dir>/grid_load/usecase.yaml`).

A file of its own, so a broken spec is an import error of this file alone and every other use case's
DAGs stay up. Generated (edit the spec, not this file) by `aerodrome.dag_files.write_dag_file`:
`make usecase NAME=grid_load`.
"""

from aerodrome_airflow.dag_factory import usecase_dags
from airflow.sdk import get_parsing_context

# a task process needs only its own DAG: Airflow names it in the parsing context
globals().update(usecase_dags("grid_load", only=get_parsing_context().dag_id))
