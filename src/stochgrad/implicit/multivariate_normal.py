"""Full-covariance Gaussian with implicit reparameterization gradients."""

from __future__ import annotations

import torch

from stochgrad._typing import SampleShape
from stochgrad.pyro import PyroCompatible

__all__ = ["MultivariateNormal"]


class MultivariateNormal(PyroCompatible, torch.distributions.MultivariateNormal):
    r"""MultivariateNormal(loc, covariance_matrix | scale_tril | precision_matrix).

    The implicit gradient through the sequence of conditional CDFs
    ``u_i = Φ((z_i - m_i(z_<i)) / s_i)`` (Figurnov et al. 2018, Sec. 3.3) solves the triangular
    system ``(∂u/∂z) dz/dθ = -∂u/∂θ``. For a Gaussian in coordinate order ``u = Φ(L⁻¹(z - μ))``
    with ``L`` the Cholesky factor, so the solution is ``dz/dθ = d(μ + L ε)/dθ`` at
    ``ε = L⁻¹(z - μ)``: the implicit gradient equals the pathwise one through ``scale_tril``.

    Example::

        >>> import stochgrad.implicit as irt
        >>> mu = torch.zeros(3, requires_grad=True)
        >>> irt.MultivariateNormal(mu, torch.eye(3)).rsample((10,)).sum().backward()
        >>> mu.grad
        tensor([10., 10., 10.])
    """

    has_rsample = True

    def expand(
        self, batch_shape: SampleShape, _instance: MultivariateNormal | None = None
    ) -> MultivariateNormal:
        new = self._get_checked_instance(MultivariateNormal, _instance)
        return super().expand(batch_shape, _instance=new)
