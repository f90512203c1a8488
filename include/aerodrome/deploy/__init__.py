"""The production serving path on Kubernetes: manifests rendered from the use-case specs.

Two ways to serve, one canary policy (`canary.steps` of the spec):
- the Aerodrome gateway as a Deployment + ClusterIP Service (`gateway`), optionally autoscaled on its
  request rate with a disruption budget (`scaling`); the canary DAG steps its traffic through the admin
  route, reached through the Airflow connection `aerodrome_gateway`;
- KServe: one `InferenceService` per use case whose `canaryTrafficPercent` follows the same steps
  (`kserve`), with the model's storage location read from the MLflow registry (`models`).

Plain dicts out (no Kubernetes client needed to render); `python -m aerodrome.deploy render` writes YAML.
"""

from aerodrome.deploy.gateway import GatewaySettings, gateway_deployment, gateway_manifests, gateway_service
from aerodrome.deploy.kserve import (
    KServeSettings,
    canary_manifests,
    canary_percent,
    inference_service,
    set_canary_traffic,
)
from aerodrome.deploy.names import DeployError
from aerodrome.deploy.scaling import REQUEST_RATE_METRIC, gateway_autoscaler, gateway_disruption_budget

__all__ = [
    "REQUEST_RATE_METRIC",
    "DeployError",
    "GatewaySettings",
    "KServeSettings",
    "canary_manifests",
    "canary_percent",
    "gateway_autoscaler",
    "gateway_deployment",
    "gateway_disruption_budget",
    "gateway_manifests",
    "gateway_service",
    "inference_service",
    "set_canary_traffic",
]
