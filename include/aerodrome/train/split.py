"""The time split: train, then validation (early stopping), then the most recent holdout. Never random.

Boundaries fall on midnights of the use case's time zone, so a day's events stay together. By default
the holdout is the last quarter of the window and validation the tenth before it, each rounded up to
whole days (a 2013 year window: train Jan 1 - Aug 24, validation Aug 25 - Sep 30, holdout Oct 1 - Dec 31).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from aerodrome.features.builders.base import DayClock
from aerodrome.train.inputs import TrainingError

HOLDOUT_SHARE = 0.25
VALIDATION_SHARE = 0.10
PARTS = ("train", "validation", "holdout")


@dataclass(frozen=True)
class TimeSplit:
    """Train `[start, validation_start)`, validation `[.., holdout_start)`, holdout `[holdout_start, end)`."""

    start: datetime
    validation_start: datetime
    holdout_start: datetime
    end: datetime

    def masks(self, stamps: pd.Series) -> dict[str, np.ndarray]:
        """One boolean mask per part over event timestamps (UTC); every stamp in the window is in exactly one."""
        bounds = [pd.Timestamp(b) for b in (self.start, self.validation_start, self.holdout_start, self.end)]
        return {
            part: ((stamps >= lo) & (stamps < hi)).to_numpy(dtype=bool)
            for part, lo, hi in zip(PARTS, bounds[:-1], bounds[1:], strict=True)
        }

    def as_params(self) -> dict[str, str]:
        return {
            "window_start": self.start.isoformat(),
            "validation_start": self.validation_start.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
            "window_end": self.end.isoformat(),
        }


def _utc(moment: datetime) -> datetime:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _local_day(clock: DayClock, moment: datetime) -> date:
    return pd.Timestamp(moment).tz_convert(clock.tz).date()


def plan_split(
    clock: DayClock,
    start: datetime,
    end: datetime,
    holdout_start: datetime | None = None,
    validation_start: datetime | None = None,
    holdout_share: float = HOLDOUT_SHARE,
    validation_share: float = VALIDATION_SHARE,
) -> TimeSplit:
    """Boundaries of the window `[start, end)`; given ones are kept, the others are shares of the window."""
    start, end = _utc(start), _utc(end)
    window_days = (end - start) / timedelta(days=1)
    if holdout_start is None:
        back = math.ceil(window_days * holdout_share - 1e-9)
        holdout_start = clock.start_of(_local_day(clock, end) - timedelta(days=back)).to_pydatetime()
    holdout_start = _utc(holdout_start)
    if validation_start is None:
        back = math.ceil(window_days * validation_share - 1e-9)
        validation_start = clock.start_of(_local_day(clock, holdout_start) - timedelta(days=back)).to_pydatetime()
    validation_start = _utc(validation_start)
    if not start < validation_start < holdout_start < end:
        raise TrainingError(
            f"cannot split the window {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC into train < validation "
            f"({validation_start:%Y-%m-%d %H:%M}) < holdout ({holdout_start:%Y-%m-%d %H:%M}): widen the window or "
            f"move --holdout-start / --validation-start inside it, in that order"
        )
    return TimeSplit(start, validation_start, holdout_start, end)
