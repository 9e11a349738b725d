"""The scores table: one row per (block, cell, path, input width), stored as Parquet.

Columns (a contract: search, pipelines and users' scripts read them):
``block`` int32, ``cell`` int32, ``ops`` string (op names joined by ``-``), ``in_channels`` int32,
``out_channels`` int32, ``loss`` float64 (Eq. 7 averaged over the rating split), then one column
per cost of ``dna.cost_registry.COSTS``: ``params`` int64, ``flops`` int64 (MACs at the rating
resolution), and optionally ``latency_ms`` float64.
Schema metadata: ``space`` (the space JSON), ``resolution``, ``fixed_params``, ``fixed_flops``,
``teacher``, ``generation``, and the optional costs' ``fixed_<cost>`` (e.g. ``fixed_latency_ms``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from dna import storage
from dna.cost_registry import COSTS, REQUIRED, legacy_fields
from dna.cost_registry import OPTIONAL as OPTIONAL_COSTS
from dna.errors import DnaError

SCHEMA = pa.schema([
    ("block", pa.int32()),
    ("cell", pa.int32()),
    ("ops", pa.string()),
    ("in_channels", pa.int32()),
    ("out_channels", pa.int32()),
    ("loss", pa.float64()),
    *[(c.name, c.arrow_type()) for c in REQUIRED],
])
OPTIONAL = {c.name: c.arrow_type() for c in OPTIONAL_COSTS}
META_KEYS = ("space", "resolution", *[c.meta_key for c in REQUIRED], "teacher", "generation")


@legacy_fields("fixed_", "fixed")
@dataclass(frozen=True)
class ScoresMeta:
    """The schema metadata. ``fixed``: cost name -> the fixed part's cost (stem, head...); the
    constructor also takes ``fixed_params=``/``fixed_flops=``/``fixed_latency_ms=`` and
    ``meta.fixed_<cost>`` reads one (None when absent)."""

    space: dict
    resolution: int
    teacher: str
    generation: int = 0
    fixed: dict = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        missing = [c.meta_key for c in REQUIRED if self.fixed.get(c.name) is None]
        if missing:
            raise DnaError(f"scores metadata lacks {missing}: give the fixed part of every required cost")
        md = {"space": json.dumps(self.space), "resolution": str(self.resolution)}
        md.update({c.meta_key: str(int(self.fixed[c.name])) for c in REQUIRED})
        md.update(teacher=self.teacher, generation=str(self.generation))
        for c in OPTIONAL_COSTS:
            if self.fixed.get(c.name) is not None:
                v = c.value(self.fixed[c.name])
                md[c.meta_key] = repr(v) if isinstance(v, float) else str(v)
        return md

    @classmethod
    def from_metadata(cls, md: dict[bytes | str, bytes | str] | None, uri: str = "") -> ScoresMeta:
        md = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in (md or {}).items()}
        missing = [k for k in META_KEYS if k not in md]
        if missing:
            raise DnaError(f"scores table {uri}: schema metadata lacks {missing}; expected {list(META_KEYS)}")
        try:
            meta = cls(
                space=json.loads(md["space"]),
                resolution=int(md["resolution"]),
                teacher=md["teacher"],
                generation=int(md["generation"]),
                fixed={c.name: (int(md[c.meta_key]) if c.is_int else float(md[c.meta_key]))
                       for c in COSTS if c.meta_key in md},
            )
        except ValueError as exc:
            raise DnaError(f"scores table {uri}: malformed schema metadata ({exc})") from exc
        meta.check(uri)
        return meta

    def check(self, uri: str = "") -> None:
        """Values a rating can write: positive resolution, generation >= 0, fixed costs finite
        and >= 0 (a negative fixed part would let over-budget architectures pass a limit)."""
        where = _where(uri)
        if not isinstance(self.space, dict):
            raise DnaError(f"{where}: metadata 'space' is {type(self.space).__name__}, expected a space JSON object")
        if self.resolution < 1:
            raise DnaError(f"{where}: metadata resolution={self.resolution}, expected a positive integer")
        if self.generation < 0:
            raise DnaError(f"{where}: metadata generation={self.generation}, expected an integer >= 0")
        for name, v in self.fixed.items():
            if v is None:
                continue
            if not math.isfinite(float(v)) or v < 0:
                raise DnaError(f"{where}: metadata fixed_{name}={v!r}, expected a finite number >= 0")


def make_table(rows: dict[str, list], meta: ScoresMeta) -> pa.Table:
    """Build a scores table from column lists, with the exact schema and metadata."""
    fields = list(SCHEMA)
    for name, typ in OPTIONAL.items():
        if name in rows:
            fields.append(pa.field(name, typ))
    schema = pa.schema(fields, metadata=meta.to_metadata())
    missing = [f.name for f in fields if f.name not in rows]
    if missing:
        raise DnaError(f"scores rows lack columns {missing}; expected columns {[f.name for f in fields]}")
    arrays = []
    for f in fields:
        try:
            arrays.append(pa.array(rows[f.name], type=f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise DnaError(f"scores column {f.name!r}: values do not fit {f.type} ({exc})") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def write_scores(table: pa.Table, uri: str, partitioned: bool = False) -> str:
    """Write to one Parquet file or, with ``partitioned``, a hive dataset ``block=K/``."""
    validate(table, uri)
    md = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if partitioned:
        storage.write_dataset(table, uri, partition_cols=["block"], metadata=md)
    else:
        storage.write_table(table, uri, metadata=md)
    return uri


def read_scores(uri: str) -> tuple[pa.Table, ScoresMeta]:
    """Read and validate a scores table (file or partitioned folder)."""
    check_partitions(uri)
    table = storage.read_table(uri)
    meta = ScoresMeta.from_metadata(table.schema.metadata, uri)
    out = conform(table, uri).sort_by([("block", "ascending"), ("cell", "ascending"),
                                       ("ops", "ascending"), ("in_channels", "ascending")])
    validate(out, uri)
    return out, meta


def conform(table: pa.Table, uri: str = "") -> pa.Table:
    """The contract columns of ``table`` in the contract types (partition columns come back as
    dictionary/int types; a foreign writer may use others), metadata kept; a missing column or
    one of the wrong kind is an error naming it."""
    cols = {}
    for f in SCHEMA:
        if f.name not in table.column_names:
            raise DnaError(f"{_where(uri)}: missing column {f.name!r}; expected columns {SCHEMA.names}")
        cols[f.name] = _cast(table.column(f.name), f.name, f.type, uri)
    for name, typ in OPTIONAL.items():
        if name in table.column_names:
            cols[name] = _cast(table.column(name), name, typ, uri)
    return pa.table(cols).replace_schema_metadata(table.schema.metadata)


def _where(uri: str) -> str:
    return f"scores table {uri}".strip()


def _cast(col, name: str, typ, uri: str):
    """``col`` as the contract type ``typ``; a column of another kind (strings in ``params``,
    floats with fractions in ``block``, overflowing values) is an error naming it."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if col.type == typ:
        return col
    if pa.types.is_integer(typ) and not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DnaError(f"{_where(uri)}: column {name!r} has type {col.type}, expected {typ} (integers)")
    if pa.types.is_floating(typ) and not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DnaError(f"{_where(uri)}: column {name!r} has type {col.type}, expected {typ} (numbers)")
    if pa.types.is_string(typ) and not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DnaError(f"{_where(uri)}: column {name!r} has type {col.type}, expected {typ} "
                       "(op names joined by '-')")
    try:
        return col.cast(typ)  # safe cast: no truncation of fractions, no overflow
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DnaError(f"{_where(uri)}: column {name!r} of type {col.type} does not fit {typ}: "
                       f"{str(exc).splitlines()[0]}") from None


_META_COMPARED = (*META_KEYS, *[c.meta_key for c in OPTIONAL_COSTS])


def _footer_meta(fs, path: str, where: str) -> dict[str, str]:
    """A Parquet file's key-value metadata, read from its footer alone (not its rows)."""
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as fh:
            raw = pq.read_metadata(fh).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise DnaError(f"{where}: cannot read partition {path}: {exc}") from None
    return {k.decode(): v.decode() for k, v in raw.items()}


def partition_meta(part_uri: str) -> dict[str, str]:
    """One stored partition's schema metadata as strings (``space`` left as JSON text)."""
    fs, path = storage.filesystem(part_uri)
    return _footer_meta(fs, path, f"scores table {part_uri}")


def check_partitions(uri: str) -> None:
    """A folder of partitions must be one rating: every file's schema metadata (space, teacher,
    generation, resolution, fixed costs) equal. ``read_table`` keeps only the first file's, so a
    re-rate killed mid-way (block 0 of generation 1 beside blocks of generation 0) would
    otherwise be searched as one table."""
    if not storage.is_dir(uri):
        return
    import pyarrow.dataset as ds  # after the check: it imports pandas, which a file needs not

    fs, path = storage.filesystem(uri)
    try:
        files = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").files
    except (OSError, pa.ArrowException) as exc:
        raise DnaError(f"cannot read scores table {uri}: {exc}") from None
    first: tuple[str, dict] | None = None
    for f in sorted(files):
        md = _footer_meta(fs, f, f"scores table {uri}")
        md = {k: (json.loads(v) if k == "space" else v) for k, v in md.items() if k in _META_COMPARED}
        if first is None:
            first = (f, md)
            continue
        for key in _META_COMPARED:
            if md.get(key) != first[1].get(key):
                a, b = first[1].get(key), md.get(key)
                if key == "space":
                    a, b = (x.get("name") if isinstance(x, dict) else x for x in (a, b))
                    a, b = f"space {a!r} (JSON)", f"space {b!r} (JSON)"
                rel = [p[len(path):].lstrip("/") for p in (first[0], f)]
                raise DnaError(f"scores table {uri}: partitions differ in {key!r}: {rel[0]} has {a!r}, {rel[1]} has "
                               f"{b!r}; expected every partition from one rating (rate the stale blocks again)")


def validate(table: pa.Table, uri: str = "") -> None:
    """Reject malformed tables with a message naming the first bad row or column."""
    where = f"scores table {uri}".strip()
    for name in SCHEMA.names:
        if name not in table.column_names:
            raise DnaError(f"{where}: missing column {name!r}; expected columns {SCHEMA.names}")
    if table.num_rows == 0:
        raise DnaError(f"{where}: no rows")
    for name in SCHEMA.names:
        if table.column(name).null_count:
            raise DnaError(f"{where}: column {name!r} has null values")
    loss = table.column("loss")
    bad = pc.or_(pc.is_nan(loss), pc.is_inf(loss))
    if pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        raise DnaError(f"{where}: loss is {loss[i].as_py()} (not finite) at row {i} {_row(table, i)}")
    neg = pc.less(loss, 0)
    if pc.any(neg).as_py():
        i = pc.index(neg, True).as_py()
        raise DnaError(f"{where}: loss is {loss[i].as_py()} at row {i} {_row(table, i)}; expected a "
                       "relative L1 loss >= 0")
    ints = [c.name for c in REQUIRED if c.is_int] + ["in_channels", "out_channels"]
    ints += [c.name for c in OPTIONAL_COSTS if c.is_int and c.name in table.column_names]
    for name in ints:
        neg = pc.less(table.column(name), 0)
        if pc.any(neg).as_py():
            i = pc.index(neg, True).as_py()
            raise DnaError(f"{where}: negative {name} {table.column(name)[i].as_py()} at row {i} "
                           f"{_row(table, i)}; expected >= 0")
    for c in COSTS:
        if not c.is_int and c.name in table.column_names:
            col = table.column(c.name)
            bad = pc.or_(pc.or_(pc.less(col, 0), pc.is_nan(col)), pc.is_inf(col))
            if pc.any(bad).as_py():
                i = pc.index(bad, True).as_py()
                raise DnaError(f"{where}: {c.name} is {col[i].as_py()} at row {i} {_row(table, i)}; "
                               "expected a finite number >= 0")
    keys = pa.table({k: table.column(k) for k in ("block", "cell", "ops", "in_channels")})
    grouped = keys.group_by(["block", "cell", "ops", "in_channels"]).aggregate([([], "count_all")])
    dup = pc.greater(grouped.column("count_all"), 1)
    if pc.any(dup).as_py():
        i = pc.index(dup, True).as_py()
        r = {k: grouped.column(k)[i].as_py() for k in ("block", "cell", "ops", "in_channels")}
        raise DnaError(f"{where}: duplicate path {r}; each (block, cell, ops, in_channels) must appear once")


def _row(table: pa.Table, i: int) -> dict:
    return {k: table.column(k)[i].as_py() for k in ("block", "cell", "ops", "in_channels")}
