"""Gamma distribution with implicit reparameterization gradients."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import constraints

from stochgrad._typing import SampleShape
from stochgrad.implicit._core import attach_gradients, half_in_float32, needs_grad
from stochgrad.pyro import PyroCompatible
from stochgrad.special.gamma import gammainc, standard_gamma_grad
from stochgrad.special.sampling import standard_gamma_sample

__all__ = ["Gamma"]


class Gamma(PyroCompatible, torch.distributions.Gamma):
    r"""Gamma(concentration, rate) whose ``rsample`` carries accurate implicit gradients.

    ``dz/dα = -(∂P(α, βz)/∂α) / (β p(βz))`` (``P`` the regularized incomplete gamma function),
    computed by quadrature to ~1e-13 relative error in float64 (torch's native rsample: ~1e-4);
    ``dz/dβ = -z/β``.
    Figurnov, Mohamed & Mnih, "Implicit Reparameterization Gradients", NeurIPS 2018.

    Args:
        concentration: shape ``α > 0``.
        rate: rate ``β > 0``.
        validate_args: check parameters and samples.

    Example::

        >>> import stochgrad.implicit as irt
        >>> alpha = torch.tensor([0.5, 5.0], requires_grad=True)
        >>> irt.Gamma(alpha, 1.0).rsample((100,)).mean().backward()
        >>> alpha.grad.shape
        torch.Size([2])
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def expand(self, batch_shape: SampleShape, _instance: Gamma | None = None) -> Gamma:
        new = self._get_checked_instance(Gamma, _instance)
        return super().expand(batch_shape, _instance=new)

    log_prob = half_in_float32(torch.distributions.Gamma.log_prob)

    @half_in_float32
    def rsample(self, sample_shape: SampleShape = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        concentration = self.concentration.expand(shape)
        with torch.no_grad():
            x = standard_gamma_sample(concentration.detach()).clamp(
                min=torch.finfo(self.rate.dtype).tiny
            )
        if needs_grad(concentration):
            dx_da = standard_gamma_grad(concentration.detach(), x)
            x = attach_gradients(x, [concentration], [dx_da])
        return x / self.rate.expand(shape)

    @half_in_float32
    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return gammainc(self.concentration, self.rate * value)
