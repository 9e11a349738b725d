"""The retraining recipes as data, importable without torch: ``dna retrain --help`` shows them and
``dna.retrain`` trains with them.

``PAPER_RECIPE`` holds the paper's defaults of :class:`dna.retrain.RetrainConfig` that the command
line shows (tests/test_cli_light.py checks they agree with the dataclass).
"""

from __future__ import annotations

from typing import Any

PAPER_LR = 0.256
PAPER_BATCH = 4096
SCHEDULES = ("step", "cosine", "multistep", "tanh", "poly", "constant", "none")
# Settings that learn the small built-in data in a few epochs (tests, demos): the paper's LR is
# for batch 4096 and hundreds of epochs.
FAST_RECIPE: dict[str, Any] = dict(
    opt="adamw", lr=2e-2, weight_decay=0.01, sched="cosine", warmup_epochs=0.5,
    label_smoothing=0.0, drop_rate=0.0, drop_path_rate=0.0,
)
PAPER_RECIPE: dict[str, Any] = dict(
    epochs=10, opt="rmsproptf", weight_decay=1e-5, sched="step", decay_epochs=2.4, decay_rate=0.97,
    warmup_epochs=0.0, label_smoothing=0.1, drop_rate=0.2, drop_path_rate=0.2, ema_decay=0.9998,
    kd_alpha=0.5, kd_temperature=1.0,
)
