"""The DNA++ losses (SPEC section 8): Eq. 10 (self-supervised) and Eq. 11 (supernet de-redundancy).

For blocks ``k = 1..K``, teacher embeddings ``Z_k`` and student embeddings ``Zhat_k`` (``M``
samples x ``C`` channels, the projectors' outputs):

- Eq. 10: ``lambda_1/(K M) sum_k sum_j ||Z_k^j - Zhat_k^j||^2
  + lambda_2/(K C^2) sum_k (||offdiag Cov(Z_k)||^2 + ||offdiag Cov(Zhat_k)||^2)``
  with ``Cov(Z) = 1/(M-1) sum_j (Z^j - mean)(Z^j - mean)^T``;
- Eq. 11: ``lambda_3/(C K) sum_k sum_c max(0, gamma - sqrt(Var(Z_{k,c}) + eps))`` (unbiased
  variance over the batch), applied to the teacher's ``Z`` *and* the student's ``Zhat``.

Two views, cross-view pairing: the teacher's embedding of view 1 is paired with the student's of
view 2 and vice versa; the loss is the mean of the two pairings (each pairing is exactly Eq. 10 +
Eq. 11 on its two embeddings), so every one of the four embeddings gets the covariance and
variance terms with weight 1/2.

Default weights = VICReg's (25 invariance, 25 variance, 1 covariance) written in the paper's
normalisation: VICReg's invariance is a mean over ``M*C`` elements, Eq. 10's a sum over channels
divided by ``M``, so ``lambda_1 = 25 / C``; VICReg's covariance term divides by ``C``, Eq. 10's by
``C^2``, so ``lambda_2 = 1 * C``; VICReg averages the variance hinge of its two branches, Eq. 11 is
summed over Z and Zhat here, so ``lambda_3 = 25 / 2``; ``gamma = 1``, ``eps = 1e-4``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dna.errors import DnaError
from dna.ssl_config import PPLossConfig  # noqa: F401 (re-exported)


def invariance(z: torch.Tensor, zhat: torch.Tensor) -> torch.Tensor:
    """``1/M sum_j ||z^j - zhat^j||^2``."""
    return (z - zhat).pow(2).sum(dim=1).mean()


def offdiag_cov(z: torch.Tensor) -> torch.Tensor:
    """``||offdiag(Cov(z))||^2`` (squared Frobenius norm of the off-diagonal covariance)."""
    m, c = z.shape
    if m < 2:
        raise DnaError(f"covariance needs at least 2 samples per batch, got {m}")
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (m - 1)
    return cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()


def variance_hinge(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """``1/C sum_c max(0, gamma - sqrt(Var(z_c) + eps))``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def _check(zs: Sequence[torch.Tensor], zhats: Sequence[torch.Tensor] | None = None) -> None:
    if not zs:
        raise DnaError("the DNA++ loss needs at least one block")
    if zhats is not None and len(zs) != len(zhats):
        raise DnaError(f"{len(zs)} teacher embeddings but {len(zhats)} student embeddings")


def ssl_loss(zs: Sequence[torch.Tensor], zhats: Sequence[torch.Tensor], lambda_1: float,
             lambda_2: float) -> torch.Tensor:
    """Eq. 10 over K blocks (``zs[k]``, ``zhats[k]``: ``[M, C]``)."""
    _check(zs, zhats)
    k = len(zs)
    inv = sum(invariance(z, zh) for z, zh in zip(zs, zhats, strict=True))
    cov = sum((offdiag_cov(z) + offdiag_cov(zh)) / z.shape[1] ** 2 for z, zh in zip(zs, zhats, strict=True))
    return lambda_1 / k * inv + lambda_2 / k * cov


def sdr_loss(zs: Sequence[torch.Tensor], lambda_3: float, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Eq. 11 over K blocks (the 1/C is the mean over channels)."""
    _check(zs)
    return lambda_3 / len(zs) * sum(variance_hinge(z, gamma, eps) for z in zs)


def dnapp_loss(z1: Sequence[torch.Tensor], z2: Sequence[torch.Tensor], zh1: Sequence[torch.Tensor],
               zh2: Sequence[torch.Tensor], cfg: PPLossConfig | None = None) -> dict[str, torch.Tensor]:
    """Eq. 10 + Eq. 11 with cross-view pairing (teacher view 1 vs student view 2 and vice versa,
    averaged). Returns ``loss`` and its parts ``invariance``, ``covariance``, ``variance``
    (weighted, so they add up to ``loss``)."""
    cfg = cfg or PPLossConfig()
    _check(z1, zh2)
    _check(z2, zh1)
    l1, l2, l3 = cfg.lambdas(z1[0].shape[1])
    k = len(z1)
    pairs = [(a, b) for z, zh in ((z1, zh2), (z2, zh1)) for a, b in zip(z, zh, strict=True)]
    every = [*z1, *z2, *zh1, *zh2]
    inv = l1 / k * sum(invariance(a, b) for a, b in pairs) / 2
    cov = l2 / k * sum(offdiag_cov(x) / x.shape[1] ** 2 for x in every) / 2
    var = l3 / k * sum(variance_hinge(x, cfg.gamma, cfg.eps) for x in every) / 2
    return {"loss": inv + cov + var, "invariance": inv, "covariance": cov, "variance": var}
