"""Student's t distribution with implicit reparameterization gradients for df, loc and scale."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import constraints

from stochgrad.implicit._core import attach_gradients, half_in_float32, needs_grad
from stochgrad.implicit._sampling import log_standard_gamma
from stochgrad.pyro import PyroCompatible
from stochgrad.special.beta import beta_grad, betainc
from stochgrad.special.elementary import log1p_square

__all__ = ["StudentT"]


class StudentT(PyroCompatible, torch.distributions.StudentT):
    r"""StudentT(df, loc, scale) whose ``rsample`` carries the implicit gradient for ``df``.

    With ``t = (z - loc)/scale``, ``y = ν/(ν + t²)`` and ``F(t) = 1 - ½ I_y(ν/2, ½)`` for ``t > 0``:
    ``dt/dν = (½ K (ν + t²)² + t²) / (2 ν t)`` where ``K = (∂I_y/∂a) / p_Beta(y)`` at ``a = ν/2``;
    ``dz/dloc = 1``, ``dz/dscale = t``. Figurnov, Mohamed & Mnih, NeurIPS 2018.
    Draws beyond the largest float are kept at ``±finfo.max`` (in float32 at ``ν = 0.1`` about
    1 in 10⁴ lies there) and ``log_prob`` uses ``log1p((t/√ν)²)`` in log space, so both stay
    finite wherever torch's ``y²`` overflows.

    Args:
        df: degrees of freedom ``ν > 0``.
        loc: location.
        scale: scale ``> 0``.
        validate_args: check parameters and samples.

    Example::

        >>> import stochgrad.implicit as irt
        >>> df = torch.tensor(3.0, requires_grad=True)
        >>> irt.StudentT(df).rsample((100,)).abs().mean().backward()
        >>> bool(torch.isfinite(df.grad))
        True
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real
    has_rsample = True

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StudentT, _instance)
        return super().expand(batch_shape, _instance=new)

    @half_in_float32
    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        df = self.df.expand(shape)
        with torch.no_grad():
            # t = N sqrt(ν / χ²) with χ² = 2G, G ~ Gamma(ν/2, 1), drawn in log space.
            log_g = log_standard_gamma(df.detach() / 2)
            normal = torch.randn(shape, dtype=df.dtype, device=df.device)
            t = normal * torch.exp(0.5 * (torch.log(df.detach() / 2) - log_g))
            largest = torch.finfo(t.dtype).max
            t = t.clamp(-largest, largest)  # an overflowed ±inf becomes the largest float
        if needs_grad(df):
            # A clamped draw does not move with ν; elsewhere dt/dν may itself exceed the range.
            dt_ddf = torch.where(t.abs() < largest, _dt_ddf(df.detach(), t), 0.0)
            t = attach_gradients(t, [df], [dt_ddf.clamp(-largest, largest)])
        return self.loc.expand(shape) + self.scale.expand(shape) * t

    @half_in_float32
    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        y = (value - self.loc) / self.scale
        log_normalizer = (
            self.scale.log()
            + 0.5 * self.df.log()
            + 0.5 * math.log(math.pi)
            + torch.lgamma(0.5 * self.df)
            - torch.lgamma(0.5 * (self.df + 1.0))
        )
        return -0.5 * (self.df + 1.0) * log1p_square(y, self.df.sqrt()) - log_normalizer

    @half_in_float32
    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        t = (value - self.loc) / self.scale
        t2 = t * t
        tail = 0.5 * betainc(self.df / 2, torch.full_like(t, 0.5), self.df / (self.df + t2))
        return torch.where(t > 0, 1 - tail, tail)


def _dt_ddf(df: Tensor, t: Tensor) -> Tensor:
    if t.dtype != torch.float64:  # the sum below cancels for large ν; keep it in double
        return _dt_ddf(df.double(), t.double()).to(t.dtype)
    t2 = t * t
    total = df + t2
    # y = ν/(ν+t²) and its complement t²/(ν+t²), each computed without cancellation.
    grad_a, _ = beta_grad(df / 2, torch.full_like(t, 0.5), df / total, t2 / total)
    k = -grad_a  # (∂I/∂a) / p_Beta(y)
    safe_t = torch.where(t == 0, torch.ones_like(t), t)
    out = (0.5 * k * total * total + t2) / (2 * df * safe_t)
    return torch.where(t == 0, torch.zeros_like(out), out)
