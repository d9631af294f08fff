"""Implicit reparameterization for any factorized law with a differentiable CDF."""

from __future__ import annotations

import torch
import torch.distributions as td
from torch import Tensor

from stochgrad._typing import SampleShape
from stochgrad.implicit._core import implicit_from_cdf, needs_grad
from stochgrad.pyro import PyroCompatible

__all__ = ["Factorized", "ImplicitReparam"]


def _coordinates(dist: td.Distribution) -> tuple[td.Distribution, int]:
    """The univariate law whose batch holds the coordinates, and how many event dims it folds."""
    if isinstance(dist, td.Independent):
        inner, extra = _coordinates(dist.base_dist)
        return inner, extra + dist.reinterpreted_batch_ndims
    if dist.event_shape != torch.Size():
        raise ValueError(
            "the distribution must be univariate or Independent(...) of univariate ones, "
            f"got {type(dist).__name__} with event_shape {tuple(dist.event_shape)}"
        )
    return dist, 0


def _tensors_of(dist: td.Distribution, seen: set[int] | None = None) -> list[Tensor]:
    """Every tensor a distribution holds (parameters and cached derived values), recursively."""
    seen = set() if seen is None else seen
    out = []
    for value in vars(dist).values():
        if isinstance(value, Tensor):
            out.append(value)
        elif isinstance(value, td.Distribution) and id(value) not in seen:
            seen.add(id(value))
            out += _tensors_of(value, seen)
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, td.Distribution) and id(item) not in seen:
                    seen.add(id(item))
                    out += _tensors_of(item, seen)
                elif isinstance(item, td.Transform):
                    out += [t for t in vars(item).values() if isinstance(t, Tensor)]
    return out


class Factorized(PyroCompatible, td.Distribution):
    """Wrap a univariate, batched or ``Independent`` law that has a ``cdf`` to give it ``rsample``.

    Gradient path: every coordinate is reparameterized on its own,
    ``dz/dθ = -(∂F(z; θ)/∂θ) / p(z; θ)`` by autograd through ``base.cdf`` (Figurnov, Mohamed &
    Mnih, 2018, "Implicit reparameterization gradients"). Works for torch's Laplace, Cauchy,
    Gumbel, LogNormal, Weibull, Kumaraswamy, HalfNormal, Exponential, a Logistic built as a
    ``TransformedDistribution``, and any user class whose ``cdf`` is differentiable in its
    parameters. Everything else is delegated to ``base``.

    Args:
        base: the distribution to reparameterize.
        validate_args: check values against ``base.support``; defaults to ``base``'s setting.

    Example::

        >>> scale = torch.tensor(2.0, requires_grad=True)
        >>> z = Factorized(td.Cauchy(torch.tensor(0.0), scale)).rsample((1000,))
        >>> torch.cos(z).mean().backward()
        >>> scale.grad.shape
        torch.Size([])
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, base: td.Distribution, validate_args: bool | None = None) -> None:
        if not isinstance(base, td.Distribution):
            raise ValueError(f"base must be a torch Distribution, got {type(base).__name__}")
        self._coordinates, _ = _coordinates(base)
        self.base = base
        if validate_args is None:
            validate_args = base._validate_args
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    def expand(self, batch_shape: SampleShape, _instance: Factorized | None = None) -> Factorized:
        new = self._get_checked_instance(Factorized, _instance)
        new.base = self.base.expand(batch_shape)
        new._coordinates, _ = _coordinates(new.base)
        super(Factorized, new).__init__(new.base.batch_shape, new.base.event_shape, False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self) -> td.constraints.Constraint | None:
        return self.base.support

    @property
    def mean(self) -> Tensor:
        return self.base.mean

    @property
    def mode(self) -> Tensor:
        return self.base.mode

    @property
    def variance(self) -> Tensor:
        return self.base.variance

    def rsample(self, sample_shape: SampleShape = ()) -> Tensor:
        z = self.base.sample(sample_shape)
        if not needs_grad(*_tensors_of(self.base)):
            return z
        return implicit_from_cdf(z, self._coordinates.cdf, self._coordinates.log_prob)

    def sample(self, sample_shape: SampleShape = ()) -> Tensor:
        return self.base.sample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.base.log_prob(value)

    def cdf(self, value: Tensor) -> Tensor:
        return self.base.cdf(value)

    def icdf(self, value: Tensor) -> Tensor:
        return self.base.icdf(value)

    def entropy(self) -> Tensor:
        return self.base.entropy()


ImplicitReparam = Factorized
