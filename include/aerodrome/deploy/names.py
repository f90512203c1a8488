"""Kubernetes names and labels of Aerodrome objects, and the error a bad deploy setting raises."""

from __future__ import annotations

import re

from aerodrome.errors import AerodromeError

PART_OF = {"app.kubernetes.io/part-of": "aerodrome", "app.kubernetes.io/managed-by": "aerodrome-deploy"}
USECASE_LABEL = "aerodrome.io/usecase"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class DeployError(AerodromeError):
    """A manifest cannot be rendered or applied as asked (the message names the setting and the fix)."""


def dns_label(name: str, what: str = "name") -> str:
    """`name` if it is a valid Kubernetes object name (a DNS-1035 label), else DeployError."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise DeployError(
            f"{what} {name!r} is not a valid Kubernetes name: lower-case letters, digits and '-', "
            "starting with a letter, ending with a letter or digit, at most 63 characters"
        )
    return name


def object_name(usecase: str) -> str:
    """A use case's Kubernetes object name: `flight_delay` -> `flight-delay`."""
    return dns_label(usecase.replace("_", "-"), "use-case name")
