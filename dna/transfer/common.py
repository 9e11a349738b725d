"""What the three transfer tasks share: the config base, validation, optimiser and schedule,
seeding, and writing the outputs (``metrics.json``, ``model.pt``, ``samples.png``)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dna.errors import DnaError
from dna.progress import OnEpochEnd, epoch_end
from dna.transfer_config import OPTIMIZERS, TransferConfig  # noqa: F401 (re-exported)

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
