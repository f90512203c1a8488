"""The gateway's autoscaling on its request rate (HorizontalPodAutoscaler) and its disruption budget.

The HPA scales on a Pods metric, `aerodrome_gateway_requests_per_second`, served by a custom metrics
adapter (prometheus-adapter; its rule is in `deploy/k8s/prometheus-adapter-values.yaml`) from the
gateway's own Prometheus counter `aerodrome_predictions_total`. KServe's path scales itself.
"""

from __future__ import annotations

from typing import Any

# the custom metric the adapter serves per pod (the rule's `name.as`), and the counter it is computed from
REQUEST_RATE_METRIC = "aerodrome_gateway_requests_per_second"
REQUESTS_COUNTER = "aerodrome_predictions_total"
HPA_API = "autoscaling/v2"  # GA since Kubernetes 1.23
PDB_API = "policy/v1"  # GA since Kubernetes 1.21


def gateway_autoscaler(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    min_replicas: int,
    max_replicas: int,
    requests_per_second: str,
) -> dict[str, Any]:
    """HPA of Deployment `name`: keep each pod near `requests_per_second` (a quantity, e.g. "50")."""
    return {
        "apiVersion": HPA_API,
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": REQUEST_RATE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": requests_per_second},
                    },
                }
            ],
            "behavior": {
                # a new pod loads every served model before it is ready: add at most one a minute,
                # and give back capacity slowly so a traffic dip does not flap the pool
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }


def gateway_disruption_budget(
    name: str, namespace: str, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    """At most one gateway pod evicted at a time (node drains, upgrades); never blocks a drain outright."""
    return {
        "apiVersion": PDB_API,
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
