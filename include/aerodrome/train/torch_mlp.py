"""PyTorch flavor: an MLP over standardised numbers and embeddings of categories, on CUDA when present.

The training set goes to the device once as tensors; a batch is an index slice of a seeded permutation
(no DataLoader, no per-row Python). On CUDA the forward pass runs under bf16 autocast; on CPU in fp32
by default (few CPUs have a fast bf16 path). Early stopping keeps the weights of the best validation
epoch. The fitted module is scored on the CPU in fp32, as it will be served. Importing this module
imports torch: `aerodrome.train` loads it only for a PyTorch model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from aerodrome.train.inputs import DeviceUnavailableError, FeatureEncoding, TrainingError
from aerodrome.train.predictor import FitReport, Predictor, cpu_threads

MODEL_FILE = "model.pt"
DEFAULTS: dict[str, Any] = {
    "hidden": [256, 128],
    "dropout": 0.1,
    "epochs": 20,
    "batch_size": 1024,
    "learning_rate": 2e-3,
    "weight_decay": 1e-5,
    "patience": 3,
    "max_embedding_dim": 16,
    "precision": "auto",
}
PRECISIONS = ("auto", "bf16", "fp32")
CLIP = 8.0  # standardised values beyond 8 std are clipped: a few extreme delays must not dominate a batch
SCORING_BATCH = 65_536
LOSS_NAMES = {"classification": "log_loss", "regression": "rmse"}


def torch_device(requested: str = "auto") -> torch.device:
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise DeviceUnavailableError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    return torch.device("cuda" if cuda and requested in ("auto", "cuda") else "cpu")


def embedding_dim(levels: int, cap: int) -> int:
    """A common rule of thumb (fast.ai): about 1.6 * levels^0.56, at least 2, at most `cap`."""
    return int(min(cap, max(2, round(1.6 * (levels + 1) ** 0.56))))


@dataclass(frozen=True)
class NumericScaling:
    """Standardisation fitted on the training rows; missing values become 0 plus a 0/1 flag column."""

    mean: list[float]
    std: list[float]
    flagged: list[int]  # positions of the numeric columns that had missing values in training

    @classmethod
    def fit(cls, numbers: np.ndarray) -> NumericScaling:
        present = ~np.isnan(numbers)
        counts = present.sum(axis=0)
        filled = np.where(present, numbers, 0.0).astype(np.float64)
        mean = np.divide(filled.sum(axis=0), counts, out=np.zeros(numbers.shape[1]), where=counts > 0)
        centred = np.where(present, numbers - mean, 0.0)
        var = np.divide((centred**2).sum(axis=0), counts, out=np.ones(numbers.shape[1]), where=counts > 0)
        std = np.sqrt(var)
        std[~(std > 1e-12)] = 1.0
        flagged = np.flatnonzero((~present).any(axis=0)).tolist()
        return cls(mean.tolist(), std.tolist(), flagged)

    @property
    def width(self) -> int:
        return len(self.mean) + len(self.flagged)

    def apply(self, numbers: np.ndarray) -> np.ndarray:
        scaled = np.clip((numbers - np.asarray(self.mean)) / np.asarray(self.std), -CLIP, CLIP)
        missing = np.isnan(numbers)
        scaled[missing] = 0.0
        return np.hstack([scaled, missing[:, self.flagged]]).astype(np.float32)


class TabularMLP(nn.Module):
    """Numbers and one embedding per categorical column, concatenated, through ReLU layers to one output."""

    def __init__(
        self, numeric_width: int, levels: list[int], embedding_dims: list[int], hidden: list[int], dropout: float
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, d) for n, d in zip(levels, embedding_dims, strict=True))
        layers: list[nn.Module] = []
        width = numeric_width + sum(embedding_dims)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, numbers: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numbers, *(embed(codes[:, i]) for i, embed in enumerate(self.embeddings))]
        return self.body(torch.cat(parts, dim=1)).squeeze(1)


def _outputs(module: TabularMLP, numbers: torch.Tensor, codes: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Raw outputs in fp32, in large batches, without gradients."""
    out = []
    with torch.inference_mode(), torch.autocast(numbers.device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(numbers), SCORING_BATCH):
            out.append(module(numbers[i : i + SCORING_BATCH], codes[i : i + SCORING_BATCH]).float())
    return torch.cat(out) if out else torch.zeros(0)


class MLPPredictor(Predictor):
    flavor = "pytorch"

    def __init__(
        self,
        task: str,
        encoding: FeatureEncoding,
        module: TabularMLP,
        scaling: NumericScaling,
        architecture: dict[str, Any],
        target: tuple[float, float],
    ) -> None:
        super().__init__(task, encoding)
        self.module = module.eval()
        self.scaling = scaling
        self.architecture = architecture
        self.target = target  # (mean, std) of a regression target; (0, 1) otherwise

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        numbers = torch.from_numpy(self.scaling.apply(self.encoding.numbers(frame)))
        codes = torch.from_numpy(self.encoding.codes(frame))
        out = _outputs(self.module, numbers, codes, bf16=False).double()
        if self.task == "classification":
            return torch.sigmoid(out).numpy()
        return (out * self.target[1] + self.target[0]).numpy()

    def save_weights(self, folder: Path) -> dict[str, Any]:
        torch.save(self.module.state_dict(), folder / MODEL_FILE)
        return {
            "file": MODEL_FILE,
            "architecture": self.architecture,
            "scaling": asdict(self.scaling),
            "target": list(self.target),
        }

    @classmethod
    def load(cls, folder: Path, task: str, encoding: FeatureEncoding, config: dict[str, Any]) -> MLPPredictor:
        module = TabularMLP(**config["architecture"])
        module.load_state_dict(torch.load(folder / config["file"], map_location="cpu", weights_only=True))
        mean, std = config["target"]
        return cls(task, encoding, module, NumericScaling(**config["scaling"]), config["architecture"], (mean, std))


def resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TrainingError(
            f"pytorch: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(DEFAULTS))})"
        )
    merged = {**DEFAULTS, **params}
    hidden = merged["hidden"]
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise TrainingError(f"pytorch: hidden must be a list of positive layer widths, not {hidden!r}")
    if merged["precision"] not in PRECISIONS:
        raise TrainingError(f"pytorch: precision {merged['precision']!r} is not one of {', '.join(PRECISIONS)}")
    for name in ("epochs", "batch_size", "patience"):
        if int(merged[name]) < 1:
            raise TrainingError(f"pytorch: {name} must be at least 1")
    return merged


def _tensors(
    encoding: FeatureEncoding, scaling: NumericScaling, frame: pd.DataFrame, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    numbers = torch.from_numpy(scaling.apply(encoding.numbers(frame))).to(device)
    return numbers, torch.from_numpy(encoding.codes(frame)).to(device)


def train_mlp(
    task: str,
    encoding: FeatureEncoding,
    train: tuple[pd.DataFrame, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
    params: dict[str, Any],
    seed: int,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> tuple[MLPPredictor, FitReport]:
    """Fit on `train` with AdamW, stop early on the `validation` loss; deterministic for a seed."""
    started = time.perf_counter()
    p = resolve_params(params)
    dev = torch_device(device)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    else:
        torch.set_num_threads(cpu_threads())
    bf16 = p["precision"] == "bf16" or (p["precision"] == "auto" and dev.type == "cuda")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        scaling = NumericScaling.fit(encoding.numbers(train[0]))
        x_train, c_train = _tensors(encoding, scaling, train[0], dev)
        x_valid, c_valid = _tensors(encoding, scaling, validation[0], dev)
        y_train = np.asarray(train[1], dtype=np.float64)
        target = (0.0, 1.0)
        if task == "regression":
            target = (float(y_train.mean()), float(y_train.std()) or 1.0)
        y_train_t = torch.from_numpy(((y_train - target[0]) / target[1]).astype(np.float32)).to(dev)
        y_valid_t = torch.from_numpy(
            ((np.asarray(validation[1], dtype=np.float64) - target[0]) / target[1]).astype(np.float32)
        ).to(dev)
        levels = [len(v) for v in encoding.categories.values()]
        architecture = {
            "numeric_width": scaling.width,
            "levels": levels,
            "embedding_dims": [embedding_dim(n, int(p["max_embedding_dim"])) for n in levels],
            "hidden": list(p["hidden"]),
            "dropout": float(p["dropout"]),
        }
        module = TabularMLP(**architecture).to(dev)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=float(p["learning_rate"]), weight_decay=float(p["weight_decay"])
        )
        loss_fn = nn.BCEWithLogitsLoss() if task == "classification" else nn.MSELoss()
        order_rng = torch.Generator(device=dev).manual_seed(seed)  # batch order drawn where the data lives
        batch, rows = int(p["batch_size"]), len(x_train)
        curve: list[float] = []
        best, best_epoch, best_state, stale = float("inf"), 0, None, 0
        for epoch in range(int(p["epochs"])):
            module.train()
            order = torch.randperm(rows, generator=order_rng, device=dev)
            for i in range(0, rows, batch):
                idx = order[i : i + batch]
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    out = module(x_train[idx], c_train[idx])
                loss = loss_fn(out.float(), y_train_t[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            module.eval()
            outputs = _outputs(module, x_valid, c_valid, bf16)
            val = float(loss_fn(outputs, y_valid_t))
            val = val if task == "classification" else float(np.sqrt(val) * target[1])
            curve.append(val)
            if progress:
                progress(f"pytorch epoch {epoch + 1}/{p['epochs']}: validation {LOSS_NAMES[task]} {val:.5f}")
            if val < best - 1e-7:
                best, best_epoch, stale = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                stale += 1
                if stale >= int(p["patience"]):
                    break
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    assert best_state is not None
    module.load_state_dict(best_state)
    module = module.to("cpu").eval()
    report = FitReport(
        flavor="pytorch",
        device=dev.type if dev.type == "cpu" else f"cuda ({torch.cuda.get_device_name(dev)})",
        params={**p, "precision": "bf16" if bf16 else "fp32"},
        best_iteration=best_epoch,
        iterations=len(curve),
        curve={f"validation_{LOSS_NAMES[task]}": curve},
        seconds=time.perf_counter() - started,
    )
    return MLPPredictor(task, encoding, module, scaling, architecture, target), report


fit = train_mlp  # the flavor interface of aerodrome.train.run.fit
