"""The search-space seam: one :class:`Family` object per space ``kind`` holds everything that
depends on the kind, so the rest of the library asks the registry (``dna.space.get_family``,
``dna.space.family_of_arch``) instead of branching on ``kind`` or on an architecture's format.

A family ties together, for its spaces:

- the space as data: ``space_from_json`` (``space.to_json()`` reads back equal), ``describe``;
- costs and layer identity: ``costs`` (the cost names its rating writes), ``path_costs(space, resolution)`` gives one object with
  ``path(block, cell, ops, in_chs)``, ``fixed()``, ``layer_key(block, cell, index, op, in_chs)`` and
  ``layers()`` (what a latency table is keyed by);
- training and rating: ``make_supernet`` (one block's student supernet), ``rate`` (Algorithm 1 over
  a trained supernet run, writing the scores table), ``check_rows`` (scores rows that the space
  cannot have are named, for ``dna.search``);
- the architecture JSON: ``arch_json`` (what search writes for a result), ``owns_arch`` (is a
  stored JSON this family's), ``arch_record`` (its normalised JSON), ``arch_layers`` (its layers:
  type, kernel(s), expansion, stride, channels, SE / heads, width, MLP ratio), ``build`` (the
  stand-alone ``nn.Module``), ``summarize``/``format_summary`` (``dna build``), ``scale``
  (compound scaling, or a clear error where it does not apply), ``retrain``.

Implementations: :class:`dna.model.mbconv_family.MBConvFamily` (MBConv, and any family of timm
EfficientNet-builder layers such as ``dna.space.uir``) and :class:`dna.model.vit_family.ViTFamily`.
Modules implementing a family import torch/timm inside the methods, so reading spaces stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class PathCostsLike(Protocol):
    def path(self, block: int, cell: int, ops: Sequence[str], in_chs: int) -> Any: ...

    def fixed(self) -> Any: ...

    def layer_key(self, block: int, cell: int, index: int, op: str, in_chs: int) -> tuple: ...

    def layers(self) -> list[tuple]: ...


class Family(Protocol):
    kind: str
    spaces: tuple                  # the built-in spaces, registered by name
    costs: tuple[str, ...]         # the costs (dna.cost_registry names) its rating counts
    joint_teacher: bool            # DNA++: the teacher trains with its supernets (one job, dna.ssl)

    def space_from_json(self, d: Mapping[str, Any]) -> Any: ...

    def describe(self, space: Any) -> dict: ...

    def path_costs(self, space: Any, resolution: int | None = None) -> PathCostsLike: ...

    def make_supernet(self, space: Any, block: int, teacher: Any, resolution: int | None = None) -> Any: ...

    def rate(self, cfg: Any, teacher: Any = None) -> dict: ...

    def check_rows(self, space: Any, block: Any, cell: Any, out_ch: Any, ops: Any,
                   row: Callable[[int], dict]) -> None: ...

    def arch_json(self, space: Any, result: Any, meta: Any, extra: dict) -> dict: ...

    def owns_arch(self, d: Any) -> bool: ...

    def arch_record(self, d: Any) -> dict: ...

    def arch_layers(self, d: Any) -> list[dict]: ...

    def build(self, d: Any, num_classes: int | None = None, **kwargs: Any) -> Any: ...

    def summarize(self, d: Any, num_classes: int | None = None, resolution: int | None = None) -> dict: ...

    def format_summary(self, r: dict) -> str: ...

    def scale(self, arch: Any, **kwargs: Any) -> Any: ...

    def retrain(self, cfg: Any, lr: float | None = None, on_epoch_end: Any = None) -> dict: ...
