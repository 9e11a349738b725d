"""Search spaces as data, and registries of the built-in spaces and of the space families.

``get_space`` accepts a registered name, a path/URI to a space JSON, or a JSON dict, so users
define new spaces without touching code. A family (``dna.space.family.Family``) is everything
that depends on a space's ``kind``; ``get_family`` finds it for a space, ``family_of_arch`` for a
stored architecture JSON.
"""

from __future__ import annotations

from typing import Any

from dna.errors import DnaError
from dna.model.mbconv_family import MBConvFamily
from dna.model.vit_family import ViTFamily
from dna.space.family import Family
from dna.space.mbconv import MBCONV, MBCONV4, MBCONV_TINY, BlockChoice, Cell, MBConvSpace, Op
from dna.space.uir import FAMILY as UIR_FAMILY
from dna.space.vit import VIT, VIT_TINY, PathChoice, ViTSpace

SPACES: dict[str, object] = {}
FAMILIES: dict[str, Family] = {}


def register(space) -> None:
    """Make a space available by name (e.g. from a plugin or a notebook)."""
    SPACES[space.name] = space


def register_family(family: Family) -> None:
    """Make a family available by its ``kind``, with its built-in spaces."""
    FAMILIES[family.kind] = family
    for space in family.spaces:
        register(space)


def get_family(kind_or_space) -> Family:
    """The family of a space (object or JSON dict) or of a kind name."""
    if isinstance(kind_or_space, str):
        kind = kind_or_space
    elif isinstance(kind_or_space, dict):
        kind = kind_or_space.get("kind", "mbconv")
    else:
        kind = getattr(kind_or_space, "kind", None)
    if kind not in FAMILIES:
        raise DnaError(f"unknown space kind {kind!r}: expected one of {sorted(FAMILIES)}")
    return FAMILIES[kind]


def family_of_arch(d: Any) -> Family:
    """The family whose architecture JSON ``d`` is (a bare arch_def list: MBConv's)."""
    for family in FAMILIES.values():
        if family.owns_arch(d):
            return family
    raise DnaError("not an architecture JSON: expected an arch_def list, an object with 'arch_def' "
                   f"or a searched architecture of one of the kinds {sorted(FAMILIES)}")


def space_from_json(d: dict):
    return get_family(d).space_from_json(d)


def get_space(spec):
    """A space from a registered name, a JSON dict, a space object, or a URI of a JSON file."""
    if isinstance(spec, dict):
        return space_from_json(spec)
    if not isinstance(spec, str):
        return spec
    if spec in SPACES:
        return SPACES[spec]
    if spec.endswith(".json"):
        from dna import storage

        return space_from_json(storage.read_json(spec))
    raise DnaError(f"unknown space {spec!r}: expected one of {sorted(SPACES)} or a .json file")


register_family(ViTFamily("vit", ViTSpace, (VIT, VIT_TINY)))
register_family(MBConvFamily("mbconv", MBConvSpace, (MBCONV, MBCONV4, MBCONV_TINY), default=True))
register_family(UIR_FAMILY)

__all__ = ["FAMILIES", "SPACES", "BlockChoice", "Cell", "Family", "MBConvSpace", "Op", "PathChoice", "ViTSpace",
           "family_of_arch", "get_family", "get_space", "register", "register_family", "space_from_json"]
