"""The costs a search can limit, as data: one :class:`Cost` per cost, in :data:`COSTS`.

Everything that lists costs iterates over this registry: the scores table's columns and fixed-part
metadata (``dna.rate.scores``), what rating counts on the final model's modules
(``dna.rate.path_costs``), the search's limits and totals (``dna.search.traversal``), the
``--max-*`` flags of ``dna search`` and of the pipelines, the run config's ``limits`` and the
reports. Adding a cost is one entry here plus, when it is counted on modules, its counter in
``dna.costs`` (docs/DESIGN.md, "Seams: add a cost").

The order of :data:`COSTS` is the order of columns, metadata keys, JSON keys and tie-breaks.
This module imports neither torch nor pyarrow (the search command stays light).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dna.errors import DnaError

SUM, MAX = "sum", "max"


@dataclass(frozen=True)
class Cost:
    """One cost of an architecture.

    ``combine``: how the fixed part and the chosen rows make the total: ``sum`` (params, FLOPs,
    latency) or ``max`` (a peak). ``counter``: the name of a ``dna.costs`` function
    ``(module, input_shape) -> int`` counting it on a module at batch 1 (what ``PathCosts`` runs
    on the layers of timm-layer families; ViT rows come from ``dna.model.vit``, whose FLOPs add
    the attention matmuls), or None when it is not counted on modules (latency comes from a
    measured table). Which costs a space's rating writes is its family's ``costs``
    (``dna.space.family``). ``required``: every scores table has the column and the metadata key.
    ``missing``: how a table gets the column (said when a limit needs it and the table has none).
    """

    name: str                 # column name, limit key, result/JSON key
    dtype: str                # arrow type of the column and of totals: "int64" or "float64"
    unit: str
    combine: str
    counter: str | None
    required: bool
    help: str                 # of the --max-* flags
    label: str                # in reports
    missing: str = ""

    @property
    def meta_key(self) -> str:
        """Schema-metadata key of the fixed part (stem, head...), e.g. ``fixed_params``."""
        return f"fixed_{self.name}"

    @property
    def limit_key(self) -> str:
        """The old keyword / run-config key of a limit, e.g. ``max_params`` (also the flag's dest)."""
        return f"max_{self.name}"

    @property
    def flag(self) -> str:
        return "--" + self.limit_key.replace("_", "-")

    @property
    def column(self) -> str:
        """``a params column``, ``an act_mem column``: for messages."""
        return f"{'an' if self.name[0] in 'aeiou' else 'a'} {self.name} column"

    @property
    def is_int(self) -> bool:
        return self.dtype == "int64"

    def arrow_type(self):
        import pyarrow as pa

        return pa.int64() if self.is_int else pa.float64()

    def value(self, v) -> int | float:
        """A stored value in the cost's type (int64 costs as int, float64 as float)."""
        return int(v) if self.is_int else float(v)

    def total(self, fixed: float, parts: Iterable[float]) -> int | float:
        """The architecture's total from the fixed part and the chosen rows' values."""
        parts = list(parts)
        if self.combine == MAX:
            return self.value(max([fixed, *parts]))
        return self.value(fixed + sum(parts))

    def show(self, v: float) -> str:
        """A value in messages: ``5,300,000`` or ``12.5 ms``."""
        return f"{int(v):,}" if self.is_int else f"{v:.6g} {self.unit}"

    def count(self, module, input_shape) -> int:
        """Count the cost on ``module`` for one sample of ``input_shape`` (``counter`` costs only)."""
        fn: Callable = getattr(importlib.import_module("dna.costs"), self.counter)
        return int(fn(module, input_shape))


COSTS: tuple[Cost, ...] = (
    Cost("params", "int64", "parameters", SUM, "count_params", True,
         "limit on total params, e.g. 5.3M or 5.3e6", "params"),
    Cost("flops", "int64", "MACs", SUM, "count_flops", True,
         "limit on total FLOPs (multiply-accumulates), e.g. 400M", "FLOPs (MACs)"),
    Cost("latency_ms", "float64", "ms", SUM, None, False,
         "limit on total latency in ms (needs a latency_ms column, see `dna latency-table`)", "latency (ms)",
         "rate with a latency table (`dna rate --latency-table`) or add one with "
         "dna.search.latency.add_latency"),
    Cost("act_mem", "int64", "bytes", MAX, "count_act_mem", False,
         "limit on peak activation memory at batch 1 in bytes (float32), e.g. 2M", "peak activation memory (bytes)",
         "it is counted when a space of timm layers (mbconv, uir) is rated (`dna rate` writes the "
         "column); tables rated before act_mem existed must be rated again, and ViT tables do not count it"),
)
NAMES: tuple[str, ...] = tuple(c.name for c in COSTS)
BY_NAME: dict[str, Cost] = {c.name: c for c in COSTS}
REQUIRED: tuple[Cost, ...] = tuple(c for c in COSTS if c.required)
OPTIONAL: tuple[Cost, ...] = tuple(c for c in COSTS if not c.required)


def get_cost(name: str) -> Cost:
    if name not in BY_NAME:
        raise DnaError(f"unknown cost {name!r}: expected one of {list(NAMES)}")
    return BY_NAME[name]


def on_modules() -> tuple[Cost, ...]:
    """The costs counted with hooks on real modules (what a family of timm layers rates)."""
    return tuple(c for c in COSTS if c.counter is not None)


def check_limits(limits: Mapping | None, what: str = "limits") -> dict[str, float]:
    """Known cost names with positive finite numbers (None values dropped), in registry order."""
    limits = dict(limits or {})
    unknown = sorted(str(k) for k in limits if k not in BY_NAME)
    if unknown:
        raise DnaError(f"{what}: unknown cost {unknown[0]!r}; expected some of {list(NAMES)}")
    out: dict[str, float] = {}
    for c in COSTS:
        v = limits.get(c.name)
        if v is None:
            continue
        if isinstance(v, (bool, str)) or not hasattr(v, "__float__") or not math.isfinite(float(v)) \
                or float(v) <= 0:
            raise DnaError(f"{c.limit_key}={v!r}: expected a positive finite number")
        out[c.name] = float(v) if not c.is_int else (int(v) if float(v) == int(v) else float(v))
    return out


def check_answerable(limits: Mapping, family, measured: Iterable[str] = ()) -> None:
    """Fail before any work when a limited cost will not be in the scores table: the space's
    ``family`` does not count it (``family.costs``), or it is not counted on modules and not
    ``measured``."""
    for name in limits:
        c = get_cost(name)
        if c.counter is not None and name not in family.costs:
            raise DnaError(f"{c.limit_key}: {name} is not counted for {family.kind} spaces (they count "
                           f"{', '.join(family.costs)})")
        if c.counter is None and name not in set(measured):
            raise DnaError(f"{c.limit_key} needs {c.column} in the scores table: {c.missing}")


def merge_limits(limits: Mapping | None, legacy: Mapping[str, float | None], what: str = "limits") -> dict:
    """``limits`` plus the old ``max_<cost>=`` keywords (by cost name); the same cost given both
    ways with different values is an error."""
    out = dict(limits or {})
    for name, v in legacy.items():
        if v is None:
            continue
        if out.get(name) is not None and out[name] != v:
            raise DnaError(f"max_{name}={v!r} and {what}[{name!r}]={out[name]!r} disagree: give one")
        out[name] = v
    return out


def pop_legacy(d: dict, prefix: str) -> dict:
    """Remove the ``<prefix><cost>`` keys of ``d`` (old names); return them by cost name."""
    return {c.name: d.pop(prefix + c.name) for c in COSTS if prefix + c.name in d}


def legacy_fields(prefix: str, attr: str):
    """Class decorator (dataclasses): the constructor also takes ``<prefix><cost>=`` keywords (the
    names of the old one-field-per-cost API), which land in the mapping field ``attr`` (they win
    over its entries, so ``dataclasses.replace(x, fixed_params=...)`` works); reading
    ``x.<prefix><cost>`` gives ``x.<attr>.get(cost)``."""

    def wrap(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kw):
            old = {k: v for k, v in pop_legacy(kw, prefix).items() if v is not None}
            if old:
                kw[attr] = {**dict(kw.get(attr) or {}), **old}
            init(self, *args, **kw)

        cls.__init__ = __init__
        for c in COSTS:
            setattr(cls, prefix + c.name, property(lambda self, n=c.name: getattr(self, attr).get(n),
                                                   doc=f"``{attr}[{c.name!r}]`` (None when absent)"))
        return cls

    return wrap
