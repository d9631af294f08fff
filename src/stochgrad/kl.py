"""Every KL divergence registration of stochgrad in one place.

Importing :mod:`stochgrad` registers them with :func:`torch.distributions.kl.register_kl`.
"""

from __future__ import annotations

__all__: list[str] = []


# --- stochgrad.relaxed: discrete relaxations (IGR, logistic normal through softmax) -----------

import torch  # noqa: E402
from torch.distributions import MultivariateNormal, Normal, kl_divergence, register_kl  # noqa: E402

from stochgrad.relaxed.invertible_gaussian import InvertibleGaussian  # noqa: E402
from stochgrad.relaxed.logistic_normal import LogisticNormalSoftmax  # noqa: E402


@register_kl(InvertibleGaussian, InvertibleGaussian)
def _kl_invertible_gaussian(p: InvertibleGaussian, q: InvertibleGaussian) -> torch.Tensor:
    """softmax++ is the same bijection for p and q, so KL(p || q) is the KL of the Gaussians."""
    if not (torch.equal(p.temperature, q.temperature) and torch.equal(p.delta, q.delta)):
        raise NotImplementedError(
            "KL between InvertibleGaussian laws needs equal temperature and delta"
        )
    return kl_divergence(Normal(p.loc, p.scale), Normal(q.loc, q.scale)).sum(-1)


@register_kl(LogisticNormalSoftmax, LogisticNormalSoftmax)
def _kl_logistic_normal_softmax(p: LogisticNormalSoftmax, q: LogisticNormalSoftmax) -> torch.Tensor:
    """KL of the Gaussians of the additive log-ratios, the bijective image of the simplex."""
    p_mean, p_covariance = p.log_ratio_normal()
    q_mean, q_covariance = q.log_ratio_normal()
    return kl_divergence(
        MultivariateNormal(p_mean, p_covariance), MultivariateNormal(q_mean, q_covariance)
    )
