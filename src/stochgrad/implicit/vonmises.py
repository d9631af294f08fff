"""The von Mises distribution with implicit reparameterization gradients."""

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
from stochgrad.special._quadrature import traced
from stochgrad.special.vonmises import von_mises_cdf, von_mises_cdf_and_dz_dconcentration

__all__ = ["VonMises"]

# Above this concentration the law is N(0, 1/κ) up to a relative density error κx⁴/24 ~ 1/(24κ),
# below what Best-Fisher's own float64 rounding (of r - 1 ~ 1/(2κ)) resolves.
_GAUSSIAN_LIMIT = 1e8
# Best-Fisher accepts with probability ≥ 0.65 for every κ: after 64 rounds an element is still
# pending with probability < 1e-29 (32 rounds in traced code, < 2e-15), and is then drawn from
# the Gaussian approximation instead of looping on.
_ROUNDS, _TRACED_ROUNDS = 64, 32


def _proposal(kappa: Tensor) -> Tensor:
    """Best-Fisher's wrapped-Cauchy parameter ``r`` (a Taylor expansion below κ = 1e-5)."""
    tau = 1 + torch.sqrt(1 + 4 * kappa.square())
    rho = (tau - torch.sqrt(2 * tau)) / (2 * kappa)
    return torch.where(kappa < 1e-5, 1 / kappa + kappa, (1 + rho.square()) / (2 * rho))


def _candidates(kappa: Tensor, r: Tensor, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """One Best-Fisher proposal per element from three uniforms, and whether it is accepted."""
    z = torch.cos(math.pi * uniforms[0])
    f = (1 + r * z) / (r + z)
    c = kappa * (r - f)
    accept = (c * (2 - c) > uniforms[1]) | (torch.log(c / uniforms[1]) + 1 - c >= 0)
    return torch.copysign(torch.acos(f), uniforms[2] - 0.5), accept


def _direct(kappa: Tensor) -> Tensor:
    """Draws that need no rejection: uniform for κ = 0, NaN for NaN, else ``N(0, 1/κ)`` (the
    limit for huge κ)."""
    uniform = torch.rand_like(kappa).mul_(2 * math.pi).sub_(math.pi)
    gaussian = torch.randn_like(kappa).div_(kappa.sqrt())
    return torch.where(kappa == 0, uniform, torch.where(kappa.isnan(), math.nan, gaussian))


def _sample_centred(kappa: Tensor) -> Tensor:
    """Von Mises draws centred at 0 in ``[-π, π]``, one per element of ``kappa`` (float64).

    Best-Fisher (1979) with batched acceptance: the first round proposes for every element, each
    later one only for those still pending (about 1.5 proposals per draw in all), and there are
    at most ``_ROUNDS``. Traced code (torch.compile, vmap) runs ``_TRACED_ROUNDS`` full rounds.
    """
    r = _proposal(kappa)
    direct = (kappa == 0) | (kappa >= _GAUSSIAN_LIMIT) | kappa.isnan()

    def propose(kappa: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        uniforms = torch.rand((3, *kappa.shape), dtype=kappa.dtype, device=kappa.device)
        return _candidates(kappa, r, uniforms)

    if traced(kappa):
        out, settled = _direct(kappa), direct
        for _ in range(_TRACED_ROUNDS):
            candidate, accept = propose(kappa, r)
            out = torch.where(accept & ~settled, candidate, out)
            settled = settled | accept
        return torch.where(settled, out, _direct(kappa))
    shape = kappa.shape
    kappa, r, direct = kappa.reshape(-1), r.reshape(-1), direct.reshape(-1)
    out, accept = propose(kappa, r)
    if bool(direct.any()):
        out = torch.where(direct, _direct(kappa), out)
        accept = accept | direct
    pending = (~accept).nonzero().squeeze(-1)
    for _ in range(_ROUNDS - 1):
        if pending.numel() == 0:
            return out.reshape(shape)
        candidate, accept = propose(kappa[pending], r[pending])
        out[pending[accept]] = candidate[accept]
        pending = pending[~accept]
    out[pending] = _direct(kappa[pending])
    return out.reshape(shape)


class VonMises(PyroCompatible, td.VonMises):
    """Circular von Mises law ``p(z) ∝ exp(κ cos(z - loc))`` with ``rsample``.

    Gradient path: ``dz/dloc = 1`` and ``dz/dκ = -(∂F(z - loc; κ)/∂κ) / p(z)``, with ``F`` the
    CDF from :mod:`stochgrad.special.vonmises` (Figurnov, Mohamed & Mnih, 2018, "Implicit
    reparameterization gradients", Sec. 3). Samples come from Best-Fisher's sampler with batched
    acceptance and a bounded number of rounds, and lie in ``[-π, π)``; ``cdf`` starts at
    ``loc - π`` and adds one per period. κ = 0 is the uniform law, κ ≥ 1e8 the Gaussian limit
    ``N(loc, 1/κ)``; NaN parameters give NaN samples. No ``.item()``: ``rsample`` compiles with
    ``torch.compile(fullgraph=True)`` and runs under ``vmap(randomness="different")``.

    Args:
        loc: mean direction (radians, any real).
        concentration: ``κ > 0``, finite (``κ = 0`` is accepted without validation).
        validate_args: check parameters and values against their constraints.

    Example::

        >>> kappa = torch.tensor(2.0, requires_grad=True)
        >>> z = VonMises(torch.tensor(0.5), kappa).rsample((1000,))
        >>> torch.cos(z).mean().backward()
        >>> bool(kappa.grad > 0)
        True
    """

    arg_constraints = {"loc": constraints.real, "concentration": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(
        self, loc: Tensor | float, concentration: Tensor | float, validate_args: bool | None = None
    ) -> None:
        loc, concentration = broadcast_all(loc, concentration)
        super().__init__(loc, concentration, validate_args=validate_args)
        if self._validate_args and not bool(torch.isfinite(concentration).all()):
            raise ValueError(
                f"concentration must be finite and > 0, got {concentration.detach().flatten()}"
            )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(VonMises, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(td.VonMises, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape: SampleShape = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        work = torch.promote_types(self.loc.dtype, torch.float64)
        with torch.no_grad():
            x = _sample_centred(self.concentration.detach().to(work).expand(shape))
            loc = self.loc.detach().to(work)
            return ((x + math.pi + loc) % (2 * math.pi) - math.pi).to(self.loc.dtype)

    def rsample(self, sample_shape: SampleShape = ()) -> Tensor:
        z = self.sample(sample_shape)
        if not needs_grad(self.loc, self.concentration):
            return z
        _, _, dz_dconcentration = von_mises_cdf_and_dz_dconcentration(
            z - self.loc.detach(), self.concentration.detach()
        )
        return attach_gradients(
            z, (self.loc, self.concentration), (torch.ones_like(z), dz_dconcentration)
        )

    @property
    def variance(self) -> Tensor:
        """Circular variance ``1 - I1(κ)/I0(κ)``."""
        kappa = self.concentration
        return 1 - torch.special.i1e(kappa) / torch.special.i0e(kappa)

    def log_prob(self, value: Tensor) -> Tensor:
        # torch's version uses a ~1e-7 polynomial for log I0; i0e is accurate to rounding.
        if self._validate_args:
            self._validate_sample(value)
        kappa = self.concentration
        log_norm = math.log(2 * math.pi) + torch.log(torch.special.i0e(kappa)) + kappa
        return kappa * torch.cos(value - self.loc) - log_norm

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return von_mises_cdf(value - self.loc, self.concentration)

    def entropy(self) -> Tensor:
        # H = log(2π I0(κ)) - κ I1(κ)/I0(κ), with exponentially scaled Bessel functions.
        kappa = self.concentration
        i0e, i1e = torch.special.i0e(kappa), torch.special.i1e(kappa)
        return math.log(2 * math.pi) + torch.log(i0e) + kappa * (1 - i1e / i0e)
