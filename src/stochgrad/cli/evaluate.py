"""Test-set metrics: the negative ELBO and the importance-weighted log-likelihood.

The importance-weighted estimate (Burda et al., 2016) is
``log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)``; it is a lower bound
that tightens as K grows (K = 1000 in the reports).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochgrad.cli.models import VAE, kl_term

__all__ = ["iwae_log_likelihood", "negative_elbo"]


@torch.no_grad()
def negative_elbo(vae: VAE, images: Tensor, batch_size: int = 500) -> float:
    """Mean over ``images`` of -(log p(x|z) - KL(q||p)) with one z ~ q(z|x) per image."""
    total = 0.0
    for batch in images.split(batch_size):
        q = vae.posterior(batch)
        z = q.sample()
        elbo = vae.log_likelihood(batch, z) - kl_term(q, vae.prior(batch), z)
        total += elbo.sum().item()
    return -total / len(images)


@torch.no_grad()
def iwae_log_likelihood(
    vae: VAE, images: Tensor, num_samples: int = 1000, max_rows: int = 50_000
) -> float:
    """Mean over ``images`` of the ``num_samples``-sample importance-weighted log-likelihood."""
    per_chunk = max(1, max_rows // num_samples)
    total = 0.0
    for batch in images.split(per_chunk):
        q = vae.posterior(batch)
        z = q.sample((num_samples,))
        log_weights = vae.log_likelihood(batch, z) + vae.prior(batch).log_prob(z) - q.log_prob(z)
        total += (torch.logsumexp(log_weights, 0) - math.log(num_samples)).sum().item()
    return total / len(images)
