"""DNA+ (SPEC section 7): generations of search, each teaching the next.

Generation 0 learns from an existing teacher (trained here on the data when no weights are given,
since nothing can be downloaded in the embedded default). In generation g the searched net is
compound-scaled, retrained from scratch and becomes the teacher of generation g+1. The final
answer is the searched student of the last generation, retrained without scaling.

Each step is a plain function of (config, generation, the URIs it consumes) that writes under the
run root (see :mod:`dna.layout`) and skips work whose outputs exist, so the same steps serve this
in-process loop (inputs default to their layout paths), the ``dna`` command line and the KFP
components (which pass what their input artifacts point at and fan blocks out on Ray).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dna import storage, timm_names
from dna.cost_registry import (
    check_answerable,
    check_limits,
    legacy_fields,
    merge_limits,
    pop_legacy,
)
from dna.data import DataConfig
from dna.errors import DnaError, check_keys, field_names
from dna.layout import generation, run_files, scores_part, stage_files
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.space import get_family, get_space
from dna.teacher_config import TeacherConfig

# teacher names meaning "the embedded default": a half-width EfficientNet-B0 trained here first
TINY_TEACHERS = ("", "tiny", "efficientnet_b0-half")


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
    train_size: int | None = None       # train images of this training (None: the run's data's);
                                        # built-in data: a teacher trained on more images than the search sees
    zero_head: bool = False             # start the classifier at zero (RetrainConfig.zero_head)
    warmup_epochs: float = 0.0          # linear LR warm-up; AdamW from step 0 at full LR stalls short runs
    weight_decay: float = 1e-5          # RetrainConfig's (the paper's); AdamW recipes use about 0.01


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
    # per generation, one random architecture of the searched net's params (+-10%) trained with its
    # recipe (dna.random_baseline): what the search is worth against a random pick
    random_baseline: bool = True

    def validate(self, remote: bool = False) -> RunConfig:
        """Every check of a run config, before any work (raises :class:`DnaError`). ``remote``:
        the run happens elsewhere (a cluster), so URIs are not opened from this machine."""
        if not isinstance(self.root, str) or not self.root:
            raise DnaError("root must be a run folder URI (local path or s3://bucket/prefix)")
        from dna.config_check import check_run

        check_run(self, remote)                 # every field's type and bounds; each stage's own checks
        if not isinstance(self.generations, int) or self.generations < 1:
            raise DnaError(f"generations={self.generations!r}: expected an integer >= 1")
        space = get_space(self.space)
        _check_teacher(self, remote)
        if self.block_epochs < 1:
            raise DnaError(f"block_epochs={self.block_epochs}: expected >= 1")
        from dna.train.config import check_count

        check_count("block_max_steps", self.block_max_steps)     # a step-less block is never "finished"
        self.limits = check_limits(self.limits, "run config limits")       # the one check of a limit
        check_answerable(self.limits, get_family(space), ["latency_ms"] if self.latency_table else [])
        unknown = sorted(set(self.transfer) - {"seg", "det", "cls"})
        if unknown:
            raise DnaError(f"transfer tasks {unknown}: expected some of ['seg', 'det', 'cls']")
        if self.transfer_epochs < 1:
            raise DnaError(f"transfer_epochs={self.transfer_epochs}: expected >= 1")
        transfer_configs(self)
        from dna.scale import coefficients

        if self.generations > 1:
            coefficients(self.scale_to)
        if not self.data.is_builtin and not remote:
            storage.check_readable(self.data.uri)
        for name in ("teacher_train", "retrain"):
            check_retrain(self, getattr(self, name), name)
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


def default_teachers(space: str) -> tuple[str, ...]:
    """The teacher names standing for the run's own default teacher (no weights needed): DNA's
    tiny EfficientNet, or DNA++'s default CNN when the space is a ViT space."""
    if getattr(get_space(space), "kind", "mbconv") == "vit":
        from dna.dnapp import PP_DEFAULT_TEACHERS

        return PP_DEFAULT_TEACHERS
    return TINY_TEACHERS


def _check_teacher(cfg: RunConfig, remote: bool) -> None:
    """The teacher is a default name, a timm model or a readable architecture JSON; given weights
    belong to a named model and are readable (unless ``remote``). Model names are looked up in
    :mod:`dna.timm_names`, without importing timm."""
    builtin = default_teachers(cfg.space)
    model, checkpoint = cfg.teacher.model, cfg.teacher.checkpoint
    if model in builtin and (checkpoint or cfg.teacher.pretrained):
        raise DnaError("--teacher-checkpoint / pretrained need --teacher: the timm name or architecture .json "
                       "URI the weights belong to")
    if model.endswith(".json"):
        if not remote:
            storage.check_readable(model)
    elif model not in builtin and not timm_names.is_model(model):
        raise DnaError(f"teacher {model!r}: expected {' or '.join(repr(t) for t in builtin if t)} (the "
                       "default), a timm model name (e.g. efficientnet_b1) or an architecture .json URI")
    if checkpoint and not remote:
        storage.check_readable(checkpoint)


def check_retrain(cfg: RunConfig, settings: RetrainSettings, name: str) -> None:
    """``settings`` make a valid :class:`dna.retrain.RetrainConfig` (DnaError prefixed ``name``)."""
    try:
        _retrain_config(settings, "model.json", "out", cfg.data, cfg.seed, cfg.device).validate()
    except DnaError as exc:
        raise DnaError(f"{name}: {exc}") from None


def with_retrain(cfg: RunConfig, overrides: str | dict | None) -> RunConfig:
    """``cfg`` with its ``retrain`` settings updated from a JSON object (empty: unchanged), e.g.
    the scaled teachers' own retraining; the result is checked."""
    import json

    if isinstance(overrides, str):
        if not overrides.strip():
            return cfg
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as exc:
            raise DnaError(f"retrain overrides are not valid JSON: {exc}") from None
    if not overrides:
        return cfg
    if not isinstance(overrides, dict):
        raise DnaError(f"retrain overrides {overrides!r}: expected a JSON object")
    check_keys(overrides, field_names(cfg.retrain), "retrain overrides keys")
    out = dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, **overrides))
    check_retrain(out, out.retrain, "retrain overrides")
    return out


def tiny_teacher_arch(data: DataConfig) -> Architecture:
    """A half-width, half-depth EfficientNet-B0: the embedded default's generation-0 teacher."""
    return Architecture(EFFICIENTNET_B0, resolution=data.resolution, num_classes=data.num_classes,
                        channel_multiplier=0.5, depth_multiplier=0.5, extra={"name": "efficientnet_b0-half"})


def fix_teacher_classes(teacher: TeacherConfig, data: DataConfig) -> TeacherConfig:
    """A timm-named teacher with weights from here predicts the data's classes, not timm's 1000."""
    if teacher.num_classes is None and not teacher.model.endswith(".json") and teacher.checkpoint \
            and not teacher.pretrained:
        from dna.data import num_classes

        return dataclasses.replace(teacher, num_classes=num_classes(data))
    return teacher


def _retrain_config(settings: RetrainSettings, model: str, out: str, data: DataConfig, seed: int,
                    device: str | None, teacher: TeacherConfig | None = None):
    from dna.retrain_config import RetrainConfig

    if settings.train_size is not None:
        data = dataclasses.replace(data, train_size=settings.train_size)
    return RetrainConfig(
        model=model, out=out, data=data, epochs=settings.epochs, opt=settings.opt, lr=settings.lr,
        sched=settings.sched, steps_per_epoch=settings.steps_per_epoch, drop_rate=settings.drop_rate,
        drop_path_rate=settings.drop_path_rate, label_smoothing=settings.label_smoothing,
        auto_augment=settings.auto_augment, ema=settings.ema, seed=seed, device=device or "auto",
        teacher=teacher if settings.kd_alpha > 0 else None, kd_alpha=settings.kd_alpha or 0.5,
        zero_head=settings.zero_head, warmup_epochs=settings.warmup_epochs,
        weight_decay=settings.weight_decay,
    )


# ----- steps ------------------------------------------------------------------------------------
# Each step takes what it consumes as explicit URIs (None: where dna.layout puts it, for the
# in-process loop); the KFP components pass what their input artifacts point at.
def teacher_step(cfg: RunConfig, g: int, arch: str | None = None, weights: str | None = None,
                 on_epoch_end: Callable | None = None) -> TeacherConfig:
    """The teacher of generation ``g``: for g > 0 the scaled, retrained net of generation g - 1
    (``arch`` and ``weights``); for g = 0 the given one, trained on the data when it has no weights."""
    from dna.retrain import retrain

    gen = generation(cfg.root, g)
    if g > 0:
        prev = generation(cfg.root, g - 1)
        arch = arch or prev.scaled_arch
        weights = weights or prev.scaled_files.model
        if not storage.exists(weights):
            raise DnaError(f"generation {g} needs the retrained scaled net of generation {g - 1} at {weights}")
        return TeacherConfig(model=arch, checkpoint=weights)
    if cfg.teacher.checkpoint or cfg.teacher.pretrained:
        return fix_teacher_classes(cfg.teacher, cfg.data)
    model = cfg.teacher.model
    if model in TINY_TEACHERS:
        model = gen.teacher_files.arch
        if not storage.exists(model):
            tiny_teacher_arch(cfg.data).save(model)
    retrain(_retrain_config(cfg.teacher_train, model, gen.teacher, cfg.data, cfg.seed, cfg.device),
            on_epoch_end=on_epoch_end)
    return fix_teacher_classes(TeacherConfig(model=model, checkpoint=gen.teacher_files.model, num_classes=None),
                               cfg.data)


def block_config(cfg: RunConfig, g: int, block: int, teacher: TeacherConfig):
    from dna.train.config import BlockTrainConfig

    return BlockTrainConfig(block=block, out=generation(cfg.root, g).block(block), space=cfg.space,
                            teacher=teacher, data=cfg.data, epochs=cfg.block_epochs,
                            max_steps_per_epoch=cfg.block_max_steps, seed=cfg.seed, device=cfg.device)


def supernet_step(cfg: RunConfig, g: int, teacher: TeacherConfig, blocks: list[int] | None = None,
                  on_epoch_end: Callable | None = None) -> list[dict]:
    """Train the block supernets one after another (the pipelines fan them out on Ray instead);
    ``on_epoch_end`` as in :func:`dna.train.block.train_block` (its metrics name the block)."""
    from dna.train.block import build_block_teacher, train_block

    space = get_space(cfg.space)
    bt = build_block_teacher(space, teacher)
    blocks = list(range(len(space.blocks))) if blocks is None else blocks
    out = []
    for k in blocks:
        out.append(train_block(block_config(cfg, g, k, teacher), teacher=bt, on_epoch_end=on_epoch_end))
    return out


def rate_config(cfg: RunConfig, g: int, teacher: TeacherConfig, block: int | None = None,
                supernets: str | None = None):
    from dna.rate.config import RateConfig

    gen = generation(cfg.root, g)
    return RateConfig(supernets=supernets or gen.supernets, out=gen.scores, block=block, space=cfg.space,
                      teacher=teacher, data=cfg.data, calib_batches=cfg.calib_batches,
                      max_batches=cfg.rate_max_batches, latency_table=cfg.latency_table, generation=g,
                      device=cfg.device)


def unrated(scores: str, blocks: list[int], expect: dict[str, str] | None = None) -> list[int]:
    """The blocks whose partition of the scores table is not stored yet, or is stored from
    another rating (its metadata differs from ``expect``, e.g. another generation or teacher, as
    a re-rate killed mid-way leaves); those are rated again and replaced, the rest are kept."""
    from dna.rate.scores import partition_meta

    todo = []
    for k in blocks:
        part = scores_part(scores, k)
        if not storage.exists(part):
            todo.append(k)
        elif expect and any(partition_meta(part).get(key) != v for key, v in expect.items()):
            todo.append(k)
    return todo


def rate_step(cfg: RunConfig, g: int, teacher: TeacherConfig, blocks: list[int] | None = None,
              supernets: str | None = None) -> dict:
    """Rate the blocks whose scores are not stored yet, from the supernets at ``supernets``."""
    from dna.rate.block import rate
    from dna.train.block import build_block_teacher

    space = get_space(cfg.space)
    gen = generation(cfg.root, g)
    blocks = list(range(len(space.blocks))) if blocks is None else blocks
    from dna.rate.block import teacher_name

    todo = unrated(gen.scores, blocks, {"generation": str(g), "teacher": teacher_name(teacher)})
    bt = build_block_teacher(space, teacher) if todo else None
    for k in todo:
        rate(rate_config(cfg, g, teacher, k, supernets), teacher=bt)
    return {"scores": gen.scores, "rated": todo, "cached": [k for k in blocks if k not in todo]}


def search_step(cfg: RunConfig, g: int, scores: str | None = None) -> dict:
    """Exact traversal search of the scores table ``scores`` under the run's constraint; writes
    search/arch.json and result.json."""
    from dna.search.run import run_search

    gen = generation(cfg.root, g)
    if storage.exists(gen.search_result) and storage.exists(gen.search_arch):
        return storage.read_json(gen.search_result)
    result = run_search(scores or gen.scores, limits=cfg.limits, out=gen.search_arch)
    result["arch"] = gen.search_arch
    storage.write_json(result, gen.search_result)
    return result


def scale_step(cfg: RunConfig, g: int, teacher: TeacherConfig, arch: str | None = None,
               on_epoch_end: Callable | None = None) -> dict:
    """Scale the searched net ``arch`` of generation g and retrain it: the teacher of g + 1."""
    from dna.retrain import retrain
    from dna.scale import scale

    gen = generation(cfg.root, g)
    if not storage.exists(gen.scaled_arch):
        scale(Architecture.load(arch or gen.search_arch), cfg.scale_to).save(gen.scaled_arch)
    data = dataclasses.replace(cfg.data, resolution=Architecture.load(gen.scaled_arch).resolution)
    metrics = retrain(_retrain_config(cfg.retrain, gen.scaled_arch, gen.scaled_retrain, data, cfg.seed,
                                      cfg.device, teacher), on_epoch_end=on_epoch_end)
    return {"arch": gen.scaled_arch, "model": gen.scaled_files.model, "dir": gen.scaled_retrain,
            "metrics": metrics}


def retrain_step(cfg: RunConfig, g: int, teacher: TeacherConfig | None = None, arch: str | None = None,
                 on_epoch_end: Callable | None = None) -> dict:
    """Retrain the searched net ``arch`` of generation g without scaling (the run's answer)."""
    from dna.retrain import retrain

    gen = generation(cfg.root, g)
    arch = arch or gen.search_arch
    metrics = retrain(_retrain_config(cfg.retrain, arch, gen.retrain, cfg.data, cfg.seed, cfg.device, teacher),
                      on_epoch_end=on_epoch_end)
    return {"arch": arch, "model": gen.retrain_files.model, "dir": gen.retrain, "metrics": metrics}


# what the run decides for every transfer task; transfer_options may not change these
_TRANSFER_SET_BY_RUN = ("model", "out", "checkpoint", "random_init", "data")


def transfer_configs(cfg: RunConfig, g: int = 0, arch: str | None = None, weights: str | None = None) -> dict[str, Any]:
    """The validated SegConfig / DetConfig / ClsConfig of each task in ``cfg.transfer`` (backbone
    ``arch`` with ``weights``): the run's data, epochs and sizes, then ``cfg.transfer_options[task]``."""
    from dna.transfer_config import ClsConfig, DetConfig, SegConfig

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
        tc = config_cls(model=arch or gen.search_arch, out=gen.transfer_task(task),
                        checkpoint=weights or gen.retrain_files.model, data=cfg.data.uri, **kw)
        out[task] = tc.validate(sources=False)     # the backbone exists only once retrained
    return out


def transfer_step(cfg: RunConfig, g: int, arch: str | None = None, weights: str | None = None,
                  on_epoch_end: Callable | None = None) -> dict:
    """Segmentation / detection / classification transfer of the retrained searched backbone
    (``arch`` with ``weights``)."""
    from dna.transfer import transfer_cls, transfer_det, transfer_seg

    runners = {"seg": transfer_seg, "det": transfer_det, "cls": transfer_cls}
    out = {}
    for task, tc in transfer_configs(cfg, g, arch, weights).items():
        metrics_uri = stage_files(tc.out).metrics
        if storage.exists(metrics_uri):
            out[task] = storage.read_json(metrics_uri)
            continue
        out[task] = runners[task](tc, on_epoch_end=on_epoch_end)
    return out


# ----- the loop ---------------------------------------------------------------------------------
def run(cfg: RunConfig, log: Callable[[str], Any] = print, reuse_root: bool = False) -> dict:
    """All generations in this process, holding the root's lease (``dna.lease``); every step
    resumes from what the run root holds (a root holding another config is refused unless
    ``reuse_root``). Returns the run summary (:func:`dna.run_summary.write_summary`, also the
    pipelines' summary.json)."""
    from dna.lease import Lease, check_stored_config

    cfg.validate()
    with Lease(cfg.root, log=log):
        check_stored_config(run_files(cfg.root).config, cfg.to_dict(), reuse_root, log)
        return _run(cfg, log)


def _run(cfg: RunConfig, log: Callable[[str], Any]) -> dict:
    from dna.progress import reporter
    from dna.run_summary import write_summary

    t0 = time.time()
    storage.sweep_stale(cfg.root)  # temp files and uploads that killed writers left
    storage.write_json(cfg.to_dict(), run_files(cfg.root).config)
    for g in range(cfg.generations):
        def show(stage: str, g: int = g):
            return reporter(f"[gen {g}] {stage}", log=log)
        log(f"[gen {g}] teacher")
        teacher = teacher_step(cfg, g, on_epoch_end=show("teacher"))
        log(f"[gen {g}] training {len(get_space(cfg.space).blocks)} block supernets")
        supernet_step(cfg, g, teacher, on_epoch_end=show("supernet"))
        log(f"[gen {g}] rating")
        rate_step(cfg, g, teacher)
        result = search_step(cfg, g)
        best, arch = result["architectures"][0], result["arch"]
        log(f"[gen {g}] searched: loss {best['loss']:.4f}, params {best['params']:,}, flops {best['flops']:,}")
        if cfg.random_baseline:
            from dna.random_baseline import random_baseline_step

            log(f"[gen {g}] random architecture of the same params budget, trained with the same recipe")
            random_baseline_step(cfg, g, teacher, arch=arch, on_epoch_end=show("random baseline"))
        if g < cfg.generations - 1:
            log(f"[gen {g}] scaling to {cfg.scale_to} and retraining: next generation's teacher")
            scale_step(cfg, g, teacher, arch=arch, on_epoch_end=show("scaled teacher"))
            continue
        log(f"[gen {g}] retraining the searched net")
        model = retrain_step(cfg, g, teacher, arch=arch, on_epoch_end=show("retrain"))["model"]
        if cfg.transfer:
            log(f"[gen {g}] transfer: {', '.join(cfg.transfer)}")
            transfer_step(cfg, g, arch=arch, weights=model, on_epoch_end=show("transfer"))
    summary = write_summary(cfg, arch=arch, model=model)
    summary["seconds"] = time.time() - t0
    return summary
