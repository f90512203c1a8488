"""Traffic replayer for demos and canary drills: each day's events sent through the gateway as clients
would, one request per event, then (optionally, later) the real outcomes posted as labels.

`python -m aerodrome.serving.replay --usecase flight_delay --day 2013-02-14 [--days 3] [--labels]`
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from aerodrome.serving.client import GatewayClient, GatewayError
from aerodrome.serving.inputs import request_columns
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


def json_value(value: Any) -> Any:
    """A cell of a frame as a JSON value: None for any missing value, ISO text for instants."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def day_traffic(spec: UseCase, storage: Storage, day: date) -> tuple[list[dict[str, Any]], list[float | None]]:
    """The validated events of `day` as request rows (request columns only) and their labels (None: unknown)."""
    import pandas as pd

    from aerodrome.features.offline import read_validated
    from aerodrome.features.training import label_of

    frame = read_validated(storage, spec, day, day)
    columns = request_columns(spec)
    rows = [
        {c: json_value(v) for c, v in zip(columns, values, strict=True)}
        for values in frame[columns].itertuples(index=False)
    ]
    target = frame[spec.target.column]
    labels = label_of(spec, target).astype("float64").where(target.notna())
    return rows, [None if pd.isna(v) else float(v) for v in labels]


@dataclass
class ReplayStats:
    sent: int = 0
    failed: int = 0
    labelled: int = 0
    aliases: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        split = ", ".join(f"{a} {n}" for a, n in sorted(self.aliases.items()))
        return (
            f"{self.sent} request(s) ({split or 'none answered'}), {self.failed} failed, "
            f"{self.fallbacks} answered by the champion after a challenger error, {self.labelled} label(s) posted"
        )


def replay(
    client: GatewayClient,
    usecase: str,
    rows: list[dict[str, Any]],
    labels: list[float | None] | None = None,
    *,
    prefix: str = "replay",
    stop: threading.Event | None = None,
    rounds: int = 1,
    pause_s: float = 0.0,
    label_every: int = 0,
) -> ReplayStats:
    """Send every row as one request (`<prefix>-<round>-<i>`), then post the known labels; `stop` ends early.

    `label_every` > 0 posts the outcomes of each `label_every` sent requests as soon as they are sent
    (outcomes arriving in small batches, as a canary's window needs them); 0 posts them at the end.
    """
    stats = ReplayStats()

    def post(sent: list[tuple[int, str]]) -> None:
        known = [{"request_id": rid, "row": 0, "label": labels[i]} for i, rid in sent if labels[i] is not None]
        for start in range(0, len(known), 5000):
            stats.labelled += client.labels(usecase, known[start : start + 5000])["accepted"]

    for turn in range(rounds):
        sent_ids: list[tuple[int, str]] = []
        for i, row in enumerate(rows):
            if stop is not None and stop.is_set():
                return stats
            if labels is not None and label_every and len(sent_ids) >= label_every:
                post(sent_ids)
                sent_ids = []
            request_id = f"{prefix}-{turn}-{i}"
            try:
                answer = client.predict(usecase, [row], request_id=request_id, routing_key=request_id)
                stats.aliases[answer["alias"]] += 1
                stats.fallbacks += bool(answer["fallback"])
                sent_ids.append((i, request_id))
            except GatewayError as exc:
                stats.failed += 1
                stats.errors.append(str(exc)[:300])
            stats.sent += 1
            if pause_s:
                time.sleep(pause_s)
        if labels is not None:
            post(sent_ids)
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usecase", default="flight_delay")
    parser.add_argument("--day", type=date.fromisoformat, required=True, help="first day to replay")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--labels", action="store_true", help="post the outcomes after each day")
    parser.add_argument("--url", default=None, help="gateway URL (default: AERODROME_GATEWAY_URL or local)")
    args = parser.parse_args(argv)

    import os

    from aerodrome.serving.client import DEFAULT_URL
    from aerodrome.serving.tokens import URL_ENV, gateway_tokens
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import load_usecase

    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / args.usecase)
    storage = open_storage(settings.data_root, settings)
    token, admin = gateway_tokens(settings.data_root)
    client = GatewayClient(args.url or os.environ.get(URL_ENV, DEFAULT_URL), token, admin)
    for n in range(args.days):
        day = args.day + timedelta(days=n)
        rows, labels = day_traffic(spec, storage, day)
        began = time.perf_counter()
        stats = replay(client, spec.name, rows, labels if args.labels else None, prefix=day.isoformat())
        print(f"{day}: {stats.summary()} in {time.perf_counter() - began:.1f}s", flush=True)


if __name__ == "__main__":
    main()
