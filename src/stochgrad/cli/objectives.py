"""Training objectives: one surrogate loss per gradient estimator.

Every objective maps a batch of binary images to ``(surrogate, bound)``: ``surrogate`` is the
scalar to differentiate (its gradient is the estimator), ``bound`` the per-example value of the
objective being maximised (the ELBO, or the K-sample bound for VIMCO and RWS), for logging.

- pathwise (``reparam``, ``implicit``, ``gumbel``, ``st``, ``igr``): ELBO with z = rsample(),
  closed-form KL where torch has it; for ``gumbel`` and ``st`` the decoder sees the relaxed sample
  and the KL is the one of the discrete distributions (Jang et al., 2017); ``igr`` (Potapczynski
  et al., 2020) is the ELBO of the relaxed model itself: q(z|x) and p(z) are InvertibleGaussian
  laws on the simplex and their KL is the closed form registered in :mod:`stochgrad.kl`.
- score function (``reinforce``: moving-average baseline, Williams 1992; ``nvil``: running
  mean, variance normalisation and an input-dependent baseline network, Mnih & Gregor 2014;
  ``disarm``: antithetic pairs, Dong et al. 2020), all from :mod:`stochgrad.estimators`.
- ``vimco`` (Mnih & Rezende, 2016) and ``rws`` (Bornschein & Bengio, 2015) with K samples.

The estimators average their running statistics over all processes under DDP, so every rank
holds the same baseline state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch import distributions as td

from stochgrad.cli import _library
from stochgrad.cli.models import VAE, kl_term

__all__ = ["ESTIMATOR_KINDS", "make_objective"]

PATHWISE = ("reparam", "implicit", "gumbel", "st", "igr")
ESTIMATOR_KINDS = {
    **dict.fromkeys(PATHWISE, "pathwise"),
    "reinforce": "score",
    "nvil": "score",
    "vimco": "multi",
    "rws": "multi",
    "rebar": "library",
    "relax": "library",
    "disarm": "library",
}
_LIBRARY_NAMES = {"disarm": "disarm", "rebar": "REBAR", "relax": "RELAX"}


def estimator_available(name: str) -> bool:
    """Whether the command line can train with estimator ``name``."""
    if name == "igr":
        return _library.relaxed_class("invertible_gaussian") is not None
    if name in _LIBRARY_NAMES:
        return _library.available("stochgrad.estimators", _LIBRARY_NAMES[name])
    return True


class PathwiseELBO(nn.Module):
    """Single-sample ELBO differentiated through the sample (explicit, implicit or relaxed)."""

    def __init__(self, estimator: str, temperature: float = 0.5):
        super().__init__()
        self.estimator = estimator
        self.temperature = temperature
        self._checked_temperature = False

    def _sample(self, vae: VAE, q: td.Distribution) -> Tensor:
        if not vae.family.discrete or self.estimator == "igr":
            return q.rsample()
        logits = q.base_dist.logits
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        relaxation = "binary_concrete" if vae.family.name == "bernoulli" else "gumbel_softmax"
        soft = _library.relaxed_class(relaxation)(temperature, logits=logits).rsample()
        if self.estimator == "gumbel":
            return soft
        # Straight-through: the forward pass sees the discrete sample, the gradient the soft one.
        if vae.family.name == "bernoulli":
            hard = (soft > 0.5).to(soft.dtype)
        else:
            hard = nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        return hard + (soft - soft.detach())

    def _check_temperature(self, vae: VAE) -> None:
        # IGR's temperature belongs to the model's q(z|x) and p(z): a silent mismatch would train
        # one model and report another. Checked once, to keep device syncs out of the loop.
        if self._checked_temperature:
            return
        built_at = vae.temperature.item()
        if built_at != vae.temperature.new_tensor(self.temperature).item():
            from stochgrad.cli.train import UsageError  # train imports this module

            raise UsageError(
                f"--temperature {self.temperature} with --estimator igr needs a model built at "
                f"that temperature, got one built at {built_at}"
            )
        self._checked_temperature = True

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.estimator == "igr":
            self._check_temperature(vae)
        q = vae.posterior(x)
        z = self._sample(vae, q)
        kl = kl_term(q, vae.prior(x), z)
        elbo = vae.log_likelihood(x, z) - kl
        return -elbo.mean(), elbo.detach()


class ScoreFunctionELBO(nn.Module):
    """REINFORCE / NVIL on log p(x|z) plus the closed-form gradient of -KL(q(z|x) || p(z)).

    The control variates are :mod:`stochgrad.estimators`' (``MovingAverageBaseline`` for
    ``reinforce``, ``NVILBaseline`` with a 784-100-1 baseline network for ``nvil``); they keep
    their running statistics identical across DDP ranks.
    """

    def __init__(self, estimator: str, num_pixels: int):
        super().__init__()
        from stochgrad import estimators

        if estimator == "nvil":
            net = nn.Sequential(nn.Linear(num_pixels, 100), nn.Tanh(), nn.Linear(100, 1))
            self.estimator = estimators.NVILBaseline(net)
        else:
            self.estimator = estimators.MovingAverageBaseline()

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        q = vae.posterior(x)
        z = q.sample()
        cost = -vae.log_likelihood(x, z)
        kl = kl_term(q, vae.prior(x), z)
        surrogate = self.estimator(cost, q.log_prob(z), context=x) + kl
        return surrogate.mean(), -(cost + kl).detach()


class DisARMELBO(nn.Module):
    """DisARM (Dong, Mnih & Tucker, 2020) on log p(x|b) plus the closed-form gradient of -KL."""

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        from stochgrad.estimators import disarm

        q = vae.posterior(x)
        logits = q.base_dist.logits
        surrogate = disarm(lambda b: -vae.log_likelihood(x, b), logits)
        kl = kl_term(q, vae.prior(x), q.sample())
        return (surrogate + kl).mean(), -(surrogate + kl).detach()


class RelaxELBO(nn.Module):
    """REBAR (Tucker et al., 2017) or RELAX (Grathwohl et al., 2018) on log p(x|b), exact -KL.

    These estimators tune their control variate by minimising the variance of the encoder
    gradient, so they take over the backward pass: :meth:`backward` backpropagates the loss into
    the decoder, then lets the estimator write its gradient into the encoder and step its own
    parameters.
    """

    def __init__(self, estimator: str, dim: int):
        super().__init__()
        from stochgrad import estimators

        if estimator == "rebar":
            self.estimator = estimators.REBAR()
        else:
            control = nn.Sequential(nn.Linear(dim, 100), nn.Tanh(), nn.Linear(100, 1))
            self.estimator = estimators.RELAX(control)

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        q = vae.posterior(x)
        surrogate = self.estimator(lambda b: -vae.log_likelihood(x, b), q.base_dist.logits)
        kl = kl_term(q, vae.prior(x), q.sample())
        return (surrogate + kl).mean(), -(surrogate + kl).detach()

    def backward(self, loss: Tensor, vae: VAE) -> None:
        # Decoder first: the estimator's step updates its own parameters in place.
        loss.backward(inputs=list(vae.decoder.parameters()), retain_graph=True)
        self.estimator.step(loss, list(vae.encoder.parameters()))


class MultiSampleObjective(nn.Module):
    """VIMCO or reweighted wake-sleep with ``num_samples`` samples per example.

    The losses are :mod:`stochgrad.vae.functional`'s ``vimco_loss`` and
    ``pwake_loss + qwake_loss``, on log-weights of shape (batch, K).
    """

    def __init__(self, estimator: str, num_samples: int):
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"{estimator} needs --samples >= 2, got {num_samples}")
        self.estimator = estimator
        self.num_samples = num_samples

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        from stochgrad.vae import functional

        q = vae.posterior(x)
        z = q.sample((self.num_samples,))
        log_q = q.log_prob(z).T
        log_p = (vae.log_likelihood(x, z) + vae.prior(x).log_prob(z)).T
        if self.estimator == "rws":
            loss = functional.pwake_loss(log_q, log_p) + functional.qwake_loss(log_q, log_p)
        else:
            loss = functional.vimco_loss(log_q, log_p)
        return loss, functional.iwae_bound(log_q, log_p).detach()


def make_objective(
    estimator: str, num_pixels: int, samples: int, temperature: float, dim: int = 200
) -> nn.Module:
    """The objective module of ``estimator`` (baseline networks live inside it).

    Objectives with a ``backward(loss, vae)`` method run their own backward pass.
    """
    kind = ESTIMATOR_KINDS[estimator]
    if kind == "pathwise":
        return PathwiseELBO(estimator, temperature)
    if kind == "score":
        return ScoreFunctionELBO(estimator, num_pixels)
    if kind == "multi":
        return MultiSampleObjective(estimator, samples)
    if estimator == "disarm":
        return DisARMELBO()
    if estimator in ("rebar", "relax"):
        return RelaxELBO(estimator, dim)
    raise ValueError(f"estimator {estimator!r} is not wired into the command line yet")
