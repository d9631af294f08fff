"""Training objectives: one surrogate loss per gradient estimator.

Every objective maps a batch of binary images to ``(surrogate, bound)``: ``surrogate`` is the
scalar to differentiate (its gradient is the estimator), ``bound`` the per-example value of the
objective being maximised (the ELBO, or the K-sample bound for VIMCO and RWS), for logging.

- pathwise (``reparam``, ``implicit``, ``gumbel``, ``st``, ``igr``): ELBO with z = rsample(),
  closed-form KL where torch has it; for relaxations the decoder sees the relaxed sample and the
  KL is the one of the discrete distributions (Jang et al., 2017).
- score function (``reinforce``: running-mean baseline, Williams 1992; ``nvil``: running mean,
  variance normalisation and an input-dependent baseline network, Mnih & Gregor 2014).
- ``vimco`` (Mnih & Rezende, 2016) and ``rws`` (Bornschein & Bengio, 2015) with K samples.

Running statistics are averaged over all processes under DDP, so every rank holds the same
baseline state.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
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
_LIBRARY_ESTIMATORS = {"rebar": "REBAR", "relax": "RELAX", "disarm": "DisARM", "igr": "IGR"}


def estimator_available(name: str) -> bool:
    """Whether this build can run estimator ``name`` (library-only ones need their module)."""
    if name == "igr":
        return _library.relaxed_class("igr") is not None
    if ESTIMATOR_KINDS[name] == "library":
        return _library.available("stochgrad.estimators", _LIBRARY_ESTIMATORS[name])
    return True


def _all_mean(value: Tensor) -> Tensor:
    """Mean of ``value`` over all DDP processes (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def _log_mean_exp(log_weights: Tensor, dim: int = 0) -> Tensor:
    return torch.logsumexp(log_weights, dim) - math.log(log_weights.shape[dim])


class PathwiseELBO(nn.Module):
    """Single-sample ELBO differentiated through the sample (explicit, implicit or relaxed)."""

    def __init__(self, estimator: str, temperature: float = 0.5):
        super().__init__()
        self.estimator = estimator
        self.temperature = temperature

    def _sample(self, vae: VAE, q: td.Distribution) -> Tensor:
        if not vae.family.discrete:
            return q.rsample()
        logits = q.base_dist.logits
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        if self.estimator == "igr":
            return _library.relaxed_class("igr")(temperature, logits=logits).rsample()
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

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        q = vae.posterior(x)
        z = self._sample(vae, q)
        kl = kl_term(q, vae.prior(x), z)
        elbo = vae.log_likelihood(x, z) - kl
        return -elbo.mean(), elbo.detach()


class ScoreFunctionELBO(nn.Module):
    """REINFORCE / NVIL: E[(log p(x|z) - b) grad log q(z|x)] + closed-form grad of -KL."""

    def __init__(self, num_pixels: int, input_baseline: bool, decay: float = 0.9):
        super().__init__()
        self.decay = decay
        self.normalise = input_baseline
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.baseline = (
            nn.Sequential(nn.Linear(num_pixels, 100), nn.Tanh(), nn.Linear(100, 1))
            if input_baseline
            else None
        )

    @torch.no_grad()
    def _update(self, signal: Tensor) -> None:
        batch_mean = _all_mean(signal.mean())
        batch_var = _all_mean(((signal - batch_mean) ** 2).mean())
        if not self.initialised:
            self.running_mean.copy_(batch_mean)
            self.running_var.copy_(batch_var)
            self.initialised.fill_(True)
        else:
            self.running_mean.lerp_(batch_mean, 1 - self.decay)
            self.running_var.lerp_(batch_var, 1 - self.decay)

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        q = vae.posterior(x)
        z = q.sample()
        log_likelihood = vae.log_likelihood(x, z)
        kl = kl_term(q, vae.prior(x), z)
        signal = log_likelihood.detach()
        self._update(signal)
        centred = signal - self.running_mean
        baseline_loss = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.baseline is not None:
            predicted = self.baseline(x).squeeze(-1)
            baseline_loss = ((centred - predicted) ** 2).mean()
            centred = centred - predicted.detach()
            centred = centred / self.running_var.sqrt().clamp(min=1.0)
        surrogate = log_likelihood + centred * q.log_prob(z) - kl
        elbo = (log_likelihood - kl).detach()
        return -surrogate.mean() + baseline_loss, elbo


class MultiSampleObjective(nn.Module):
    """VIMCO or reweighted wake-sleep with ``num_samples`` samples per example."""

    def __init__(self, estimator: str, num_samples: int):
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"{estimator} needs --samples >= 2, got {num_samples}")
        self.estimator = estimator
        self.num_samples = num_samples

    def forward(self, vae: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
        q = vae.posterior(x)
        z = q.sample((self.num_samples,))
        log_q = q.log_prob(z)
        log_joint = vae.log_likelihood(x, z) + vae.prior(x).log_prob(z)
        if self.estimator == "rws":
            bound = _log_mean_exp(log_joint - log_q.detach())
            weights = torch.softmax((log_joint - log_q).detach(), dim=0)
            wake_q = (weights * log_q).sum(0)
            return -(bound + wake_q).mean(), bound.detach()
        log_weights = log_joint - log_q
        bound = _log_mean_exp(log_weights)
        signals = (bound.unsqueeze(0) - self._leave_one_out(log_weights.detach())).detach()
        surrogate = bound + (signals * log_q).sum(0)
        return -surrogate.mean(), bound.detach()

    @staticmethod
    def _leave_one_out(log_weights: Tensor) -> Tensor:
        """VIMCO's L_{-k}: log_weights[k] replaced by the mean of the others, then log-mean-exp."""
        k = log_weights.shape[0]
        others_mean = (log_weights.sum(0, keepdim=True) - log_weights) / (k - 1)
        expanded = log_weights.unsqueeze(0).expand(k, *log_weights.shape).clone()
        index = torch.arange(k, device=log_weights.device)
        expanded[index, index] = others_mean
        return _log_mean_exp(expanded, dim=1)


def make_objective(estimator: str, num_pixels: int, samples: int, temperature: float) -> nn.Module:
    """The objective module of ``estimator`` (baseline networks live inside it)."""
    kind = ESTIMATOR_KINDS[estimator]
    if kind == "pathwise":
        return PathwiseELBO(estimator, temperature)
    if kind == "score":
        return ScoreFunctionELBO(num_pixels, input_baseline=estimator == "nvil")
    if kind == "multi":
        return MultiSampleObjective(estimator, samples)
    raise ValueError(f"estimator {estimator!r} needs stochgrad.estimators, not available yet")
