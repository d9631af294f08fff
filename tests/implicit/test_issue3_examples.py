"""The one list of issue-3 examples (von Mises, mixtures, Factorized, truncated normal).

Every property test of this part loops over ``EXAMPLES``; ``test_has_examples`` makes sure each
public class of the part appears in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributions as td
from torch.distributions import constraints

import stochgrad.implicit as irt


def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


class Rayleigh(td.Distribution):
    """A user-defined law with only ``sample``, ``log_prob`` and ``cdf``: no ``rsample``."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive

    def __init__(self, scale, validate_args=None):
        self.scale = torch.as_tensor(scale)
        super().__init__(self.scale.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return Rayleigh(self.scale.expand(batch_shape))

    def sample(self, sample_shape=()):
        with torch.no_grad():
            u = torch.rand(self._extended_shape(sample_shape), dtype=self.scale.dtype)
            return self.scale * torch.sqrt(-2 * torch.log1p(-u))

    def log_prob(self, value):
        return torch.log(value) - 2 * torch.log(self.scale) - value**2 / (2 * self.scale**2)

    def cdf(self, value):
        return -torch.expm1(-(value**2) / (2 * self.scale**2))


def logistic(loc, scale):
    """The Logistic law as torch users build it (torch has no Logistic class)."""
    transforms = [td.SigmoidTransform().inv, td.AffineTransform(loc, scale)]
    zeros = torch.zeros_like(loc)
    return td.TransformedDistribution(td.Uniform(zeros, zeros + 1), transforms)


def _linear_square(z):
    return z + z**2


def _torch_moment(make):
    """``E[z + z²]`` from torch's own mean and variance of the base law."""

    def expectation(*params):
        base = make(*params)
        return base.mean + base.variance + base.mean**2

    return expectation


def _von_mises_moment(loc, kappa):
    ratio = torch.special.i1e(kappa) / torch.special.i0e(kappa)
    return ratio * (torch.cos(loc) + torch.sin(loc))


def _mixture_moment(logits, loc, scale):
    weights = torch.softmax(logits, -1)
    return (weights * (loc + loc**2 + scale**2)).sum(-1)


def _normal_mixture(logits, loc, scale):
    return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Normal(loc, scale))


def _diag_mixture_moment(logits, loc, scale):
    weights = torch.softmax(logits, -1)
    m0, m1, m2 = loc.unbind(-1)
    s1 = scale[..., 1]
    return (weights * (m0 * m1 + m1**2 + s1**2 + m2)).sum(-1)


def _diag_statistic(z):
    return z[..., 0] * z[..., 1] + z[..., 1] ** 2 + z[..., 2]


def _hetero_mixture(logits, normal_loc, normal_scale, gumbel_loc, gumbel_scale, lap_loc, lap_scale):
    return irt.Mixture(
        [
            td.Normal(normal_loc, normal_scale),
            td.Gumbel(gumbel_loc, gumbel_scale),
            td.Laplace(lap_loc, lap_scale),
        ],
        logits=logits,
    )


def _hetero_moment(logits, *params):
    weights = torch.softmax(logits, -1)
    components = [
        td.Normal(params[0], params[1]),
        td.Gumbel(params[2], params[3]),
        td.Laplace(params[4], params[5]),
    ]
    per = torch.stack([c.mean + c.variance + c.mean**2 for c in components], -1)
    return (weights * per).sum(-1)


def _standard_normal_pdf(x):
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _truncated_moment(loc, scale, low, high):
    """``E[z + z²]`` by the textbook formulas (plain Φ, fine away from the far tails)."""
    alpha, beta = (low - loc) / scale, (high - loc) / scale
    mass = torch.special.ndtr(beta) - torch.special.ndtr(alpha)
    pa, pb = _standard_normal_pdf(alpha), _standard_normal_pdf(beta)
    mean = loc + scale * (pa - pb) / mass
    variance = scale**2 * (1 + (alpha * pa - beta * pb) / mass - ((pa - pb) / mass) ** 2)
    return mean + variance + mean**2


@dataclass
class Example:
    name: str
    cls: type  # the public class exercised
    make: Callable[..., td.Distribution]
    params: list[torch.Tensor]
    statistic: Callable[[torch.Tensor], torch.Tensor] | None = None
    expectation: Callable[..., torch.Tensor] | None = None
    # draws for the unbiasedness test: enough for the 1.1-scaled twin to be rejected
    draws: int = 40_000


def _factorized(name, base, params, statistic=_linear_square, expectation=None):
    return Example(
        f"factorized_{name}",
        irt.Factorized,
        lambda *p: irt.Factorized(base(*p)),
        params,
        statistic,
        expectation or _torch_moment(base),
    )


def _kumaraswamy_moment(a, b):
    base = td.Kumaraswamy(a, b)
    second = b * torch.exp(torch.lgamma(1 + 2 / a) + torch.lgamma(b) - torch.lgamma(1 + 2 / a + b))
    return base.mean + second


EXAMPLES = [
    Example(
        "vonmises",
        irt.VonMises,
        irt.VonMises,
        [_t(0.3, -1.0, 2.5, 0.7), _t(0.01, 1.5, 8.0, 40.0)],
        lambda z: torch.cos(z) + torch.sin(z),
        _von_mises_moment,
    ),
    Example(
        "mixture_same_family",
        irt.MixtureSameFamily,
        _normal_mixture,
        [_t(0.3, -0.5, 0.2), _t(-2.0, 0.5, 3.0), _t(0.6, 1.0, 0.4)],
        _linear_square,
        _mixture_moment,
    ),
    Example(
        "mixture_same_family_separated",
        irt.MixtureSameFamily,
        _normal_mixture,
        [_t(0.0, -1.0), _t(-4.0, 4.0), _t(1.0, 2.0)],
        _linear_square,
        _mixture_moment,
        # weight gradients of separated components are carried by rare in-between draws (their
        # variance grows fast with the separation; far-apart cases are in the robustness tests)
        draws=200_000,
    ),
    Example(
        "mixture_same_family_diagonal",
        irt.MixtureSameFamily,
        lambda logits, loc, scale: irt.MixtureSameFamily(
            td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
        ),
        [
            _t(0.4, -0.4),
            torch.tensor([[-1.0, 0.5, 2.0], [1.5, -1.0, 0.0]], dtype=torch.float64),
            torch.tensor([[0.5, 1.0, 0.7], [1.2, 0.6, 1.0]], dtype=torch.float64),
        ],
        _diag_statistic,
        _diag_mixture_moment,
        draws=160_000,
    ),
    Example(
        "mixture_heterogeneous",
        irt.Mixture,
        _hetero_mixture,
        [_t(0.2, -0.3, 0.1), *(_t(v)[0] for v in (-2.0, 0.7, 1.0, 0.8, 3.0, 0.5))],
        _linear_square,
        _hetero_moment,
        draws=200_000,
    ),
    Example(
        "truncated_normal",
        irt.TruncatedNormal,
        irt.TruncatedNormal,
        [_t(0.3, 1.0), _t(1.2, 0.5), _t(-1.0, 1.2), _t(2.0, 2.0)],
        _linear_square,
        _truncated_moment,
    ),
    _factorized("laplace", td.Laplace, [_t(0.5), _t(1.3)]),
    _factorized(
        "cauchy",
        td.Cauchy,
        [_t(0.5), _t(0.8)],
        # Cauchy * Cauchy(0, 1) = Cauchy(loc, scale + 1): E[1/(1+z²)] = π p_{loc, scale+1}(0).
        lambda z: 1 / (1 + z**2),
        lambda loc, scale: (scale + 1) / ((scale + 1) ** 2 + loc**2),
    ),
    _factorized("gumbel", td.Gumbel, [_t(0.5), _t(1.3)]),
    _factorized(
        "logistic",
        logistic,
        [_t(0.5), _t(0.9)],
        expectation=lambda loc, s: loc + loc**2 + (math.pi * s) ** 2 / 3,
    ),
    _factorized("lognormal", td.LogNormal, [_t(0.1), _t(0.4)]),
    _factorized("weibull", td.Weibull, [_t(1.3), _t(1.8)]),
    _factorized("kumaraswamy", td.Kumaraswamy, [_t(2.0), _t(3.0)], expectation=_kumaraswamy_moment),
    _factorized("halfnormal", td.HalfNormal, [_t(1.4)]),
    _factorized("exponential", td.Exponential, [_t(0.7)]),
    _factorized(
        "user_rayleigh",
        Rayleigh,
        [_t(1.3)],
        expectation=lambda s: s * math.sqrt(math.pi / 2) + 2 * s**2,
    ),
]

PUBLIC_CLASSES = [irt.VonMises, irt.MixtureSameFamily, irt.Mixture, irt.Factorized]
PUBLIC_CLASSES.append(irt.TruncatedNormal)


def test_has_examples():
    covered = {example.cls for example in EXAMPLES}
    missing = [cls.__name__ for cls in PUBLIC_CLASSES if cls not in covered]
    assert not missing, f"classes without an example: {missing}"
    names = [example.name for example in EXAMPLES]
    assert len(names) == len(set(names))
