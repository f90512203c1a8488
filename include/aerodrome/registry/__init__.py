"""The model registry side of the lifecycle: promotion gates, alias moves and their append-only history.

MLflow stays the registry (versions, aliases `candidate`, `challenger`, `champion`, `rejected`); this
package decides when an alias may move and records every move, since MLflow keeps no alias history.
"""
