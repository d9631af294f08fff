"""The VAEs trained by ``stochgrad train``: latent families and the MLP encoder/decoder.

Architecture and priors follow the VAE experiments of Figurnov, Mohamed & Mnih (2018),
"Implicit Reparameterization Gradients": fully connected encoder ``pixels-256-128-params`` and
decoder ``features-128-256-pixels`` (ReLU), Bernoulli likelihood on binarized pixels, priors
N(0, I), Gamma(0.3, 0.3), Uniform(0, 1) = Beta(1, 1) and Uniform(-pi, pi) for von Mises. The
discrete latents follow the discrete-VAE literature (Maddison et al., 2017; Jang et al., 2017;
Tucker et al., 2017): 200 Bernoulli units or 20 categorical units with 10 classes each, with
uniform priors.

With ``--estimator igr`` (Potapczynski, Loaiza-Ganem & Cunningham, 2020) a discrete unit of C
classes is an :class:`~stochgrad.relaxed.InvertibleGaussian` over C - 1 Gaussians: the encoder
gives their loc and scale, the prior is the same law with loc 0 and scale 1 at the same
temperature, and the decoder reads the relaxed one-hot (its first coordinate for Bernoulli units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch import distributions as td

from stochgrad.cli import _library

__all__ = ["FAMILIES", "LatentFamily", "VAE", "kl_term"]

_MIN_POSITIVE = 1e-3
CATEGORIES = 10
_MIXTURE_COMPONENTS = 3


def _positive(raw: Tensor) -> Tensor:
    return F.softplus(raw) + _MIN_POSITIVE


@dataclass(frozen=True)
class LatentFamily:
    """A latent family: how encoder outputs become q(z|x), its prior and decoder features."""

    name: str
    discrete: bool
    estimators: tuple[str, ...]
    default_dim: int
    params_per_unit: int

    @property
    def categories(self) -> int:
        """Classes per discrete unit (a Bernoulli unit has two)."""
        return CATEGORIES if self.name == "categorical" else 2

    def param_size(self, dim: int, estimator: str | None = None) -> int:
        if estimator == "igr":
            return dim * 2 * (self.categories - 1)  # loc and scale of C - 1 Gaussians per unit
        return dim * self.params_per_unit

    def feature_size(self, dim: int) -> int:
        if self.name == "vonmises":
            return 2 * dim
        if self.name == "categorical":
            return dim * CATEGORIES
        return dim

    def features(self, z: Tensor, estimator: str | None = None) -> Tensor:
        """Decoder input for samples ``z`` (angles become (cos, sin); one-hots are flattened)."""
        if self.name == "vonmises":
            return torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
        if estimator == "igr" and self.name == "bernoulli":
            # Two-class relaxed one-hot: the first class is b = 1 (y > 0 as the temperature -> 0).
            return z[..., 0]
        if self.name == "categorical":
            return z.flatten(-2)
        return z

    def available(self) -> bool:
        """Whether this build can sample the family with a gradient (library or stand-in)."""
        return self.discrete or _library.implicit_class(self.name) is not None

    def posterior(
        self, raw: Tensor, dim: int, estimator: str, temperature: Tensor | None = None
    ) -> td.Distribution:
        """q(z|x) with one event per example, built from the encoder output ``raw``.

        ``temperature`` is needed by (and only by) ``estimator="igr"``.
        """
        if estimator == "igr":
            loc, scale = raw.unflatten(-1, (dim, 2 * (self.categories - 1))).chunk(2, dim=-1)
            return _invertible_gaussian(loc, _positive(scale), temperature)
        if self.name == "bernoulli":
            return td.Independent(td.Bernoulli(logits=raw), 1)
        if self.name == "categorical":
            logits = raw.unflatten(-1, (dim, CATEGORIES))
            return td.Independent(td.OneHotCategorical(logits=logits), 1)
        if self.name == "normal":
            loc, scale = raw.chunk(2, dim=-1)
            # "reparam" is the explicit z = loc + scale * eps, i.e. torch's own Normal.
            cls = td.Normal if estimator == "reparam" else _library.implicit_class("normal")
            return td.Independent(cls(loc, _positive(scale)), 1)
        if self.name == "mixture":
            return _mixture_posterior(raw, dim)
        cls = _library.implicit_class(self.name)
        if self.name == "dirichlet":
            return cls(_positive(raw))
        first, second = raw.chunk(2, dim=-1)
        if self.name == "vonmises":
            return td.Independent(cls(math.pi * torch.tanh(first), _positive(second)), 1)
        return td.Independent(cls(_positive(first), _positive(second)), 1)

    def prior(
        self,
        dim: int,
        like: Tensor,
        estimator: str | None = None,
        temperature: Tensor | None = None,
    ) -> td.Distribution:
        """p(z) on the device and dtype of ``like`` (``temperature``: for ``igr`` only)."""

        def full(value: float, *shape: int) -> Tensor:
            return torch.full(shape, value, dtype=like.dtype, device=like.device)

        if estimator == "igr":
            free = self.categories - 1
            return _invertible_gaussian(full(0.0, dim, free), full(1.0, dim, free), temperature)

        if self.name == "bernoulli":
            return td.Independent(td.Bernoulli(probs=full(0.5, dim)), 1)
        if self.name == "categorical":
            return td.Independent(td.OneHotCategorical(logits=full(0.0, dim, CATEGORIES)), 1)
        if self.name in ("normal", "mixture"):
            return td.Independent(td.Normal(full(0.0, dim), full(1.0, dim)), 1)
        if self.name == "gamma":
            return td.Independent(td.Gamma(full(0.3, dim), full(0.3, dim)), 1)
        if self.name == "beta":
            return td.Independent(td.Beta(full(1.0, dim), full(1.0, dim)), 1)
        if self.name == "dirichlet":
            return td.Dirichlet(full(1.0, dim))
        if self.name == "vonmises":
            return td.Independent(td.Uniform(full(-math.pi, dim), full(math.pi, dim)), 1)
        raise ValueError(f"unknown latent family {self.name!r}")

    def embedding(self, q: td.Distribution) -> Tensor:
        """A point per example summarising q(z|x), for the 2-D latent plots."""
        base = q.base_dist if isinstance(q, td.Independent) else q
        igr = _library.relaxed_class("invertible_gaussian")
        if igr is not None and isinstance(base, igr):
            return base.loc.flatten(1)
        if self.name == "vonmises":
            return torch.cat([torch.cos(base.loc), torch.sin(base.loc)], dim=-1)
        if self.discrete:
            return base.probs.flatten(1)
        return q.mean.flatten(1)


def _invertible_gaussian(loc: Tensor, scale: Tensor, temperature: Tensor | None):
    if temperature is None:
        raise ValueError("estimator 'igr' needs a temperature, got None")
    cls = _library.relaxed_class("invertible_gaussian")
    return td.Independent(cls(loc, scale, temperature.to(loc)), 1)


def _mixture_posterior(raw: Tensor, dim: int) -> td.Distribution:
    cls = _library.implicit_class("mixture")
    logits, loc, scale = raw.unflatten(-1, (dim, 3 * _MIXTURE_COMPONENTS)).chunk(3, dim=-1)
    components = _library.implicit_class("normal")(loc, _positive(scale))
    return td.Independent(cls(td.Categorical(logits=logits), components), 1)


_CONTINUOUS_ESTIMATORS = ("implicit",)
_DISCRETE_ESTIMATORS = (
    "gumbel",
    "st",
    "igr",
    "reinforce",
    "nvil",
    "vimco",
    "rebar",
    "relax",
    "disarm",
    "rws",
)

FAMILIES: dict[str, LatentFamily] = {
    family.name: family
    for family in (
        LatentFamily("normal", False, ("reparam", "implicit"), 10, 2),
        LatentFamily("gamma", False, _CONTINUOUS_ESTIMATORS, 10, 2),
        LatentFamily("beta", False, _CONTINUOUS_ESTIMATORS, 10, 2),
        LatentFamily("dirichlet", False, _CONTINUOUS_ESTIMATORS, 10, 1),
        LatentFamily("vonmises", False, _CONTINUOUS_ESTIMATORS, 10, 2),
        LatentFamily("mixture", False, _CONTINUOUS_ESTIMATORS, 10, 3 * _MIXTURE_COMPONENTS),
        LatentFamily("bernoulli", True, _DISCRETE_ESTIMATORS, 200, 1),
        LatentFamily(
            "categorical",
            True,
            # DisARM, REBAR and RELAX of stochgrad.estimators are for binary latents.
            tuple(e for e in _DISCRETE_ESTIMATORS if e not in ("disarm", "rebar", "relax")),
            20,
            CATEGORIES,
        ),
    )
}


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """Encoder ``pixels-256-128-params`` and Bernoulli decoder ``features-128-256-pixels``.

    Args:
        family: the latent family.
        dim: number of latent units (Dirichlet: number of components).
        num_pixels: image size after flattening.
        estimator: the gradient estimator (selects the sampler class for ``normal``, and the
            InvertibleGaussian posterior and prior for ``igr``).
        hidden: hidden layer widths of the encoder; the decoder mirrors them.
        temperature: > 0, the temperature of the ``igr`` posterior and prior (saved with the
            weights as the buffer ``temperature``; ``None`` for the other estimators).
    """

    def __init__(
        self,
        family: LatentFamily,
        dim: int,
        num_pixels: int,
        estimator: str = "implicit",
        hidden: tuple[int, ...] = (256, 128),
        temperature: float = 0.5,
    ):
        super().__init__()
        self.family = family
        self.dim = dim
        self.estimator = estimator
        self.temperature: Tensor | None
        if estimator == "igr":
            if not temperature > 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
            # Part of q(z|x) and p(z), so a reloaded checkpoint gets it back with the weights;
            # float64 so that --temperature 0.7 stays 0.7 (it is cast to the latents' dtype).
            self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))
        else:
            self.temperature = None
        self.encoder = _mlp([num_pixels, *hidden, family.param_size(dim, estimator)])
        self.decoder = _mlp([family.feature_size(dim), *reversed(hidden), num_pixels])

    def posterior(self, x: Tensor) -> td.Distribution:
        """q(z|x) for a batch of binary images ``x`` of shape (batch, pixels)."""
        return self.family.posterior(self.encoder(x), self.dim, self.estimator, self.temperature)

    def prior(self, like: Tensor) -> td.Distribution:
        return self.family.prior(self.dim, like, self.estimator, self.temperature)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(self.family.features(z, self.estimator))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over pixels; ``z`` may carry leading sample dimensions."""
        logits = self.decode_logits(z)
        return -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)


def kl_term(q: td.Distribution, p: td.Distribution, z: Tensor) -> Tensor:
    """KL(q || p) in closed form when torch knows it, else the one-sample log q(z) - log p(z)."""
    try:
        # torch's Bernoulli KL does not broadcast, so give the prior the batch shape of q.
        return td.kl_divergence(q, p.expand(q.batch_shape))
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)
