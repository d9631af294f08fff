"""The VAEs trained by ``stochgrad train``, built from :mod:`stochgrad.vae` parts.

Architecture and priors follow the VAE experiments of Figurnov, Mohamed & Mnih (2018),
"Implicit Reparameterization Gradients": fully connected encoder ``pixels-256-128-params`` and
decoder ``features-128-256-pixels`` (ReLU), Bernoulli likelihood on binarized pixels, priors
N(0, I), Gamma(0.3, 0.3), Uniform(0, 1) = Beta(1, 1) and Uniform(-pi, pi) for von Mises. The
discrete latents follow the discrete-VAE literature (Maddison et al., 2017; Jang et al., 2017;
Tucker et al., 2017): 200 Bernoulli units or 20 categorical units with 10 classes each, with
uniform priors.

q(z|x) is a :class:`~stochgrad.vae.DistributionInferenceNetwork` over a
:class:`~stochgrad.vae.DistributionNet` whose distribution class comes from
:mod:`stochgrad.implicit` (continuous), torch (discrete) or :mod:`stochgrad.relaxed` (``igr``:
Potapczynski, Loaiza-Ganem & Cunningham, 2020, a discrete unit of C classes as an
:class:`~stochgrad.relaxed.InvertibleGaussian` over C - 1 Gaussians, with the same law at loc 0
and scale 1 as its prior). p(x, z) is a :class:`~stochgrad.vae.DistributionGenerativeModel`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch import distributions as td

from stochgrad import implicit, relaxed
from stochgrad.vae import (
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    InferenceNetwork,
    Prior,
    Tensors,
)

__all__ = ["CATEGORIES", "FAMILIES", "VAE", "LatentFamily"]

_MIN_POSITIVE = 1e-3
CATEGORIES = 10
_MIXTURE_COMPONENTS = 3


def positive(raw: Tensor) -> Tensor:
    """softplus + 1e-3: the encoder's map to positive parameters."""
    return F.softplus(raw) + _MIN_POSITIVE


def _angle(raw: Tensor) -> Tensor:
    return math.pi * torch.tanh(raw)


def _normal_mixture(logits: Tensor, loc: Tensor, scale: Tensor, **kwargs: Any) -> td.Distribution:
    components = implicit.Normal(loc, scale, **kwargs)
    return implicit.MixtureSameFamily(td.Categorical(logits=logits, **kwargs), components, **kwargs)


@dataclass(frozen=True)
class LatentFamily:
    """A latent family: q(z|x)'s class, its parameters (name -> map from the encoder's raw
    output, ``None`` for none), ``width`` values of each per unit (classes, mixture components),
    and a builder of its prior p(z) for ``dim`` units."""

    name: str
    discrete: bool
    estimators: tuple[str, ...]
    default_dim: int
    cls: Callable[..., td.Distribution]
    params: dict[str, Callable[[Tensor], Tensor] | None]
    prior: Callable[[int], Prior]
    width: int = 1

    @property
    def categories(self) -> int:
        """Classes per discrete unit (a Bernoulli unit has two)."""
        return CATEGORIES if self.name == "categorical" else 2


class _Features(nn.Module):
    """The decoder's input from samples ``z`` (angles as (cos, sin); one-hots flattened)."""

    def __init__(self, family: str, estimator: str):
        super().__init__()
        self.family = family
        self.estimator = estimator

    def forward(self, z: Tensor) -> Tensor:
        if self.family == "vonmises":
            return torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
        if self.estimator == "igr" and self.family == "bernoulli":
            # Two-class relaxed one-hot: the first class is b = 1 (y > 0 as the temperature -> 0).
            return z[..., 0]
        if self.family == "categorical" or self.estimator == "igr":
            return z.flatten(-2)
        return z

    def size(self, dim: int) -> int:
        if self.family == "vonmises":
            return 2 * dim
        if self.family == "categorical":
            return dim * CATEGORIES
        return dim


class _Head(nn.Module):
    """Encoder head: the body's output split into the named parameters, one row per unit; the
    ``igr`` temperature is a float64 buffer (saved with the weights; 0.7 stays 0.7)."""

    def __init__(self, body: nn.Module, names: tuple[str, ...], unit: tuple[int, ...] | None,
                 temperature: float | None = None):  # fmt: skip
        super().__init__()
        self.body, self.names, self.unit = body, names, unit
        self.temperature: Tensor | None
        self.register_buffer("temperature", None if temperature is None else _float64(temperature))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raw = self.body(x)
        raw = raw if self.unit is None else raw.unflatten(-1, self.unit)
        params = dict(zip(self.names, raw.chunk(len(self.names), dim=-1), strict=True))
        return params if self.temperature is None else {**params, "temperature": self.temperature}


class _Relaxed(InferenceNetwork):
    """The discrete q(z|x) sampled through its concrete / Gumbel-softmax relaxation (Maddison et
    al., 2017; Jang et al., 2017); log q is the discrete law's (cross-entropy) at the samples."""

    def __init__(self, inf_net: DistributionInferenceNetwork, binary: bool, temperature: float):
        super().__init__()
        self.inf_net, self.temperature = inf_net, temperature
        self.relax = relaxed.RelaxedBernoulli if binary else relaxed.RelaxedOneHotCategorical

    def forward(self, data: Tensors) -> _Relaxed:
        self.inf_net(data)
        return self

    def sample(self, n_samples: int = 1) -> Tensor:
        return cast(Tensor, self.inf_net.sample(n_samples))

    def rsample(self, n_samples: int = 1) -> Tensor:
        logits = self.inf_net.params_[0]["logits"]
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        return self.relax(temperature, logits=logits).rsample((n_samples,)).movedim(0, 1)

    def log_prob(self, latents: Tensors, *, detach_params: bool = False) -> Tensor:
        return self.inf_net.log_prob(latents, detach_params=detach_params)


def _float64(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """``inf_net`` (encoder ``pixels-256-128-params``) and ``gen_model`` (Bernoulli decoder
    ``features-128-256-pixels`` and the family's prior), the protocol objects of
    :mod:`stochgrad.vae`.

    Args:
        family: the latent family.
        dim: number of latent units (Dirichlet: number of components).
        num_pixels: image size after flattening.
        estimator: the gradient estimator (``reparam`` selects torch's own Normal, ``igr`` the
            InvertibleGaussian posterior and prior).
        hidden: hidden layer widths of the encoder; the decoder mirrors them.
        temperature: > 0, the temperature of the ``igr`` posterior and prior.
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
        if estimator in ("igr", "gumbel") and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        cls, prior, names = family.cls, family.prior(dim), tuple(family.params)
        transforms = {name: fn for name, fn in family.params.items() if fn is not None}
        per_unit = len(names) * family.width
        unit = (dim, per_unit) if family.width > 1 else None
        if estimator == "igr":
            free = family.categories - 1
            cls, names, transforms = relaxed.InvertibleGaussian, ("loc", "scale"), {"scale": P}
            per_unit, unit = 2 * free, (dim, 2 * free)
            zeros = torch.zeros(dim, free)
            prior = Prior(functools.partial(cls, validate_args=False), loc=zeros, scale=zeros + 1,
                          temperature=_float64(temperature))  # fmt: skip
        elif estimator == "reparam":  # the explicit z = loc + scale * eps: torch's Normal
            cls = td.Normal
        # No argument validation (its checks cost a third of a step here): the parameters come
        # from softplus/tanh maps or constants, training stops at the first non-finite loss, and
        # discrete densities are also evaluated between the points (REBAR, RELAX, MuProp).
        body = _mlp([num_pixels, *hidden, dim * per_unit])  # built first: the seed's weights
        head = _Head(body, names, unit, temperature if estimator == "igr" else None)
        encoder = DistributionNet(head, cls, None, transforms, validate_args=False)
        features = _Features(family.name, estimator)
        decoder = nn.Sequential(features, _mlp([features.size(dim), *reversed(hidden), num_pixels]))
        likelihood = DistributionNet(decoder, td.Bernoulli, ("logits",), validate_args=False)
        self.inf_net = DistributionInferenceNetwork(encoder)
        self.gen_model = DistributionGenerativeModel(prior, likelihood)
        if estimator == "gumbel":
            self.relaxed_inf_net = _Relaxed(self.inf_net, family.width == 1, temperature)

    @property
    def encoder(self) -> nn.Module:
        """The encoder network (images to raw parameters)."""
        return cast(nn.Module, self.inf_net.heads[0].module)

    @property
    def decoder(self) -> nn.Module:
        """The decoder network (latents to pixel logits)."""
        return cast(nn.Module, self.gen_model.decoders[0].module)

    def posterior(self, images: Tensor) -> td.Distribution:
        """q(z|x) with batch shape ``(len(images),)``."""
        return self.inf_net(images).distribution

    def prior(self) -> td.Distribution:
        """p(z) with an empty batch shape."""
        return self.gen_model.prior

    def pixel_probabilities(self, latents: Tensor) -> Tensor:
        """The decoder's Bernoulli means for ``latents`` of shape ``(batch, n, *latent)``."""
        return torch.sigmoid(self.gen_model(None, latents).params_[0]["logits"])

    def embedding(self, images: Tensor) -> Tensor:
        """A point per image summarising q(z|x), for the 2-D latent plots."""
        params = self.inf_net(images).params_[0]
        if self.estimator == "igr":
            return params["loc"].flatten(1)
        if self.family.discrete:
            return (
                torch.softmax(params["logits"], -1).flatten(1)
                if self.family.width > 1
                else torch.sigmoid(params["logits"])
            )
        if self.family.name == "vonmises":
            return torch.cat([torch.cos(params["loc"]), torch.sin(params["loc"])], dim=-1)
        return self.posterior(images).mean.flatten(1)


def _prior(cls: Callable[..., td.Distribution], **values: float) -> Callable[[int], Prior]:
    def build(dim: int) -> Prior:
        shape = (dim, CATEGORIES) if cls is td.OneHotCategorical else (dim,)
        params: dict[str, Any] = {name: torch.full(shape, v) for name, v in values.items()}
        return Prior(functools.partial(cls, validate_args=False), **params)

    return build


SCORE = ("reinforce", "nvil", "loo", "muprop", "vimco", "rws")  # any latent with a log-density
CONTINUOUS = ("implicit", *SCORE)
BERNOULLI = ("gumbel", "st", "plain_st", "igr", "reinforce", "nvil", "loo", "muprop", "arm",
             "disarm", "rebar", "relax", "vimco", "rws")  # fmt: skip
CATEGORICAL = tuple(n for n in BERNOULLI if n not in ("arm", "disarm", "rebar", "relax"))  # binary
P = positive
FAMILIES: dict[str, LatentFamily] = {family.name: family for family in (
    LatentFamily("normal", False, ("reparam", *CONTINUOUS), 10, implicit.Normal,
                 {"loc": None, "scale": P}, _prior(td.Normal, loc=0.0, scale=1.0)),
    LatentFamily("gamma", False, CONTINUOUS, 10, implicit.Gamma,
                 {"concentration": P, "rate": P}, _prior(td.Gamma, concentration=0.3, rate=0.3)),
    LatentFamily("beta", False, CONTINUOUS, 10, implicit.Beta,
                 {"concentration1": P, "concentration0": P},
                 _prior(td.Beta, concentration1=1.0, concentration0=1.0)),
    LatentFamily("dirichlet", False, CONTINUOUS, 10, implicit.Dirichlet, {"concentration": P},
                 _prior(td.Dirichlet, concentration=1.0)),
    LatentFamily("vonmises", False, CONTINUOUS, 10, implicit.VonMises,
                 {"loc": _angle, "concentration": P},
                 _prior(td.Uniform, low=-math.pi, high=math.pi)),
    LatentFamily("mixture", False, CONTINUOUS, 10, _normal_mixture,
                 {"logits": None, "loc": None, "scale": P}, _prior(td.Normal, loc=0.0, scale=1.0),
                 width=_MIXTURE_COMPONENTS),
    LatentFamily("bernoulli", True, BERNOULLI, 200, td.Bernoulli, {"logits": None},
                 _prior(td.Bernoulli, probs=0.5)),
    LatentFamily("categorical", True, CATEGORICAL, 20, td.OneHotCategorical, {"logits": None},
                 _prior(td.OneHotCategorical, logits=0.0), width=CATEGORIES),
)}  # fmt: skip
