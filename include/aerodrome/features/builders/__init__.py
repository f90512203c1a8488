"""Feature builders: the declarative engine, or a legacy builder a use case names in `features.builder`.

A new domain needs no builder: declare its views as kinds (`aerodrome.features.declarative`) or
`compute: module:function` from its own folder. `BUILDERS` keeps the hand-written ones for specs that
still name one.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from aerodrome.errors import SpecError
from aerodrome.usecase import UseCase

if TYPE_CHECKING:
    from aerodrome.features.builders.base import FeatureBuilder

BUILDERS = {
    "flights": "aerodrome.features.builders.flights:FlightsBuilder",
    "store_demand": "aerodrome.features.builders.store_demand:StoreDemandBuilder",
}


def builder_for(spec: UseCase, usecase_dir: Path | None = None) -> FeatureBuilder:
    """The builder of a spec (declarative unless it names a legacy one), checked against its views.

    `usecase_dir`: the spec's folder, where `module:function` targets and calendar files are looked for
    (default: the folder the spec was loaded from, `spec.folder`; for a spec made in code, found under the
    configured use-cases folder).
    """
    if spec.features is None:
        raise SpecError(f"use case {spec.name!r} declares no 'features' section")
    if spec.features.builder is None:
        return _declarative(spec, usecase_dir if usecase_dir is not None else spec.folder)
    target = BUILDERS.get(spec.features.builder)
    if target is None:
        raise SpecError(
            f"use case {spec.name!r}: features.builder {spec.features.builder!r} is unknown "
            f"(known: {', '.join(sorted(BUILDERS))})"
        )
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)(spec)


_DECLARATIVE: dict[tuple[int, Path | None], tuple[UseCase, FeatureBuilder]] = {}


def _declarative(spec: UseCase, usecase_dir: Path | None) -> FeatureBuilder:
    """The declarative builder of `spec`, made once per spec object (checks and imports cost ~15 ms;
    the gateway asks for it on every request)."""
    from aerodrome.features.declarative import DeclarativeBuilder

    key = (id(spec), usecase_dir)
    cached = _DECLARATIVE.get(key)
    if cached is not None and cached[0] is spec:
        return cached[1]
    if len(_DECLARATIVE) > 64:
        _DECLARATIVE.clear()
    builder = DeclarativeBuilder(spec, usecase_dir)
    _DECLARATIVE[key] = (spec, builder)
    return builder
