"""Build inference networks and generative models from modules that output distribution parameters.

A :class:`DistributionNet` turns ``module(*inputs)`` into a distribution; a :class:`Prior` holds
the (optionally learnable) parameters of p(z). :class:`DistributionInferenceNetwork` and
:class:`DistributionGenerativeModel` assemble them into objects implementing
:mod:`stochgrad.vae.protocols`. Any ``torch.distributions.Distribution`` subclass works as the
distribution class (torch's, :mod:`stochgrad.implicit`, :mod:`stochgrad.relaxed`).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from stochgrad.vae.protocols import GenerativeModel, InferenceNetwork, Tensors, _as_list

__all__ = [
    "DistributionGenerativeModel",
    "DistributionInferenceNetwork",
    "DistributionNet",
    "Prior",
]


def _add(values: Iterable[Tensor]) -> Tensor:
    return functools.reduce(operator.add, values)


def _sum_trailing(log_prob: Tensor, keep: int) -> Tensor:
    """Sum ``log_prob`` over every dimension after the first ``keep``."""
    return (
        log_prob.sum(dim=tuple(range(keep, log_prob.dim()))) if log_prob.dim() > keep else log_prob
    )


class DistributionNet(nn.Module):
    """A conditional distribution: ``module(*inputs)`` gives the parameters of ``dist_cls``.

    The module may return a dict (keys are the parameter names), a tuple or list (matched to
    ``param_names`` in order) or one tensor; a single tensor is split into
    ``len(param_names)`` equal chunks along its last dimension, the usual MLP head
    (``Linear(256, 2 * latent_dim)`` for ``("loc", "scale")``).

    Args:
        module: network mapping the inputs to raw parameters.
        dist_cls: a ``torch.distributions.Distribution`` subclass (or any callable taking the
            parameters as keyword arguments and returning one).
        param_names: keyword names of ``dist_cls`` the outputs are passed as; not needed when
            the module returns a dict.
        transforms: callables applied to named raw outputs to satisfy the constraints, e.g.
            ``{"scale": torch.nn.functional.softplus}``.
        **dist_kwargs: fixed keyword arguments of ``dist_cls`` (``temperature``,
            ``validate_args``...).

    Example::

        >>> import torch
        >>> from torch.distributions import Normal
        >>> net = DistributionNet(torch.nn.Linear(3, 4), Normal, ("loc", "scale"),
        ...                       transforms={"scale": torch.nn.functional.softplus})
        >>> net(torch.randn(5, 3)).batch_shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        module: nn.Module,
        dist_cls: Callable[..., Distribution],
        param_names: Sequence[str] | None = None,
        transforms: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
        **dist_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(param_names, str):
            param_names = (param_names,)
        self.module = module
        self.dist_cls = dist_cls
        self.param_names = tuple(param_names) if param_names is not None else None
        self.transforms = dict(transforms or {})
        self.dist_kwargs = dist_kwargs
        unknown = set(self.transforms) - set(self.param_names or self.transforms)
        if unknown:
            raise ValueError(f"transforms names {sorted(unknown)} not in param_names {param_names}")

    def params(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Run the module and return the (transformed) distribution parameters by name."""
        raw = self.module(*inputs)
        if isinstance(raw, Mapping):
            params = dict(raw)
        else:
            if self.param_names is None:
                raise ValueError(
                    "param_names is required unless the module returns a dict of parameters"
                )
            if isinstance(raw, Tensor):
                raw = (
                    raw.chunk(len(self.param_names), dim=-1) if len(self.param_names) > 1 else [raw]
                )
            raw = list(raw)
            if len(raw) != len(self.param_names):
                raise ValueError(
                    f"module returned {len(raw)} outputs, param_names has {len(self.param_names)}"
                )
            params = dict(zip(self.param_names, raw, strict=True))
        for name, transform in self.transforms.items():
            params[name] = transform(params[name])
        return params

    def distribution(self, params: Mapping[str, Tensor]) -> Distribution:
        """Build the distribution from parameters returned by :meth:`params`."""
        return self.dist_cls(**params, **self.dist_kwargs)

    def forward(self, *inputs: Tensor) -> Distribution:
        return self.distribution(self.params(*inputs))


class Prior(nn.Module):
    """An unconditional distribution p(z) whose parameters live in the module.

    Parameters are registered as ``nn.Parameter`` (``learnable=True``) or buffers, so they
    follow ``.to(device)``. Give them the full latent shape (e.g. ``loc=torch.zeros(16)``):
    that shape is the latent shape sampled by :meth:`DistributionGenerativeModel.sample`.

    Args:
        dist_cls: a ``torch.distributions.Distribution`` subclass.
        learnable: whether the parameters are trained.
        transforms: callables applied to the stored raw parameters by name, e.g. softplus for
            a learnable scale.
        **params: the (raw) parameters, as tensors (their dtype and device are kept) or numbers.

    Example::

        >>> import torch
        >>> from torch.distributions import Normal
        >>> prior = Prior(Normal, loc=torch.zeros(16), scale=torch.ones(16))
        >>> prior().sample((4,)).shape
        torch.Size([4, 16])
    """

    def __init__(
        self,
        dist_cls: Callable[..., Distribution],
        *,
        learnable: bool = False,
        transforms: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
        **params: Tensor,
    ) -> None:
        super().__init__()
        self.dist_cls = dist_cls
        self.transforms = dict(transforms or {})
        self.param_names = tuple(params)
        for name, value in params.items():
            # Tensors keep their dtype and device; Python numbers get the default dtype.
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            if learnable:
                self.register_parameter(name, nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone())

    def forward(self) -> Distribution:
        params = {name: getattr(self, name) for name in self.param_names}
        for name, transform in self.transforms.items():
            params[name] = transform(params[name])
        return self.dist_cls(**params)


class DistributionInferenceNetwork(InferenceNetwork):
    """q(z | x) from one :class:`DistributionNet` per latent group (mean field across groups).

    The head's distribution has ``batch_shape == (batch_size, *latent_dims)``; every dimension
    after the first is a latent dimension and is summed in :meth:`log_prob`. With a list of
    heads, latents are a list (one tensor per head) and the log-densities add up.

    Args:
        encoder: a :class:`DistributionNet` or a sequence of them; each is called on ``data``
            (``*data`` when data is a list).

    Example::

        >>> import torch
        >>> from torch.distributions import Normal
        >>> encoder = DistributionNet(torch.nn.Linear(3, 4), Normal, ("loc", "scale"),
        ...                           transforms={"scale": torch.nn.functional.softplus})
        >>> inf_net = DistributionInferenceNetwork(encoder)
        >>> latents = inf_net(torch.randn(5, 3)).rsample(7)
        >>> latents.shape, inf_net.log_prob(latents).shape
        (torch.Size([5, 7, 2]), torch.Size([5, 7]))
    """

    def __init__(self, encoder: DistributionNet | Sequence[DistributionNet]) -> None:
        super().__init__()
        self._is_list = isinstance(encoder, (list, tuple, nn.ModuleList))
        self.heads = nn.ModuleList(_as_list(encoder))

    def forward(self, data: Tensors) -> DistributionInferenceNetwork:
        inputs = _as_list(data)
        self.params_ = [head.params(*inputs) for head in self._heads()]
        self.dists_ = [self._independent(head.distribution(p)) for head, p in self._zip()]
        return self

    def _heads(self) -> list[DistributionNet]:
        return cast(list[DistributionNet], list(self.heads))

    def _zip(self) -> zip:
        return zip(self._heads(), self.params_, strict=True)

    @staticmethod
    def _independent(dist: Distribution) -> Distribution:
        if len(dist.batch_shape) == 0:
            raise ValueError(
                "the encoder's distribution needs a batch dimension, got batch_shape ()"
            )
        return Independent(dist, len(dist.batch_shape) - 1) if len(dist.batch_shape) > 1 else dist

    def _wrap(self, values: list[Tensor]) -> Tensors:
        return values if self._is_list else values[0]

    def sample(self, n_samples: int = 1) -> Tensors:
        return self._wrap([d.sample((n_samples,)).movedim(0, 1) for d in self.dists_])

    def rsample(self, n_samples: int = 1) -> Tensors:
        for dist in self.dists_:
            if not dist.has_rsample:
                return super().rsample(n_samples)
        return self._wrap([d.rsample((n_samples,)).movedim(0, 1) for d in self.dists_])

    def log_prob(self, latents: Tensors, *, detach_params: bool = False) -> Tensor:
        dists = self.dists_
        if detach_params:
            dists = [
                self._independent(head.distribution({k: v.detach() for k, v in p.items()}))
                for head, p in self._zip()
            ]
        latents = _as_list(latents)
        if len(latents) != len(dists):
            raise ValueError(f"expected {len(dists)} latent tensors, got {len(latents)}")
        return _add(
            d.log_prob(z.movedim(1, 0)).movedim(0, 1) for d, z in zip(dists, latents, strict=True)
        )

    @property
    def distribution(self) -> Distribution:
        if self._is_list:
            return super().distribution
        return self.dists_[0]


class DistributionGenerativeModel(GenerativeModel):
    """p(x, z) = p(z) p(x | z) from a :class:`Prior` and a decoder :class:`DistributionNet`.

    The decoder is called on the latents, shape ``(batch_size, n_samples, *latent_shape)``
    (``*latents`` for a list), and must return a distribution whose ``batch_shape`` is
    ``(batch_size, n_samples, *data_dims)``; data dimensions are summed in :meth:`log_prob`.
    With lists of priors and of decoders, latents and data are lists in the same order.

    Args:
        prior: a :class:`Prior` (or any module returning p(z)), or a list of them.
        likelihood: a :class:`DistributionNet` decoder, or a list of them (one per data tensor).

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli, Normal
        >>> prior = Prior(Normal, loc=torch.zeros(2), scale=torch.ones(2))
        >>> decoder = DistributionNet(torch.nn.Linear(2, 3), Bernoulli, ("logits",))
        >>> gen_model = DistributionGenerativeModel(prior, decoder)
        >>> data, latents = gen_model.sample(5)
        >>> data.shape, latents.shape, gen_model(data, latents).log_prob(data, latents).shape
        (torch.Size([5, 3]), torch.Size([5, 1, 2]), torch.Size([5, 1]))
    """

    def __init__(
        self,
        prior: nn.Module | Sequence[nn.Module],
        likelihood: DistributionNet | Sequence[DistributionNet],
    ) -> None:
        super().__init__()
        self._latents_list = isinstance(prior, (list, tuple, nn.ModuleList))
        self._data_list = isinstance(likelihood, (list, tuple, nn.ModuleList))
        self.priors = nn.ModuleList(_as_list(prior))
        self.decoders = nn.ModuleList(_as_list(likelihood))

    def forward(self, data: Tensors, latents: Tensors) -> DistributionGenerativeModel:
        inputs = _as_list(latents)
        self.latents_ = latents
        decoders = cast(list[DistributionNet], list(self.decoders))
        self.params_ = [decoder.params(*inputs) for decoder in decoders]
        self.likelihoods_ = [d.distribution(p) for d, p in zip(decoders, self.params_, strict=True)]
        return self

    def log_likelihood(self, data: Tensors, latents: Tensors) -> Tensor:
        # Recompute only when called with other latents than the last forward pass.
        if getattr(self, "latents_", None) is not latents:
            self(data, latents)
        data = _as_list(data)
        if len(data) != len(self.likelihoods_):
            raise ValueError(f"expected {len(self.likelihoods_)} data tensors, got {len(data)}")
        return _add(
            _sum_trailing(lik.log_prob(x.unsqueeze(1)), 2)
            for lik, x in zip(self.likelihoods_, data, strict=True)
        )

    def log_prior(self, latents: Tensors) -> Tensor:
        """log p(z) of shape ``(batch_size, n_samples)``."""
        latents = _as_list(latents)
        if len(latents) != len(self.priors):
            raise ValueError(f"expected {len(self.priors)} latent tensors, got {len(latents)}")
        return _add(
            _sum_trailing(p().log_prob(z), 2) for p, z in zip(self.priors, latents, strict=True)
        )

    def log_prob(self, data: Tensors, latents: Tensors) -> Tensor:
        return self.log_prior(latents) + self.log_likelihood(data, latents)

    @property
    def prior(self) -> Distribution:
        if self._latents_list:
            return super().prior
        dist = self.priors[0]()
        return Independent(dist, len(dist.batch_shape)) if len(dist.batch_shape) > 0 else dist

    def sample(self, batch_size: int = 1) -> tuple[Tensors, Tensors]:
        latents = [p().sample((batch_size,)).unsqueeze(1) for p in self.priors]
        latents = latents if self._latents_list else latents[0]
        self(None, latents)
        data = [lik.sample().squeeze(1) for lik in self.likelihoods_]
        return (data if self._data_list else data[0]), latents
