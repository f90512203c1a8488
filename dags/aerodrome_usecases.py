"""
### Aerodrome use-case DAGs without a DAG file of their own

Each use case's DAGs are generated from its spec (`usecase.yaml`: source, schema, expectations,
features, model, promotion gates, canary and drift policy). A use case normally has its own DAG file,
`dags/usecases/<name>.py` (`make usecase NAME=<name>` writes it), so a broken spec is an import error
of that file alone. This file builds the use cases that have none (a folder just added, a test
domain): a broken spec among them is an import error of this file, naming the use case, field and fix.
"""

from pathlib import Path

from aerodrome_airflow.dag_factory import build_usecase_dags
from airflow.sdk import get_parsing_context

# a task process needs only its own DAG: Airflow names it in the parsing context
globals().update(build_usecase_dags(only=get_parsing_context().dag_id, dags_folder=Path(__file__).parent))
