"""Normal distribution whose ``rsample`` gradient is the implicit one (here in closed form)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import constraints

from stochgrad._typing import SampleShape
from stochgrad.implicit._core import attach_gradients
from stochgrad.pyro import PyroCompatible

__all__ = ["Normal"]


class Normal(PyroCompatible, torch.distributions.Normal):
    r"""Normal(loc, scale); ``Normal(mean, covariance_matrix=...)`` gives a full-covariance one.

    For ``F(z) = Φ((z - μ)/σ)`` the implicit derivative ``-(∂F/∂θ)/p`` is ``dz/dμ = 1`` and
    ``dz/dσ = (z - μ)/σ``, written in closed form (it coincides with the explicit one).
    Figurnov, Mohamed & Mnih, NeurIPS 2018.

    Args:
        loc: mean.
        scale: standard deviation ``> 0`` (omit when giving ``covariance_matrix``).
        covariance_matrix, scale_tril, precision_matrix: full-covariance form; returns a
            :class:`stochgrad.implicit.MultivariateNormal`.
        validate_args: check parameters and samples.

    Example::

        >>> import stochgrad.implicit as irt
        >>> irt.Normal(torch.zeros(2), covariance_matrix=torch.eye(2)).event_shape
        torch.Size([2])
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __new__(cls, loc=None, scale=None, *args, **kwargs):
        full = {"covariance_matrix", "scale_tril", "precision_matrix"} & {
            k for k, v in kwargs.items() if v is not None
        }
        if full:
            if scale is not None:
                raise ValueError("give either scale or one of " + ", ".join(sorted(full)))
            from stochgrad.implicit.multivariate_normal import MultivariateNormal

            return MultivariateNormal(loc, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        loc: Tensor | float,
        scale: Tensor | float | None = None,
        validate_args: bool | None = None,
        *,
        covariance_matrix: Tensor | None = None,
        scale_tril: Tensor | None = None,
        precision_matrix: Tensor | None = None,
    ) -> None:
        if scale is None:
            raise ValueError(
                "Normal needs scale (or covariance_matrix/scale_tril/precision_matrix)"
            )
        super().__init__(loc, scale, validate_args=validate_args)

    def expand(self, batch_shape: SampleShape, _instance: Normal | None = None) -> Normal:
        new = self._get_checked_instance(Normal, _instance)
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: SampleShape = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            standard = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            z = self.loc.expand(shape) + self.scale.expand(shape) * standard
        return attach_gradients(z, [self.loc, self.scale], [torch.ones_like(standard), standard])
