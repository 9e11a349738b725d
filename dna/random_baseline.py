"""The random-architecture baseline of a generation: is the searched net better than a random one?

One architecture is drawn uniformly from the space (a cell per block, then an op per layer) until
its parameter count, counted with the same per-layer costs the search and the built model use
(:meth:`Family.path_costs`), lies within ``tolerance`` of the searched net's. It is then trained
with exactly the recipe and seed the searched net it is compared with gets: before the last
generation that net is compound-scaled and retrained as the next teacher, so the random one is
scaled the same way and retrained with that recipe; in the last generation both are retrained at
their own size. Everything goes under ``<root>/gen<g>/random/`` (:mod:`dna.layout`); a stored
draw and a finished training are reused.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dna import storage
from dna.errors import DnaError
from dna.layout import generation, stage_files
from dna.model.arch import Architecture
from dna.space import BlockChoice, get_family, get_space, space_from_json


@dataclass
class RandomBaselineConfig:
    """How to draw the random architecture: ``target_params`` (the searched net's, counted at
    ``resolution``) within ``+-tolerance``; ``seed`` fixes the draw; ``max_tries`` draws before
    giving up (a budget the space cannot meet must fail, not loop)."""

    space: str | dict
    target_params: int
    resolution: int | None = None
    tolerance: float = 0.1
    seed: int = 0
    max_tries: int = 20000
    exclude: list[list[dict]] | None = None     # block choices (BlockChoice JSON) not to return

    def validate(self) -> RandomBaselineConfig:
        if isinstance(self.target_params, bool) or not isinstance(self.target_params, int) or self.target_params < 1:
            raise DnaError(f"target_params={self.target_params!r}: expected a positive integer (the searched "
                           "net's parameter count)")
        if not isinstance(self.tolerance, (int, float)) or not 0 < self.tolerance < 1:
            raise DnaError(f"tolerance={self.tolerance!r}: expected a fraction in (0, 1), e.g. 0.1 for +-10%")
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int) or self.max_tries < 1:
            raise DnaError(f"max_tries={self.max_tries!r}: expected a positive integer")
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 1):
            raise DnaError(f"resolution={self.resolution!r}: expected a positive integer or None")
        return self


def _space(spec: str | dict):
    return space_from_json(spec) if isinstance(spec, dict) else get_space(spec)


class ArchCosts:
    """Total params and FLOPs of whole architectures of a space (fixed stem/head included), from
    the family's per-path costs: the layers as built in the final model, cached per layer, as in
    the scores table. Also what ``benchmarks/ranking.py`` counts its sample with."""

    def __init__(self, space: Any, resolution: int | None = None):
        self.space = space
        self.costs = get_family(space).path_costs(space, resolution)
        self._fixed = self.costs.fixed()

    def layer_params(self, block: int, cell: int, index: int, op: str, in_chs: int) -> int:
        return int(self.costs.layer(block, cell, index, op, in_chs)["params"])

    def __call__(self, choices: Sequence[BlockChoice]) -> dict[str, int]:
        from dna.rate.path_costs import combine

        parts, in_chs = [self._fixed], self.space.first_channels
        for ch in choices:
            parts.append(self.costs.path(ch.block, ch.cell, ch.ops, in_chs))
            in_chs = self.space.cell(ch.block, ch.cell).channels
        total = combine(parts)
        return {"params": int(total["params"]), "flops": int(total["flops"])}

    def params(self, choices: Sequence[BlockChoice]) -> int:
        return self(choices)["params"]


def _key(choices: Sequence[BlockChoice]) -> tuple:
    return tuple((c.block, c.cell, tuple(c.ops)) for c in choices)


def sample_random_arch(cfg: RandomBaselineConfig) -> dict[str, Any]:
    """The first uniform draw of the space whose params are within the tolerance of the target:
    ``{"choices": [BlockChoice], "params", "tries", "low", "high"}``; DnaError after
    ``max_tries`` draws, naming the target and the params range the draws covered."""
    cfg.validate()
    space = _space(cfg.space)
    if not hasattr(space, "first_channels"):
        raise DnaError(f"space {space.name!r}: the random baseline needs a space of cells (MBConv family)")
    costs = ArchCosts(space, cfg.resolution)
    low, high = cfg.target_params * (1 - cfg.tolerance), cfg.target_params * (1 + cfg.tolerance)
    excluded = {_key([BlockChoice.from_json(c) for c in arch]) for arch in cfg.exclude or []}
    rng = random.Random(f"random-baseline:{cfg.seed}")
    seen_low, seen_high = None, None
    for tries in range(1, cfg.max_tries + 1):
        choices = []
        for k, b in enumerate(space.blocks):
            c = rng.randrange(len(b.cells))
            choices.append(BlockChoice(k, c, tuple(rng.choice(space.ops) for _ in range(b.cells[c].layers))))
        p = costs.params(choices)
        seen_low = p if seen_low is None else min(seen_low, p)
        seen_high = p if seen_high is None else max(seen_high, p)
        if low <= p <= high and _key(choices) not in excluded:
            return {"choices": choices, "params": p, "tries": tries, "low": int(low), "high": int(high)}
    raise DnaError(
        f"no random architecture of space {space.name!r} within +-{cfg.tolerance:.0%} of {cfg.target_params:,} "
        f"params ({int(low):,}..{int(high):,}) in {cfg.max_tries} draws (seed {cfg.seed}); the draws had "
        f"{seen_low:,}..{seen_high:,} params: give a budget inside the space's range")


# ----- the pipeline step ------------------------------------------------------------------------
def random_baseline_step(cfg: Any, g: int, teacher: Any = None, arch: str | None = None,
                         on_epoch_end: Callable | None = None) -> dict[str, Any]:
    """Generation ``g``'s random baseline of the run ``cfg`` (a :class:`dna.generation.RunConfig`)
    against the searched net ``arch`` (default: the generation's search/arch.json): drawn once
    (``random/arch.json`` is reused), scaled to ``cfg.scale_to`` unless ``g`` is the last
    generation, and retrained with ``cfg.retrain`` and ``cfg.seed`` (pass the run config the
    searched net's own retraining uses, e.g. with the scaled teachers' ``scale_retrain``)."""
    from dna.generation import _retrain_config
    from dna.retrain import retrain
    from dna.scale import scale

    gen = generation(cfg.root, g)
    searched = Architecture.load(arch or gen.search_arch)
    final = g == cfg.generations - 1
    if not storage.exists(gen.random_arch):
        if searched.choices is None or searched.space is None:
            raise DnaError(f"searched architecture {arch or gen.search_arch} names no space and block choices: "
                           "the random baseline draws from the searched net's space")
        space = _space(searched.space)
        target = ArchCosts(space, searched.resolution).params(searched.choices)
        draw = sample_random_arch(RandomBaselineConfig(
            space=searched.space, target_params=target, resolution=searched.resolution, seed=cfg.seed * 1000 + g,
            exclude=[[c.to_json() for c in searched.choices]]))
        rnd = Architecture.from_choices(space, draw["choices"], random_baseline={
            "target_params": target, "params": draw["params"], "tries": draw["tries"], "seed": cfg.seed * 1000 + g,
            "range": [draw["low"], draw["high"]]})
        rnd.resolution = searched.resolution
        rnd.num_classes = searched.num_classes
        rnd.save(gen.random_arch)
    model_arch, out = gen.random_arch, gen.random_retrain
    data = cfg.data
    if not final:
        if not storage.exists(gen.random_scaled_arch):
            scale(Architecture.load(gen.random_arch), cfg.scale_to).save(gen.random_scaled_arch)
        model_arch, out = gen.random_scaled_arch, gen.random_scaled_retrain
        data = dataclasses.replace(cfg.data, resolution=Architecture.load(model_arch).resolution)
    metrics = retrain(_retrain_config(cfg.retrain, model_arch, out, data, cfg.seed, cfg.device,
                                      teacher), on_epoch_end=on_epoch_end)
    return {"arch": gen.random_arch, "trained_arch": model_arch, "scaled": not final,
            "model": stage_files(out).model, "dir": out, "metrics": metrics,
            "sample": storage.read_json(gen.random_arch).get("random_baseline", {})}
