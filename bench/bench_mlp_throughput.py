"""PyTorch trainer epoch throughput vs a bare training loop of the same model shape, same run, same device.

Issue #4's GPU check: on an H100 a bare 32->256->256->1 MLP loop trains at ~24.7 M rows/s (bf16, batch
65,536); the goal is that `aerodrome.train.torch_mlp.train_mlp` reaches at least half of the bare loop.

  table     synthetic, seeded: numeric columns plus one 12-level categorical whose embedding makes
            the first layer 32 wide, a binary label from a fixed linear rule plus noise;
  trainer   `train_mlp` with hidden [256, 256], dropout 0, batch 65,536, precision auto (bf16 on CUDA,
            fp32 on CPU), a 1 % validation split; an epoch's time is the gap between its progress
            line and the previous one (so it includes the validation pass); the first epoch is a warm-up;
  bare      `nn.Sequential(Linear(32,256), ReLU, Linear(256,256), ReLU, Linear(256,1))`, AdamW, the
            same batch size and precision, data already on the device, a permutation per epoch.

Rows: 8 M on CUDA (~0.3 s an epoch at the reference speed; encoding the table takes longer), 400 k on
CPU (100 k with --quick). On the device machine (torch, numpy, pandas present; no pydantic/pyyaml for
`aerodrome.usecase`): carry their wheels and run
`PYTHONPATH=include:. python3 -m bench --only mlp_throughput`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from aerodrome.train.inputs import FeatureEncoding
from aerodrome.train.torch_mlp import embedding_dim, torch_device, train_mlp
from torch import nn

WIDTH, HIDDEN, BATCH, LEVELS, EPOCHS, SEED = 32, [256, 256], 65_536, 12, 4, 7
H100_BARE_ROWS_S = 24.7e6  # issue #4's reference, for the note only


def synthetic_table(rows: int, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    numeric = [f"x{i}" for i in range(WIDTH - embedding_dim(LEVELS, 16))]
    values = rng.standard_normal((rows, len(numeric)), dtype=np.float32)
    frame = pd.DataFrame(values, columns=numeric)
    labels = np.array([f"s{i:02d}" for i in range(LEVELS)], dtype=object)
    frame["segment"] = labels[rng.integers(0, LEVELS, rows)]  # vectorised: no Python call per row
    logits = values[:, :8] @ rng.standard_normal(8).astype(np.float32) + rng.standard_normal(rows) * 0.5
    return frame, (logits > 0).astype(np.float64), numeric


def trainer_rows_per_s(frame: pd.DataFrame, label: np.ndarray, numeric: list[str], device: str) -> float:
    cut = int(len(frame) * 0.99)
    train, valid = (frame.iloc[:cut], label[:cut]), (frame.iloc[cut:], label[cut:])
    encoding = FeatureEncoding.fit(train[0], numeric, ["segment"])
    marks: list[float] = []
    params = {"hidden": HIDDEN, "dropout": 0.0, "batch_size": BATCH, "epochs": EPOCHS, "patience": EPOCHS}
    train_mlp(
        "classification", encoding, train, valid, params, SEED, device, lambda _: marks.append(time.perf_counter())
    )
    epochs = np.diff(marks)  # epoch 2.. (the first is warm-up: kernels, allocator)
    return cut / float(np.median(epochs))


def bare_rows_per_s(rows: int, dev: torch.device) -> float:
    torch.manual_seed(SEED)
    x = torch.randn(rows, WIDTH, device=dev)
    y = (x[:, 0] > 0).float()
    layers: list[nn.Module] = []
    width = WIDTH
    for size in HIDDEN:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    model = nn.Sequential(*layers, nn.Linear(width, 1)).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    bf16 = dev.type == "cuda"
    times = []
    for _ in range(EPOCHS):
        started = time.perf_counter()
        order = torch.randperm(rows, device=dev)
        for i in range(0, rows, BATCH):
            idx = order[i : i + BATCH]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(x[idx]).squeeze(1)
            loss = loss_fn(out.float(), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return rows / float(np.median(times[1:]))


def run(quick: bool = False) -> list[dict]:
    dev = torch_device("auto")
    rows = 8_000_000 if dev.type == "cuda" else 100_000 if quick else 400_000
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    frame, label, numeric = synthetic_table(rows)
    trainer = trainer_rows_per_s(frame, label, numeric, dev.type)
    bare = bare_rows_per_s(int(rows * 0.99), dev)
    note = f"{where}, {rows:,} rows, batch {BATCH:,}, {'bf16' if dev.type == 'cuda' else 'fp32'}"
    if dev.type == "cuda":
        note += f"; H100 reference bare loop {H100_BARE_ROWS_S / 1e6:.1f} M rows/s"
    return [
        {"name": "bare loop epoch", "value": bare, "unit": "rows/s", "note": note},
        {"name": "trainer epoch", "value": trainer, "unit": "rows/s", "baseline": bare, "note": "incl. validation"},
        {"name": "trainer / bare loop", "value": trainer / bare, "unit": "x", "goal": ">= 0.5"},
    ]
