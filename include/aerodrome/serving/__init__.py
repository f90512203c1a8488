"""The serving side: the model gateway (FastAPI), its routing, model loading and prediction log.

`python -m aerodrome.serving` starts the gateway; `create_app` builds it for tests and embedding.
"""
