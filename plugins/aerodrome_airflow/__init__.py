"""Airflow adapters for the aerodrome library: operators, DAG factory, settings loader, demo runner."""
