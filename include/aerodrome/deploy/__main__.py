"""`python -m aerodrome.deploy`: Kubernetes manifests of the serving path, and KServe's canary traffic.

render --usecase flight_delay [--step 25 | --step all] [--out DIR] [--max-replicas 6]
    the gateway (Deployment + Service, `gateway.yaml`; with --max-replicas > 1 also its
    HorizontalPodAutoscaler on the request rate and PodDisruptionBudget) and the use case's KServe InferenceService:
    without --step the champion at 100 % (`inferenceservice-<uc>.yaml`), with --step the challenger
    at that canary step (`inferenceservice-<uc>-step-<N>.yaml`, one per step for `all`).
    Model locations come from the MLflow registry (MLFLOW_TRACKING_URI) unless --storage-uri is given.
traffic --usecase flight_delay --percent 0
    patch canaryTrafficPercent of the live InferenceService (0 = roll back to the champion).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from aerodrome.deploy.gateway import GatewaySettings, gateway_manifests
from aerodrome.deploy.kserve import KServeSettings, canary_percent, inference_service, set_canary_traffic
from aerodrome.deploy.models import model_location
from aerodrome.deploy.names import DeployError, object_name
from aerodrome.errors import AerodromeError
from aerodrome.settings import Settings
from aerodrome.usecase import UseCase, load_usecase


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a manifest repeats, never refers (&id001 / *id001)
        return True


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)


def _secret_ref(text: str) -> tuple[str, tuple[str, str]]:
    env, _, ref = text.partition("=")
    secret, _, key = ref.partition(":")
    if not (env and secret and key):
        raise argparse.ArgumentTypeError(f"{text!r}: expected ENV=SECRET:KEY")
    return env, (secret, key)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not (name and sep):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aerodrome.deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write the manifests as YAML")
    render.add_argument("--usecase", action="append", required=True, help="use case (repeat for several)")
    render.add_argument("--step", help="a canary step of the spec (percent), or 'all'")
    render.add_argument("--out", type=Path, help="folder for the YAML files (default: stdout)")
    render.add_argument("--only", choices=("gateway", "kserve"), help="render one of the two")
    render.add_argument("--namespace", default="aerodrome")
    render.add_argument("--image", default="aerodrome/gateway:latest", help="the gateway image")
    render.add_argument("--pull-policy", default="IfNotPresent")
    render.add_argument("--data-root", default=GatewaySettings.data_root, help="the gateway's AERODROME_DATA_ROOT")
    render.add_argument("--data-claim", help="PersistentVolumeClaim shared with Airflow (default: emptyDir)")
    render.add_argument("--gateway-mlflow-uri", default=GatewaySettings.mlflow_tracking_uri)
    render.add_argument("--env", type=_setting, action="append", default=[], help="NAME=VALUE for the gateway")
    render.add_argument("--secret-env", type=_secret_ref, action="append", default=[], help="ENV=SECRET:KEY")
    render.add_argument("--service-account", help="the gateway's service account (e.g. bound to an IAM role for S3)")
    render.add_argument("--min-replicas", type=int, default=GatewaySettings.min_replicas)
    render.add_argument(
        "--max-replicas", type=int, default=GatewaySettings.max_replicas, help="> 1: autoscale on the request rate"
    )
    render.add_argument(
        "--requests-per-second",
        default=GatewaySettings.requests_per_second,
        help="the autoscaler's target request rate per gateway pod",
    )
    render.add_argument(
        "--sync-seconds",
        type=float,
        default=GatewaySettings.sync_seconds,
        help="replicas: how often each gateway pod polls the shared traffic share, reloads and window",
    )
    render.add_argument(
        "--trusted-keys-configmap",
        help="ConfigMap of the public keys (*.pub) the gateway verifies model signatures with",
    )
    render.add_argument("--storage-uri", help="the model's files for KServe (default: from the MLflow registry)")
    render.add_argument("--alias", help="registry alias to serve (default: challenger with --step, else champion)")
    render.add_argument("--artifacts-destination", help="the MLflow server's --artifacts-destination")
    render.add_argument("--runtime", default=KServeSettings.runtime, help="KServe ServingRuntime ('' = auto)")
    traffic = commands.add_parser("traffic", help="patch canaryTrafficPercent of a live InferenceService")
    traffic.add_argument("--usecase", required=True)
    traffic.add_argument("--percent", type=int, required=True)
    traffic.add_argument("--namespace", default="aerodrome")
    return parser


def _kserve_documents(spec: UseCase, args: argparse.Namespace, settings: KServeSettings) -> dict[str, dict]:
    if args.step in (None, "all"):
        steps = [] if args.step is None else spec.canary.steps
    else:
        try:
            steps = [float(args.step)]
        except ValueError:
            raise DeployError(f"--step {args.step!r}: give a canary step of the spec (a percent) or 'all'") from None
    for step in steps:
        canary_percent(spec, step)  # a wrong step fails before the registry is asked
    version = None
    uri = args.storage_uri
    if uri is None:
        from aerodrome.registry.aliases import registry_client

        alias = args.alias or ("challenger" if steps else "champion")
        client = registry_client(Settings.from_env().tracking_uri)
        location = model_location(client, spec.name, alias, args.artifacts_destination)
        uri, version = location.storage_uri, location.version
    stem = f"inferenceservice-{object_name(spec.name)}"
    if not steps:
        return {f"{stem}.yaml": inference_service(spec, uri, settings, version=version)}
    return {
        f"{stem}-step-{canary_percent(spec, s)}.yaml": inference_service(spec, uri, settings, version=version, step=s)
        for s in steps
    }


def render(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects it holds."""
    usecases_dir = Settings.from_env().usecases_dir
    specs = [load_usecase(usecases_dir / name) for name in args.usecase]
    files: dict[str, list[dict[str, Any]]] = {}
    if args.only != "kserve":
        gateway = GatewaySettings(
            image=args.image,
            namespace=args.namespace,
            image_pull_policy=args.pull_policy,
            data_root=args.data_root,
            data_claim=args.data_claim,
            mlflow_tracking_uri=args.gateway_mlflow_uri,
            env=dict(args.env),
            secret_env=dict(args.secret_env),
            service_account=args.service_account,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            requests_per_second=args.requests_per_second,
            sync_seconds=args.sync_seconds,
            trusted_keys_configmap=args.trusted_keys_configmap,
        )
        files["gateway.yaml"] = gateway_manifests(specs, gateway)
    if args.only != "gateway":
        kserve = KServeSettings(namespace=args.namespace, runtime=args.runtime or None)
        for spec in specs:
            files |= {name: [doc] for name, doc in _kserve_documents(spec, args, kserve).items()}
    return files


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "traffic":
            from kubernetes.client.exceptions import ApiException

            name = object_name(args.usecase)
            try:
                set_canary_traffic(name, args.namespace, args.percent)
            except ApiException as exc:
                print(f"error: {args.namespace}/{name}: {exc.status} {exc.reason}", file=sys.stderr)
                return 1
            print(f"{args.namespace}/{name}: canaryTrafficPercent={args.percent}")
            return 0
        files = render(args)
    except (AerodromeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(to_yaml([doc for docs in files.values() for doc in docs]))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, docs in files.items():
        (args.out / name).write_text(to_yaml(docs))
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
