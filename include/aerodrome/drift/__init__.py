"""The drift loop: the champion's reference statistics, the nightly check of served data against them,
the Evidently report, and the retrain request with its cool-down.

* `reference`: per-feature bins and shares, the prediction distribution and the holdout metrics of a
  model version, computed once (at promotion, or on demand) and stored as JSON.
* `stats`: the scores (PSI, Jensen-Shannon distance) on those stored bins.
* `check`: one served batch against the reference: column drift, prediction drift, realized metric.
* `report`: the Evidently HTML + JSON report of a sample, stored next to our summary.
* `retrain`: the `retrain_requested` decision, at most once per cool-down.
* `run`: the nightly check of one use case and day, end to end.
"""
