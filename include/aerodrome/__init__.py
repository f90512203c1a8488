"""Aerodrome domain library: plain Python for every stage of a model's life, no Airflow import."""

__version__ = "0.1.0"
