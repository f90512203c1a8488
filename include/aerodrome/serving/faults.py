"""Fault injection for canary drills: make one alias fail, slow down or shift its answers, on purpose.

Set through the admin route `POST /admin/{usecase}/faults`; it applies to every request the alias
answers until cleared (`DELETE`). Platform teams use it to check that a canary rolls a bad model back
before real traffic finds one; the tests use it the same way against a real gateway process.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np


class InjectedFault(RuntimeError):
    """Raised by a model that a fault drill told to fail."""


@dataclass(frozen=True)
class Fault:
    error_share: float = 0.0  # share of requests that raise
    extra_latency_ms: float = 0.0  # added before answering
    shift: float = 0.0  # added to every prediction (clipped to 0..1 for classifiers)

    def apply(self, predict, frame, classification: bool) -> np.ndarray:
        if self.error_share and random.random() < self.error_share:
            raise InjectedFault(f"fault drill: {self.error_share:.0%} of requests fail")
        if self.extra_latency_ms:
            time.sleep(self.extra_latency_ms / 1000)
        values = np.asarray(predict(frame), dtype=float) + self.shift
        return np.clip(values, 0.0, 1.0) if classification and self.shift else values
