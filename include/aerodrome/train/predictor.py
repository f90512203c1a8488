"""A trained model with its feature encoding: predicts from a frame of raw features, saves to a folder.

The same object scores the holdout during training and every request once served (the MLflow pyfunc
wraps it), so evaluation and serving cannot encode features differently. A saved predictor is a
folder: `predictor.json` (flavor, task, encoding, architecture) plus the flavor's own weights file.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aerodrome.train.inputs import FeatureEncoding, Frame, TrainingError

PREDICTOR_FILE = "predictor.json"
FLAVORS = {
    "xgboost": "aerodrome.train.xgb:XGBoostPredictor",
    "pytorch": "aerodrome.train.torch_mlp:MLPPredictor",
}


@dataclass
class FitReport:
    """How a fit went: resolved parameters, where it ran, the early-stopping point and the validation curve."""

    flavor: str
    device: str
    params: dict[str, Any]
    best_iteration: int
    iterations: int
    curve: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


class Predictor(ABC):
    """Scores a frame of raw features: the positive-class probability (classification) or the value."""

    flavor: ClassVar[str]

    def __init__(self, task: str, encoding: FeatureEncoding) -> None:
        self.task = task
        self.encoding = encoding

    @abstractmethod
    def predict(self, frame: Frame) -> np.ndarray: ...

    def set_threads(self, threads: int) -> None:  # noqa: B027 (a hook: flavors without a thread pool ignore it)
        """CPU threads one `predict` call may use (a server answering 1-row requests wants 1)."""

    @abstractmethod
    def save_weights(self, folder: Path) -> dict[str, Any]:
        """Write the weights into `folder`; return what `load` needs besides them (architecture, scaling)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, task: str, encoding: FeatureEncoding, config: dict[str, Any]) -> Predictor: ...

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.save_weights(folder)
        document = {"flavor": self.flavor, "task": self.task, "encoding": self.encoding.to_dict(), "model": config}
        (folder / PREDICTOR_FILE).write_text(json.dumps(document, indent=2))
        return folder


def load_predictor(folder: str | Path) -> Predictor:
    """The predictor saved in `folder` (its flavor's library is imported here, not before)."""
    folder = Path(folder)
    document = json.loads((folder / PREDICTOR_FILE).read_text())
    target = FLAVORS.get(document["flavor"])
    if target is None:
        raise TrainingError(f"{folder}: unknown model flavor {document['flavor']!r} (known: {', '.join(FLAVORS)})")
    module, _, name = target.partition(":")
    cls = getattr(import_module(module), name)
    return cls.load(folder, document["task"], FeatureEncoding.from_dict(document["encoding"]), document["model"])


def cpu_threads() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a pod's CPU limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible to this process (without importing a CUDA library)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def check_params(flavor: str, params: dict[str, Any], reserved: dict[str, str]) -> None:
    """Refuse parameters the trainer sets itself, naming the option that sets them."""
    taken = [f"{k!r} ({reserved[k]})" for k in params if k in reserved]
    if taken:
        raise TrainingError(f"{flavor} parameter(s) {', '.join(taken)} are set by the trainer, not by params")
