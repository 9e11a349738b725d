"""DNA++ (SPEC sections 3, 8): self-supervised block-wise search of a ViT space with a CNN teacher.

- ``train_pp(PPTrainConfig(...))``: one job trains the teacher CNN jointly with a slimmable ViT
  supernet per block (``mode="dnapp"``, Eq. 10 + Eq. 11, LARS + cosine), or distils the ViT
  supernets from a frozen teacher (``mode="dna"``, MSE);
- ``rate_vit(ViTRateConfig(...))``: rates every (heads, MLP ratio, depth) path of every block and
  writes the standard scores table (``dna.rate.scores``), which ``dna.search.search`` reads;
- ``dna.model.vit.build_vit`` builds the searched ViT; ``dna.retrain_vit.retrain_vit`` retrains it.
"""

from dna.ssl.augment import ViewAugment, augment, two_views
from dna.ssl.loss import (
    PPLossConfig,
    dnapp_loss,
    invariance,
    offdiag_cov,
    sdr_loss,
    ssl_loss,
    variance_hinge,
)
from dna.ssl.model import PPModel, Projector
from dna.ssl.rate import ViTRateConfig, rate_vit, rate_vit_block, rate_vit_table
from dna.ssl.teacher import SplitTeacher, create_teacher_model, default_teacher
from dna.ssl.train import PPTrainConfig, build_pp_model, load_pp, train_pp, train_step

__all__ = [
    "PPLossConfig", "PPModel", "PPTrainConfig", "Projector", "SplitTeacher", "ViTRateConfig", "ViewAugment",
    "augment", "build_pp_model", "create_teacher_model", "default_teacher", "dnapp_loss", "invariance",
    "load_pp", "offdiag_cov", "rate_vit", "rate_vit_block", "rate_vit_table", "sdr_loss", "ssl_loss",
    "train_pp", "train_step", "two_views", "variance_hinge",
]
