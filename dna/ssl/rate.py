"""Rating every path of every block of a trained ViT supernet (SPEC section 5, Eq. 7).

Per block, every (heads, MLP ratio, depth) path is rated on the held-out ``rating`` split with the
relative L1 loss ``relative_l1`` of ``dna.rate.rating``:

- DNA++ (``mode="dnapp"``): in the common projected space, ``Zhat_k`` (student projector of the
  token-averaged output) against ``Z_k`` (teacher projector of the position-averaged ``Y_k``);
- DNA (``mode="dna"``): the student's output map against the teacher's map ``Y_k``.

Prefix sharing (Algorithm 1 for this space): width and ratio hold for every layer of a block, so
paths share prefixes only along depth: for each (heads, ratio) the layers run once up to the
largest depth and every depth choice is read out on the way (depth 3 is the prefix of depth 4).
LayerNorm has no running statistics, so no recalibration is needed; the projectors' BatchNorm
uses its running statistics (eval mode).

Rows (the scores-table contract of ``dna.rate.scores``): one per (path, in width), ``cell`` 0,
``ops`` ``h<heads>-r<ratio>-d<depth>``, ``in_channels`` = the width handed over (block 0: the patch
embedding width), ``out_channels`` = the path's width, the costs the registry counts for ViT
(``params``/``flops``) from the stand-alone modules (``dna.model.vit.vit_path_costs``); metadata
``fixed_params``/``fixed_flops`` = patch embedding + class token + position embedding
(``vit_fixed_costs``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
import torch

from dna.data import DataConfig, make_loader
from dna.device import resolve_device
from dna.errors import DnaError
from dna.rate.rating import relative_l1
from dna.rate.scores import ScoresMeta, make_table, write_scores
from dna.space.vit import PathChoice, ViTSpace
from dna.ssl.model import PPModel

COLUMNS = ("block", "cell", "ops", "in_channels", "out_channels", "loss")  # then the costs


@dataclass
class ViTRateConfig:
    supernet: str                           # a `train_pp` out folder (checkpoint.pt)
    out: str                                # scores folder (hive-partitioned by block)
    block: int | None = None                # None: every block
    data: DataConfig | None = None          # None: the training run's data (its rating split)
    max_batches: int | None = None          # cap on rating batches
    generation: int = 0
    device: str | None = None

    def validate(self) -> ViTRateConfig:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError("out must name a scores folder URI")
        if self.max_batches is not None and (not isinstance(self.max_batches, int) or self.max_batches < 1):
            raise DnaError(f"max_batches={self.max_batches!r}: expected an integer >= 1")
        if self.data is not None:
            self.data.validate()
        return self


def vit_scores_meta(space: ViTSpace, resolution: int, teacher: str, generation: int = 0) -> ScoresMeta:
    from dna.model.vit import vit_fixed_costs

    return ScoresMeta(space=space.to_json(), resolution=resolution, teacher=teacher, generation=generation,
                      fixed=vit_fixed_costs(space, resolution))


def _weighted(values: list[torch.Tensor], sizes: list[int]) -> float:
    return float(sum(v * n for v, n in zip(values, sizes, strict=True)) / sum(sizes))


@torch.no_grad()
def rate_vit_block(model: PPModel, block: int, inputs: list[torch.Tensor], targets: list[torch.Tensor]
                   ) -> tuple[dict[PathChoice, float], int]:
    """Loss of every path of ``block`` (prefix sharing along depth) and the number of layer
    applications (to the whole rating split) it took."""
    space = model.space
    student = model.students[block]
    spec = space.blocks[block]
    depths = sorted(spec.depths)
    sizes = [t.shape[0] for t in targets]
    losses: dict[PathChoice, float] = {}
    evals = 0
    for heads in spec.heads:
        for ratio in spec.mlp_ratios:
            c = PathChoice(int(heads), float(ratio), depths[-1])
            ts = [student.embed_tokens(x, c.heads) for x in inputs]
            for i in range(depths[-1]):
                ts = [student.layer(i, t, c) for t in ts]
                evals += 1
                if i + 1 in depths:
                    outs = [student.readout(t) for t in ts]
                    if model.mode == "dnapp":
                        preds = [model.student_embed(block, o) for o in outs]
                    else:
                        preds = [student.to_map(o) for o in outs]
                    loss = _weighted([relative_l1(p, t) for p, t in zip(preds, targets, strict=True)], sizes)
                    losses[PathChoice(c.heads, c.mlp_ratio, i + 1)] = loss
    return losses, evals


@torch.no_grad()
def rating_batches(model: PPModel, data: DataConfig, device: torch.device, block: int,
                   max_batches: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The teacher's inputs of ``block`` and its targets over the rating split (lists of batches):
    ``Y_{k-1}`` and ``Z_k`` (DNA++) or ``Y_k`` (DNA). One block at a time bounds the memory."""
    loader = make_loader(data, "rating", shuffle=False)
    inputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        feats = model.teacher.features(batch[0].to(device))
        y_in, y_out = feats[block].float(), feats[block + 1].float()
        inputs.append(y_in)
        targets.append(model.teacher_embed(block, y_out) if model.mode == "dnapp" else y_out)
    if not inputs:
        raise DnaError(f"the rating split of {data.uri} is empty")
    return inputs, targets


def rate_vit_table(model: PPModel, config: dict, blocks: list[int], data: DataConfig, device,
                   max_batches: int | None = None, generation: int = 0) -> dict[int, pa.Table]:
    """The scores table of each of ``blocks`` (not written)."""
    from dna.model.vit import vit_path_costs

    space = model.space
    teacher = config["teacher"]["model"] + (f"@{config['teacher']['checkpoint']}"
                                            if config["teacher"].get("checkpoint") else "")
    if config["mode"] == "dnapp":
        teacher += " (DNA++ joint)"
    meta = vit_scores_meta(space, data.resolution, teacher, generation)
    tables = {}
    for k in blocks:
        inputs, targets = rating_batches(model, data, device, k, max_batches)
        losses, _ = rate_vit_block(model, k, inputs, targets)
        del inputs, targets
        rows: dict[str, list] = {c: [] for c in COLUMNS}
        for path, loss in losses.items():
            for in_w in space.in_widths(k):
                values = (k, 0, path.ops, in_w, path.heads * space.head_dim, loss)
                row = {**dict(zip(COLUMNS, values, strict=True)),
                       **vit_path_costs(space, k, path, in_w, data.resolution)}
                for col, v in row.items():
                    rows.setdefault(col, []).append(v)
        tables[k] = make_table(rows, meta)
    return tables


def rate_vit(cfg: ViTRateConfig) -> dict:
    """Rate the configured block(s) of a ``train_pp`` run; writes each block's partition of the
    scores table (``<out>/block=K/``) and returns ``{"scores", "blocks", "rows"}``."""
    from dna.ssl.train import load_pp

    cfg.validate()
    device = resolve_device(cfg.device)
    model, config = load_pp(cfg.supernet, device)
    space = model.space
    blocks = list(range(len(space.blocks))) if cfg.block is None else [cfg.block]
    for k in blocks:
        space.check_block(k)
    data = cfg.data
    if data is None:
        data = DataConfig.from_dict(config["data"])
    if data.resolution != int(config["data"]["resolution"]):
        raise DnaError(f"rating resolution {data.resolution} differs from the training resolution "
                       f"{config['data']['resolution']} the supernet's grids were built for")
    data = dataclasses.replace(data, augment=False)
    tables = rate_vit_table(model, config, blocks, data, device, cfg.max_batches, cfg.generation)
    rows = 0
    for table in tables.values():
        write_scores(table, cfg.out, partitioned=True)
        rows += table.num_rows
    return {"scores": cfg.out, "blocks": blocks, "rows": rows, "mode": config["mode"]}
