"""DNA++ steps (SPEC section 8) beside the DNA steps of :mod:`dna.generation`: train the ViT
supernet of every block jointly with its CNN teacher (one job), rate it, retrain the searched ViT.
The search step is DNA's (:func:`dna.generation.search_step`).

``pp_config`` (JSON object or text) holds what the run config does not: ``{"train":
PPTrainConfig fields (mode, lr, weight_decay, warmup_epochs, proj_dim, proj_hidden, loss: {...}),
"retrain": RetrainViTConfig fields (warmup_epochs, mixup, cutmix, reprob, weight_decay, ...)}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from dna import storage
from dna.data import DataConfig
from dna.errors import DnaError
from dna.generation import RunConfig, unrated
from dna.layout import generation
from dna.progress import OnEpochEnd
from dna.teacher_config import TeacherConfig

# teacher names meaning DNA++'s default CNN teacher (dna.ssl picks it for the space)
PP_DEFAULT_TEACHERS = ("", "tiny", "default")


def pp_settings(pp_config: str | dict | None) -> dict:
    """The ``pp_config`` object (its ``train`` and/or ``retrain`` sections)."""
    d: Any = pp_config or {}
    if isinstance(d, str):
        try:
            d = json.loads(d or "{}")
        except json.JSONDecodeError as exc:
            raise DnaError(f"pp_config is not valid JSON: {exc}") from None
    if not isinstance(d, dict) or set(d) - {"train", "retrain"}:
        raise DnaError("pp_config must be a JSON object with 'train' and/or 'retrain' sections")
    return d


def pp_train_config(cfg: RunConfig, pp_config: str | dict | None, data: DataConfig | None = None):
    """The :class:`dna.ssl.PPTrainConfig` of a DNA++ run: the run config's root, space, data,
    teacher, epochs and caps, plus ``pp_config["train"]``."""
    from dna.ssl_config import PPLossConfig, PPTrainConfig

    train = dict(pp_settings(pp_config).get("train") or {})
    if isinstance(train.get("loss"), dict):
        train["loss"] = PPLossConfig(**train["loss"])
    teacher = None if cfg.teacher.model in PP_DEFAULT_TEACHERS else cfg.teacher
    base = dict(out=generation(cfg.root, 0).supernets, space=cfg.space, teacher=teacher,
                data=dataclasses.replace(data or cfg.data, augment=False), epochs=cfg.block_epochs,
                max_steps_per_epoch=cfg.block_max_steps, seed=cfg.seed, device=cfg.device)
    base.update(train)
    return PPTrainConfig(**base).validate()


def retrain_vit_config(cfg: RunConfig, pp_config: str | dict | None, arch: str, out: str):
    """The :class:`dna.retrain_vit.RetrainViTConfig` of a DNA++ run: the run config's retrain
    settings (epochs, lr, steps, dropout, smoothing, RandAugment) plus ``pp_config["retrain"]``."""
    from dna.retrain_vit_config import RetrainViTConfig

    r = cfg.retrain
    base = dict(arch=arch, out=out, data=cfg.data, epochs=r.epochs, lr=r.lr, steps_per_epoch=r.steps_per_epoch,
                drop_rate=r.drop_rate, drop_path_rate=r.drop_path_rate, label_smoothing=r.label_smoothing,
                auto_augment=r.auto_augment, seed=cfg.seed, device=cfg.device or "auto")
    base.update(pp_settings(pp_config).get("retrain") or {})
    return RetrainViTConfig(**base).validate()


def validate_pp(cfg: RunConfig, pp_config: str | dict | None, remote: bool = False) -> RunConfig:
    """Every check of a DNA++ run before any work: the run config (``remote``: no URI is opened
    from here), a ViT space, and the ``pp_config`` sections."""
    from dna.space import get_family, get_space

    if not get_family(get_space(cfg.space)).joint_teacher:
        raise DnaError(f"space {cfg.space!r}: DNA++ searches a ViT space (vit, vit-tiny or a ViT space .json)")
    cfg.validate(remote=remote)
    local = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, checkpoint=None)) if remote else cfg
    try:
        pp_train_config(local, pp_config)
        retrain_vit_config(local, pp_config, "arch.json", "out")
    except TypeError as exc:                # an unknown key in pp_config
        raise DnaError(f"pp_config: {exc}") from None
    return cfg


# ----- steps ------------------------------------------------------------------------------------
def pp_supernet_step(cfg: RunConfig, pp_config: str | dict | None, data: DataConfig | None = None,
                     on_epoch_end: OnEpochEnd | None = None) -> dict:
    """``dna.ssl.train_pp``: the teacher CNN and the ViT supernet of every block trained jointly
    (Eq. 10-11) on ``data`` under ``<root>/gen0/supernet/`` (resumes from its checkpoint)."""
    from dna.ssl import train_pp

    gen = generation(cfg.root, 0)
    tcfg = pp_train_config(cfg, pp_config, data)
    metrics = train_pp(tcfg, on_epoch_end=on_epoch_end)
    t = tcfg.teacher_config()
    joint = gen.joint_teacher
    teacher = TeacherConfig(model=t.model, checkpoint=joint if storage.exists(joint) else t.checkpoint)
    return {"config": tcfg, "metrics": metrics, "supernets": gen.supernets, "teacher": teacher}


def pp_rate_step(cfg: RunConfig, supernets: str | None = None, log=None) -> dict:
    """``dna.ssl.rate_vit``: every (heads, MLP ratio, depth) path of every block of the supernet
    at ``supernets`` into ``<root>/gen0/scores/`` (blocks already rated are kept)."""
    from dna.space import get_space
    from dna.ssl import ViTRateConfig, rate_vit

    gen = generation(cfg.root, 0)
    blocks = list(range(len(get_space(cfg.space).blocks)))
    todo = unrated(gen.scores, blocks, {"generation": "0"})
    results: dict[int, dict] = {k: {"cached": True} for k in blocks if k not in todo}
    for k in todo:
        if log:
            log(f"[gen 0] rating block {k}")
        r = rate_vit(ViTRateConfig(supernet=supernets or gen.supernets, out=gen.scores, block=k,
                                   max_batches=cfg.rate_max_batches, generation=0, device=cfg.device))
        results[k] = {"rows": r["rows"]}
    return {"scores": gen.scores, "results": dict(sorted(results.items()))}


def retrain_vit_step(cfg: RunConfig, pp_config: str | dict | None, g: int = 0, arch: str | None = None,
                     on_epoch_end: OnEpochEnd | None = None) -> dict:
    """``dna.retrain_vit.retrain_vit`` (DeiT recipe, ``pp_config["retrain"]`` overrides) of the
    searched ViT ``arch`` into ``<root>/gen<g>/retrain/`` (the MBConv retraining's layout)."""
    from dna.retrain_vit import retrain_vit

    gen = generation(cfg.root, g)
    arch = arch or gen.search_arch
    rcfg = retrain_vit_config(cfg, pp_config, arch, gen.retrain)
    metrics = retrain_vit(rcfg, on_epoch_end=on_epoch_end)
    return {"arch": arch, "model": gen.retrain_files.model, "dir": gen.retrain, "metrics": metrics,
            "config": rcfg}
