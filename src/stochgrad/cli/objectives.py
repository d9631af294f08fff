"""Training objectives and test metrics, all :mod:`stochgrad.vae` loss objects and functionals.

Every ``--estimator`` name maps to one loss object of :mod:`stochgrad.vae` (with an estimator of
:mod:`stochgrad.estimators` where the loss takes one):

- pathwise: ``reparam`` and ``implicit`` (:class:`~stochgrad.vae.ELBO`, closed-form KL where
  torch has it), ``igr`` (the ELBO of the relaxed model itself, Potapczynski et al., 2020);
- ``vimco`` (Mnih & Rezende, 2016, :class:`~stochgrad.vae.VIMCO`) and ``rws`` (Bornschein &
  Bengio, 2015, :class:`~stochgrad.vae.PWake` + :class:`~stochgrad.vae.QWake`) with K samples;
- score function (:class:`~stochgrad.vae.ScoreFunctionELBO`): ``reinforce`` (moving-average
  baseline, Williams 1992), ``nvil`` (Mnih & Gregor, 2014).

The test metrics are the library's bounds: the ELBO (closed-form KL where torch has it) and the
K-sample importance-weighted bound :func:`stochgrad.vae.functional.iwae_bound`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from stochgrad import estimators, vae
from stochgrad.cli.models import VAE
from stochgrad.vae import functional

__all__ = ["ESTIMATORS", "Objective", "make_objective", "iwae_log_likelihood", "negative_elbo"]


class Objective(nn.Module):
    """The sum of one or more loss objects; :attr:`bound` is the first one's last value, negated
    (the ELBO or the K-sample bound of the batch)."""

    def __init__(self, *losses: vae.VAELoss):
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, images: Tensor) -> Tensor:
        return sum((loss(images) for loss in self.losses), torch.zeros(()).to(images))

    @property
    def bound(self) -> float:
        return -self.losses[0].loss_history_[-1]


def _baseline_net(num_pixels: int) -> nn.Module:
    return nn.Sequential(nn.Linear(num_pixels, 100), nn.Tanh(), nn.Linear(100, 1))


Builder = Callable[[VAE, int, int, float], Objective]


def _pathwise(model: VAE, pixels: int, samples: int, temperature: float) -> Objective:
    return Objective(vae.ELBO(model.inf_net, model.gen_model))


def _score(
    estimator: Callable[[int], estimators.ScoreFunctionEstimator],
) -> Builder:
    def build(model: VAE, pixels: int, samples: int, temperature: float) -> Objective:
        return Objective(
            vae.ScoreFunctionELBO(model.inf_net, model.gen_model, estimator=estimator(pixels))
        )

    return build


def _vimco(model: VAE, pixels: int, samples: int, temperature: float) -> Objective:
    return Objective(vae.VIMCO(model.inf_net, model.gen_model, n_samples=samples))


def _rws(model: VAE, pixels: int, samples: int, temperature: float) -> Objective:
    return Objective(
        vae.PWake(model.inf_net, model.gen_model, n_samples=samples),
        vae.QWake(model.inf_net, model.gen_model, n_samples=samples),
    )


ESTIMATORS: dict[str, Builder] = {
    "reparam": _pathwise,
    "implicit": _pathwise,
    "igr": _pathwise,
    "reinforce": _score(lambda pixels: estimators.MovingAverageBaseline()),
    "nvil": _score(lambda pixels: estimators.NVILBaseline(_baseline_net(pixels))),
    "vimco": _vimco,
    "rws": _rws,
}
"""``--estimator`` name -> builder ``(model, pixels, samples, temperature) -> Objective``."""

MULTI_SAMPLE = ("vimco", "rws")


def make_objective(
    estimator: str, model: VAE, num_pixels: int, samples: int, temperature: float
) -> Objective:
    """The objective of ``estimator`` on ``model`` (learned control variates live inside it)."""
    return ESTIMATORS[estimator](model, num_pixels, samples, temperature)


def _kl(model: VAE, inf_net: vae.DistributionInferenceNetwork) -> Tensor | None:
    q = inf_net.distribution
    try:
        return kl_divergence(q, model.prior().expand(q.batch_shape))
    except NotImplementedError:
        return None


@torch.no_grad()
def negative_elbo(model: VAE, images: Tensor, batch_size: int = 500) -> float:
    """Mean over ``images`` of −ELBO with one z ~ q(z|x) per image (closed-form KL if known)."""
    total = 0.0
    for batch in images.split(batch_size):
        inf_net = model.inf_net(batch)
        latents = inf_net.sample(1)
        gen_model = model.gen_model(batch, latents)
        kl = _kl(model, inf_net)
        if kl is None:
            log_p = gen_model.log_prob(batch, latents)
            loss = functional.elbo_loss(inf_net.log_prob(latents), log_p, reduction="sum")
        else:
            log_likelihood = gen_model.log_likelihood(batch, latents)
            loss = functional.elbo_loss_analytic_kl(log_likelihood, kl, reduction="sum")
        total += loss.item()
    return total / len(images)


@torch.no_grad()
def iwae_log_likelihood(
    model: VAE, images: Tensor, num_samples: int = 1000, max_rows: int = 50_000
) -> float:
    """Mean over ``images`` of the ``num_samples``-sample importance-weighted bound on log p(x)
    (Burda et al., 2016), :func:`stochgrad.vae.functional.iwae_bound`."""
    total = 0.0
    for batch in images.split(max(1, max_rows // num_samples)):
        inf_net = model.inf_net(batch)
        latents = inf_net.sample(num_samples)
        log_p = model.gen_model(batch, latents).log_prob(batch, latents)
        total += functional.iwae_bound(inf_net.log_prob(latents), log_p).sum().item()
    return total / len(images)
