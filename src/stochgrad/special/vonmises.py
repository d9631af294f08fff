"""The von Mises CDF and the implicit derivative of a von Mises sample w.r.t. the concentration.

On the centred circle ``x ∈ [-π, π]``

    F(x; κ) = ∫_{-π}^{x} exp(κ cos t) / (2π I0(κ)) dt,      dz/dκ = -(∂F/∂κ)(x; κ) / p(x; κ).

Two representations, blended smoothly (a C¹ step in κ over ``[_BLEND_LOW, _BLEND_HIGH]``):

* small κ -- the Fourier series ``F = (x + π)/2π + (1/π) Σ_n ρ_n sin(n x)/n`` with
  ``ρ_n = I_n(κ)/I_0(κ)`` from a backward recurrence and its exact κ-derivative
  ``ρ_n' = (ρ_{n-1} + ρ_{n+1})/2 - ρ_1 ρ_n``;
* large κ -- the asymptotic (corrected normal) expansion in ``u = 2√κ sin(x/2)``:
  ``F = e^κ / (2π I0(κ) √κ) Σ_j c_j (4κ)^{-j} ∫_{-∞}^{u} v^{2j} e^{-v²/2} dv`` with
  ``c_j = binom(2j, j)/4^j`` (the binomial series of ``1/cos(t/2)``), error ``O(e^{-2κ})``.
  The moment integrals are carried scaled by ``e^{u²/2}`` (an upward recurrence that only adds
  positive terms for ``u ≤ 0``), so the derivative ratio is formed without under/overflow.

Both are evaluated on ``x ≤ 0`` only: ``F(x) = 1 - F(-x)`` and ``dz/dκ`` is odd in ``x``.
The arithmetic is in float64 whatever the input dtype (results are cast back), which is what
makes float32 results correctly rounded; devices without float64 are not supported.
See Hill (1977), "Algorithm 518: incomplete Bessel function I0: the von Mises distribution",
for the series/normal-approximation split that TFP also uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from stochgrad.special._autograd import gradient_only
from stochgrad.special._quadrature import blockwise, traced

__all__ = ["von_mises_cdf", "von_mises_cdf_and_dz_dconcentration"]

_BLEND_LOW, _BLEND_HIGH = 20.0, 30.0
_ASYMPTOTIC_TERMS = 30  # the optimal truncation at κ = 20 is ~2κ terms; 30 give < 1e-15
_SERIES_TOL = 1e-18
_SQRT_HALF_PI = math.sqrt(math.pi / 2)


def _series_length(kappa_max: float) -> int:
    """Smallest ``N`` with ``ρ_N(kappa_max) < _SERIES_TOL`` (ρ_n grows with κ, so it bounds all)."""
    ratio, ratios = 0.0, []
    for n in range(400, 0, -1):
        ratio = kappa_max / (2 * n + kappa_max * ratio)
        ratios.append(ratio)
    rho = 1.0
    for n, ratio in enumerate(reversed(ratios), start=1):
        rho *= ratio
        if rho < _SERIES_TOL:
            return n + 1
    return 400


def _asymptotic_length(kappa_min: float) -> int:
    """Terms for the expansion: the central terms shrink like j/(2κ), the tail ones like y ≤ 9/κ."""
    bound_centre, y_max = 1.0, min(1.0, 9.0 / kappa_min)
    for j in range(1, _ASYMPTOTIC_TERMS + 1):
        bound_centre *= (2 * j - 1) ** 2 / (8 * j * kappa_min)
        if max(bound_centre, y_max**j) < _SERIES_TOL:
            return j
    return _ASYMPTOTIC_TERMS


def _series(x: Tensor, kappa: Tensor, n_terms: int) -> tuple[Tensor, Tensor]:
    """``(F, ∂F/∂κ)`` by ``n_terms`` of the Fourier series; ``kappa`` broadcasts to ``x``."""
    # r_n = I_n/I_{n-1} from r_n = κ / (2n + κ r_{n+1}); the start value is Amos' bound,
    # whose error is damped by r_n² at every step, so a margin of 20 steps is ample.
    # These coefficients live on κ's own (unbroadcast) shape.
    start = n_terms + 20
    ratio = kappa / (start + torch.sqrt(start * start + kappa * kappa))
    ratios = []
    for n in range(start - 1, 0, -1):
        ratio = kappa / (2 * n + kappa * ratio)
        if n <= n_terms + 1:
            ratios.append(ratio)
    ratios.reverse()  # ratios[n-1] = r_n for n = 1 .. n_terms + 1
    rho = [torch.ones_like(kappa)]
    for r in ratios:
        rho.append(rho[-1] * r)
    two_cos = 2 * torch.cos(x)
    sin_prev, sin_n = torch.zeros_like(x), torch.sin(x)
    acc, dacc = torch.zeros_like(x), torch.zeros_like(x)
    for n in range(1, n_terms + 1):
        acc.addcmul_(rho[n] / n, sin_n)
        dacc.addcmul_((0.5 * (rho[n - 1] + rho[n + 1]) - rho[1] * rho[n]) / n, sin_n)
        # sin((n+1)x) = 2 cos(x) sin(nx) - sin((n-1)x), written into the older buffer
        sin_prev.neg_().addcmul_(two_cos, sin_n)
        sin_prev, sin_n = sin_n, sin_prev
    cdf = acc.div_(math.pi).add_((x + math.pi) / (2 * math.pi))
    return cdf, dacc.div_(math.pi)


def _asymptotic(x: Tensor, kappa: Tensor, n_terms: int) -> tuple[Tensor, Tensor]:
    """``(F, dz/dκ)`` by the corrected normal expansion, for ``x ≤ 0`` and κ ≥ ``_BLEND_LOW``."""
    sqrt_kappa = torch.sqrt(kappa)
    u = 2 * sqrt_kappa * torch.sin(x / 2)
    y = torch.sin(x / 2).square_()
    step = u / (4 * kappa)
    # q_j = c_j (4κ)^{-j} e^{u²/2} M_{2j}(u) and e_j = c_j y^{j-1}; for u ≤ 0 every update adds
    # a non-negative amount, so nothing cancels.
    q = torch.special.erfcx(-u / math.sqrt(2)).mul_(_SQRT_HALF_PI)
    total, weighted = q.clone(), torch.zeros_like(q)
    e = torch.full_like(q, 0.5)
    dseries = 1 + 0.5 * y  # Σ_j c_j y^j, the u-derivative of the truncated expansion
    inv_4kappa = 1 / (4 * kappa)
    # Term j is kept while the bounds of _asymptotic_length stay above tolerance for this κ: the
    # expansion diverges, so a larger κ must not take the extra terms a smaller one needs.
    include, bound = torch.ones_like(kappa), torch.ones_like(kappa)
    power, y_max = torch.ones_like(kappa), (9 / kappa).clamp(max=1)
    for j in range(1, n_terms + 1):
        if j > 1:
            e.mul_(y).mul_(include * ((2 * j - 1) / (2 * j)))
            dseries.addcmul_(e, y)
        q.mul_(inv_4kappa).mul_((2 * j - 1) ** 2 / (2 * j)).addcmul_(e, step, value=-1)
        total.addcmul_(q, include)
        weighted.addcmul_(q, include, value=j)
        bound, power = bound * ((2 * j - 1) ** 2 / (8 * j)) / kappa, power * y_max
        include = include * (torch.maximum(bound, power) >= _SERIES_TOL)
    i0e = torch.special.i0e(kappa)
    dlog_norm = (1 - torch.special.i1e(kappa) / i0e) - 0.5 / kappa  # d log C/dκ, C = e^κ/(2π I0 √κ)
    dz = -(dlog_norm * total - weighted / kappa + dseries * u / (2 * kappa)) / sqrt_kappa
    log_norm = -math.log(2 * math.pi) - torch.log(i0e) - 0.5 * torch.log(kappa)
    cdf = torch.exp(log_norm - u * u / 2) * total
    return cdf, dz


def _log_density(x: Tensor, kappa: Tensor) -> Tensor:
    return kappa * (torch.cos(x) - 1) - math.log(2 * math.pi) - torch.log(torch.special.i0e(kappa))


def _left_half(
    x: Tensor, kappa: Tensor, series_terms: int, asymptotic_terms: int
) -> tuple[Tensor, Tensor]:
    """``(F, dz/dκ)`` for ``x ∈ [-π, 0]`` in float64; ``kappa`` has the shape of ``x``.

    Each regime is evaluated with κ clamped into its range, so both are finite everywhere; a
    regime given ``0`` terms is skipped (no element gives it weight).
    """
    t = ((kappa - _BLEND_LOW) / (_BLEND_HIGH - _BLEND_LOW)).clamp(0, 1)
    weight = t * t * (3 - 2 * t)
    cdf, dz = torch.zeros_like(x), torch.zeros_like(x)
    if series_terms:
        kappa_series = kappa.clamp(max=_BLEND_HIGH)
        f, dfdk = _series(x, kappa_series, series_terms)
        g = dfdk.div_(torch.exp(_log_density(x, kappa_series))).neg_()
        cdf.addcmul_(1 - weight, f)
        dz.addcmul_(1 - weight, g)
    if asymptotic_terms:
        f, g = _asymptotic(x, kappa.clamp(min=_BLEND_LOW), asymptotic_terms)
        cdf.addcmul_(weight, f)
        dz.addcmul_(weight, g)
    return cdf, dz


def _terms(kappa: Tensor) -> tuple[int, int]:
    """Terms of the series and of the expansion that the concentrations need (0: unused).

    Traced code (torch.compile, vmap) cannot read κ, so it takes the most either regime can need.
    """
    if traced(kappa):
        return _series_length(_BLEND_HIGH), _asymptotic_length(_BLEND_LOW)
    finite = kappa[kappa.isfinite()]
    if finite.numel() == 0:
        return 0, 0
    low_t, high_t = torch.aminmax(finite)
    low, high = float(low_t), float(high_t)
    series = _series_length(min(high, _BLEND_HIGH)) if low < _BLEND_HIGH else 0
    asymptotic = _asymptotic_length(max(low, _BLEND_LOW)) if high > _BLEND_LOW else 0
    return series, asymptotic


def _kernel(series_terms: int, asymptotic_terms: int):
    def kernel(x: Tensor, kappa: Tensor) -> Iterator[Tensor]:
        periods = torch.round(x / (2 * math.pi))
        x = x - 2 * math.pi * periods
        negative = torch.signbit(x)
        cdf_left, dz_left = _left_half(-x.abs(), kappa, series_terms, asymptotic_terms)
        cdf = torch.where(negative, cdf_left, 1 - cdf_left) + periods
        dz = torch.where(negative, dz_left, -dz_left)
        density = torch.exp(_log_density(x, kappa))
        # κ = +inf is the point mass at 0 (dz/dκ = 0); NaN stays NaN
        point = torch.isposinf(kappa)
        step = torch.where(x < 0, 0.0, torch.where(x > 0, 1.0, 0.5)) + periods
        cdf = torch.where(point, step, cdf)
        dz = torch.where(point, 0.0, dz)
        unknown = x.isnan() | kappa.isnan()
        return (torch.where(unknown, math.nan, t) for t in (cdf, density, dz))

    return lambda x, kappa: tuple(kernel(x, kappa))


def von_mises_cdf_and_dz_dconcentration(
    value: Tensor, concentration: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``F(x; κ)``, ``p(x; κ)`` and ``dz/dκ = -(∂F/∂κ)/p`` of the centred von Mises law.

    No autograd. ``value`` is an angle relative to ``loc``; ``F`` counts whole periods
    (``F(x + 2π) = F(x) + 1``).
    Results have the dtype of ``torch.promote_types(value.dtype, concentration.dtype)``.

    Example::

        >>> x, kappa = torch.tensor([0.0]), torch.tensor([2.0])
        >>> cdf, density, dz = von_mises_cdf_and_dz_dconcentration(x, kappa)
        >>> float(cdf)
        0.5
    """
    out_dtype = torch.promote_types(value.dtype, concentration.dtype)
    work = torch.promote_types(out_dtype, torch.float64)
    x, kappa = value.detach().to(work), concentration.detach().to(work)
    kernel = _kernel(*_terms(kappa))
    shape = torch.broadcast_shapes(x.shape, kappa.shape)
    if traced(x, kappa):
        # under vmap in-place updates need every operand batched alike: broadcast by arithmetic
        zero = torch.zeros((), dtype=work, device=x.device)
        x, kappa = x + zero * kappa, kappa + zero * x
    if kappa.numel() == 1 and not traced(kappa):
        # one κ: the series coefficients stay scalars instead of filling every block
        scalar = kappa.reshape(())
        cdf, density, dz = blockwise(lambda x: kernel(x, scalar), x.expand(shape))
    else:
        cdf, density, dz = blockwise(kernel, x.expand(shape), kappa.expand(shape))
    return cdf.to(out_dtype), density.to(out_dtype), dz.to(out_dtype)


def von_mises_cdf(value: Tensor, concentration: Tensor) -> Tensor:
    """CDF of the von Mises law centred at 0, differentiable in ``value`` and ``concentration``.

    ``F(x) = ∫_{-π}^{x} exp(κ cos t)/(2π I0(κ)) dt`` on ``[-π, π]``, extended by
    ``F(x + 2π) = F(x) + 1``. First derivatives only (``∂F/∂x = p``, ``∂F/∂κ = -p·dz/dκ``).

    Args:
        value: angles relative to the location, any real number.
        concentration: ``κ > 0``, broadcastable with ``value``.

    Example::

        >>> von_mises_cdf(torch.tensor(0.0), torch.tensor(1.0))
        tensor(0.5000)
    """
    cdf, density, dz = von_mises_cdf_and_dz_dconcentration(value, concentration)
    out = cdf
    if torch.is_grad_enabled():
        if value.requires_grad:
            out = out + gradient_only(value) * density
        if concentration.requires_grad:
            out = out - gradient_only(concentration) * density * dz
    return out
