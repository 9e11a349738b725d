"""Single-path one-shot (SPOS) baseline over an MBConv space, for the ranking benchmark.

One supernet covers the whole network as the final model has it: the fixed stem and first layer,
then for every block every cell as a chain of choice layers at the cell's own (student) width,
then the fixed head (1x1 conv, pooling, classifier). A cell's first layer takes the width the
previous block hands over, so it holds one choice layer per possible input width
(``space.in_widths``). Every layer is the timm layer the final model builds (``ChoiceLayer``), and
the stem/head are taken from a timm ``EfficientNet`` built by :func:`dna.model.efficientnet.build_model`.

Training: in every step one path is sampled uniformly (a cell per block, then an op per layer, as
DNA samples ops) and trained with cross-entropy on the labels. Rating: every architecture inherits
its weights, BatchNorm statistics are recalibrated for that path (``dna.rate.rating.recalibrate``
on calibration batches) and the mean cross-entropy on the rating split is its score (lower is
better).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.data import DataConfig, make_loader, num_classes
from dna.model.arch import Architecture
from dna.model.efficientnet import build_model
from dna.rate.rating import recalibrate
from dna.space.mbconv import BlockChoice, MBConvSpace
from dna.supernet.mbconv import ChoiceLayer


class SPOSCell(nn.Module):
    """One cell at its final width; the first layer has a candidate set per input width."""

    def __init__(self, space: MBConvSpace, block: int, cell: int):
        super().__init__()
        c = space.cell(block, cell)
        stride = space.blocks[block].stride
        self.first = nn.ModuleDict({
            str(w): ChoiceLayer(space, w, c.channels, stride) for w in space.in_widths(block)
        })
        self.rest = nn.ModuleList(
            ChoiceLayer(space, c.channels, c.channels, 1) for _ in range(c.layers - 1)
        )

    def forward(self, x: torch.Tensor, in_width: int, ops: Sequence[str]) -> torch.Tensor:
        x = self.first[str(in_width)](x, ops[0])
        for layer, op in zip(self.rest, ops[1:], strict=True):
            x = layer(x, op)
        return x


def first_choices(space: MBConvSpace) -> list[BlockChoice]:
    """Cell 0 with the first op everywhere (only used to build the fixed stem and head)."""
    return [BlockChoice(k, 0, (space.ops[0],) * b.cells[0].layers) for k, b in enumerate(space.blocks)]


class SPOSSupernet(nn.Module):
    def __init__(self, space: MBConvSpace, num_classes: int | None = None):
        super().__init__()
        self.space = space
        ref = build_model(Architecture.from_choices(space, first_choices(space)), num_classes=num_classes)
        self.stem = nn.Sequential(ref.conv_stem, ref.bn1, ref.blocks[0])
        self.cells = nn.ModuleList(
            nn.ModuleList(SPOSCell(space, k, c) for c in range(len(b.cells))) for k, b in enumerate(space.blocks)
        )
        self.head = nn.Sequential(ref.conv_head, ref.bn2, ref.global_pool, ref.classifier)

    def forward(self, x: torch.Tensor, choices: Sequence[BlockChoice]) -> torch.Tensor:
        x = self.stem(x)
        width = self.space.first_channels
        for ch in choices:
            x = self.cells[ch.block][ch.cell](x, width, ch.ops)
            width = self.space.cell(ch.block, ch.cell).channels
        return self.head(x)

    def sample(self, generator: torch.Generator) -> list[BlockChoice]:
        """A uniformly sampled path: a cell per block, then one op per layer of that cell."""
        ops = self.space.ops
        out = []
        for k, b in enumerate(self.space.blocks):
            c = int(torch.randint(len(b.cells), (1,), generator=generator))
            idx = torch.randint(len(ops), (b.cells[c].layers,), generator=generator).tolist()
            out.append(BlockChoice(k, c, tuple(ops[i] for i in idx)))
        return out


class _Path(nn.Module):
    """One path of the supernet as a module (so ``recalibrate`` can run it)."""

    def __init__(self, net: SPOSSupernet, choices: Sequence[BlockChoice]):
        super().__init__()
        self.net = net
        self.choices = list(choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.choices)


def train_spos(space: MBConvSpace, data: DataConfig, epochs: int, seed: int = 0, lr: float = 0.005,
               lr_decay: float = 0.9, max_steps_per_epoch: int | None = None) -> tuple[SPOSSupernet, dict]:
    """Train the SPOS supernet on the train split (Adam, LR x ``lr_decay`` per epoch); CPU."""
    torch.manual_seed(seed)
    net = SPOSSupernet(space, num_classes=num_classes(data))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    loader = make_loader(data, "train", shuffle=True)
    history = []
    t_all = time.time()
    for epoch in range(epochs):
        net.train()
        t0, total, count, images = time.time(), 0.0, 0, 0
        for step, (x, y) in enumerate(loader):
            if max_steps_per_epoch and step >= max_steps_per_epoch:
                break
            loss = F.cross_entropy(net(x, net.sample(gen)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count, images = total + loss.item(), count + 1, images + x.shape[0]
        sched.step()
        sec = time.time() - t0
        history.append({"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": sec,
                        "images_per_s": images / max(sec, 1e-9)})
    return net.eval(), {"history": history, "seconds": time.time() - t_all}


@torch.no_grad()
def rate_spos(net: SPOSSupernet, archs: Sequence[Sequence[BlockChoice]], data: DataConfig,
              calib_batches: int = 2, max_batches: int | None = None) -> list[float]:
    """Mean cross-entropy on the rating split of each architecture with inherited weights."""
    xs, ys = [], []
    for i, (x, y) in enumerate(make_loader(data, "rating", shuffle=False)):
        if max_batches is not None and i >= max_batches:
            break
        xs.append(x)
        ys.append(y)
    calib = xs[:calib_batches]
    out = []
    for choices in archs:
        path = _Path(net, choices)
        if calib:
            recalibrate(path, calib)
        path.eval()
        loss = sum(F.cross_entropy(path(x), y, reduction="sum").item() for x, y in zip(xs, ys, strict=True))
        out.append(loss / sum(len(y) for y in ys))
    return out
