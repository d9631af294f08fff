"""Every KL divergence registration of stochgrad in one place.

Importing :mod:`stochgrad` (or :mod:`stochgrad.kl`) registers them with
:func:`torch.distributions.kl.register_kl`.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Distribution,
    MultivariateNormal,
    Normal,
    VonMises,
    kl_divergence,
    register_kl,
)

from stochgrad.implicit.factorized import Factorized
from stochgrad.implicit.truncated_normal import TruncatedNormal
from stochgrad.relaxed.invertible_gaussian import InvertibleGaussian
from stochgrad.relaxed.logistic_normal import LogisticNormalSoftmax

__all__: list[str] = []


# --- stochgrad.relaxed: discrete relaxations (IGR, logistic normal through softmax) -----------


@register_kl(InvertibleGaussian, InvertibleGaussian)
def _kl_invertible_gaussian(p: InvertibleGaussian, q: InvertibleGaussian) -> torch.Tensor:
    """KL of the Gaussian log-ratio coordinates, for any temperatures and deltas.

    ``v = log z_{1:K} - log z_{K+1}`` is a bijection of the simplex shared by ``p`` and ``q``
    (KL is invariant under it), and under IGR ``v = (loc + scale ε)/t - log δ`` is Gaussian with
    mean ``loc/t - log δ`` and standard deviation ``scale/t``.
    """

    def log_ratio_normal(law: InvertibleGaussian) -> Normal:
        temperature = law.temperature.unsqueeze(-1)
        loc = law.loc / temperature - law.delta.log().unsqueeze(-1)
        return Normal(loc, law.scale / temperature)

    return kl_divergence(log_ratio_normal(p), log_ratio_normal(q)).sum(-1)


@register_kl(LogisticNormalSoftmax, LogisticNormalSoftmax)
def _kl_logistic_normal_softmax(p: LogisticNormalSoftmax, q: LogisticNormalSoftmax) -> torch.Tensor:
    """KL of the Gaussians of the additive log-ratios, the bijective image of the simplex."""
    p_mean, p_covariance = p.log_ratio_normal()
    q_mean, q_covariance = q.log_ratio_normal()
    return kl_divergence(
        MultivariateNormal(p_mean, p_covariance), MultivariateNormal(q_mean, q_covariance)
    )


# --- stochgrad.implicit, issue 3: von Mises, truncated normal, Factorized, Monte Carlo fallback --
# Gamma-Gamma, Beta-Beta and Dirichlet-Dirichlet need no entry here: stochgrad's classes subclass
# torch's, whose registrations dispatch to them.

__all__ += ["kl_monte_carlo"]


@register_kl(VonMises, VonMises)
def _kl_von_mises(p: VonMises, q: VonMises) -> torch.Tensor:
    """``log(I0(κq)/I0(κp)) + A(κp)(κp - κq cos(μp - μq))`` with ``A = I1/I0`` (any VonMises)."""
    kp, kq = p.concentration, q.concentration
    i0e_p = torch.special.i0e(kp)
    ratio = torch.special.i1e(kp) / i0e_p
    log_i0_ratio = torch.log(torch.special.i0e(kq)) + kq - torch.log(i0e_p) - kp
    return log_i0_ratio + ratio * (kp - kq * torch.cos(p.loc - q.loc))


def _expected_log_normal(p: TruncatedNormal, loc: torch.Tensor, scale: torch.Tensor):
    """``E_p[log N(x; loc, scale²)]`` from the mean and variance of ``p``."""
    second = p.variance + (p.mean - loc) ** 2
    return -torch.log(scale) - 0.5 * math.log(2 * math.pi) - second / (2 * scale**2)


@register_kl(TruncatedNormal, TruncatedNormal)
def _kl_truncated_normal(p: TruncatedNormal, q: TruncatedNormal) -> torch.Tensor:
    """Closed form when ``[p.low, p.high] ⊆ [q.low, q.high]``, ``inf`` otherwise."""
    cross = _expected_log_normal(p, q.loc, q.scale) - q._log_normalizer()
    kl = -p.entropy() - cross
    inside = (p.low >= q.low) & (p.high <= q.high)
    return torch.where(inside, kl, math.inf)


@register_kl(TruncatedNormal, Normal)
def _kl_truncated_normal_normal(p: TruncatedNormal, q: Normal) -> torch.Tensor:
    return -p.entropy() - _expected_log_normal(p, q.loc, q.scale)


@register_kl(Factorized, Factorized)
def _kl_factorized(p: Factorized, q: Factorized) -> torch.Tensor:
    return kl_divergence(p.base, q.base)


def kl_monte_carlo(p: Distribution, q: Distribution, num_samples: int = 1000) -> torch.Tensor:
    """Monte Carlo ``KL(p || q) ≈ mean_s [log p(z_s) - log q(z_s)]``, ``z_s ~ p``.

    Unbiased, with gradients through ``p.rsample`` (reparameterized) when ``p`` has one; for
    pairs without a closed form (mixtures, Factorized families, ...).

    Args:
        p: the distribution the expectation is taken under.
        q: the reference distribution (same event shape).
        num_samples: number of samples ``≥ 1``.

    Example::

        >>> import stochgrad.implicit as irt
        >>> p = irt.Factorized(torch.distributions.Gumbel(0.0, 1.0))
        >>> float(kl_monte_carlo(p, p, 10))
        0.0
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    z = p.rsample((num_samples,)) if p.has_rsample else p.sample((num_samples,))
    return (p.log_prob(z) - q.log_prob(z)).mean(0)
