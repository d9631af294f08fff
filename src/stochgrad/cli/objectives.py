"""Training objectives and test metrics, all :mod:`stochgrad.vae` loss objects and functionals.

Every ``--estimator`` name maps to one loss object of :mod:`stochgrad.vae`, with an estimator of
:mod:`stochgrad.estimators` where the loss takes one:

- :class:`~stochgrad.vae.ELBO` (pathwise, closed-form KL where torch has it): ``reparam`` and
  ``implicit``; ``igr``, the ELBO of the relaxed model itself (Potapczynski et al., 2020);
  ``gumbel``, the concrete / Gumbel-softmax relaxation the decoder is trained on (Maddison et
  al., 2017; Jang et al., 2017; its test metrics are those of the discrete model);
- :class:`~stochgrad.vae.ScoreFunctionELBO` with an estimator: ``reinforce`` (moving-average
  baseline, Williams 1992), ``nvil`` (Mnih & Gregor, 2014), ``loo`` (leave-one-out over
  ``--samples``, Kool et al., 2019), ``muprop`` (Gu et al., 2016), ``arm`` (Yin & Zhou, 2019),
  ``disarm`` (Dong et al., 2020), ``rebar`` (Tucker et al., 2017), ``relax`` (Grathwohl et al.,
  2018), ``st`` (straight-through Gumbel-softmax, Jang et al., 2017) and ``plain_st``
  (straight-through, Bengio et al., 2013);
- ``vimco`` (Mnih & Rezende, 2016, :class:`~stochgrad.vae.VIMCO`) and ``rws`` (Bornschein &
  Bengio, 2015, :class:`~stochgrad.vae.PWake` + :class:`~stochgrad.vae.QWake`) with K samples.

The test metrics are the library's bounds: the ELBO (closed-form KL where torch has it) and the
K-sample importance-weighted bound :func:`stochgrad.vae.functional.iwae_bound`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from stochgrad import estimators, vae
from stochgrad.cli.models import VAE
from stochgrad.vae import functional

__all__ = [
    "ESTIMATORS",
    "Objective",
    "iwae_log_likelihood",
    "make_objective",
    "negative_elbo",
    "normalize_learning_signal",
]


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
        return -cast(vae.VAELoss, self.losses[0]).loss_history_[-1]


def _net(inputs: int) -> nn.Module:
    """The 100-unit tanh network of NVIL's baseline and RELAX's control variate."""
    return nn.Sequential(nn.Linear(inputs, 100), nn.Tanh(), nn.Linear(100, 1))


Losses = Callable[[VAE, int, int, float], list[vae.VAELoss]]


def _elbo(model: VAE, pixels: int, samples: int, temperature: float) -> list[vae.VAELoss]:
    if model.estimator == "gumbel":
        return [vae.ELBO(model.relaxed_inf_net, model.gen_model)]
    return [vae.ELBO(model.inf_net, model.gen_model)]


def _score(estimator: Callable[[VAE, int, int, float], estimators.Estimator]) -> Losses:
    def build(model: VAE, pixels: int, samples: int, temperature: float) -> list[vae.VAELoss]:
        chosen = estimator(model, pixels, samples, temperature)
        return [vae.ScoreFunctionELBO(model.inf_net, model.gen_model, estimator=chosen)]

    return build


E = estimators
ESTIMATORS: dict[str, Losses] = {
    "reparam": _elbo,
    "implicit": _elbo,
    "igr": _elbo,
    "gumbel": _elbo,
    "reinforce": _score(lambda m, p, k, t: E.Reinforce(E.MovingAverageBaseline())),
    "nvil": _score(lambda m, p, k, t: E.Reinforce(E.NVILBaseline(_net(p)))),
    "loo": _score(lambda m, p, k, t: E.Reinforce(E.LeaveOneOutBaseline(), n_samples=k)),
    "muprop": _score(lambda m, p, k, t: E.MuProp(E.MovingAverageBaseline())),
    "arm": _score(lambda m, p, k, t: E.ARM()),
    "disarm": _score(lambda m, p, k, t: E.DisARM()),
    "rebar": _score(lambda m, p, k, t: E.REBAR()),
    "relax": _score(lambda m, p, k, t: E.RELAX(_net(m.dim))),
    "st": _score(lambda m, p, k, t: E.GumbelStraightThrough(t)),
    "plain_st": _score(lambda m, p, k, t: E.StraightThrough()),
    "vimco": lambda m, p, k, t: [vae.VIMCO(m.inf_net, m.gen_model, n_samples=k)],
    "rws": lambda m, p, k, t: [
        vae.PWake(m.inf_net, m.gen_model, n_samples=k),
        vae.QWake(m.inf_net, m.gen_model, n_samples=k),
    ],
}
"""``--estimator`` name -> ``(model, pixels, samples, temperature) -> [loss objects]``."""

MULTI_SAMPLE = ("vimco", "rws", "loo")


def make_objective(
    estimator: str, model: VAE, num_pixels: int, samples: int, temperature: float
) -> Objective:
    """The objective of ``estimator`` on ``model`` (learned control variates live inside it)."""
    return Objective(*ESTIMATORS[estimator](model, num_pixels, samples, temperature))


@torch.inference_mode()
def negative_elbo(model: VAE, images: Tensor, batch_size: int = 500) -> float:
    """Mean over ``images`` of −ELBO with one z ~ q(z|x) per image (closed-form KL if known)."""
    total = 0.0
    for batch in images.split(batch_size):
        inf_net = model.inf_net(batch)
        latents = inf_net.sample(1)
        gen_model = model.gen_model(batch, latents)
        kl = functional.analytic_kl(inf_net.distribution, model.prior())
        if kl is None:
            log_p = gen_model.log_prob(batch, latents)
            loss = functional.elbo_loss(inf_net.log_prob(latents), log_p, reduction="sum")
        else:
            log_likelihood = gen_model.log_likelihood(batch, latents)
            loss = functional.elbo_loss_analytic_kl(log_likelihood, kl, reduction="sum")
        total += loss.item()
    return total / len(images)


@torch.inference_mode()
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


def normalize_learning_signal(objective: Objective) -> None:
    """Give the score-function estimators of ``objective`` (``reinforce``, ``muprop``) NVIL's
    variance normalisation: their moving-average baseline becomes an
    :class:`~stochgrad.estimators.NVILBaseline` without a network, so the centred signal is also
    divided by max(1, its running standard deviation) (Mnih & Gregor, 2014). Jang et al. (2017)
    found this "necessary to obtain competitive performance for SF, DARN, and MuProp"."""
    for module in objective.modules():
        if isinstance(module, (estimators.Reinforce, estimators.MuProp)) and isinstance(
            module.baseline, estimators.MovingAverageBaseline
        ):
            module.baseline = estimators.NVILBaseline(None, normalize=True)
