"""The model API every loss in :mod:`stochgrad.vae` is written against.

Shape conventions (the only ones the losses rely on):

- ``data``: a tensor of shape ``(batch_size, *data_shape)`` or a list of such tensors.
- ``latents``: a tensor of shape ``(batch_size, n_samples, *latent_shape)`` or a list of such
  tensors -- sample index second, so that it lines up with ``log_q``/``log_p``.
- ``log_q``, ``log_p``: shape ``(batch_size, n_samples)``; latent and data dimensions are
  already summed out.

Two ways to provide a model: implement the :class:`InferenceNetworkProtocol` /
:class:`GenerativeModelProtocol` structurally (duck typing, checked with ``isinstance``), or
subclass :class:`InferenceNetwork` / :class:`GenerativeModel`, abstract ``torch.nn.Module``
subclasses that also give the optional pieces (analytic KL, stopped-parameter densities) a
documented place. :mod:`stochgrad.vae.wrappers` builds both from modules that output
distribution parameters.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.distributions import Distribution

__all__ = [
    "GenerativeModel",
    "GenerativeModelProtocol",
    "InferenceNetwork",
    "InferenceNetworkProtocol",
    "Tensors",
]

Tensors = Tensor | list[Tensor]
"""A tensor or a list of tensors (one per data/latent group)."""


def _as_list(value: Any) -> list:
    """``value`` as a list: a list, tuple or ``nn.ModuleList`` is listed, anything else wrapped."""
    return list(value) if isinstance(value, (list, tuple, nn.ModuleList)) else [value]


@runtime_checkable
class InferenceNetworkProtocol(Protocol):
    """What a loss needs from an inference network q(z | x).

    ``inf_net(data)`` runs the encoder, stores the distribution parameters in attributes ending
    in ``_`` and returns ``self``; the other methods use the stored parameters.
    """

    def __call__(self, data: Tensors) -> InferenceNetworkProtocol: ...

    def sample(self, n_samples: int = 1) -> Tensors:
        """Draw ``latents`` of shape ``(batch_size, n_samples, *latent_shape)``, no gradient."""
        ...

    def rsample(self, n_samples: int = 1) -> Tensors:
        """Draw reparameterized ``latents`` of shape ``(batch_size, n_samples, *latent_shape)``."""
        ...

    def log_prob(self, latents: Tensors, *, detach_params: bool = False) -> Tensor:
        """log q(z | x) of shape ``(batch_size, n_samples)``.

        With ``detach_params=True`` the distribution parameters are cut from the graph, so the
        gradient flows through ``latents`` only (needed by :class:`~stochgrad.vae.DReG`).
        """
        ...


@runtime_checkable
class GenerativeModelProtocol(Protocol):
    """What a loss needs from a generative model p(x, z) = p(z) p(x | z).

    ``gen_model(data, latents)`` runs the decoder on ``latents``, stores the parameters of
    p(x | z) and returns ``self``.
    """

    def __call__(self, data: Tensors, latents: Tensors) -> GenerativeModelProtocol: ...

    def log_prob(self, data: Tensors, latents: Tensors) -> Tensor:
        """log p(x, z) of shape ``(batch_size, n_samples)``."""
        ...

    def sample(self, batch_size: int = 1) -> tuple[Tensors, Tensors]:
        """Draw ``(data, latents)`` from p(x, z); latents get ``n_samples = 1``:
        shapes ``(batch_size, *data_shape)`` and ``(batch_size, 1, *latent_shape)``."""
        ...


class InferenceNetwork(nn.Module, abc.ABC):
    """Base class for an inference network q(z | x); see :class:`InferenceNetworkProtocol`.

    Subclasses implement :meth:`forward` (store parameters, return ``self``), :meth:`sample`,
    :meth:`log_prob` and, for reparameterizable latents, :meth:`rsample`. Implementing
    :attr:`distribution` lets :class:`~stochgrad.vae.ELBO` use an analytic KL.

    Example::

        >>> import torch
        >>> from torch.distributions import Normal
        >>> class Diagonal(InferenceNetwork):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(3, 4)
        ...     def forward(self, data):
        ...         self.loc_, log_scale = self.linear(data).chunk(2, dim=-1)
        ...         self.scale_ = log_scale.exp()
        ...         return self
        ...     def sample(self, n_samples=1):
        ...         return self.rsample(n_samples).detach()
        ...     def rsample(self, n_samples=1):
        ...         eps = torch.randn((self.loc_.shape[0], n_samples, 2))
        ...         return self.loc_.unsqueeze(1) + self.scale_.unsqueeze(1) * eps
        ...     def log_prob(self, latents, *, detach_params=False):
        ...         loc, scale = self.loc_.unsqueeze(1), self.scale_.unsqueeze(1)
        ...         if detach_params:
        ...             loc, scale = loc.detach(), scale.detach()
        ...         return Normal(loc, scale).log_prob(latents).sum(-1)
        >>> inf_net = Diagonal()
        >>> inf_net(torch.randn(5, 3)).log_prob(inf_net.rsample(7)).shape
        torch.Size([5, 7])
    """

    @abc.abstractmethod
    def forward(self, data: Tensors) -> InferenceNetwork:
        """Run the encoder on ``data``, store the parameters (``*_`` attributes), return self."""

    @abc.abstractmethod
    def sample(self, n_samples: int = 1) -> Tensors:
        """Draw latents of shape ``(batch_size, n_samples, *latent_shape)`` without gradient."""

    def rsample(self, n_samples: int = 1) -> Tensors:
        """Draw reparameterized latents of shape ``(batch_size, n_samples, *latent_shape)``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reparameterized sampler; use a score-function loss "
            "(VIMCO, ScoreFunctionELBO, QWake) for these latents"
        )

    @abc.abstractmethod
    def log_prob(self, latents: Tensors, *, detach_params: bool = False) -> Tensor:
        """log q(z | x) of shape ``(batch_size, n_samples)``, summed over latent dimensions."""

    @property
    def distribution(self) -> Distribution:
        """q(z | x) as one distribution with ``batch_shape == (batch_size,)`` (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its distribution")


class GenerativeModel(nn.Module, abc.ABC):
    """Base class for a generative model p(x, z) = p(z) p(x | z); see
    :class:`GenerativeModelProtocol`.

    Subclasses implement :meth:`forward`, :meth:`log_prob` and :meth:`sample`. Implementing
    :attr:`prior` and :meth:`log_likelihood` lets :class:`~stochgrad.vae.ELBO` use an analytic
    KL.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli, Independent, Normal
        >>> class Linear(GenerativeModel):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.decoder = torch.nn.Linear(2, 3)
        ...     def forward(self, data, latents):
        ...         self.logits_ = self.decoder(latents)
        ...         return self
        ...     def log_prob(self, data, latents):
        ...         log_prior = Normal(0.0, 1.0).log_prob(latents).sum(-1)
        ...         log_lik = Bernoulli(logits=self.logits_).log_prob(data.unsqueeze(1)).sum(-1)
        ...         return log_prior + log_lik
        ...     def sample(self, batch_size=1):
        ...         latents = torch.randn(batch_size, 1, 2)
        ...         return Bernoulli(logits=self.decoder(latents[:, 0])).sample(), latents
        >>> gen_model = Linear()
        >>> data, latents = gen_model.sample(5)
        >>> gen_model(data, latents).log_prob(data, latents).shape
        torch.Size([5, 1])
    """

    @abc.abstractmethod
    def forward(self, data: Tensors, latents: Tensors) -> GenerativeModel:
        """Run the decoder on ``latents``, store the parameters of p(x | z), return self."""

    @abc.abstractmethod
    def log_prob(self, data: Tensors, latents: Tensors) -> Tensor:
        """log p(x, z) of shape ``(batch_size, n_samples)``."""

    @abc.abstractmethod
    def sample(self, batch_size: int = 1) -> tuple[Tensors, Tensors]:
        """Draw ``(data, latents)``; latents have shape ``(batch_size, 1, *latent_shape)``."""

    @property
    def prior(self) -> Distribution:
        """p(z) as one distribution with an empty ``batch_shape`` (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its prior")

    def log_likelihood(self, data: Tensors, latents: Tensors) -> Tensor:
        """log p(x | z) of shape ``(batch_size, n_samples)`` (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose log p(x | z)")
