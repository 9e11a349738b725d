"""Rate one block of a trained supernet and write its rows of the scores table."""

from __future__ import annotations

import pyarrow as pa
import torch

from dna.data import make_loader
from dna.device import autocast, memory_format, resolve_device
from dna.errors import DnaError
from dna.layout import block_dir
from dna.rate.config import RateConfig  # noqa: F401 (re-exported)
from dna.rate.rating import rate_cell
from dna.rate.scores import ScoresMeta, make_table, write_scores
from dna.space import get_family, get_space
from dna.teacher import BlockTeacher, TeacherConfig
from dna.train.block import build_block_teacher, load_supernet


def teacher_name(cfg: TeacherConfig) -> str:
    return cfg.model + (f"@{cfg.checkpoint}" if cfg.checkpoint else "")


def scores_meta(space, resolution: int, teacher: str, generation: int) -> ScoresMeta:
    return ScoresMeta(space=space.to_json(), resolution=resolution, teacher=teacher, generation=generation,
                      fixed=get_family(space).path_costs(space, resolution).fixed())


def _rating_batches(cfg: RateConfig, teacher: BlockTeacher, block: int, device):
    loader = make_loader(cfg.data, "rating", shuffle=False)
    mf = memory_format(device)
    inputs, targets = [], []
    for i, batch in enumerate(loader):
        if cfg.max_batches is not None and i >= cfg.max_batches:
            break
        with autocast(device):
            x, y = teacher.block_io(batch[0].to(device, memory_format=mf), block)
        inputs.append(x.float())
        targets.append(y.float())
    if not inputs:
        raise DnaError(f"the rating split of {cfg.data.uri} is empty")
    return inputs, targets


def rate_block(cfg: RateConfig, block: int, teacher: BlockTeacher | None = None) -> pa.Table:
    """Algorithm 1 over every cell of ``block``; one row per (path, input width)."""
    space = get_space(cfg.space)
    device = resolve_device(cfg.device)
    teacher = teacher or build_block_teacher(space, cfg.teacher)
    teacher.to(device, memory_format=memory_format(device))
    net = load_supernet(block_dir(cfg.supernets, block), space, teacher, block).to(device)
    inputs, targets = _rating_batches(cfg, teacher, block, device)
    calib = inputs[: cfg.calib_batches] if cfg.calib_batches else None
    costs = get_family(space).path_costs(space, cfg.data.resolution)
    rows: dict[str, list] = {k: [] for k in ("block", "cell", "ops", "in_channels", "out_channels", "loss")}
    for c, cell in enumerate(net.cells):
        rating = rate_cell([layer.candidates for layer in cell.layers], space.ops, inputs, targets, calib)
        width = space.cell(block, c).channels
        for path, loss in rating.losses.items():
            for in_chs in space.in_widths(block):
                row = {"block": block, "cell": c, "ops": "-".join(path), "in_channels": in_chs,
                       "out_channels": width, "loss": loss, **costs.path(block, c, path, in_chs)}
                for k, v in row.items():
                    rows.setdefault(k, []).append(v)
    meta = scores_meta(space, cfg.data.resolution, teacher_name(cfg.teacher), cfg.generation)
    table = make_table(rows, meta)
    if cfg.latency_table:
        from dna.search.latency import LatencyTable, add_latency

        table, meta = add_latency(table, meta, LatencyTable.load(cfg.latency_table))
    return table


def rate(cfg: RateConfig, teacher: BlockTeacher | None = None) -> dict:
    """Rate the configured block(s) with the space's family (``Family.rate``)."""
    cfg.validate()
    return get_family(get_space(cfg.space)).rate(cfg, teacher)


def rate_blocks(cfg: RateConfig, teacher: BlockTeacher | None = None) -> dict:
    """Rate each configured block of a cells space and write it as its partition of the scores table."""
    space = get_space(cfg.space)
    teacher = teacher or build_block_teacher(space, cfg.teacher)
    written = []
    rows = 0
    for k in cfg.blocks():
        with torch.no_grad():
            table = rate_block(cfg, k, teacher)
        write_scores(table, cfg.out, partitioned=True)
        written.append(k)
        rows += table.num_rows
    return {"scores": cfg.out, "blocks": written, "rows": rows}
