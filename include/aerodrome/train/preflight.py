"""`python -m aerodrome.train.preflight --usecase NAME`: can this host or pod train NAME? Answers in a second.

Checks what a training pod gets wrong first, without torch, xgboost, Feast or MLflow: the use-case spec loads,
the data root holds validated partitions of the use case, MLflow has a tracking URI, a GPU device is
visible (or not), and which code version would be recorded. Prints one JSON line; exits 3 when the use
case cannot be trained here (the trainer's exit codes). The orchestration benchmark runs it as the
cheapest real payload of the training operators.
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import sys

from aerodrome.errors import AerodromeError
from aerodrome.train import exitcodes


def preflight(usecase: str) -> dict:
    from aerodrome.settings import Settings, redacted_uri
    from aerodrome.storage import open_storage
    from aerodrome.train.lineage import code_version
    from aerodrome.usecase import load_usecase

    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / usecase)
    partitions = open_storage(settings.data_root, settings).partitions(f"validated/{spec.name}")
    if not partitions:
        raise AerodromeError(f"{settings.data_root}: no validated partition of {spec.name!r} to train on")
    return {
        "usecase": spec.name,
        "validated_partitions": len(partitions),
        "first": partitions[0],
        "last": partitions[-1],
        "tracking_uri": redacted_uri(settings.tracking_uri),
        "gpu_devices": len(glob.glob("/dev/nvidia[0-9]*")),
        "python": platform.python_version(),
        "host": platform.node(),
        "code_version": code_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerodrome.train.preflight", description=__doc__.split("\n")[0])
    parser.add_argument("--usecase", required=True)
    args = parser.parse_args(argv)
    try:
        report = preflight(args.usecase)
    except AerodromeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exitcodes.INPUT
    print(json.dumps(report), flush=True)
    return exitcodes.OK


if __name__ == "__main__":
    raise SystemExit(main())
