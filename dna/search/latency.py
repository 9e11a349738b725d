"""Latency lookup tables: every candidate layer of a space timed on a device, summed per path.

A latency table holds the median (or min) forward time (ms) of every distinct candidate layer of an MBConv-family
space (MBConv, UIR) (the same timm modules ``PathCosts`` counts: ``dna.model.layers.build_layer(in_chs,
block_str)`` at the layer's position, stride and input size), plus the fixed parts of the final
net (stem conv + BN, the fixed first layer, head conv + BN + pooling + classifier). A path's
latency is the sum of its layers (the usual lookup-table model of latency-aware NAS), so the
search can constrain total latency like params or FLOPs.

Stored as JSON through ``dna.storage`` (local or s3://)::

    {"format": "dna.latency/v1", "space": {...}, "resolution": 224, "device": "cpu",
     "device_name": "AMD EPYC ...", "threads": 2, "batch_size": 1, "torch": "2.x",
     "warmup": 5, "repeats": 20, "stat": "median", "fixed_ms": 1.23,
     "layers": [{"in_channels": 16, "block": "ir_r1_k3_s2_e3_c24_se0.25", "size": 112, "ms": 0.41}, ...]}
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from dna.errors import DnaError
from dna.rate.scores import OPTIONAL, SCHEMA, ScoresMeta, make_table
from dna.space import get_family, get_space
from dna.space.mbconv import MBConvSpace

FORMAT = "dna.latency/v1"
LayerKey = tuple[int, str, int]  # (in_channels, block string, input size)


def layer_key(space: MBConvSpace, block: int, cell: int, index: int, op: str, in_chs: int,
              resolution: int | None = None) -> LayerKey:
    """The layer's identity, as the space family's path costs give it (``layer_key``)."""
    return get_family(space).path_costs(space, resolution).layer_key(block, cell, index, op, in_chs)


def space_layers(space: MBConvSpace, resolution: int | None = None) -> list[LayerKey]:
    """Every distinct candidate layer of the space (all cells, positions, ops, input widths)."""
    return get_family(space).path_costs(space, resolution).layers()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


STATS = ("median", "min")


def time_module(module, shape: Sequence[int], device: str = "cpu", warmup: int = 5, repeats: int = 20,
                stat: str = "median") -> float:
    """Forward time in ms (median, or min: more robust on a busy machine) of ``module`` on a
    random input of ``shape`` (eval mode, no_grad)."""
    import torch

    dev = torch.device(device)
    module = module.to(dev).eval()
    x = torch.randn(*shape, device=dev)
    cuda = dev.type == "cuda"
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            module(x)
        if cuda:
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                module(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                module(x)
                times.append((time.perf_counter() - t0) * 1e3)
    return float(min(times) if stat == "min" else statistics.median(times))


def fixed_parts(space: MBConvSpace):
    """(module, input channels, input size divisor) of the stem, first layer and head of the final
    net, taken from a model built by ``build_model`` (its searched blocks are irrelevant here)."""
    import torch.nn as nn

    from dna.model.arch import Architecture
    from dna.model.efficientnet import build_model
    from dna.space.mbconv import BlockChoice

    choices = [BlockChoice(k, 0, (space.ops[0],) * b.cells[0].layers) for k, b in enumerate(space.blocks)]
    model = build_model(Architecture.from_choices(space, choices))
    last = space.blocks[-1].cells[0].channels
    stem = nn.Sequential(model.conv_stem, model.bn1)
    first = model.blocks[0]
    head = nn.Sequential(model.conv_head, model.bn2, model.global_pool, model.classifier)
    return stem, first, head, last


@dataclass
class LatencyTable:
    """Median latency (ms) per distinct candidate layer of a space on one device, and of the
    fixed stem/head; ``path`` sums layers like ``PathCosts.path`` sums params."""

    space: dict
    resolution: int
    device: str
    device_name: str
    batch_size: int
    torch_version: str
    fixed_ms: float
    layers: dict[LayerKey, float] = field(default_factory=dict)
    threads: int | None = None
    warmup: int = 0
    repeats: int = 0
    stat: str = "median"

    @property
    def space_obj(self) -> MBConvSpace:
        return get_space(self.space)

    # ----- measuring ------------------------------------------------------------------------
    @classmethod
    def measure(cls, space, device: str = "cpu", resolution: int | None = None, batch_size: int = 1,
                warmup: int = 5, repeats: int = 20, threads: int | None = None,
                stat: str = "median") -> LatencyTable:
        """Time every distinct candidate layer of ``space`` and its fixed parts on ``device``.

        ``threads`` sets torch's CPU threads while measuring (None: leave as is). On a busy
        machine, fewer threads than cores avoids OpenMP oversubscription (orders of magnitude
        slower, noisy timings of small layers). ``stat``: 'median' (default) or 'min' of the
        timed runs.
        """
        import torch

        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise DnaError(f"threads={threads!r}: expected an integer >= 1")
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return cls.measure(space, device, resolution, batch_size, warmup, repeats, stat=stat)
            finally:
                torch.set_num_threads(before)

        from dna.model.layers import build_layer

        space = get_space(space)
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise DnaError(f"device {device!r}: expected 'cpu' or 'cuda'")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DnaError(f"device {device!r} requested but CUDA is not available here")
        for name, v, lo in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise DnaError(f"{name}={v!r}: expected an integer >= {lo}")
        if stat not in STATS:
            raise DnaError(f"stat {stat!r}: expected one of {list(STATS)}")
        if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
            raise DnaError(f"resolution={resolution!r}: expected a positive integer")
        res = resolution or space.resolution
        layers: dict[LayerKey, float] = {}
        for key in space_layers(space, res):    # a clear error for a family without timed layers
            in_chs, block_str, size = key
            layers[key] = time_module(build_layer(in_chs, block_str), (batch_size, in_chs, size, size),
                                      device, warmup, repeats, stat)
        stem, first, head, last = fixed_parts(space)
        half = -(-res // 2)
        final = space.in_resolution(len(space.blocks) - 1, res)
        final = -(-final // space.blocks[-1].stride)
        fixed = (time_module(stem, (batch_size, 3, res, res), device, warmup, repeats, stat)
                 + time_module(first, (batch_size, space.stem_channels, half, half), device, warmup, repeats, stat)
                 + time_module(head, (batch_size, last, final, final), device, warmup, repeats, stat))
        return cls(space=space.to_json(), resolution=res, device=device, device_name=device_name(device),
                   batch_size=batch_size, torch_version=torch.__version__, fixed_ms=fixed, layers=layers,
                   threads=torch.get_num_threads() if device == "cpu" else None,
                   warmup=warmup, repeats=repeats, stat=stat)

    # ----- lookup ---------------------------------------------------------------------------
    def layer(self, block: int, cell: int, index: int, op: str, in_chs: int) -> float:
        key = layer_key(self.space_obj, block, cell, index, op, in_chs, self.resolution)
        try:
            return self.layers[key]
        except KeyError:
            raise DnaError(
                f"latency table (space {self.space.get('name')!r}, {self.resolution} px) has no layer "
                f"{key[1]} with {key[0]} input channels at {key[2]} px (block {block} cell {cell} "
                f"layer {index}): measure a table for this space and resolution"
            ) from None

    def path(self, block: int, cell: int, ops: Sequence[str], in_chs: int) -> float:
        """Latency (ms) of one cell path whose first layer receives ``in_chs`` channels."""
        if isinstance(ops, str):
            ops = ops.split("-")
        return float(sum(self.layer(block, cell, i, op, in_chs) for i, op in enumerate(ops)))

    def predict(self, choices) -> float:
        """Predicted latency (ms) of a whole architecture: fixed parts + every chosen path."""
        space = self.space_obj
        total, w = self.fixed_ms, space.in_widths(0)[0]
        for ch in choices:
            total += self.path(ch.block, ch.cell, ch.ops, w)
            w = space.cell(ch.block, ch.cell).channels
        return total

    # ----- storage --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "space": self.space,
            "resolution": self.resolution,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "torch": self.torch_version,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "stat": self.stat,
            "fixed_ms": self.fixed_ms,
            "layers": [{"in_channels": k[0], "block": k[1], "size": k[2], "ms": v}
                       for k, v in self.layers.items()],
        }

    @classmethod
    def from_json(cls, d) -> LatencyTable:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DnaError(f"not a latency table: expected a JSON object with format {FORMAT!r}")
        try:
            layers = {(int(x["in_channels"]), str(x["block"]), int(x["size"])): float(x["ms"])
                      for x in d["layers"]}
            t = cls(space=dict(d["space"]), resolution=int(d["resolution"]), device=str(d["device"]),
                    device_name=str(d.get("device_name", "")), batch_size=int(d["batch_size"]),
                    torch_version=str(d.get("torch", "")), fixed_ms=float(d["fixed_ms"]), layers=layers,
                    threads=d.get("threads"), warmup=int(d.get("warmup", 0)), repeats=int(d.get("repeats", 0)),
                    stat=str(d.get("stat", "median")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DnaError(f"malformed latency table: missing or bad field ({exc})") from exc
        bad = [v for v in [t.fixed_ms, *t.layers.values()] if not math.isfinite(v) or v < 0]
        if bad:
            raise DnaError(f"malformed latency table: latencies must be finite and >= 0, got {bad[0]}")
        return t

    def save(self, uri: str) -> str:
        from dna import storage

        storage.write_json(self.to_json(), uri)
        return uri

    @classmethod
    def load(cls, uri: str) -> LatencyTable:
        from dna import storage

        return cls.from_json(storage.read_json(uri))


def add_latency(table: pa.Table, meta: ScoresMeta, latency: LatencyTable) -> tuple[pa.Table, ScoresMeta]:
    """The scores table with a ``latency_ms`` column (each row's path summed from ``latency``) and
    its meta (also set as the table's schema metadata) with ``fixed_latency_ms``."""
    if latency.resolution != meta.resolution:
        raise DnaError(f"latency table measured at {latency.resolution} px, but the scores are rated at "
                       f"{meta.resolution} px: measure one with --resolution {meta.resolution}")
    space = get_space(meta.space)
    lt = _LookupOnSpace(latency, space, meta.resolution)
    blocks = table.column("block").to_pylist()
    cells = table.column("cell").to_pylist()
    ops = table.column("ops").to_pylist()
    ins = table.column("in_channels").to_pylist()
    lat = [lt.path(b, c, o, w) for b, c, o, w in zip(blocks, cells, ops, ins, strict=True)]
    new_meta = dataclasses.replace(meta, fixed_latency_ms=float(latency.fixed_ms))
    cols = {f.name: table.column(f.name).cast(f.type) for f in SCHEMA}
    cols.update({name: table.column(name) for name in OPTIONAL if name in table.column_names})
    cols["latency_ms"] = pa.array(lat, OPTIONAL["latency_ms"])
    return make_table(cols, new_meta), new_meta


class _LookupOnSpace:
    """Path latencies for the scores' space, with layer lookups cached."""

    def __init__(self, latency: LatencyTable, space: MBConvSpace, resolution: int):
        self.latency, self.space, self.resolution = latency, space, resolution
        self.costs = get_family(space).path_costs(space, resolution)
        self.layer_ms: dict[tuple, float] = {}

    def layer(self, block: int, cell: int, i: int, op: str, in_chs: int, ops: str) -> float:
        key = (block, cell, i, op, in_chs)
        ms = self.layer_ms.get(key)
        if ms is None:
            lk = self.costs.layer_key(block, cell, i, op, in_chs)
            ms = self.latency.layers.get(lk)
            if ms is None:
                raise DnaError(
                    f"latency table (space {self.latency.space.get('name')!r}, {self.latency.resolution} px) "
                    f"has no layer {lk[1]} with {lk[0]} input channels at {lk[2]} px, needed by block "
                    f"{block} cell {cell} ops {ops}: measure a table for the scores' space"
                )
            self.layer_ms[key] = ms
        return ms

    def path(self, block: int, cell: int, ops: str, in_chs: int) -> float:
        total = 0.0
        for i, op in enumerate(ops.split("-")):
            total += self.layer(block, cell, i, op, in_chs, ops)
        return total
