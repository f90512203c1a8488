"""The DAG file of each use case: `dags/usecases/<name>.py`, a three-line loader of its generated DAGs.

One file per use case because Airflow isolates per file: a broken spec is an import error of its own
file (named in the UI with the use case, the field and the fix), a slow one times out alone, and the
other use cases' DAGs stay up. The file is generated, never edited: `write_dag_file` writes it
(`make usecase NAME=...` calls it), `missing_dag_files` lists use cases that have none yet.
"""

from __future__ import annotations

from pathlib import Path

DAG_FILES_FOLDER = "usecases"  # under the Airflow dags folder

_TEMPLATE = '''"""DAGs of the use case `{name}`, generated from its spec (`<usecases dir>/{name}/usecase.yaml`).

A file of its own, so a broken spec is an import error of this file alone and every other use case's
DAGs stay up. Generated (edit the spec, not this file) by `aerodrome.dag_files.write_dag_file`:
`make usecase NAME={name}`.
"""

from aerodrome_airflow.dag_factory import usecase_dags
from airflow.sdk import get_parsing_context

# a task process needs only its own DAG: Airflow names it in the parsing context
globals().update(usecase_dags("{name}", only=get_parsing_context().dag_id))
'''


def dag_file_text(name: str) -> str:
    """The source of the DAG file of use case `name`."""
    if not name.isidentifier() or not name.islower():
        raise ValueError(f"use-case name {name!r} must be lower-case letters, digits and '_' (a folder name)")
    return _TEMPLATE.format(name=name)


def dag_file_path(name: str, dags_folder: str | Path) -> Path:
    return Path(dags_folder) / DAG_FILES_FOLDER / f"{name}.py"


def write_dag_file(name: str, dags_folder: str | Path) -> Path:
    """Write (or refresh) `<dags_folder>/usecases/<name>.py` for use case `name`; returns its path."""
    path = dag_file_path(name, dags_folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dag_file_text(name)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def missing_dag_files(usecases_dir: str | Path, dags_folder: str | Path) -> list[str]:
    """Use cases under `usecases_dir` (folders with a usecase.yaml) that have no DAG file of their own."""
    folders = sorted(d for d in Path(usecases_dir).iterdir() if (d / "usecase.yaml").is_file())
    return [d.name for d in folders if not dag_file_path(d.name, dags_folder).is_file()]
