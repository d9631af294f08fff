"""The estimator protocol: ``surrogate = estimator(f, distribution, context=None)``.

Every estimator of :mod:`stochgrad.estimators` is an :class:`Estimator`: an ``nn.Module``
holding its configuration and, where it has them, learned control variates (as
``estimator.parameters()``, trained by the user's own optimizer). Calling it

1. draws its own samples ``z`` from ``distribution`` (sample shape ``()`` when ``n_samples`` is
   1, ``(n_samples,)`` otherwise, as ``distribution.sample(sample_shape)`` gives them);
2. evaluates ``f(z)``, the per-example cost of shape ``sample_shape + distribution.batch_shape``
   (``f`` may hold parameters; their pathwise gradient is kept);
3. returns a *surrogate* of shape ``distribution.batch_shape``: its value is the Monte Carlo
   estimate of E f(z) (the mean over the samples), its gradient the estimator.

So ``(surrogate.mean() + other_losses).backward()`` trains the model and the control variates in
one pass; no estimator holds an optimizer.

Example::

    >>> from torch.distributions import Bernoulli, Independent
    >>> from stochgrad.estimators import DisARM
    >>> logits = torch.zeros(4, 10, requires_grad=True)
    >>> q = Independent(Bernoulli(logits=logits), 1)
    >>> surrogate = DisARM()(lambda z: (z - 0.45).square().sum(-1), q)
    >>> surrogate.shape
    torch.Size([4])
    >>> surrogate.mean().backward()
    >>> logits.grad.shape
    torch.Size([4, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, OneHotCategorical

__all__ = ["Estimator"]

Cost = Callable[[Any], Tensor]


def _check_n_samples(n_samples: int, minimum: int = 1, owner: str | None = None) -> int:
    """``n_samples`` as an int, or a ``ValueError`` naming the minimum (and ``owner``)."""
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < minimum:
        where = f" for {owner}" if owner else ""
        raise ValueError(f"n_samples must be an integer >= {minimum}{where}, got {n_samples}")
    return int(n_samples)


def unwrap(distribution: Distribution) -> tuple[Distribution, int]:
    """The distribution inside nested ``Independent`` wrappers and their reinterpreted dims."""
    event_dims = 0
    while isinstance(distribution, Independent):
        event_dims += distribution.reinterpreted_batch_ndims
        distribution = distribution.base_dist
    return distribution, event_dims


def sum_rightmost(value: Tensor, dims: int) -> Tensor:
    """Sum the last ``dims`` dimensions of ``value`` (none for 0)."""
    return value.sum(tuple(range(-dims, 0))) if dims > 0 else value


class Estimator(nn.Module):
    """Base class: ``surrogate = estimator(f, distribution, context=None)``.

    Value of ``surrogate``: (1/S) Σ_s f(z_s), z_s ~ ``distribution``, S = ``n_samples``;
    gradient: the subclass's estimator of ∇ E f(z). Shape: ``distribution.batch_shape``.

    ``f`` receives ``z`` of shape ``sample_shape + batch_shape + event_shape`` with
    ``sample_shape = ()`` for one sample and ``(n_samples,)`` otherwise, and returns costs of
    shape ``sample_shape + batch_shape``; the batch elements must be independent. A distribution
    the estimator cannot use raises a ``TypeError`` naming the supported families.

    Args:
        n_samples: samples per batch element, averaged in the surrogate.
    """

    supported: str = "any torch.distributions.Distribution"
    min_samples: int = 1

    def __init__(self, n_samples: int = 1) -> None:
        super().__init__()
        self.n_samples = _check_n_samples(n_samples, self.min_samples)

    def supports(self, distribution: Distribution) -> bool:
        """Whether this estimator can use ``distribution``."""
        return isinstance(distribution, Distribution)

    def forward(
        self,
        f: Cost,
        distribution: Distribution,
        context: Any = None,
        *,
        n_samples: int | None = None,
    ) -> Tensor:
        """Surrogate of shape ``distribution.batch_shape`` for ∇ E_{z ~ distribution} f(z).

        Args:
            f: maps samples to per-example costs (see the class docstring for shapes).
            distribution: the distribution the samples are drawn from.
            context: input of an input-dependent control variate (e.g. the data x).
            n_samples: overrides the configured ``n_samples`` for this call.
        """
        if not self.supports(distribution):
            raise TypeError(
                f"{type(self).__name__} supports {self.supported}, got {_describe(distribution)}"
            )
        n = self.n_samples if n_samples is None else _check_n_samples(n_samples, self.min_samples)
        sample_shape = torch.Size() if n == 1 else torch.Size((n,))
        surrogate = self._surrogate(f, distribution, sample_shape, context)
        if sample_shape:
            surrogate = surrogate.mean(0)
        return surrogate

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        """Per-sample surrogate of shape ``sample_shape + distribution.batch_shape``."""
        raise NotImplementedError

    @staticmethod
    def _cost(f: Cost, z: Any, shape: torch.Size) -> Tensor:
        """``f(z)``, checked to have ``shape`` (a wrong shape would broadcast silently)."""
        cost = f(z)
        if not isinstance(cost, Tensor) or cost.shape != shape:
            got = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
            raise ValueError(
                f"f must return costs of shape sample_shape + batch_shape = {tuple(shape)}, got "
                f"{got}; reduce over the event dimensions (e.g. .sum(-1)) and keep the others"
            )
        return cost


def _describe(distribution: Any) -> str:
    if isinstance(distribution, Independent):
        return f"Independent({_describe(distribution.base_dist)})"
    return type(distribution).__name__


class BernoulliEstimator(Estimator):
    """Base of the estimators for factorised Bernoulli latents (ARM, DisARM, REBAR, RELAX)."""

    supported = "Bernoulli or Independent(Bernoulli) distributions"

    def supports(self, distribution: Distribution) -> bool:
        return isinstance(unwrap(distribution)[0], Bernoulli)

    @staticmethod
    def _logits(distribution: Distribution) -> tuple[Tensor, int]:
        """The Bernoulli logits (shape ``batch_shape + event_shape``) and the event dims."""
        base, event_dims = unwrap(distribution)
        logits: Tensor = cast(Bernoulli, base).logits
        if not logits.is_floating_point():
            raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")
        return logits, event_dims


def is_one_hot_categorical(distribution: Distribution) -> bool:
    return isinstance(unwrap(distribution)[0], OneHotCategorical)
