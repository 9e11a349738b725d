"""Search spaces as data, and a registry of the built-in ones.

``get_space`` accepts a registered name, a path/URI to a space JSON, or a JSON dict, so users
define new spaces without touching code.
"""

from __future__ import annotations

from dna.errors import DnaError
from dna.space.mbconv import MBCONV, MBCONV4, MBCONV_TINY, BlockChoice, Cell, MBConvSpace, Op
from dna.space.vit import VIT, VIT_TINY, PathChoice, ViTSpace

SPACES: dict[str, object] = {s.name: s for s in (MBCONV, MBCONV4, MBCONV_TINY, VIT, VIT_TINY)}


def register(space) -> None:
    """Make a space available by name (e.g. from a plugin or a notebook)."""
    SPACES[space.name] = space


def space_from_json(d: dict):
    kind = d.get("kind", "mbconv")
    if kind == "mbconv":
        return MBConvSpace.from_json(d)
    if kind == "vit":
        from dna.space.vit import ViTSpace

        return ViTSpace.from_json(d)
    raise DnaError(f"unknown space kind {kind!r}: expected 'mbconv' or 'vit'")


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


__all__ = ["SPACES", "BlockChoice", "Cell", "MBConvSpace", "Op", "PathChoice", "ViTSpace", "get_space", "register", "space_from_json"]
