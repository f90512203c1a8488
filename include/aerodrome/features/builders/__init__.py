"""Feature builders, selected by a use case's `features.builder`.

Adding a domain means a module here with a `FeatureBuilder` subclass and a line in `BUILDERS`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from aerodrome.errors import SpecError
from aerodrome.usecase import UseCase

if TYPE_CHECKING:
    from aerodrome.features.builders.base import FeatureBuilder

BUILDERS = {
    "flights": "aerodrome.features.builders.flights:FlightsBuilder",
    "store_demand": "aerodrome.features.builders.store_demand:StoreDemandBuilder",
}


def builder_for(spec: UseCase) -> FeatureBuilder:
    """The builder a spec names, checked against the views it declares."""
    if spec.features is None:
        raise SpecError(f"use case {spec.name!r} declares no 'features' section")
    target = BUILDERS.get(spec.features.builder)
    if target is None:
        raise SpecError(
            f"use case {spec.name!r}: features.builder {spec.features.builder!r} is unknown "
            f"(known: {', '.join(sorted(BUILDERS))})"
        )
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)(spec)
