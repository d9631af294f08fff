"""Loss objects: ``loss = SomeLoss(inf_net, gen_model)(data)`` drives the model, returns a scalar.

Each loss samples from ``inf_net`` (or ``gen_model``), evaluates ``log_q``/``log_p`` of shape
``(batch_size, n_samples)`` and hands them to its functional twin in
:mod:`stochgrad.vae.functional`. The value is the loss (a negative bound, mean over the batch);
``loss.backward()`` gives the estimator's gradient to the parameters named in ``updates``
(``'inf'``: the inference network, ``'gen'``: the generative model) and to nothing else.
Every call appends the loss to ``loss_history_`` and, where meaningful, the batch means of
log p(x, z) and log q(z | x) to ``mean_log_p_`` and ``mean_log_q_``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from stochgrad.estimators import Reinforce, ScoreFunctionEstimator, gradient_only
from stochgrad.vae import functional as F
from stochgrad.vae.protocols import (
    GenerativeModelProtocol,
    InferenceNetworkProtocol,
    Tensors,
    _as_list,
)

__all__ = [
    "DReG",
    "ELBO",
    "IWAE",
    "PWake",
    "QSleep",
    "QWake",
    "ScoreFunctionELBO",
    "VAELoss",
    "VIMCO",
]


def _batch_size(data: Tensors) -> int:
    return _as_list(data)[0].shape[0]


def _scale_gradient(latents: Tensors, weights: Tensor) -> Tensors:
    """Return ``latents`` unchanged in value, with the gradient of sample (b, k) times
    ``weights[b, k]``."""

    def scale(z: Tensor) -> Tensor:
        w = weights.reshape(weights.shape + (1,) * (z.dim() - 2)).to(z.dtype)
        return z.detach() + w * gradient_only(z)

    if isinstance(latents, (list, tuple)):
        return [scale(z) for z in latents]
    return scale(latents)


def _rsample(loss: VAELoss, inf_net: InferenceNetworkProtocol) -> Tensors:
    """``inf_net.rsample(loss.n_samples)``, with a ``ValueError`` naming the problem when the
    latents are not reparameterizable (no sampler, or samples cut from the encoder's graph)."""
    name = type(loss).__name__
    try:
        latents = inf_net.rsample(loss.n_samples)
    except NotImplementedError as error:
        raise ValueError(
            f"{name} needs reparameterizable latents, but inf_net.rsample is not available "
            f"({error}); for discrete latents use VIMCO, ScoreFunctionELBO or PWake + QWake"
        ) from error
    parameters = inf_net.parameters() if isinstance(inf_net, nn.Module) else ()
    if (
        torch.is_grad_enabled()
        and any(p.requires_grad for p in parameters)
        and not any(z.requires_grad for z in _as_list(latents))
    ):
        # Without a path to the encoder the pathwise gradient would silently be missing.
        raise ValueError(
            f"{name} needs reparameterized latents, but inf_net.rsample returned latents that "
            "do not require grad; rsample must keep the graph to the encoder's parameters"
        )
    return latents


class VAELoss(nn.Module):
    """Base class of the loss objects: stores the models, the sample count and the histories.

    Args:
        inf_net: inference network (see :class:`~stochgrad.vae.InferenceNetworkProtocol`).
        gen_model: generative model (see :class:`~stochgrad.vae.GenerativeModelProtocol`).
        n_samples: samples of z per data point (K), >= 1.
    """

    updates: tuple[str, ...] = ("inf", "gen")
    min_samples: int = 1

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int = 1,
    ) -> None:
        super().__init__()
        if int(n_samples) != n_samples or n_samples < self.min_samples:
            raise ValueError(
                f"n_samples must be an integer >= {self.min_samples} for {type(self).__name__}, "
                f"got {n_samples}"
            )
        self.inf_net = inf_net
        self.gen_model = gen_model
        self.n_samples = int(n_samples)
        self.loss_history_: list[float] = []
        self.mean_log_p_: list[float] = []
        self.mean_log_q_: list[float] = []

    def updated_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the models named in ``updates`` (what an optimizer for this loss needs)."""
        for name in self.updates:
            model = self.inf_net if name == "inf" else self.gen_model
            if isinstance(model, nn.Module):
                yield from model.parameters()

    def _record(
        self, loss: Tensor, log_q: Tensor | None = None, log_p: Tensor | None = None
    ) -> Tensor:
        self.loss_history_.append(loss.item())
        if log_p is not None:
            self.mean_log_p_.append(log_p.detach().mean().item())
        if log_q is not None:
            self.mean_log_q_.append(log_q.detach().mean().item())
        return loss

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, updates={self.updates}"


class _MultiSampleLoss(VAELoss):
    """A :class:`VAELoss` whose bound or weights need several samples: ``n_samples`` defaults
    to 5."""

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int = 5,
    ) -> None:
        super().__init__(inf_net, gen_model, n_samples)


class ELBO(VAELoss):
    """Negative evidence lower bound with reparameterized samples (Kingma & Welling, 2014).

    −ELBO = −E_q[log p(x | z)] + KL(q(z | x) ‖ p(z)), the KL in closed form when
    ``torch.distributions.kl_divergence`` knows the pair, else by Monte Carlo:
    −E_q[log p(x, z) − log q(z | x)].

    Args:
        inf_net: inference network with ``rsample``.
        gen_model: generative model.
        n_samples: samples of z per data point.
        analytic_kl: ``"auto"`` (closed form when available), ``True`` (required, else
            ``ValueError``) or ``False`` (always Monte Carlo). The closed form needs
            ``inf_net.distribution``, ``gen_model.prior`` and ``gen_model.log_likelihood``.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli, Normal
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 4), Normal, ("loc", "scale"),
        ...                           transforms={"scale": torch.nn.functional.softplus})
        >>> decoder = DistributionNet(torch.nn.Linear(2, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Normal, loc=torch.zeros(2), scale=torch.ones(2))
        >>> loss_fn = ELBO(DistributionInferenceNetwork(encoder),
        ...                DistributionGenerativeModel(prior, decoder))
        >>> loss = loss_fn(torch.bernoulli(torch.full((8, 6), 0.5)))
        >>> loss.backward()
        >>> loss_fn.uses_analytic_kl_, len(loss_fn.loss_history_)
        (True, 1)
    """

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int = 1,
        analytic_kl: bool | str = "auto",
    ) -> None:
        super().__init__(inf_net, gen_model, n_samples)
        if analytic_kl not in ("auto", True, False):
            raise ValueError(f"analytic_kl must be 'auto', True or False, got {analytic_kl!r}")
        self.analytic_kl = analytic_kl
        self.uses_analytic_kl_: bool | None = None

    def _kl(self) -> Tensor | None:
        if self.analytic_kl is False:
            return None
        # Optional members, outside the protocols: missing or NotImplementedError = unavailable.
        inf_net: Any = self.inf_net
        gen_model: Any = self.gen_model
        try:
            kl = kl_divergence(inf_net.distribution, gen_model.prior)
        except (NotImplementedError, AttributeError) as error:
            if self.analytic_kl is True:
                raise ValueError(f"analytic_kl=True but no closed-form KL: {error}") from error
            return None
        return kl

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = _rsample(self, inf_net)
        log_q = inf_net.log_prob(latents)
        gen_model = self.gen_model(data, latents)
        log_p = gen_model.log_prob(data, latents)
        kl = self._kl()
        self.uses_analytic_kl_ = kl is not None
        if kl is None:
            loss = F.elbo_loss(log_q, log_p)
        else:
            log_likelihood = cast(Any, gen_model).log_likelihood(data, latents)
            loss = F.elbo_loss_analytic_kl(log_likelihood, kl)
        return self._record(loss, log_q, log_p)


class IWAE(_MultiSampleLoss):
    """Negative importance-weighted bound −log(1/K Σ_k p(x, z_k)/q(z_k | x)) with
    reparameterized samples (Burda et al., 2016).

    Args:
        inf_net: inference network with ``rsample``.
        gen_model: generative model.
        n_samples: K, importance samples per data point.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli, Normal
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 4), Normal, ("loc", "scale"),
        ...                           transforms={"scale": torch.nn.functional.softplus})
        >>> decoder = DistributionNet(torch.nn.Linear(2, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Normal, loc=torch.zeros(2), scale=torch.ones(2))
        >>> loss_fn = IWAE(DistributionInferenceNetwork(encoder),
        ...                DistributionGenerativeModel(prior, decoder), n_samples=5)
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = _rsample(self, inf_net)
        log_q = inf_net.log_prob(latents)
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._record(F.iwae_loss(log_q, log_p), log_q, log_p)


class DReG(_MultiSampleLoss):
    """IWAE loss with doubly reparameterized gradients (Tucker, Lawson, Gu & Maddison, 2019).

    Same value and expected gradient as :class:`IWAE`, lower variance for the inference network:
    ∇φ = Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ (log q with stopped parameters), ∇θ = Σ_k w̃_k ∇θ log w_k.
    Implemented by scaling the gradient reaching sample k by w̃_k (computed in a first pass
    without gradient), so it costs one extra generative forward pass.

    Args:
        inf_net: inference network with ``rsample`` and ``log_prob(..., detach_params=True)``.
        gen_model: generative model.
        n_samples: K, importance samples per data point.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli, Normal
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 4), Normal, ("loc", "scale"),
        ...                           transforms={"scale": torch.nn.functional.softplus})
        >>> decoder = DistributionNet(torch.nn.Linear(2, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Normal, loc=torch.zeros(2), scale=torch.ones(2))
        >>> loss_fn = DReG(DistributionInferenceNetwork(encoder),
        ...                DistributionGenerativeModel(prior, decoder), n_samples=5)
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = _rsample(self, inf_net)
        with torch.no_grad():
            log_w = self.gen_model(data, latents).log_prob(data, latents) - inf_net.log_prob(
                latents
            )
        # IWAE sends w̃_k ∂log w_k/∂z_k back through sample k; scaling by w̃_k makes it w̃_k².
        latents = _scale_gradient(latents, torch.softmax(log_w, dim=-1))
        try:
            log_q = inf_net.log_prob(latents, detach_params=True)
        except TypeError as error:
            if "detach_params" not in str(error):
                raise
            raise TypeError(
                "DReG needs inf_net.log_prob(latents, detach_params=True), log q with the "
                "distribution parameters stopped (see InferenceNetworkProtocol)"
            ) from error
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._record(F.iwae_loss(log_q, log_p), log_q, log_p)


class VIMCO(_MultiSampleLoss):
    """IWAE loss with VIMCO's leave-one-out score-function gradient (Mnih & Rezende, 2016).

    For latents without ``rsample`` (discrete): ∇ = Σ_k w̃_k ∇log w_k + Σ_k (log L̂ − log L̂₋ₖ)
    ∇log q(z_k | x). Unbiased for the gradient of the K-sample IWAE bound.

    Args:
        inf_net: inference network.
        gen_model: generative model.
        n_samples: K >= 2, samples per data point.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, learnable=True, logits=torch.zeros(3))
        >>> loss_fn = VIMCO(DistributionInferenceNetwork(encoder),
        ...                 DistributionGenerativeModel(prior, decoder), n_samples=4)
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    min_samples = 2

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = inf_net.sample(self.n_samples)
        log_q = inf_net.log_prob(latents)
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._record(F.vimco_loss(log_q, log_p), log_q, log_p)


class ScoreFunctionELBO(VAELoss):
    """Negative ELBO with a score-function (REINFORCE) gradient for the inference network.

    ∇φ = E_q[(f − b) ∇log q(z | x)] with f = log p(x, z) − log q(z | x) and the control variate
    b of ``estimator`` (Williams, 1992; Mnih & Gregor, 2014); ∇θ = E_q[∇θ log p(x, z)]. Works
    for any latent type.

    Args:
        inf_net: inference network.
        gen_model: generative model.
        n_samples: samples per data point.
        estimator: a :class:`stochgrad.estimators.ScoreFunctionEstimator` applied to the cost
            −f of shape ``(batch_size, n_samples)`` with ``context=data``:
            :class:`~stochgrad.estimators.MovingAverageBaseline`,
            :class:`~stochgrad.estimators.NVILBaseline` (its network is trained by the same
            backward pass; give its parameters to the optimizer, e.g. via ``loss.parameters()``),
            :class:`~stochgrad.estimators.LeaveOneOutBaseline` ``(dim=1)`` with
            ``n_samples >= 2``. ``None`` is plain REINFORCE (high variance).

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.estimators import NVILBaseline
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, logits=torch.zeros(3))
        >>> loss_fn = ScoreFunctionELBO(DistributionInferenceNetwork(encoder),
        ...                             DistributionGenerativeModel(prior, decoder),
        ...                             estimator=NVILBaseline(torch.nn.Linear(6, 1)))
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int = 1,
        estimator: ScoreFunctionEstimator | None = None,
    ) -> None:
        super().__init__(inf_net, gen_model, n_samples)
        self.estimator = Reinforce() if estimator is None else estimator

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = inf_net.sample(self.n_samples)
        log_q = inf_net.log_prob(latents)
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        surrogate = self.estimator(-(log_p - log_q), log_q, data)
        return self._record(surrogate.mean(), log_q, log_p)


class PWake(_MultiSampleLoss):
    """Reweighted wake-sleep wake-θ loss for the generative model (Bornschein & Bengio, 2015):
    the negative IWAE bound with ∇θ = Σ_k w̃_k ∇θ log p(x, z_k), z_k ~ q(z | x).

    Args:
        inf_net: inference network (not updated).
        gen_model: generative model.
        n_samples: K, importance samples per data point.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, logits=torch.zeros(3))
        >>> inf_net = DistributionInferenceNetwork(encoder)
        >>> gen_model = DistributionGenerativeModel(prior, decoder)
        >>> data = torch.bernoulli(torch.full((8, 6), 0.5))
        >>> (PWake(inf_net, gen_model)(data) + QWake(inf_net, gen_model)(data)).backward()
    """

    updates = ("gen",)

    def forward(self, data: Tensors) -> Tensor:
        with torch.no_grad():
            inf_net = self.inf_net(data)
            latents = inf_net.sample(self.n_samples)
            log_q = inf_net.log_prob(latents)
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._record(F.pwake_loss(log_q, log_p), log_q, log_p)


class QWake(_MultiSampleLoss):
    """Reweighted wake-sleep wake-φ loss for the inference network (Bornschein & Bengio, 2015;
    Le et al., 2019): −Σ_k w̃_k log q(z_k | x), z_k ~ q(z | x), an estimate of
    KL(p(z | x) ‖ q(z | x)) up to the posterior entropy.

    Args:
        inf_net: inference network.
        gen_model: generative model (not updated).
        n_samples: K, importance samples per data point.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, logits=torch.zeros(3))
        >>> loss_fn = QWake(DistributionInferenceNetwork(encoder),
        ...                 DistributionGenerativeModel(prior, decoder))
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    updates = ("inf",)

    def forward(self, data: Tensors) -> Tensor:
        inf_net = self.inf_net(data)
        latents = inf_net.sample(self.n_samples)
        log_q = inf_net.log_prob(latents)
        with torch.no_grad():
            log_p = self.gen_model(data, latents).log_prob(data, latents)
        return self._record(F.qwake_loss(log_q, log_p), log_q, log_p)


class QSleep(VAELoss):
    """Wake-sleep sleep-φ loss (Hinton et al., 1995; Le et al., 2019): −log q(z | x) at
    ``(x, z) ~ p(x, z)``, which fits q to the model's posterior averaged over its own data.

    ``data`` only sets the number of dreamt samples (its batch size times ``n_samples``).

    Args:
        inf_net: inference network.
        gen_model: generative model (not updated).
        n_samples: dreamt samples per data point of the batch.

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, logits=torch.zeros(3))
        >>> loss_fn = QSleep(DistributionInferenceNetwork(encoder),
        ...                  DistributionGenerativeModel(prior, decoder))
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    updates = ("inf",)

    def forward(self, data: Tensors) -> Tensor:
        with torch.no_grad():
            dreamt_data, latents = self.gen_model.sample(_batch_size(data) * self.n_samples)
        log_q = self.inf_net(dreamt_data).log_prob(latents)
        return self._record(F.qsleep_loss(log_q), log_q)
