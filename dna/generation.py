"""DNA+ (SPEC section 7): generations of search, each teaching the next.

Generation 0 learns from an existing teacher (trained here on the data when no weights are given,
since nothing can be downloaded in the embedded default). In generation g the searched net is
compound-scaled, retrained from scratch and becomes the teacher of generation g+1. The final
answer is the searched student of the last generation, retrained without scaling.

Each step is a plain function of (config, generation) that reads and writes under the run root
(see :mod:`dna.layout`) and skips work whose outputs exist, so the same steps serve this
in-process loop, the ``dna`` command line and the KFP components (which fan blocks out on Ray).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dna import storage
from dna.cost_registry import (
    check_answerable,
    check_limits,
    legacy_fields,
    merge_limits,
    pop_legacy,
)
from dna.data import DataConfig
from dna.errors import DnaError, check_keys, field_names
from dna.layout import Generation, generation
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.space import get_space
from dna.teacher import TeacherConfig

# teacher names meaning "the embedded default": a half-width EfficientNet-B0 trained here first
TINY_TEACHERS = ("", "tiny", "efficientnet_b0-half")
ARCH_FILE = "arch.json"
MODEL_FILE = "model.pt"


@dataclass
class RetrainSettings:
    """The parts of :class:`dna.retrain.RetrainConfig` a run sets (the rest keep its defaults)."""

    epochs: int = 3
    opt: str = "rmsproptf"
    lr: float | None = None
    sched: str = "step"
    steps_per_epoch: int | None = None
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    label_smoothing: float = 0.1
    auto_augment: str | None = None
    ema: bool = False
    kd_alpha: float = 0.0               # > 0: distil from this generation's teacher


@legacy_fields("max_", "limits")
@dataclass
class RunConfig:
    """One DNA / DNA+ run: N generations of teacher -> supernets -> rating -> search.

    ``limits``: cost name -> limit of the search (``dna.cost_registry``), e.g. ``{"params": 5.3e6,
    "act_mem": 2e6}``; the old ``max_params``/``max_flops``/``max_latency_ms`` keywords and keys
    land in it, and ``cfg.max_params`` reads it."""

    root: str
    generations: int = 1
    space: str = "mbconv-tiny"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    teacher_train: RetrainSettings = field(default_factory=RetrainSettings)
    block_epochs: int = 20
    block_max_steps: int | None = None
    rate_max_batches: int | None = None
    calib_batches: int = 2
    limits: dict[str, float] = field(default_factory=dict)
    latency_table: str | None = None
    scale_to: str = "b1"                    # compound scaling applied to each generation's search
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    transfer: list[str] = field(default_factory=lambda: ["seg", "det"])
    transfer_epochs: int = 2
    transfer_resolution: int | None = None  # None: the task's default (64 px)
    transfer_train_size: int = 1000         # built-in data only
    transfer_val_size: int = 200
    # per task, fields of SegConfig / DetConfig / ClsConfig, e.g. {"det": {"fpn": true}}
    transfer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    device: str | None = None

    def validate(self) -> RunConfig:
        if not isinstance(self.root, str) or not self.root:
            raise DnaError("root must be a run folder URI (local path or s3://bucket/prefix)")
        if not isinstance(self.generations, int) or self.generations < 1:
            raise DnaError(f"generations={self.generations!r}: expected an integer >= 1")
        space = get_space(self.space)
        if self.block_epochs < 1:
            raise DnaError(f"block_epochs={self.block_epochs}: expected >= 1")
        self.limits = check_limits(self.limits, "run config limits")
        check_answerable(self.limits, getattr(space, "kind", "mbconv"), ["latency_ms"] if self.latency_table else [])
        unknown = sorted(set(self.transfer) - {"seg", "det", "cls"})
        if unknown:
            raise DnaError(f"transfer tasks {unknown}: expected some of ['seg', 'det', 'cls']")
        transfer_configs(self)
        from dna.scale import coefficients

        if self.generations > 1:
            coefficients(self.scale_to)
        if self.teacher.checkpoint:
            storage.check_readable(self.teacher.checkpoint)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["limits"] = check_limits(merge_limits(d.get("limits"), pop_legacy(d, "max_"), "run config limits"),
                                   "run config limits")
        d["data"] = DataConfig.from_dict(d["data"]) if isinstance(d.get("data"), dict) else d.get("data", DataConfig())
        if isinstance(d.get("teacher"), dict):
            d["teacher"] = TeacherConfig(**d["teacher"])
        for k in ("teacher_train", "retrain"):
            if isinstance(d.get(k), dict):
                d[k] = RetrainSettings(**d[k])
        check_keys(d, field_names(cls), "run config keys")
        return cls(**d)


def tiny_teacher_arch(data: DataConfig) -> Architecture:
    """A half-width, half-depth EfficientNet-B0: the embedded default's generation-0 teacher."""
    return Architecture(EFFICIENTNET_B0, resolution=data.resolution, num_classes=data.num_classes,
                        channel_multiplier=0.5, depth_multiplier=0.5, extra={"name": "efficientnet_b0-half"})


def _retrain_config(settings: RetrainSettings, model: str, out: str, data: DataConfig, seed: int,
                    device: str | None, teacher: TeacherConfig | None = None):
    from dna.retrain import RetrainConfig

    return RetrainConfig(
        model=model, out=out, data=data, epochs=settings.epochs, opt=settings.opt, lr=settings.lr,
        sched=settings.sched, steps_per_epoch=settings.steps_per_epoch, drop_rate=settings.drop_rate,
        drop_path_rate=settings.drop_path_rate, label_smoothing=settings.label_smoothing,
        auto_augment=settings.auto_augment, ema=settings.ema, seed=seed, device=device or "auto",
        teacher=teacher if settings.kd_alpha > 0 else None, kd_alpha=settings.kd_alpha or 0.5,
    )


# ----- steps ------------------------------------------------------------------------------------
def teacher_step(cfg: RunConfig, g: int) -> TeacherConfig:
    """The teacher of generation ``g`` (trained on the data for g = 0 when it has no weights)."""
    from dna.retrain import retrain

    gen = generation(cfg.root, g)
    if g > 0:
        prev = generation(cfg.root, g - 1)
        scaled = storage.join(prev.scaled, ARCH_FILE)
        weights = storage.join(prev.scaled, "retrain", MODEL_FILE)
        if not storage.exists(weights):
            raise DnaError(f"generation {g} needs the retrained scaled net of generation {g - 1} at {weights}")
        return TeacherConfig(model=scaled, checkpoint=weights)
    if cfg.teacher.checkpoint or cfg.teacher.pretrained:
        return cfg.teacher
    model = cfg.teacher.model
    if model in TINY_TEACHERS:
        model = storage.join(gen.teacher, ARCH_FILE)
        if not storage.exists(model):
            tiny_teacher_arch(cfg.data).save(model)
    retrain(_retrain_config(cfg.teacher_train, model, gen.teacher, cfg.data, cfg.seed, cfg.device))
    return TeacherConfig(model=model, checkpoint=storage.join(gen.teacher, MODEL_FILE),
                         num_classes=None)


def block_config(cfg: RunConfig, g: int, block: int, teacher: TeacherConfig):
    from dna.train.block import BlockTrainConfig

    return BlockTrainConfig(block=block, out=generation(cfg.root, g).block(block), space=cfg.space,
                            teacher=teacher, data=cfg.data, epochs=cfg.block_epochs,
                            max_steps_per_epoch=cfg.block_max_steps, seed=cfg.seed, device=cfg.device)


def supernet_step(cfg: RunConfig, g: int, teacher: TeacherConfig, blocks: list[int] | None = None,
                  progress: Callable | None = None) -> list[dict]:
    """Train the block supernets one after another (the pipelines fan them out on Ray instead)."""
    from dna.train.block import build_block_teacher, train_block

    space = get_space(cfg.space)
    bt = build_block_teacher(space, teacher)
    blocks = list(range(len(space.blocks))) if blocks is None else blocks
    out = []
    for k in blocks:
        out.append(train_block(block_config(cfg, g, k, teacher), teacher=bt,
                               progress=(lambda k=k, **kw: progress(block=k, **kw)) if progress else None))
    return out


def rate_config(cfg: RunConfig, g: int, teacher: TeacherConfig, block: int | None = None):
    from dna.rate.block import RateConfig

    gen = generation(cfg.root, g)
    return RateConfig(supernets=gen.supernets, out=gen.scores, block=block, space=cfg.space, teacher=teacher,
                      data=cfg.data, calib_batches=cfg.calib_batches, max_batches=cfg.rate_max_batches,
                      latency_table=cfg.latency_table, generation=g, device=cfg.device)


def rate_step(cfg: RunConfig, g: int, teacher: TeacherConfig, blocks: list[int] | None = None) -> dict:
    """Rate the blocks whose scores are not stored yet."""
    from dna.rate.block import rate
    from dna.train.block import build_block_teacher

    space = get_space(cfg.space)
    gen = generation(cfg.root, g)
    blocks = list(range(len(space.blocks))) if blocks is None else blocks
    todo = [k for k in blocks if not storage.exists(storage.join(gen.scores, f"block={k}", storage.PART_FILE))]
    bt = build_block_teacher(space, teacher) if todo else None
    for k in todo:
        rate(rate_config(cfg, g, teacher, k), teacher=bt)
    return {"scores": gen.scores, "rated": todo, "cached": [k for k in blocks if k not in todo]}


def search_step(cfg: RunConfig, g: int) -> dict:
    """Exact traversal search under the run's constraint; writes search/arch.json and result.json."""
    from dna.search.run import run_search

    gen = generation(cfg.root, g)
    arch_uri = storage.join(gen.search, ARCH_FILE)
    result_uri = storage.join(gen.search, "result.json")
    if storage.exists(result_uri) and storage.exists(arch_uri):
        return storage.read_json(result_uri)
    result = run_search(gen.scores, limits=cfg.limits, out=arch_uri)
    result["arch"] = arch_uri
    storage.write_json(result, result_uri)
    return result


def scale_step(cfg: RunConfig, g: int, teacher: TeacherConfig) -> dict:
    """Scale generation g's searched net and retrain it: the teacher of generation g + 1."""
    from dna.retrain import retrain
    from dna.scale import scale

    gen = generation(cfg.root, g)
    scaled_uri = storage.join(gen.scaled, ARCH_FILE)
    if not storage.exists(scaled_uri):
        scaled = scale(Architecture.load(storage.join(gen.search, ARCH_FILE)), cfg.scale_to)
        scaled.save(scaled_uri)
    data = dataclasses.replace(cfg.data, resolution=Architecture.load(scaled_uri).resolution)
    metrics = retrain(_retrain_config(cfg.retrain, scaled_uri, storage.join(gen.scaled, "retrain"), data,
                                      cfg.seed, cfg.device, teacher))
    return {"arch": scaled_uri, "model": storage.join(gen.scaled, "retrain", MODEL_FILE), "metrics": metrics}


def retrain_step(cfg: RunConfig, g: int, teacher: TeacherConfig | None = None) -> dict:
    """Retrain the searched net of generation g without scaling (the final answer of a run)."""
    from dna.retrain import retrain

    gen = generation(cfg.root, g)
    metrics = retrain(_retrain_config(cfg.retrain, storage.join(gen.search, ARCH_FILE), gen.retrain, cfg.data,
                                      cfg.seed, cfg.device, teacher))
    return {"model": storage.join(gen.retrain, MODEL_FILE), "metrics": metrics}


# what the run decides for every transfer task; transfer_options may not change these
_TRANSFER_SET_BY_RUN = ("model", "out", "checkpoint", "random_init", "data")


def transfer_configs(cfg: RunConfig, g: int = 0) -> dict[str, Any]:
    """The validated SegConfig / DetConfig / ClsConfig of each task in ``cfg.transfer``: the run's
    data, epochs and sizes, then ``cfg.transfer_options[task]`` on top."""
    from dna.transfer import ClsConfig, DetConfig, SegConfig

    classes = {"seg": SegConfig, "det": DetConfig, "cls": ClsConfig}
    opts = cfg.transfer_options
    if not isinstance(opts, dict) or not all(isinstance(v, dict) for v in opts.values()):
        raise DnaError(f"transfer_options {opts!r}: expected a JSON object of task -> object of settings")
    check_keys(opts, classes, "transfer_options tasks")
    for task, settings in opts.items():        # every task's, also of tasks this run skips
        check_keys(settings, field_names(classes[task]) - set(_TRANSFER_SET_BY_RUN), f"transfer_options[{task!r}] keys")
    gen = generation(cfg.root, g)
    out = {}
    for task in cfg.transfer:
        config_cls = classes[task]
        kw: dict[str, Any] = {
            "epochs": cfg.transfer_epochs, "resolution": cfg.transfer_resolution,
            "train_size": cfg.transfer_train_size, "val_size": cfg.transfer_val_size,
            "num_classes": cfg.data.num_classes, "seed": cfg.seed, "device": cfg.device or "auto",
            **opts.get(task, {}),
        }
        tc = config_cls(model=storage.join(gen.search, ARCH_FILE), out=storage.join(gen.transfer, task),
                        checkpoint=storage.join(gen.retrain, MODEL_FILE), data=cfg.data.uri, **kw)
        out[task] = tc.validate(sources=False)     # the backbone exists only once retrained
    return out


def transfer_step(cfg: RunConfig, g: int) -> dict:
    """Segmentation / detection / classification transfer of the retrained searched backbone."""
    from dna.transfer import transfer_cls, transfer_det, transfer_seg

    runners = {"seg": transfer_seg, "det": transfer_det, "cls": transfer_cls}
    out = {}
    for task, tc in transfer_configs(cfg, g).items():
        metrics_uri = storage.join(tc.out, "metrics.json")
        if storage.exists(metrics_uri):
            out[task] = storage.read_json(metrics_uri)
            continue
        out[task] = runners[task](tc)
    return out


# ----- the loop ---------------------------------------------------------------------------------
def run(cfg: RunConfig, log: Callable[[str], Any] = print) -> dict:
    """All generations in this process; every step resumes from what the run root holds."""
    cfg.validate()
    storage.write_json(cfg.to_dict(), storage.join(cfg.root, "config.json"))
    summary: dict[str, Any] = {"root": cfg.root, "generations": []}
    for g in range(cfg.generations):
        t0 = time.time()
        gen: Generation = generation(cfg.root, g)
        log(f"[gen {g}] teacher")
        teacher = teacher_step(cfg, g)
        log(f"[gen {g}] training {len(get_space(cfg.space).blocks)} block supernets")
        supernet_step(cfg, g, teacher)
        log(f"[gen {g}] rating")
        rate_step(cfg, g, teacher)
        result = search_step(cfg, g)
        best = result["architectures"][0]
        log(f"[gen {g}] searched: loss {best['loss']:.4f}, params {best['params']:,}, flops {best['flops']:,}")
        entry = {"generation": g, "teacher": dataclasses.asdict(teacher), "search": best, "dir": gen.dir}
        if g < cfg.generations - 1:
            log(f"[gen {g}] scaling to {cfg.scale_to} and retraining: next generation's teacher")
            entry["scaled"] = scale_step(cfg, g, teacher)
        else:
            log(f"[gen {g}] retraining the searched net")
            entry["retrain"] = retrain_step(cfg, g, teacher)
            if cfg.transfer:
                log(f"[gen {g}] transfer: {', '.join(cfg.transfer)}")
                entry["transfer"] = transfer_step(cfg, g)
        entry["seconds"] = time.time() - t0
        summary["generations"].append(entry)
    storage.write_json(summary, storage.join(cfg.root, "summary.json"))
    return summary
