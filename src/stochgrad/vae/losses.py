"""Loss objects: ``loss = SomeLoss(inf_net, gen_model)(data)`` drives the model, returns a scalar.

Every loss runs the same mechanism, :meth:`VAELoss.forward`: draw latents (from ``inf_net`` or
``gen_model``), evaluate ``log_q``/``log_p`` (checked to have shape ``(batch_size, n_samples)``,
with the inference network checked to have honoured ``n_samples``), hand them to the functional
twin in :mod:`stochgrad.vae.functional`, record. A subclass only chooses how latents are drawn
and which functional applies; :class:`ScoreFunctionELBO` lets an estimator of
:mod:`stochgrad.estimators` draw the latents and calls the same evaluation from its cost.
The value is the loss (a negative bound, mean over the batch); ``loss.backward()`` gives the
estimator's gradient to the parameters named in ``updates`` (``'inf'``: the inference network,
``'gen'``: the generative model) and to nothing else. Every call appends the loss to
``loss_history_`` and, where meaningful, the batch means of log p(x, z) and log q(z | x) to
``mean_log_p_`` and ``mean_log_q_``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from stochgrad.estimators import Estimator, Reinforce, gradient_only
from stochgrad.estimators.base import _check_n_samples
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


def _shapes(latents: Tensors) -> str:
    return ", ".join(str(tuple(z.shape)) for z in _as_list(latents))


def check_latents(latents: Tensors, batch_size: int, n_samples: int, source: str) -> None:
    """``ValueError`` unless every latent tensor starts with ``(batch_size, n_samples)``."""
    for z in _as_list(latents):
        if tuple(z.shape[:2]) == (batch_size, n_samples):
            continue
        if tuple(z.shape[:2]) == (n_samples, batch_size):
            hint = (
                "it puts the samples first (as torch's rsample((n,)) does); move them second, "
                "e.g. with .movedim(0, 1)"
            )
        elif z.dim() >= 2 and z.shape[0] == batch_size:
            hint = f"it did not honour n_samples={n_samples}"
        else:
            hint = "the sample dimension must be second, after the batch"
        raise ValueError(
            f"{source} returned latents of shape {tuple(z.shape)}, expected (batch_size, "
            f"n_samples, ...) = ({batch_size}, {n_samples}, ...): {hint}"
        )


def check_log_densities(
    log_q: Tensor, log_p: Tensor | None, batch_size: int, n_samples: int
) -> None:
    """``ValueError`` unless ``log_q`` (and ``log_p``) have shape ``(batch_size, n_samples)``."""
    expected = (batch_size, n_samples)
    for name, value in (("inf_net.log_prob", log_q), ("gen_model.log_prob", log_p)):
        if value is not None and tuple(value.shape) != expected:
            raise ValueError(
                f"{name} returned shape {tuple(value.shape)}, expected (batch_size, n_samples) "
                f"= {expected}: sum over latent and data dimensions, keep the batch first and "
                "the samples second"
            )


def _no_grad_if(condition: bool) -> contextlib.AbstractContextManager:
    return torch.no_grad() if condition else contextlib.nullcontext()


class VAELoss(nn.Module):
    """Base class of the loss objects: the one mechanism (draw → log q, log p → functional →
    record), the models, the sample count and the histories.

    Subclasses set ``draw`` (``"rsample"``, ``"sample"``: from ``inf_net``; ``"prior"``: from
    ``gen_model``), optionally ``frozen`` (``"inf"`` or ``"gen"``: that side runs without
    gradient) and implement :meth:`objective` with their functional twin.

    Args:
        inf_net: inference network (see :class:`~stochgrad.vae.InferenceNetworkProtocol`).
        gen_model: generative model (see :class:`~stochgrad.vae.GenerativeModelProtocol`).
        n_samples: samples of z per data point (K), >= 1.
    """

    updates: tuple[str, ...] = ("inf", "gen")
    min_samples: int = 1
    draw: str = "rsample"
    frozen: str | None = None

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int = 1,
    ) -> None:
        super().__init__()
        self.inf_net = inf_net
        self.gen_model = gen_model
        self.n_samples = _check_n_samples(n_samples, self.min_samples, type(self).__name__)
        self.loss_history_: list[float] = []
        self.mean_log_p_: list[float] = []
        self.mean_log_q_: list[float] = []

    def updated_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the models named in ``updates`` (what an optimizer for this loss needs)."""
        for name in self.updates:
            model = self.inf_net if name == "inf" else self.gen_model
            if isinstance(model, nn.Module):
                yield from model.parameters()

    def forward(self, data: Tensors) -> Tensor:
        """The loss on ``data``: one scalar, recorded in ``loss_history_``."""
        if self.draw == "prior":  # (x, z) ~ p(x, z): only q is evaluated
            count = _batch_size(data) * self.n_samples
            with torch.no_grad():
                dreamt_data, latents = self.gen_model.sample(count)
            check_latents(latents, count, 1, "gen_model.sample")
            log_q = self.inf_net(dreamt_data).log_prob(latents)
            check_log_densities(log_q, None, count, 1)
            return self._record(self.objective(log_q, None, data, latents), log_q)
        with _no_grad_if(self.frozen == "inf"):
            inf_net = self.inf_net(data)
            latents = self._draw(inf_net, _batch_size(data))
        log_q, log_p = self.evaluate(data, inf_net, latents)
        return self._record(self.objective(log_q, log_p, data, latents), log_q, log_p)

    def _draw(self, inf_net: InferenceNetworkProtocol, batch_size: int) -> Tensors:
        """``n_samples`` latents per data point from ``inf_net``, checked for their shape."""
        if self.draw == "rsample":
            latents = self._rsample(inf_net)
            check_latents(latents, batch_size, self.n_samples, "inf_net.rsample")
        else:
            latents = inf_net.sample(self.n_samples)
            check_latents(latents, batch_size, self.n_samples, "inf_net.sample")
        return latents

    def evaluate(
        self, data: Tensors, inf_net: InferenceNetworkProtocol, latents: Tensors
    ) -> tuple[Tensor, Tensor]:
        """log q(z | x) and log p(x, z) at ``latents``, both checked to be ``(batch_size, K)``."""
        batch_size, n_samples = _as_list(latents)[0].shape[:2]
        latents = self.prepare(data, inf_net, latents)
        with _no_grad_if(self.frozen == "inf"):
            log_q = self.log_q(inf_net, latents)
        with _no_grad_if(self.frozen == "gen"):
            log_p = self.gen_model(data, latents).log_prob(data, latents)
        check_log_densities(log_q, log_p, batch_size, n_samples)
        return log_q, log_p

    def prepare(
        self, data: Tensors, inf_net: InferenceNetworkProtocol, latents: Tensors
    ) -> Tensors:
        """Hook: the latents the densities are evaluated at (unchanged by default)."""
        return latents

    def log_q(self, inf_net: InferenceNetworkProtocol, latents: Tensors) -> Tensor:
        """Hook: log q(z | x) as this loss needs it (``inf_net.log_prob`` by default)."""
        return inf_net.log_prob(latents)

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        """The functional twin applied to the checked log-densities."""
        raise NotImplementedError

    def _rsample(self, inf_net: InferenceNetworkProtocol) -> Tensors:
        """``inf_net.rsample(n_samples)``, with a ``ValueError`` naming the problem when the
        latents are not reparameterizable (no sampler, or samples cut from the encoder's graph)."""
        name = type(self).__name__
        try:
            latents = inf_net.rsample(self.n_samples)
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
                f"{name} needs reparameterized latents, but inf_net.rsample returned latents "
                "that do not require grad; rsample must keep the graph to the encoder's "
                "parameters"
            )
        return latents

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
        self._terms: tuple[Tensor, Tensor] | None = None  # (log p(x | z), KL) for objective

    def _kl(self) -> Tensor | None:
        if self.analytic_kl is False:
            return None
        # Optional members, outside the protocols: missing or NotImplementedError = unavailable.
        inf_net: Any = self.inf_net
        gen_model: Any = self.gen_model
        try:
            kl = F.analytic_kl(inf_net.distribution, gen_model.prior)
            if kl is None:
                raise NotImplementedError(
                    f"torch registers no KL({type(inf_net.distribution).__name__} ‖ "
                    f"{type(gen_model.prior).__name__})"
                )
        except (NotImplementedError, AttributeError) as error:
            if self.analytic_kl is True:
                raise ValueError(f"analytic_kl=True but no closed-form KL: {error}") from error
            return None
        return kl

    def evaluate(
        self, data: Tensors, inf_net: InferenceNetworkProtocol, latents: Tensors
    ) -> tuple[Tensor, Tensor]:
        """With a closed-form KL only log p(x | z) enters the loss: it is evaluated once, and
        log q(z | x), log p(z) only for the record, without a graph."""
        kl = self._kl()
        self.uses_analytic_kl_ = kl is not None
        self._terms = None
        if kl is None:
            return super().evaluate(data, inf_net, latents)
        batch_size, n_samples = _as_list(latents)[0].shape[:2]
        gen_model: Any = self.gen_model(data, latents)
        log_likelihood = gen_model.log_likelihood(data, latents)
        with torch.no_grad():
            log_q = inf_net.log_prob(latents)
            log_prior = getattr(gen_model, "log_prior", None)
            if log_prior is None:
                log_p = gen_model.log_prob(data, latents)
            else:
                log_p = log_prior(latents) + log_likelihood
        check_log_densities(log_q, log_p, batch_size, n_samples)
        self._terms = (log_likelihood, kl)
        return log_q, log_p

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        terms, self._terms = self._terms, None
        if terms is None:
            return F.elbo_loss(log_q, cast(Tensor, log_p))
        return F.elbo_loss_analytic_kl(*terms)


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

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.iwae_loss(log_q, cast(Tensor, log_p))


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

    def prepare(
        self, data: Tensors, inf_net: InferenceNetworkProtocol, latents: Tensors
    ) -> Tensors:
        with torch.no_grad():
            log_q = inf_net.log_prob(latents)
            log_p = self.gen_model(data, latents).log_prob(data, latents)
        check_log_densities(log_q, log_p, *_as_list(latents)[0].shape[:2])
        log_w = log_p - log_q
        # IWAE sends w̃_k ∂log w_k/∂z_k back through sample k; scaling by w̃_k makes it w̃_k².
        weights = torch.softmax(log_w, dim=-1)

        def scale(z: Tensor) -> Tensor:
            w = weights.reshape(weights.shape + (1,) * (z.dim() - 2)).to(z.dtype)
            return z.detach() + w * gradient_only(z)

        scaled = [scale(z) for z in _as_list(latents)]
        return scaled if isinstance(latents, (list, tuple)) else scaled[0]

    def log_q(self, inf_net: InferenceNetworkProtocol, latents: Tensors) -> Tensor:
        try:
            return inf_net.log_prob(latents, detach_params=True)
        except TypeError as error:
            if "detach_params" not in str(error):
                raise
            raise TypeError(
                "DReG needs inf_net.log_prob(latents, detach_params=True), log q with the "
                "distribution parameters stopped (see InferenceNetworkProtocol)"
            ) from error

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.iwae_loss(log_q, cast(Tensor, log_p))


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
    draw = "sample"

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.vimco_loss(log_q, cast(Tensor, log_p))


class ScoreFunctionELBO(VAELoss):
    """Negative ELBO whose inference-network gradient comes from any estimator of
    :mod:`stochgrad.estimators`.

    The estimator is called as ``estimator(f, q, context=data)`` with the per-example cost
    f(z) = log q(z | x) − log p(x, z) (so the surrogate's value is the negative ELBO): e.g.
    REINFORCE ∇φ = E_q[(f − b) ∇log q(z | x)] with a baseline b (Williams, 1992; Mnih & Gregor,
    2014), or DisARM, REBAR, RELAX for Bernoulli latents; ∇θ = E_q[∇θ log p(x, z)] in every
    case. Estimators that only sample and score (:class:`~stochgrad.estimators.Reinforce`,
    :class:`~stochgrad.estimators.Pathwise`) see q through ``inf_net.sample``/``rsample`` and
    ``inf_net.log_prob``, so they work for any latent type; the others need
    ``inf_net.distribution`` (e.g. ``Independent(Bernoulli(logits), 1)`` with ``batch_shape ==
    (batch_size,)``). REBAR, RELAX with ``relaxed_cost`` and MuProp also evaluate ``f`` between
    the discrete points: build their Bernoulli distributions with ``validate_args=False``.
    Learned control variates are parameters of this module (``loss.parameters()``), trained by
    the same backward.

    Args:
        inf_net: inference network.
        gen_model: generative model.
        n_samples: samples per data point; ``None`` takes the estimator's ``n_samples``.
        estimator: a :class:`stochgrad.estimators.Estimator`; ``None`` is plain
            :class:`~stochgrad.estimators.Reinforce` (high variance).

    Example::

        >>> import torch
        >>> from torch.distributions import Bernoulli
        >>> from stochgrad.estimators import DisARM
        >>> from stochgrad.vae import (DistributionGenerativeModel, DistributionInferenceNetwork,
        ...                            DistributionNet, Prior)
        >>> encoder = DistributionNet(torch.nn.Linear(6, 3), Bernoulli, ("logits",))
        >>> decoder = DistributionNet(torch.nn.Linear(3, 6), Bernoulli, ("logits",))
        >>> prior = Prior(Bernoulli, logits=torch.zeros(3))
        >>> loss_fn = ScoreFunctionELBO(DistributionInferenceNetwork(encoder),
        ...                             DistributionGenerativeModel(prior, decoder),
        ...                             estimator=DisARM())
        >>> loss_fn(torch.bernoulli(torch.full((8, 6), 0.5))).backward()
    """

    draw = "sample"

    def __init__(
        self,
        inf_net: InferenceNetworkProtocol,
        gen_model: GenerativeModelProtocol,
        n_samples: int | None = None,
        estimator: Estimator | None = None,
    ) -> None:
        estimator = Reinforce() if estimator is None else estimator
        if not isinstance(estimator, Estimator):
            raise TypeError(
                "estimator must be a stochgrad.estimators.Estimator (e.g. Reinforce(baseline), "
                f"DisARM(), RELAX(control)), got {type(estimator).__name__}"
            )
        super().__init__(
            inf_net, gen_model, estimator.n_samples if n_samples is None else n_samples
        )
        self.estimator = estimator

    def forward(self, data: Tensors) -> Tensor:
        batch_size = _batch_size(data)
        inf_net = self.inf_net(data)
        q = self._distribution(inf_net, batch_size)
        sample_dims = 0 if self.n_samples == 1 else 1
        records: list[tuple[Tensor, Tensor]] = []

        def cost(z: Tensors) -> Tensor:
            # The estimator's samples come first (torch's layout); the models take them second.
            dims = sample_dims
            if isinstance(z, Tensor) and not isinstance(q, _InferenceNetworkDistribution):
                dims = z.dim() - len(q.batch_shape) - len(q.event_shape)
            latents = _samples_second(z, dims)
            log_q, log_p = self.evaluate(data, inf_net, latents)
            records.append((log_q, log_p))
            return _samples_first(log_q - log_p, dims)

        surrogate = self.estimator(cost, q, data, n_samples=self.n_samples)
        log_q, log_p = records[0]
        return self._record(surrogate.mean(), log_q, log_p)

    def _distribution(self, inf_net: InferenceNetworkProtocol, batch_size: int) -> Distribution:
        """q(z | x) as the estimator can use it: the network's sampler and density when they
        suffice, else ``inf_net.distribution``."""
        adapter = _InferenceNetworkDistribution(inf_net, batch_size, self.n_samples)
        if self.estimator.supports(adapter):
            return adapter
        name = type(self.estimator).__name__
        try:
            distribution = cast(Any, inf_net).distribution
        except (AttributeError, NotImplementedError) as error:
            raise TypeError(
                f"{name} needs q(z | x) as a torch distribution ({self.estimator.supported}), "
                f"but inf_net.distribution is not available: {error}"
            ) from error
        if tuple(distribution.batch_shape) != (batch_size,):
            raise ValueError(
                f"inf_net.distribution must have batch_shape (batch_size,) = ({batch_size},), got "
                f"{tuple(distribution.batch_shape)}; wrap the latent dimensions in Independent"
            )
        return distribution


def _samples_second(z: Tensors, sample_dims: int) -> Tensors:
    """Latents ``(n, B, ...)`` (or ``(B, ...)``) as the models take them, ``(B, n, ...)``."""
    values = [t.movedim(0, 1) if sample_dims else t.unsqueeze(1) for t in _as_list(z)]
    return values if isinstance(z, (list, tuple)) else values[0]


def _samples_first(value: Tensor, sample_dims: int) -> Tensor:
    """``(B, n)`` back to the estimator's ``(n, B)`` (or ``(B,)`` without a sample dimension)."""
    return value.movedim(1, 0) if sample_dims else value.squeeze(1)


class _InferenceNetworkDistribution(Distribution):
    """q(z | x) of an inference network as a torch distribution with ``batch_shape (B,)``.

    ``sample``/``rsample``/``log_prob`` are the network's, with the samples moved first as torch
    has them; only the sample shapes ``()`` and ``(n_samples,)`` exist.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, inf_net: InferenceNetworkProtocol, batch_size: int, n_samples: int) -> None:
        self.inf_net = inf_net
        self.n_samples = n_samples
        super().__init__(torch.Size((batch_size,)), validate_args=False)

    def _draw(
        self, sampler: Callable[[int], Tensors], sample_shape: torch.Size, source: str
    ) -> Tensors:
        sample_shape = torch.Size(sample_shape)
        n_samples = sample_shape.numel()
        if len(sample_shape) > 1 or n_samples != self.n_samples:
            raise ValueError(
                f"this q(z | x) draws sample shapes () or ({self.n_samples},), got "
                f"{tuple(sample_shape)}"
            )
        latents = sampler(n_samples)
        check_latents(latents, self.batch_shape[0], n_samples, source)
        return _samples_first_latents(latents, len(sample_shape))

    # Latents may be a list of tensors (one per group): wider than Distribution.sample's type.
    def sample(  # type: ignore[override]
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
    ) -> Tensors:
        with torch.no_grad():
            return self._draw(self.inf_net.sample, sample_shape, "inf_net.sample")

    def rsample(  # type: ignore[override]
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
    ) -> Tensors:
        return self._draw(self.inf_net.rsample, sample_shape, "inf_net.rsample")

    def log_prob(self, value: Tensors) -> Tensor:
        dims = 0 if self.n_samples == 1 else 1
        return _samples_first(self.inf_net.log_prob(_samples_second(value, dims)), dims)


def _samples_first_latents(latents: Tensors, sample_dims: int) -> Tensors:
    values = [z.movedim(1, 0) if sample_dims else z.squeeze(1) for z in _as_list(latents)]
    return values if isinstance(latents, (list, tuple)) else values[0]


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
    draw = "sample"
    frozen = "inf"

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.pwake_loss(log_q, cast(Tensor, log_p))


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
    draw = "sample"
    frozen = "gen"

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.qwake_loss(log_q, cast(Tensor, log_p))


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
    draw = "prior"

    def objective(
        self, log_q: Tensor, log_p: Tensor | None, data: Tensors, latents: Tensors
    ) -> Tensor:
        return F.qsleep_loss(log_q)
