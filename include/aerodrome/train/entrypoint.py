"""The trainer command: `python -m aerodrome.train.entrypoint --usecase NAME --start DAY --end DAY [...]`.

Runs in the trainer image (a Kubernetes pod, on a GPU when the node has one) or as a local
subprocess. Settings come from the environment (`AERODROME_*`, `MLFLOW_TRACKING_URI`). Progress goes to
stdout line by line; the last line is one JSON object: run_id, model_name, version, alias, model_uri,
flavor, device, metrics (holdout), data_fingerprint, split, rows, seconds. On failure the last line of
stderr says what went wrong and the exit code says whether a retry can help (`aerodrome.train.exitcodes`):
3 = the window, data, spec or parameters cannot be trained on (no retry), 2 = bad arguments, 1 = anything
else (a crash, an unreachable service).

Days are local midnights of the use case's time zone (`--end` is exclusive); a full ISO timestamp
with an offset is taken as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import date, datetime
from pathlib import Path

from aerodrome.errors import AerodromeError
from aerodrome.settings import json_object, redacted_uri
from aerodrome.train import exitcodes
from aerodrome.train.inputs import DeviceUnavailableError, TrainingError

DEVICES = ("auto", "cpu", "cuda")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aerodrome.train.entrypoint", description=__doc__.split("\n\n")[0])
    p.add_argument("--usecase", required=True, help="use-case name (a folder under AERODROME_USECASES_DIR)")
    p.add_argument("--start", required=True, help="first day of the training window (YYYY-MM-DD)")
    p.add_argument("--end", required=True, help="day after the window (exclusive, YYYY-MM-DD)")
    p.add_argument("--holdout-start", help="first day of the holdout (default: the last 25%% of the window)")
    p.add_argument("--validation-start", help="first day of validation (default: the 10%% before the holdout)")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data: same model)")
    p.add_argument("--flavor", choices=("xgboost", "pytorch"), help="override the spec's model.flavor")
    p.add_argument("--params", default="", help='hyper-parameters over the spec, JSON: {"max_depth": 4}')
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when a GPU is visible")
    p.add_argument("--result-file", help="also write the JSON result here (e.g. /airflow/xcom/return.json)")
    return p


def given(text: str | None) -> bool:
    """An optional day was given: not empty, and not an unset form param rendered by a template ("None")."""
    return bool(text) and text.strip() not in ("", "None", "null")


def moment(text: str, clock) -> datetime:
    """A `YYYY-MM-DD` day as its local midnight, or an ISO timestamp as given (naive = UTC)."""
    text = text.strip()
    try:
        if len(text) == 10:
            return clock.start_of(date.fromisoformat(text)).to_pydatetime()
        return datetime.fromisoformat(text)
    except ValueError:
        raise TrainingError(f"{text!r} is neither a day (YYYY-MM-DD) nor an ISO timestamp") from None


def hyper_parameters(text: str) -> dict:
    try:
        return json_object(text, "--params")
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def version_of_this_run(model: str, tracking_uri: str) -> dict | None:
    """The version an earlier try of the same Airflow run registered (a try killed after registering, e.g.
    when a new scheduler resets a dead one's tasks), so one run never registers two versions."""
    from aerodrome.train.lineage import airflow_origin
    from aerodrome.train.tracking import version_trained_by

    origin = airflow_origin()
    if not (origin.get("dag_id") and origin.get("run_id")):
        return None  # run by hand
    found = version_trained_by(model, origin["dag_id"], origin["run_id"], tracking_uri)
    return None if found is None else {**found, "model_name": model, "reused": True}


def run(args: argparse.Namespace) -> dict:
    from aerodrome.features.builders import builder_for
    from aerodrome.settings import Settings
    from aerodrome.storage import mlflow_artifact_environ, open_storage
    from aerodrome.train.run import train_model
    from aerodrome.usecase import load_usecase

    began = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[train {time.perf_counter() - began:7.1f}s] {message}", flush=True)

    settings = Settings.from_env()
    spec = load_usecase(Path(settings.usecases_dir) / args.usecase)
    clock = builder_for(spec).clock
    progress(
        f"use case {spec.name}: {args.flavor or spec.model.flavor}, window {args.start} .. {args.end} "
        f"({clock.tz.key}), seed {args.seed}; MLflow at {redacted_uri(settings.tracking_uri)}"
    )
    earlier = version_of_this_run(spec.name, settings.tracking_uri)
    if earlier is not None:
        progress(f"{spec.name} v{earlier['version']} was registered by an earlier try of this run: not trained again")
        return earlier
    storage = open_storage(settings.data_root, settings)
    storage.check_residency()  # MLflow writes (its store, artifacts below the data root) before any storage write
    os.environ.update(mlflow_artifact_environ(settings))  # SSE-KMS on MLflow's S3 uploads
    result = train_model(
        spec,
        settings,
        storage,
        moment(args.start, clock),
        moment(args.end, clock),
        holdout_start=moment(args.holdout_start, clock) if given(args.holdout_start) else None,
        validation_start=moment(args.validation_start, clock) if given(args.validation_start) else None,
        seed=args.seed,
        flavor=args.flavor,
        params=hyper_parameters(args.params),
        device=args.device,
        progress=progress,
    )
    return result.summary()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = parser().parse_args(argv)
    try:
        summary = run(args)
    except DeviceUnavailableError as exc:  # a node without its GPU: another try may land elsewhere
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exitcodes.FAILED
    except AerodromeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exitcodes.INPUT
    except Exception as exc:  # anything else: keep the traceback, but end on one readable line
        traceback.print_exc()
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return exitcodes.FAILED
    line = json.dumps(summary, separators=(",", ":"))
    if args.result_file:
        Path(args.result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_file).write_text(line + "\n")
    print(line, flush=True)
    return exitcodes.OK


if __name__ == "__main__":
    raise SystemExit(main())
