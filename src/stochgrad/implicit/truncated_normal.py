"""The truncated normal distribution with implicit gradients for all four parameters."""

from __future__ import annotations

import math

import torch
import torch.distributions as td
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from stochgrad._typing import SampleShape
from stochgrad.implicit._core import attach_gradients, needs_grad
from stochgrad.pyro import PyroCompatible

__all__ = ["TruncatedNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - e^x)`` for ``x ≤ 0`` (Mächler, 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _log_ndtr_diff(a: Tensor, b: Tensor) -> Tensor:
    """``log(Φ(b) - Φ(a))`` for ``a < b`` (either may be infinite), accurate in both tails.

    Every branch is evaluated at harmless stand-ins where it is not selected, so gradients are
    free of NaN.
    """
    a, b = torch.broadcast_tensors(a, b)
    open_low, open_high = a == -math.inf, b == math.inf
    a_f = torch.where(open_low, torch.where(open_high, -1.0, b - 1), a)
    b_f = torch.where(open_high, a_f + 2, b)
    # Both bounds in the right tail: use Φ(b) - Φ(a) = Φ(-a) - Φ(-b).
    flip = a_f > 0
    a_f, b_f = torch.where(flip, -b_f, a_f), torch.where(flip, -a_f, b_f)
    tail = b_f <= 0
    a_t, b_t = torch.where(tail, a_f, -2.0), torch.where(tail, b_f, -1.0)
    log_b = torch.special.log_ndtr(b_t)
    tail_value = log_b + _log1mexp(torch.special.log_ndtr(a_t) - log_b)
    a_c, b_c = torch.where(tail, -1.0, a_f), torch.where(tail, 1.0, b_f)
    centre_value = torch.log1p(-torch.special.ndtr(a_c) - torch.special.ndtr(-b_c))
    finite = torch.where(tail, tail_value, centre_value)
    only_high = torch.special.log_ndtr(torch.where(open_low, b, 0.0))
    only_low = torch.special.log_ndtr(-torch.where(open_high, a, 0.0))
    half_open = torch.where(open_low, only_high, torch.where(open_high, only_low, finite))
    return torch.where(open_low & open_high, 0.0, half_open)


def _log_phi(x: Tensor) -> Tensor:
    return -0.5 * x * x - _HALF_LOG_2PI


def _standard_icdf(u: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Quantile ``ξ`` of the standard normal truncated to ``[alpha, beta]`` at level ``u``."""
    flip = alpha > 0  # sample the mirror image, so that the work is in the left tail or centre
    a, b = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    u = torch.where(flip, 1 - u, u)
    log_z = _log_ndtr_diff(a, b)
    log_target = torch.logaddexp(torch.special.log_ndtr(a), torch.log(u) + log_z)
    tail = b <= 0
    # Left tail: Newton steps on log Φ(ξ) = target from the asymptotic start -√(-2 target).
    guess = torch.where(
        log_target > -600, torch.special.ndtri(log_target.exp()), -torch.sqrt(-2 * log_target)
    )
    xi = guess
    for _ in range(3):
        log_cdf = torch.special.log_ndtr(xi)
        step = (log_cdf - log_target) * torch.exp(log_cdf - _log_phi(xi))
        xi = torch.where(tail, xi - step, xi)
    xi = torch.minimum(torch.maximum(xi, a), b)
    return torch.where(flip, -xi, xi)


def _scaled_mass(low: Tensor, high: Tensor) -> Tensor:
    """``(Φ(high) - Φ(low)) e^{high²/2}`` (``low < high ≤ 0``), ``2Φ(x) = erfcx(-x/√2) e^{-x²/2}``.

    The huge common factor never appears, so ratios of masses in the far left tail keep full
    relative precision (log-space differences of ``log Φ ≈ -x²/2`` would lose ``x²·eps``).
    """
    shrink = torch.exp((high - low) * (high + low) / 2)
    return 0.5 * (
        torch.special.erfcx(-high / math.sqrt(2))
        - torch.special.erfcx(-low / math.sqrt(2)) * shrink
    )


def _bound_sensitivities(xi: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """``dz/dlow = φ(α)(1 - F)/φ(ξ)`` and ``dz/dhigh = φ(β)F/φ(ξ)`` (standardized, no autograd)."""
    flip = alpha > 0  # mirror right-tail intervals into the left tail
    a, b = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    x = torch.where(flip, -xi, xi)
    tail = b <= 0
    # Left tail: ratios of scaled masses.
    a_t, b_t = torch.where(tail, a, -2.0), torch.where(tail, b, -1.0)
    x_t = torch.where(tail, x, -1.5)
    mass = _scaled_mass(a_t, b_t)
    from_low_tail = torch.exp((x_t - a_t) * (x_t + a_t) / 2) * _scaled_mass(x_t, b_t) / mass
    from_high_tail = _scaled_mass(a_t, x_t) / mass
    # Centre: logs of O(1) masses.
    log_z = _log_ndtr_diff(a, b)
    below = torch.where(x > a, _log_ndtr_diff(torch.minimum(a, x), x), -math.inf)
    above = torch.where(x < b, _log_ndtr_diff(x, torch.maximum(b, x)), -math.inf)
    from_low_centre = torch.exp((x - a) * (x + a) / 2 + above - log_z)
    from_high_centre = torch.exp((x - b) * (x + b) / 2 + below - log_z)
    from_low = torch.where(tail, from_low_tail, from_low_centre)
    from_high = torch.where(tail, from_high_tail, from_high_centre)
    return torch.where(flip, from_high, from_low), torch.where(flip, from_low, from_high)


class TruncatedNormal(PyroCompatible, td.Distribution):
    """Normal law ``N(loc, scale²)`` restricted to ``[low, high]``, with ``rsample``.

    Gradient path (``ξ = (z - loc)/scale``, ``α, β`` the standardized bounds, ``F`` the CDF):
    ``dz/dlow = φ(α)(1 - F)/φ(ξ)``, ``dz/dhigh = φ(β) F/φ(ξ)``,
    ``dz/dloc = 1 - dz/dlow - dz/dhigh``, ``dz/dscale = ξ - α dz/dlow - β dz/dhigh``, all
    formed in log space (Figurnov, Mohamed & Mnih, 2018). Infinite bounds are allowed.

    Args:
        loc: mean of the untruncated normal.
        scale: its standard deviation ``> 0``.
        low: lower bound (may be ``-inf``).
        high: upper bound ``> low`` (may be ``inf``).
        validate_args: check parameters and values against their constraints.

    Example::

        >>> low = torch.tensor(0.5, requires_grad=True)
        >>> z = TruncatedNormal(0.0, 1.0, low, 2.0).rsample((1000,))
        >>> z.mean().backward()
        >>> bool(low.grad > 0)
        True
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.real,
        "high": constraints.real,
    }
    has_rsample = True

    def __init__(
        self,
        loc: Tensor | float,
        scale: Tensor | float,
        low: Tensor | float,
        high: Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale, self.low, self.high = broadcast_all(loc, scale, low, high)
        super().__init__(self.loc.shape, validate_args=validate_args)
        if self._validate_args and not bool((self.low < self.high).all()):
            raise ValueError(f"high must be > low, got low={self.low} and high={self.high}")

    def expand(
        self, batch_shape: SampleShape, _instance: TruncatedNormal | None = None
    ) -> TruncatedNormal:
        new = self._get_checked_instance(TruncatedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("loc", "scale", "low", "high"):
            setattr(new, name, getattr(self, name).expand(batch_shape))
        super(TruncatedNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.interval(self.low, self.high)

    def _standardized(self, bound: Tensor) -> Tensor:
        finite = torch.isfinite(bound)
        return torch.where(finite, (torch.where(finite, bound, 0.0) - self.loc) / self.scale, bound)

    @property
    def _alpha(self) -> Tensor:
        return self._standardized(self.low)

    @property
    def _beta(self) -> Tensor:
        return self._standardized(self.high)

    def _log_normalizer(self) -> Tensor:
        return _log_ndtr_diff(self._alpha, self._beta)

    def _bound_terms(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``φ(α)/Z``, ``φ(β)/Z`` and ``αφ(α)/Z``, ``βφ(β)/Z`` (0 at infinite bounds)."""
        log_z = self._log_normalizer()
        out = []
        for bound in (self._alpha, self._beta):
            finite = torch.isfinite(bound)
            bound = torch.where(finite, bound, 0.0)
            ratio = torch.where(finite, torch.exp(_log_phi(bound) - log_z), 0.0)
            out.append((ratio, bound * ratio))
        (ratio_a, moment_a), (ratio_b, moment_b) = out
        return ratio_a, ratio_b, moment_a, moment_b

    @property
    def mean(self) -> Tensor:
        ratio_a, ratio_b, _, _ = self._bound_terms()
        return self.loc + self.scale * (ratio_a - ratio_b)

    @property
    def variance(self) -> Tensor:
        ratio_a, ratio_b, moment_a, moment_b = self._bound_terms()
        return self.scale**2 * (1 + moment_a - moment_b - (ratio_a - ratio_b) ** 2)

    @property
    def mode(self) -> Tensor:
        return torch.minimum(torch.maximum(self.loc, self.low), self.high)

    def rsample(self, sample_shape: SampleShape = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        work = torch.promote_types(self.loc.dtype, torch.float64)
        loc, scale, low, high = (
            t.detach().to(work).expand(shape) for t in (self.loc, self.scale, self.low, self.high)
        )
        alpha, beta = (low - loc) / scale, (high - loc) / scale
        u = torch.rand(shape, dtype=work, device=self.loc.device)
        u = u.clamp(min=torch.finfo(work).tiny)
        xi = _standard_icdf(u, alpha, beta)
        z = (loc + scale * xi).clamp(min=low, max=high).to(self.loc.dtype)
        if not needs_grad(self.loc, self.scale, self.low, self.high):
            return z
        dz_dlow, dz_dhigh = _bound_sensitivities(xi, alpha, beta)
        moment_low = torch.where(dz_dlow > 0, alpha * dz_dlow, 0.0)
        moment_high = torch.where(dz_dhigh > 0, beta * dz_dhigh, 0.0)
        grads = (1 - dz_dlow - dz_dhigh, xi - moment_low - moment_high, dz_dlow, dz_dhigh)
        # An infinite bound gets gradient 0 (and no inf - inf in the surrogate).
        low, high = (torch.where(torch.isfinite(t), t, 0.0) for t in (self.low, self.high))
        return attach_gradients(
            z,
            (self.loc, self.scale, low, high),
            tuple(g.to(self.loc.dtype) for g in grads),
        )

    def sample(self, sample_shape: SampleShape = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        xi = (value - self.loc) / self.scale
        log_density = _log_phi(xi) - torch.log(self.scale) - self._log_normalizer()
        inside = (value >= self.low) & (value <= self.high)
        return torch.where(inside, log_density, -math.inf)

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        alpha, beta = self._alpha, self._beta
        xi = (value - self.loc) / self.scale
        # A point strictly inside stands in where xi is not, so no branch sees log(0).
        mid = torch.where(
            torch.isfinite(alpha),
            torch.where(torch.isfinite(beta), (alpha + beta) / 2, alpha + 1),
            torch.where(torch.isfinite(beta), beta - 1, 0.0),
        )
        inner = torch.where((xi > alpha) & (xi < beta), xi, mid)
        cdf = torch.exp(_log_ndtr_diff(alpha, inner) - self._log_normalizer())
        return torch.where(xi <= alpha, 0.0, torch.where(xi >= beta, 1.0, cdf))

    def icdf(self, value: Tensor) -> Tensor:
        xi = _standard_icdf(value, self._alpha, self._beta)
        return self.loc + self.scale * xi

    def entropy(self) -> Tensor:
        _, _, moment_a, moment_b = self._bound_terms()
        log_scale_z = torch.log(self.scale) + self._log_normalizer()
        return _HALF_LOG_2PI + 0.5 + log_scale_z + 0.5 * (moment_a - moment_b)
