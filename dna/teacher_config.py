"""The teacher's config alone, importable without torch: run configs, the pipelines' ``--compile``
and the ``dna`` parsers name a teacher long before one is built (``dna.teacher`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TeacherConfig:
    """Where the teacher comes from.

    ``model`` is a timm model name (``efficientnet_b0``) or the URI of an architecture JSON
    written by search/scale. Weights: ``checkpoint`` (a URI of a state dict or of a checkpoint
    written by ``dna retrain``), or ``pretrained`` timm weights for users with the model hub.
    """

    model: str = "efficientnet_b0"
    checkpoint: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
