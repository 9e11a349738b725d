"""What the three transfer tasks share: the config base, validation, optimiser and schedule,
seeding, and writing the outputs (``metrics.json``, ``model.pt``, ``samples.png``)."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn

from dna.errors import DnaError, check_keys, field_names
from dna.progress import OnEpochEnd, epoch_end

OPTIMIZERS = ("sgd", "adamw")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass
class TransferConfig:
    """Fields every transfer task takes. Subclasses set ``TASK`` and the task defaults.

    ``model`` is an architecture JSON URI (a searched MBConv net) or a timm model name (e.g. a ViT,
    with ``model_kwargs`` such as ``{"img_size": 32, "patch_size": 4}``). ``checkpoint`` is the
    URI of the trained classification weights (``<retrain out>/model.pt`` or a raw state dict);
    without it nothing runs unless ``random_init`` is set explicitly. ``data`` is
    ``builtin:shapes`` or a data set root (local or ``s3://``); ``data_format`` ``auto`` detects
    the layout. ``resolution`` and ``lr`` default per task (None). ``train_size``, ``val_size``
    and ``num_classes`` apply to the built-in data only. ``max_train_batches`` /
    ``max_val_batches`` cap each epoch (smoke runs on big data sets).
    """

    TASK: ClassVar[str] = ""
    DEFAULT_RESOLUTION: ClassVar[int] = 64
    DEFAULT_LR: ClassVar[dict[str, float]] = {"sgd": 0.01, "adamw": 1e-3}
    FORMATS: ClassVar[tuple[str, ...]] = ("auto", "builtin")

    model: str = ""
    out: str = ""
    checkpoint: str | None = None
    random_init: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "builtin:shapes"
    data_format: str = "auto"
    epochs: int = 10
    resolution: int | None = None
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    warmup_steps: int | None = None
    train_size: int = 1000
    val_size: int = 200
    num_classes: int = 10
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    num_samples: int = 8
    max_train_batches: int | None = None
    max_val_batches: int | None = None

    # -- derived -------------------------------------------------------------------------------

    @property
    def input_size(self) -> int:
        return int(self.resolution or self.DEFAULT_RESOLUTION)

    @property
    def learning_rate(self) -> float:
        return float(self.lr if self.lr is not None else self.DEFAULT_LR[self.optimizer])

    @property
    def is_builtin(self) -> bool:
        return self.data.startswith("builtin:")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, sources: bool = True) -> TransferConfig:
        """Raise :class:`DnaError` naming the first bad value; cheap checks first, then (with
        ``sources``) whether the model, checkpoint and data can be found. Returns ``self``."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise DnaError(f"model {self.model!r} must be an architecture .json URI or a timm model name")
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError(f"out {self.out!r} must be a URI (local path or s3://bucket/prefix) for the outputs")
        if self.checkpoint is not None and (not isinstance(self.checkpoint, str) or not self.checkpoint.strip()):
            raise DnaError(f"checkpoint {self.checkpoint!r} must be a URI or None")
        if not isinstance(self.random_init, bool):
            raise DnaError(f"random_init {self.random_init!r} must be true or false")
        if self.checkpoint is None and not self.random_init:
            raise DnaError(
                f"no backbone weights for {self.model!r}: give a checkpoint URI (--checkpoint, e.g. "
                "<retrain out>/model.pt); transfer never starts from random weights unless "
                "random_init (--random-init) is given explicitly"
            )
        if self.checkpoint is not None and self.random_init:
            raise DnaError(f"random_init=True contradicts checkpoint={self.checkpoint!r}: give one of them")
        if not isinstance(self.model_kwargs, dict):
            raise DnaError(f"model_kwargs {self.model_kwargs!r} must be a JSON object (dict)")
        if not isinstance(self.data, str) or not self.data.strip():
            raise DnaError(f"data {self.data!r} must be 'builtin:shapes' or a data set root URI")
        if self.data.startswith("builtin:") and self.data != "builtin:shapes":
            raise DnaError(f"data {self.data!r}: the only built-in data set is 'builtin:shapes'")
        if self.data_format not in self.FORMATS:
            raise DnaError(f"data_format {self.data_format!r} must be one of {list(self.FORMATS)}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("train_size", 1), ("val_size", 1),
                          ("num_workers", 0), ("seed", 0), ("num_samples", 0)):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                raise DnaError(f"{name} {v!r} must be an integer >= {low}")
        for name in ("resolution", "warmup_steps", "max_train_batches", "max_val_batches"):
            v = getattr(self, name)
            low = 16 if name == "resolution" else (0 if name == "warmup_steps" else 1)
            if v is not None and (not _is_int(v) or v < low):
                raise DnaError(f"{name} {v!r} must be an integer >= {low} (or unset)")
        if self.optimizer not in OPTIMIZERS:
            raise DnaError(f"optimizer {self.optimizer!r} must be one of {list(OPTIMIZERS)}")
        if self.lr is not None and (not _is_num(self.lr) or self.lr <= 0):
            raise DnaError(f"lr {self.lr!r} must be a positive number")
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            raise DnaError(f"weight_decay {self.weight_decay!r} must be a number >= 0")
        if self.is_builtin:
            from dna.data.shapes import MAX_CLASSES

            if not _is_int(self.num_classes) or not 1 <= self.num_classes <= MAX_CLASSES:
                raise DnaError(f"num_classes {self.num_classes!r} must be an integer in 1..{MAX_CLASSES} "
                               "for builtin:shapes")
        from dna.device import resolve_device

        resolve_device(self.device)
        self.validate_task()
        if sources:
            self._validate_sources()
        return self

    def validate_task(self) -> None:
        """Task-specific field checks (subclasses)."""

    def _validate_sources(self) -> None:
        from dna import storage

        storage.is_s3(self.out)  # malformed or unsupported URI -> DnaError
        if self.model.endswith(".json"):
            storage.check_readable(self.model)
        else:
            import timm

            if not timm.is_model(self.model):
                raise DnaError(
                    f"model {self.model!r} is neither an architecture .json URI nor a timm model name"
                )
        if self.checkpoint is not None:
            storage.check_readable(self.checkpoint)
        if not self.is_builtin:
            if not storage.is_dir(self.data):
                raise DnaError(f"data {self.data!r} is not a directory (local or s3://) nor 'builtin:shapes'")
            self.resolve_format()

    def resolve_format(self) -> str:
        """The data layout (``builtin`` or a task's format), detected when ``auto``."""
        return "builtin" if self.is_builtin else self.data_format

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferConfig:
        check_keys(d, field_names(cls), f"{cls.TASK} transfer config keys")
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Training helpers


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights of convolutions/linears only (not on norms, biases, embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or "pos" in name.rsplit(".", 1)[-1] or "token" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: TransferConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)
    return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=0.9)


def make_schedule(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None,
                  kind: str = "cosine") -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then ``cosine`` or ``poly`` (power 0.9, DeepLab's) decay to zero."""
    total = max(1, int(total_steps))
    warm = min(total // 10, 200) if warmup_steps is None else min(int(warmup_steps), total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        t = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "poly":
            return (1.0 - t) ** 0.9
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def steps_per_epoch(loader, limit: int | None) -> int:
    n = len(loader)
    return min(n, limit) if limit else n


def fine_tune(model: nn.Module, loader, per_epoch: int, epochs: int, opt: torch.optim.Optimizer, sched,
              batch_loss: Callable[[Any], tuple[torch.Tensor, int] | None], what: str,
              clip_grad: float | None = None, on_epoch_end: OnEpochEnd | None = None) -> list[float]:
    """The training loop of every transfer task: ``epochs`` epochs of at most ``per_epoch`` batches,
    the schedule stepped per batch; returns the mean training loss per epoch.

    ``batch_loss(batch)`` returns (loss, samples), or None to skip the batch; ``what`` names the
    loss in the error raised when it stops being finite, and the ``task`` that ``on_epoch_end``
    (:mod:`dna.progress`; no checkpoint: a transfer run is short and restarts) gets with ``loss``,
    ``seconds`` and ``images_per_s`` of every epoch."""
    history = []
    started = time.time()
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        total, n = 0.0, 0
        for i, batch in enumerate(loader):
            if i >= per_epoch:
                break
            step = batch_loss(batch)
            if step is None:
                continue
            loss, count = step
            if not torch.isfinite(loss):
                raise DnaError(f"{what} loss became {float(loss)} in epoch {epoch}: lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            opt.step()
            sched.step()
            total += loss.item() * count
            n += count
        history.append(total / max(1, n))
        seconds = time.time() - t0
        epoch_end(on_epoch_end, epoch + 1, epochs, started, 0, task=what, loss=history[-1], seconds=seconds,
                  images_per_s=n / max(seconds, 1e-9))
    return history


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


# --------------------------------------------------------------------------------------------
# Outputs


def output_uris(out: str) -> dict[str, str]:
    from dna.layout import stage_files

    files = stage_files(out)
    return {"metrics": files.metrics, "weights": files.model, "samples": files.samples}


def write_outputs(cfg: TransferConfig, model: nn.Module, metrics: dict[str, Any],
                  samples_png: bytes | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the fine-tuned weights, the sample image and ``metrics.json`` (last, so its presence
    means the run finished). Returns ``metrics`` with the output URIs added."""
    from dna import storage

    uris = output_uris(cfg.out)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    storage.save_torch(
        {"model": state, "task": cfg.TASK, "arch": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
         "config": cfg.to_dict(), **(extra or {})},
        uris["weights"],
    )
    outputs = {"metrics": uris["metrics"], "weights": uris["weights"]}
    if samples_png is not None:
        storage.write_bytes(samples_png, uris["samples"])
        outputs["samples"] = uris["samples"]
    metrics = dict(metrics)
    metrics["outputs"] = outputs
    storage.write_json(metrics, uris["metrics"])
    return metrics


def round_floats(x: Any, digits: int = 5) -> Any:
    """JSON-friendly copy: floats rounded, NaN -> None, tensors/arrays to lists."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, digits)
    if isinstance(x, dict):
        return {k: round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [round_floats(v, digits) for v in x]
    return x
