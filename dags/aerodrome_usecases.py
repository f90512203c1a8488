"""
### Aerodrome use-case DAGs

One set of DAGs per folder under `include/usecases/`: the spec (`usecase.yaml`) declares the source,
schema, expectations, features, model, promotion gates, canary and drift policy; this file only wires
them. Adding a use case means adding a folder, never editing this file.
"""

from aerodrome_airflow.dag_factory import build_usecase_dags
from airflow.sdk import get_parsing_context

# a task process needs only its own DAG: Airflow names it in the parsing context
globals().update(build_usecase_dags(only=get_parsing_context().dag_id))
