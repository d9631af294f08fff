"""Generic property tests of every class in :mod:`stochgrad.relaxed`, organised by property.

One list of examples (``EXAMPLES``) drives shapes, support, expand, dtype and gradient-flow
tests; ``DENSITIES`` (laws with a density in one or two free coordinates, or a finite support)
drives normalisation and goodness-of-fit tests; ``LIMITS`` drives the zero-temperature tests;
``PATHWISE`` drives the finite-difference gradient tests with common random numbers.

Statistical tests fix their seed and sample size and accept at about 5 standard errors
(chi-square p-value > 1e-6); each has a twin that fails on a deliberately wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from scipy import stats
from torch.distributions import Distribution
from torch.distributions.transforms import SigmoidTransform, StickBreakingTransform

import stochgrad.relaxed as relaxed

# A p-value below this is about 5 standard errors out for a normal statistic.
P_VALUE_FLOOR = 1e-6
NUM_SAMPLES = 20_000


def t(*values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


CORRELATION = [[1.0, 0.5], [0.5, 1.0]]
SUPPORT = t(0.0, 1.0, 3.0)


@dataclass
class Example:
    """A family with batched parameters; ``make(params)`` builds it."""

    name: str
    make: Callable[..., Distribution]
    params: dict[str, list]
    discrete: bool = False  # forward values are exactly discrete (straight-through)
    no_grad: tuple[str, ...] = ()  # parameters the sample does not depend on (by design)

    def tensors(self, dtype=torch.float64, requires_grad=False) -> dict[str, torch.Tensor]:
        return {
            k: torch.tensor(v, dtype=dtype, requires_grad=requires_grad)
            for k, v in self.params.items()
        }

    def build(self, dtype=torch.float64, requires_grad=False, **overrides) -> Distribution:
        params = self.tensors(dtype, requires_grad)
        params.update(overrides)
        return self.make(**params)


EXAMPLES = [
    Example(
        "GaussianRelaxedBernoulli",
        lambda loc, scale: relaxed.GaussianRelaxedBernoulli(loc, scale),
        {"loc": [0.2, 0.5, 0.9], "scale": [0.5, 0.3, 0.8]},
    ),
    Example(
        "CorrelatedRelaxedBernoulli",
        lambda pi, R, tau: relaxed.CorrelatedRelaxedBernoulli(pi, R, tau),
        {"pi": [[0.3, 0.6], [0.5, 0.2], [0.8, 0.4]], "R": CORRELATION, "tau": [0.5, 0.8, 1.2]},
    ),
    Example(
        "GumbelSoftmaxTopK",
        lambda logits, tau: relaxed.GumbelSoftmaxTopK(logits, 2, tau),
        {"logits": [[0.1, -0.3, 0.5, 0.0], [1.0, 0.2, -1.0, 0.3], [0.0] * 4], "tau": [0.5] * 3},
    ),
    Example(
        "GumbelSoftmaxTopKHard",
        lambda logits, tau: relaxed.GumbelSoftmaxTopK(logits, 2, tau, hard=True),
        {"logits": [[0.1, -0.3, 0.5, 0.0], [1.0, 0.2, -1.0, 0.3], [0.0] * 4], "tau": [0.5] * 3},
        discrete=True,
    ),
    Example(
        "StraightThroughBernoulli",
        lambda probs: relaxed.StraightThroughBernoulli(probs),
        {"probs": [0.2, 0.5, 0.9]},
        discrete=True,
    ),
    Example(
        "StochasticTimesSmooth",
        lambda logits: relaxed.StochasticTimesSmooth(logits=logits),
        {"logits": [-1.0, 0.0, 2.0]},
        discrete=True,
    ),
    Example(
        "InvertibleGaussian",
        lambda loc, scale, temperature: relaxed.InvertibleGaussian(loc, scale, temperature),
        {
            "loc": [[0.3, -0.2], [0.0, 1.0], [-1.0, 0.5]],
            "scale": [[0.8, 1.1], [1.0, 0.5], [1.5, 1.0]],
            "temperature": [0.7, 1.0, 0.4],
        },
    ),
    Example(
        "HardConcrete",
        lambda alpha, beta: relaxed.HardConcrete(alpha, beta),
        {"alpha": [0.5, 1.0, 3.0], "beta": [2 / 3, 0.5, 1.0]},
    ),
    Example(
        "LogisticNormalSoftmax",
        lambda loc, scale: relaxed.LogisticNormalSoftmax(loc, scale),
        {"loc": [[0.2, -0.4, 0.1], [0.0, 0.0, 0.0], [1.0, 0.5, -1.0]], "scale": [0.7, 1.0, 1.3]},
    ),
    Example(
        "GeneralizedGumbelSoftmax",
        lambda logits, tau: relaxed.GeneralizedGumbelSoftmax(SUPPORT, logits=logits, tau=tau),
        {"logits": [[0.1, -0.3, 0.5], [1.0, 0.2, -1.0], [0.0] * 3], "tau": [0.8, 0.5, 1.0]},
    ),
    Example(
        "GeneralizedGumbelSoftmaxHard",
        lambda logits, tau: relaxed.GeneralizedGumbelSoftmax(
            SUPPORT, logits=logits, tau=tau, hard=True
        ),
        {"logits": [[0.1, -0.3, 0.5], [1.0, 0.2, -1.0], [0.0] * 3], "tau": [0.8, 0.5, 1.0]},
        discrete=True,
    ),
    Example(
        "DecoupledStraightThroughGumbelSoftmax",
        lambda logits, tau_forward, tau_backward: relaxed.DecoupledStraightThroughGumbelSoftmax(
            logits, tau_forward, tau_backward
        ),
        {
            "logits": [[0.1, -0.3, 0.5, 0.0], [1.0, 0.2, -1.0, 0.3], [0.0] * 4],
            "tau_forward": [1.0, 0.5, 2.0],
            "tau_backward": [2.0, 1.0, 0.5],
        },
        discrete=True,
        # tau_forward enters the backward pass only through the keys; it does get a gradient.
    ),
    Example(
        "RebarRelaxation",
        lambda theta, lambd: relaxed.RebarRelaxation(theta, lambd),
        {"theta": [0.3, 0.5, 0.8], "lambd": [0.7, 0.5, 1.0]},
    ),
    Example(
        "RelaxedBernoulli",
        lambda temperature, probs: relaxed.RelaxedBernoulli(temperature, probs=probs),
        {"temperature": [0.5], "probs": [0.2, 0.5, 0.9]},
    ),
    Example(
        "RelaxedOneHotCategorical",
        lambda temperature, logits: relaxed.RelaxedOneHotCategorical(temperature, logits=logits),
        {"temperature": 0.5, "logits": [[0.1, -0.3, 0.5], [1.0, 0.2, -1.0], [0.0] * 3]},
    ),
    Example(
        "StraightThroughOneHotCategorical",
        lambda logits: relaxed.StraightThroughOneHotCategorical(logits=logits),
        {"logits": [[0.1, -0.3, 0.5], [1.0, 0.2, -1.0], [0.0] * 3]},
        discrete=True,
    ),
]
EXAMPLE_IDS = [example.name for example in EXAMPLES]


def test_has_examples():
    """Every public distribution class of stochgrad.relaxed appears in EXAMPLES."""
    classes = {
        name
        for name in relaxed.__all__
        if isinstance(getattr(relaxed, name), type)
        and issubclass(getattr(relaxed, name), Distribution)
    }
    covered = {type(example.build()).__name__ for example in EXAMPLES}
    assert classes == covered


# --------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 4)], ids=str)
def test_shapes(example, sample_shape, dtype):
    dist = example.build(dtype)
    assert dist.batch_shape == (3,)
    value = dist.rsample(sample_shape)
    assert value.shape == sample_shape + dist.batch_shape + dist.event_shape
    assert value.dtype == dtype
    if not (isinstance(dist, relaxed.GumbelSoftmaxTopK) and not dist.hard):
        assert dist.log_prob(value).shape == sample_shape + dist.batch_shape
    assert dist.sample(sample_shape).shape == value.shape


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_expand(example):
    dist = example.build()
    expanded = dist.expand((4, 3))
    assert type(expanded) is type(dist)
    assert expanded.batch_shape == (4, 3) and expanded.event_shape == dist.event_shape
    value = expanded.rsample((2,))
    assert value.shape == (2, 4, 3) + dist.event_shape
    if not (isinstance(dist, relaxed.GumbelSoftmaxTopK) and not dist.hard):
        # The expanded law gives every copy the density of the original law.
        single = dist.rsample()
        torch.testing.assert_close(
            expanded.log_prob(single.expand((4, 3) + dist.event_shape)),
            dist.log_prob(single).expand(4, 3),
        )


# -------------------------------------------------------------------------------------- support


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_support_and_finite_log_prob(example, dtype):
    torch.manual_seed(0)
    dist = example.build(dtype)
    value = dist.rsample((2000,))
    assert dist.support.check(value).all()
    if example.discrete:
        assert ((value == 0) | (value == 1)).all(), "straight-through forward must be exact"
    if not (isinstance(dist, relaxed.GumbelSoftmaxTopK) and not dist.hard):
        assert torch.isfinite(dist.log_prob(value)).all()


BAD_PARAMS = [
    (lambda: relaxed.GaussianRelaxedBernoulli(t(0.5), t(-1.0)), "scale"),
    (lambda: relaxed.HardConcrete(t(1.0), xi=t(0.9)), "xi"),
    (lambda: relaxed.HardConcrete(t(1.0), gamma=t(0.1)), "gamma"),
    (lambda: relaxed.HardConcrete(t(-1.0)), "alpha"),
    (lambda: relaxed.CorrelatedRelaxedBernoulli(t(0.3, 1.0), t(*CORRELATION), 0.5), "pi"),
    (lambda: relaxed.CorrelatedRelaxedBernoulli(t(0.3, 0.5), 2 * t(*CORRELATION), 0.5), "R"),
    (lambda: relaxed.CorrelatedRelaxedBernoulli(t(0.3, 0.5), t(1.0, 0.5), 0.5), "R"),
    (lambda: relaxed.GumbelSoftmaxTopK(t(0.0, 1.0), 3, 0.5), "K"),
    (lambda: relaxed.GumbelSoftmaxTopK(t(0.0, 1.0), 1, -0.5), "tau"),
    (lambda: relaxed.InvertibleGaussian(t(0.0, 1.0), t(1.0, 1.0), t(0.0)), "temperature"),
    (lambda: relaxed.LogisticNormalSoftmax(t(0.0), t(1.0)), "loc"),
    (lambda: relaxed.LogisticNormalSoftmax(t(0.0, 1.0), t(1.0, -1.0)), "scale"),
    (lambda: relaxed.RebarRelaxation(t(1.0), t(0.5)), "theta"),
    (lambda: relaxed.GeneralizedGumbelSoftmax(t(0.0, 1.0), probs=t(0.5, 0.2, 0.3)), "values"),
    (lambda: relaxed.DecoupledStraightThroughGumbelSoftmax(t(0.0, 1.0), 0.0, 1.0), "tau_forward"),
    (lambda: relaxed.DecoupledStraightThroughGumbelSoftmax(None, 1.0, 1.0), "probs or logits"),
    (lambda: relaxed.GeneralizedGumbelSoftmax(t(0.0, 1.0), t(0.5, 0.5), t(0.0, 0.0)), "probs or"),
]


@pytest.mark.parametrize("make, argument", BAD_PARAMS, ids=[a for _, a in BAD_PARAMS])
def test_bad_parameters_raise_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


# ------------------------------------------------------------------------------------ densities


@dataclass
class Density:
    """A law whose ``log_prob`` we can integrate: continuous parts in ``dim`` free coordinates.

    ``coordinates`` maps R^dim onto the support (with its log-Jacobian); ``atoms`` are points of
    positive mass (for clipped gates); ``wrong`` is the same family with a perturbed parameter.
    """

    name: str
    make: Callable[[], Distribution]
    wrong: Callable[[], Distribution]
    dim: int = 1  # 0 for a finite support enumerated by ``points``
    coordinates: str = "interval"  # "interval", "box" or "simplex"
    half_width: float = 40.0
    step: float = 0.01
    atoms: tuple[float, ...] = ()
    points: Callable[[], torch.Tensor] | None = None


def s(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _one_hots(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64)


def _k_hots(n: int, k: int) -> torch.Tensor:
    import itertools

    rows = []
    for subset in itertools.combinations(range(n), k):
        row = torch.zeros(n, dtype=torch.float64)
        row[list(subset)] = 1.0
        rows.append(row)
    return torch.stack(rows)


DENSITIES = [
    Density(
        "GaussianRelaxedBernoulli",
        lambda: relaxed.GaussianRelaxedBernoulli(s(0.4), s(0.5)),
        lambda: relaxed.GaussianRelaxedBernoulli(s(0.4), s(0.55)),
        atoms=(0.0, 1.0),
    ),
    Density(
        "HardConcrete",
        lambda: relaxed.HardConcrete(s(1.5), s(2 / 3)),
        lambda: relaxed.HardConcrete(s(1.5), s(0.75)),
        atoms=(0.0, 1.0),
    ),
    Density(
        "RebarRelaxation",
        lambda: relaxed.RebarRelaxation(s(0.3), s(0.7)),
        lambda: relaxed.RebarRelaxation(s(0.33), s(0.7)),
        half_width=70.0,
    ),
    Density(
        "RelaxedBernoulli",
        lambda: relaxed.RelaxedBernoulli(s(0.7), probs=s(0.3)),
        lambda: relaxed.RelaxedBernoulli(s(0.8), probs=s(0.3)),
        half_width=70.0,
    ),
    Density(
        "CorrelatedRelaxedBernoulli",
        lambda: relaxed.CorrelatedRelaxedBernoulli(t(0.3, 0.6), t(*CORRELATION), s(0.8)),
        lambda: relaxed.CorrelatedRelaxedBernoulli(t(0.3, 0.6), t([1.0, 0.3], [0.3, 1.0]), s(0.8)),
        dim=2,
        coordinates="box",
        half_width=45.0,
        step=0.1,
    ),
    Density(
        "InvertibleGaussian-K1",
        lambda: relaxed.InvertibleGaussian(t(0.3), t(0.8), s(0.7)),
        lambda: relaxed.InvertibleGaussian(t(0.3), t(0.9), s(0.7)),
        coordinates="simplex",
        half_width=30.0,
    ),
    Density(
        "InvertibleGaussian-K2",
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), s(0.7)),
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), s(0.8)),
        dim=2,
        coordinates="simplex",
        half_width=25.0,
        step=0.05,
    ),
    Density(
        "LogisticNormalSoftmax-K2",
        lambda: relaxed.LogisticNormalSoftmax(t(0.2, -0.4), t(0.7, 1.0)),
        lambda: relaxed.LogisticNormalSoftmax(t(0.2, -0.4), t(0.8, 1.0)),
        coordinates="simplex",
        half_width=30.0,
    ),
    Density(
        "LogisticNormalSoftmax-K3",
        lambda: relaxed.LogisticNormalSoftmax(t(0.2, -0.4, 0.1), t(0.7, 1.0, 1.3)),
        lambda: relaxed.LogisticNormalSoftmax(t(0.2, -0.4, 0.1), t(0.7, 1.0, 1.1)),
        dim=2,
        coordinates="simplex",
        half_width=25.0,
        step=0.05,
    ),
    Density(
        "GeneralizedGumbelSoftmax",
        lambda: relaxed.GeneralizedGumbelSoftmax(SUPPORT, logits=t(0.1, -0.3, 0.5), tau=0.8),
        lambda: relaxed.GeneralizedGumbelSoftmax(SUPPORT, logits=t(0.1, -0.3, 0.5), tau=0.9),
        dim=2,
        coordinates="simplex",
        half_width=60.0,
        step=0.1,
    ),
    Density(
        "RelaxedOneHotCategorical",
        lambda: relaxed.RelaxedOneHotCategorical(s(0.8), logits=t(0.1, -0.3, 0.5)),
        lambda: relaxed.RelaxedOneHotCategorical(s(0.8), logits=t(0.1, -0.3, 0.7)),
        dim=2,
        coordinates="simplex",
        half_width=60.0,
        step=0.1,
    ),
    Density(
        "StraightThroughBernoulli",
        lambda: relaxed.StraightThroughBernoulli(s(0.3)),
        lambda: relaxed.StraightThroughBernoulli(s(0.32)),
        dim=0,
        points=lambda: t(0.0, 1.0),
    ),
    Density(
        "StochasticTimesSmooth",
        lambda: relaxed.StochasticTimesSmooth(s(0.3)),
        lambda: relaxed.StochasticTimesSmooth(s(0.32)),
        dim=0,
        points=lambda: t(0.0, 1.0),
    ),
    Density(
        "DecoupledStraightThroughGumbelSoftmax",
        lambda: relaxed.DecoupledStraightThroughGumbelSoftmax(t(0.1, -0.3, 0.5, 0.0), 0.5, 2.0),
        lambda: relaxed.DecoupledStraightThroughGumbelSoftmax(t(0.1, -0.3, 0.5, 0.0), 0.55, 2.0),
        dim=0,
        points=lambda: _one_hots(4),
    ),
    Density(
        "GeneralizedGumbelSoftmaxHard",
        lambda: relaxed.GeneralizedGumbelSoftmax(
            SUPPORT, logits=t(0.1, -0.3, 0.5), tau=0.8, hard=True
        ),
        lambda: relaxed.GeneralizedGumbelSoftmax(
            SUPPORT, logits=t(0.1, -0.3, 0.6), tau=0.8, hard=True
        ),
        dim=0,
        points=lambda: _one_hots(3),
    ),
    Density(
        "GumbelSoftmaxTopKHard",
        lambda: relaxed.GumbelSoftmaxTopK(t(0.1, -0.3, 0.5, 0.0, 0.8), 2, 0.5, hard=True),
        lambda: relaxed.GumbelSoftmaxTopK(t(0.1, -0.3, 0.5, 0.0, 0.95), 2, 0.5, hard=True),
        dim=0,
        points=lambda: _k_hots(5, 2),
    ),
    Density(
        "StraightThroughOneHotCategorical",
        lambda: relaxed.StraightThroughOneHotCategorical(logits=t(0.1, -0.3, 0.5)),
        lambda: relaxed.StraightThroughOneHotCategorical(logits=t(0.1, -0.3, 0.7)),
        dim=0,
        points=lambda: _one_hots(3),
    ),
]
DENSITY_IDS = [density.name for density in DENSITIES]


def _grid(density: Density) -> tuple[torch.Tensor, float]:
    """Cell midpoints in the free coordinates and the cell volume."""
    axis = (
        torch.arange(-density.half_width, density.half_width, density.step, dtype=torch.float64)
        + density.step / 2
    )
    if density.dim == 1:
        free = axis.unsqueeze(-1)
    else:
        free = torch.cartesian_prod(axis, axis)
    return free, density.step**density.dim


def _to_support(density: Density, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map free coordinates to the support; returns the points and log |Jacobian|."""
    if density.coordinates == "simplex":
        transform = StickBreakingTransform()
        points = transform(free)
        return points, transform.log_abs_det_jacobian(free, points)
    transform = SigmoidTransform()
    points = transform(free)
    log_jacobian = transform.log_abs_det_jacobian(free, points).sum(-1)
    if density.coordinates == "interval":
        points = points.squeeze(-1)
    return points, log_jacobian


def _from_support(density: Density, points: torch.Tensor) -> torch.Tensor:
    if density.coordinates == "simplex":
        return StickBreakingTransform().inv(points)
    free = torch.logit(points)
    return free.unsqueeze(-1) if density.coordinates == "interval" else free


def _cell_masses(dist: Distribution, density: Density) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-coordinate grid and the mass of ``dist`` in each cell (midpoint rule)."""
    free, volume = _grid(density)
    points, log_jacobian = _to_support(density, free)
    return free, (dist.log_prob(points) + log_jacobian).exp() * volume


def _total_mass(dist: Distribution, density: Density) -> float:
    if density.dim == 0:
        return dist.log_prob(density.points()).exp().sum().item()
    _, masses = _cell_masses(dist, density)
    atoms = sum(dist.log_prob(s(a)).exp().item() for a in density.atoms)
    return masses.sum().item() + atoms


@pytest.mark.parametrize("density", DENSITIES, ids=DENSITY_IDS)
def test_density_integrates_to_one(density):
    # Midpoint quadrature of a smooth, fast-decaying integrand: error far below 1e-4.
    assert _total_mass(density.make(), density) == pytest.approx(1.0, abs=1e-4)


class _WrongJacobianIGR(relaxed.InvertibleGaussian):
    """IGR with the sign of the ``K log t`` Jacobian term flipped."""

    def log_prob(self, value):
        num_free = self.loc.shape[-1]
        return super().log_prob(value) - 2 * num_free * self.temperature.log()


class _UnstretchedHardConcrete(relaxed.HardConcrete):
    """Hard concrete missing the ``1 / (xi - gamma)`` factor of the stretch."""

    def log_prob(self, value):
        interior = (value > 0) & (value < 1)
        return super().log_prob(value) + interior * (self.xi - self.gamma).log()


WRONG_NORMALISATION = [
    (
        DENSITIES[DENSITY_IDS.index("InvertibleGaussian-K2")],
        lambda: _WrongJacobianIGR(t(0.3, -0.2), t(0.8, 1.1), t(0.7)),
    ),
    (
        DENSITIES[DENSITY_IDS.index("HardConcrete")],
        lambda: _UnstretchedHardConcrete(t(1.5), t(2 / 3)),
    ),
]


@pytest.mark.parametrize("density, make_wrong", WRONG_NORMALISATION, ids=["IGR", "HardConcrete"])
def test_density_integrates_to_one_twin_fails_on_wrong_jacobian(density, make_wrong):
    assert _total_mass(make_wrong(), density) != pytest.approx(1.0, abs=1e-4)


def _goodness_of_fit_p_value(samples: torch.Tensor, dist: Distribution, density: Density) -> float:
    """Chi-square test of ``samples`` against the mass ``dist.log_prob`` puts on bins."""
    if density.dim == 0:
        points = density.points()
        expected = dist.log_prob(points).exp() * len(samples)
        if samples.dim() == 1:
            observed = (samples.unsqueeze(-1) == points).sum(0).to(expected)
        else:
            observed = (samples.unsqueeze(-2) == points).all(-1).sum(0).to(expected)
        assert observed.sum() == len(samples), "a sample fell outside the enumerated support"
        return _chi_square_p_value(observed, expected)
    observed, expected = [], []
    for atom in density.atoms:
        observed.append((samples == atom).sum().to(torch.float64))
        expected.append(dist.log_prob(s(atom)).exp() * len(samples))
    interior = torch.ones(len(samples), dtype=torch.bool)
    for atom in density.atoms:
        interior &= samples != atom
    free_samples = _from_support(density, samples[interior])
    free, masses = _cell_masses(dist, density)
    # Bin edges at the quantiles of an independent pilot draw: about equally filled bins.
    bins_per_axis = 20 if density.dim == 1 else 6
    with torch.random.fork_rng():
        torch.manual_seed(12345)
        pilot = _from_support(density, _interior(density.make().sample((4000,)), density))
    levels = torch.linspace(0, 1, bins_per_axis + 1, dtype=torch.float64)[1:-1]
    cell_bin = torch.zeros(len(free), dtype=torch.long)
    sample_bin = torch.zeros(len(free_samples), dtype=torch.long)
    for axis in range(density.dim):
        edges = torch.quantile(pilot[:, axis], levels)
        # Edges on cell boundaries, so each quadrature cell lies inside one bin.
        edges = (edges / density.step).round() * density.step
        cell_bin = cell_bin * bins_per_axis + torch.bucketize(free[:, axis].contiguous(), edges)
        sample_bin = sample_bin * bins_per_axis + torch.bucketize(
            free_samples[:, axis].contiguous(), edges
        )
    num_bins = bins_per_axis**density.dim
    observed.append(torch.bincount(sample_bin, minlength=num_bins).to(torch.float64))
    expected.append(torch.bincount(cell_bin, masses, minlength=num_bins) * len(samples))
    observed = torch.cat([o.reshape(-1) for o in observed])
    expected = torch.cat([e.reshape(-1) for e in expected])
    return _chi_square_p_value(observed, expected)


def _interior(samples: torch.Tensor, density: Density) -> torch.Tensor:
    keep = torch.ones(len(samples), dtype=torch.bool)
    for atom in density.atoms:
        keep &= samples != atom
    return samples[keep]


def _chi_square_p_value(observed: torch.Tensor, expected: torch.Tensor) -> float:
    # Lump sparse bins so the chi-square approximation holds (expected count >= 5 each).
    sparse = expected < 5
    if sparse.any():
        observed = torch.cat([observed[~sparse], observed[sparse].sum().reshape(1)])
        expected = torch.cat([expected[~sparse], expected[sparse].sum().reshape(1)])
    statistic = ((observed - expected) ** 2 / expected).sum().item()
    return float(stats.chi2.sf(statistic, df=len(observed) - 1))


@pytest.mark.parametrize("density", DENSITIES, ids=DENSITY_IDS)
def test_rsample_matches_log_prob(density):
    """Goodness of fit: NUM_SAMPLES draws (seed 0) against the bins' mass under ``log_prob``."""
    torch.manual_seed(0)
    dist = density.make()
    samples = dist.rsample((NUM_SAMPLES,)).detach()
    assert _goodness_of_fit_p_value(samples, dist, density) > P_VALUE_FLOOR


@pytest.mark.parametrize("density", DENSITIES, ids=DENSITY_IDS)
def test_rsample_matches_log_prob_twin_fails_on_wrong_density(density):
    """The same test rejects the density of a slightly different law for the same draws."""
    torch.manual_seed(0)
    samples = density.make().rsample((NUM_SAMPLES,)).detach()
    assert _goodness_of_fit_p_value(samples, density.wrong(), density) < P_VALUE_FLOOR


# ------------------------------------------------------------------------------ gradient flow


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_gradients_finite_and_reach_every_parameter(example):
    torch.manual_seed(0)
    params = example.tensors(requires_grad=True)
    dist = example.make(**params)
    value = dist.rsample((50,))
    weights = torch.linspace(-1, 1, value[0].numel(), dtype=value.dtype).reshape(value[0].shape)
    (weights * value + value**2).sum().backward()
    for name, param in params.items():
        if name in example.no_grad:
            continue
        assert param.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient for {name}"
        assert (param.grad != 0).any(), f"zero gradient for {name}"


# ------------------------------------------------------------------------------------- pyro


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_pyro_sample_accepts_it(example):
    pyro = pytest.importorskip("pyro")
    import pyro.poutine as poutine

    dist = example.build()

    def model():
        with pyro.plate("data", 4, dim=-2):
            return pyro.sample("z", dist)

    trace = poutine.trace(model).get_trace()
    site = trace.nodes["z"]
    assert site["value"].shape == (4,) + dist.batch_shape + dist.event_shape
    if not (isinstance(dist, relaxed.GumbelSoftmaxTopK) and not dist.hard):
        trace.compute_log_prob()
        assert site["log_prob"].shape == (4,) + dist.batch_shape
        assert torch.isfinite(site["log_prob"]).all()
