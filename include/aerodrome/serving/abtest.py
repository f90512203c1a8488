"""The A/B test: challenger (B) against champion (A) on the online outcomes of a fixed split and horizon.

Each request is answered by ONE model (the gateway hashes its routing key into the split), so the two
arms are independent samples of different sizes, never pairs: no outcome has both models' predictions.
The outcomes are compared once, when the horizon ends (no peeking on the way: the test keeps its alpha).

* Classification: the error rate (misclassified at 0.5). Two-proportion z-test, two-sided, with the
  pooled standard error under H0 (as `statsmodels`' `proportions_ztest`). Confidence interval of the
  difference: Newcombe's hybrid score interval from two Wilson intervals (`method="newcomb"` in
  statsmodels), which keeps its coverage near 0 % errors, where Wald's collapses to a point. Effect
  size: Cohen's h.
* Regression: the absolute error of each labelled row. Welch's t-test (independent samples, unequal
  variances: two models rarely err alike) with Welch-Satterthwaite degrees of freedom, and its t
  interval of the mean difference. A paired test would need both models' errors on the same request,
  which a split never has; pairing time buckets' means would only correct a time mix the hash split
  already balances, for far fewer degrees of freedom. Absolute errors are skewed: the test rests on the
  means being near normal, sound from a few dozen outcomes per model. Effect size: Cohen's d.

The unit is a labelled row; rows of one request (and requests of one routing key) share a model, so
heavily clustered traffic makes the p-value optimistic. Decisions (`judge`):

* inconclusive: either model has fewer than `ab.min_labelled` labelled outcomes, or the difference is
  not significant at `ab.alpha` (both say how many outcomes per model would settle it);
* keep (the champion): the challenger errs significantly more, or significantly less but by less than
  `ab.min_effect` (relative to the champion's error): not worth a switch;
* promote: the challenger errs significantly less, by at least `ab.min_effect`.

The outcomes come from the durable prediction log, not the gateway's memory, so a restart loses none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from aerodrome.serving.abstats import POWER, Comparison, compare, needed_per_model
from aerodrome.serving.predlog import ZONE, read_day
from aerodrome.storage import Storage
from aerodrome.usecase import ABPolicy

LABELS = "labels"
THRESHOLD = 0.5  # a classifier's answer is "positive" from here, as in the gateway's online accuracy
Decision = Literal["promote", "keep", "inconclusive"]


@dataclass(frozen=True)
class Outcomes:
    """The labelled predictions of one model version over the horizon, one entry per row."""

    version: str
    predictions: np.ndarray
    labels: np.ndarray
    served: int = 0  # rows it answered in the horizon, labelled or not
    fallbacks: int = 0  # rows it answered after the challenger raised (left out: not randomised to it)

    @property
    def labelled(self) -> int:
        return len(self.labels)


def no_outcomes(version: str) -> Outcomes:
    return Outcomes(version, np.empty(0), np.empty(0))


def model_errors(task: str, outcomes: Outcomes) -> np.ndarray:
    """Per labelled row: 1.0 when misclassified at 0.5 (classification), else the absolute error."""
    p, y = np.asarray(outcomes.predictions, dtype=float), np.asarray(outcomes.labels, dtype=float)
    if task == "classification":
        return ((p >= THRESHOLD) != (y >= THRESHOLD)).astype(float)
    return np.abs(p - y)


@dataclass(frozen=True)
class ABVerdict:
    usecase: str
    task: str
    champion: str | None
    challenger: str
    decision: Decision
    reason: str
    policy: dict[str, Any]
    comparison: Comparison | None = None
    needed_per_model: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False

    def lines(self) -> list[str]:
        """The verdict for a task log: the figures, the test, the decision and why."""
        split = self.policy.get("split_percent")
        out = [
            f"A/B test {self.usecase}: v{self.challenger} (challenger, {split:g} % of the traffic) vs "
            f"v{self.champion} (champion): {self.decision.upper()}"
        ]
        c = self.comparison
        if c is not None:
            pct = c.metric == "error_rate"
            value = (lambda x: f"{x:.2%}") if pct else (lambda x: f"{x:.4g}")
            delta = (lambda x: f"{x * 100:+.2f} pts") if pct else (lambda x: f"{x:+.4g}")
            relative = f" ({c.relative_change:+.1%})" if c.relative_change is not None else ""
            out.append(
                f"  {c.metric}: challenger {value(c.challenger)} on {c.n_challenger} labelled, "
                f"champion {value(c.champion)} on {c.n_champion}"
            )
            out.append(
                f"  difference {delta(c.difference)}{relative}, {c.confidence:.0%} CI "
                f"[{delta(c.ci_low)}, {delta(c.ci_high)}] ({c.ci_method})"
            )
            stat = "inf" if c.statistic is None else f"{c.statistic:+.3f}"
            df = f", {c.df:.1f} df" if c.df is not None else ""
            effect = "undefined" if c.effect_size is None else f"{c.effect_size:+.3f}"
            out.append(
                f"  {c.test}: statistic {stat}{df}, p = {c.p_value:.3g} "
                f"({'significant' if c.significant else 'not significant'} at alpha {c.alpha:g}); "
                f"{c.effect_size_name} {effect}"
            )
        for version, figures in self.figures.items():
            out.append(f"  v{version}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        out.append(f"  {self.decision}: {self.reason}")
        return out

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "comparison"}
        return {**data, "comparison": self.comparison.as_dict() if self.comparison else None}


def _describe(c: Comparison) -> str:
    fmt = (lambda x: f"{x:.2%}") if c.metric == "error_rate" else (lambda x: f"{x:.4g}")
    relative = f", {c.relative_change:+.1%}" if c.relative_change is not None else ""
    return f"{c.metric} {fmt(c.challenger)} vs {fmt(c.champion)}{relative}, p = {c.p_value:.3g}"


def decide(c: Comparison, policy: ABPolicy) -> tuple[Decision, str]:
    """Promote, keep or inconclusive from a comparison with enough outcomes (see the module's rules)."""
    if not c.significant:
        return "inconclusive", f"no significant difference ({_describe(c)} >= alpha {policy.alpha:g})"
    if c.difference > 0:
        return "keep", f"the challenger errs significantly more ({_describe(c)})"
    gain = c.improvement if c.improvement is not None else 0.0
    if gain < policy.min_effect:
        return "keep", (
            f"the challenger errs significantly less, but by {gain:.1%} < ab.min_effect {policy.min_effect:.1%} "
            f"({_describe(c)})"
        )
    return "promote", f"the challenger errs significantly less ({_describe(c)}; ab.min_effect {policy.min_effect:.1%})"


def judge(policy: ABPolicy, usecase: str, task: str, champion: Outcomes | None, challenger: Outcomes) -> ABVerdict:
    """The verdict on the horizon's labelled outcomes of both models."""
    champion = champion or no_outcomes("")
    a, b = model_errors(task, champion), model_errors(task, challenger)
    figures = {
        o.version: {"served": o.served, "labelled": o.labelled, "fallbacks": o.fallbacks}
        for o in (champion, challenger)
        if o.version
    }
    comparison = compare(task, a, b, policy.alpha) if min(len(a), len(b)) >= 2 else None
    needed = needed_per_model(task, a, b, policy.alpha, policy.min_effect) if comparison is not None else None
    effect = f"a {policy.min_effect:.0%} reduction" if policy.min_effect > 0 else "the difference observed"
    power = f"about {needed} per model would detect {effect} with {POWER:.0%} power" if needed else ""
    if min(len(a), len(b)) < policy.min_labelled:
        decision: Decision = "inconclusive"
        reason = (
            f"too few labelled outcomes: champion {len(a)}, challenger {len(b)}; each model needs "
            f"{policy.min_labelled} (ab.min_labelled)" + (f"; {power}" if power else "")
        )
    else:
        decision, reason = decide(comparison, policy)
        if decision == "inconclusive" and power:
            reason += f"; {power}"
    return ABVerdict(
        usecase,
        task,
        champion.version or None,
        challenger.version,
        decision,
        reason,
        policy.model_dump(),
        comparison,
        needed,
        figures,
    )


def stopped_early(
    policy: ABPolicy, usecase: str, task: str, champion: str | None, challenger: str, reason: str
) -> ABVerdict:
    """The canary's harm limits stopped the test: the champion is kept, whatever the outcomes."""
    return ABVerdict(
        usecase, task, champion, challenger, "keep", f"stopped early: {reason}", policy.model_dump(), stopped_early=True
    )


# -- the outcomes, from the durable prediction log --------------------------------------------------
def _written_ms(name: str) -> float:
    """The write time in the name of a log file (`part-<ms>-<pid>-<n>.parquet`, `compacted-<ms>.parquet`)."""
    try:
        return float(name.split("-")[1].split(".")[0])
    except (IndexError, ValueError):
        return math.inf  # an unknown name: read it rather than miss outcomes


def written_days(storage: Storage, usecase: str, since: datetime, zone: str = ZONE) -> list[str]:
    """The days of the log's `zone` with a file written at or after `since` (names only, nothing read).

    Predictions are filed under the day of the event they are about, labels under their arrival day,
    so neither is the horizon's calendar; a file holds what was logged before its name's time.
    """
    prefix, cutoff = f"{zone}/{usecase}/", math.floor(since.timestamp() * 1000)  # names carry whole ms
    days = set()
    for key in storage.list(prefix.rstrip("/")):
        folder, _, name = key[len(prefix) :].rpartition("/")
        if folder.startswith("date=") and name.endswith(".parquet") and _written_ms(name) >= cutoff:
            days.add(folder.removeprefix("date="))
    return sorted(days)


def _read(storage: Storage, usecase: str, days: Iterable[str], zone: str) -> Any:
    import pandas as pd

    frames = [f for f in (read_day(storage, usecase, d, zone) for d in days) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_outcomes(
    storage: Storage,
    usecase: str,
    days: Iterable[str],
    label_days: Iterable[str],
    since: datetime,
    until: datetime,
    versions: Iterable[str],
) -> dict[str, Outcomes]:
    """Per version: its predictions served in [since, until) on the log's `days`, joined on (request id, row)
    with the labels of `label_days` that arrived since `since` (the newest per row wins).

    A row the champion answered because the challenger raised is left out of both (it was routed to the
    challenger, answered by the champion) and counted as the champion's `fallbacks`.
    """
    import pandas as pd

    versions = [v for v in versions if v]
    predictions, labels = _read(storage, usecase, days, ZONE), _read(storage, usecase, label_days, LABELS)
    if predictions.empty:
        return {v: no_outcomes(v) for v in versions}
    key = ["request_id", "row"]
    predictions = predictions.assign(
        _at=pd.to_datetime(predictions["served_at"], utc=True), model_version=predictions["model_version"].astype(str)
    )
    inside = (predictions["_at"] >= pd.Timestamp(since)) & (predictions["_at"] < pd.Timestamp(until))
    served = predictions[inside & predictions["model_version"].isin(versions)]
    served = served.sort_values("_at").drop_duplicates(key, keep="last")  # a reused request id: its last answer
    answered = served[~served["fallback"].astype(bool)]
    if labels.empty:
        joined = answered.iloc[0:0].assign(label=pd.Series(dtype=float))
    else:
        received = pd.to_datetime(labels["received_at"], utc=True)
        labels = labels[received >= pd.Timestamp(since)].assign(_received=received)
        labels = labels.sort_values("_received").drop_duplicates(key, keep="last")[[*key, "label"]]
        joined = answered.merge(labels, on=key, how="inner")
    out = {}
    for version in versions:
        mine = joined[joined["model_version"] == version]
        out[version] = Outcomes(
            version,
            mine["prediction"].to_numpy(dtype=float),
            mine["label"].to_numpy(dtype=float),
            served=int((answered["model_version"] == version).sum()),
            fallbacks=int((served["fallback"].astype(bool) & (served["model_version"] == version)).sum()),
        )
    return out


def horizon_outcomes(
    storage: Storage, usecase: str, since: datetime, until: datetime, versions: Iterable[str]
) -> dict[str, Outcomes]:
    """`read_outcomes` over the days the log was written to since `since`."""
    days, label_days = written_days(storage, usecase, since), written_days(storage, usecase, since, LABELS)
    return read_outcomes(storage, usecase, days, label_days, since, until, versions)


# -- the record ----------------------------------------------------------------------------------------
def report_key(usecase: str, version: str, started: datetime) -> str:
    return f"registry/{usecase}/abtest/v{version}/{started:%Y%m%dT%H%M%SZ}.json"


def write_report(storage: Storage, verdict: ABVerdict, started: datetime, until: datetime) -> str:
    """The verdict as JSON under the data root (one file per test, never overwritten by a later one)."""
    key = report_key(verdict.usecase, verdict.challenger, started)
    record = {**verdict.as_dict(), "started": started.isoformat(), "ended": until.isoformat()}
    storage.write_bytes(key, json.dumps(record, indent=2, default=str).encode())
    return key


def record_decision(settings: Any, storage: Storage, verdict: dict[str, Any], actor: str) -> list[dict[str, Any]]:
    """Apply a verdict (`as_dict()` plus `report_key`) as alias moves, each appended to the alias history.

    promote: `champion` moves to the challenger (`crown`). keep: alias `rejected` with the reason
    (`reject`). inconclusive: the challenger keeps its alias, so a longer test can follow; the decision
    is appended to the history as a move of `challenger` to the version it already has. The version's
    tags `abtest.decision`, `abtest.reason`, `abtest.report` say which, in every case.
    """
    from aerodrome.registry.aliases import CHALLENGER, AliasMove, alias_version, append_move, registry_client
    from aerodrome.registry.decisions import DecisionError, crown, reject

    model, version, decision = verdict["usecase"], verdict["challenger"], verdict["decision"]
    reason = f"A/B test: {verdict['reason']}"
    details = {"decision": decision, "report": verdict.get("report_key"), "comparison": verdict.get("comparison")}
    client = registry_client(settings.tracking_uri)
    if decision == "promote":
        moves = crown(settings, storage, model, version, actor, f"{reason} (report {verdict.get('report_key')})")
    elif decision == "keep":
        moves = reject(settings, storage, model, version, actor, reason, details)
    else:
        current = alias_version(client, model, CHALLENGER)
        if current != version:
            raise DecisionError(f"{model} @challenger is v{current}, not v{version}: this A/B test is stale")
        moves = [append_move(storage, model, AliasMove(model, CHALLENGER, version, version, actor, reason, details))]
    client.set_model_version_tag(model, version, "abtest.decision", decision)
    client.set_model_version_tag(model, version, "abtest.reason", reason[:4000])
    client.set_model_version_tag(model, version, "abtest.report", str(verdict.get("report_key")))
    return moves
