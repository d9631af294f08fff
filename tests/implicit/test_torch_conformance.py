"""torch's generic distribution checks, run on every class of :mod:`stochgrad.implicit`.

Modelled on the generic tests of pytorch's ``test/distributions/test_distributions.py`` (shapes,
``expand`` and subclass ``expand``, support and parameter constraints, ``cdf``/``icdf``,
``d cdf/dx = pdf``, entropy by Monte Carlo, KL shapes, validation, pickling, dtypes), each
parametrized over the example registry ``tests/implicit/examples.py`` plus ``EXTRA_CASES``: laws
that torch's classes accept and that the registry's gradient tests do not need (mixtures of
multivariate, bounded and discrete components, unbatched weights).

Checks that fail because of an open item of issue 11 owned by another change are expected
failures that name the item, never silent skips: a whole case in ``BROKEN_CASES`` (xfailed while
its probe still raises, and ``test_broken_cases_are_still_broken`` fails as a strict XPASS once
the probe passes), a single check in ``KNOWN`` (``xfail(strict=True)``). Either way the entry
must be deleted with the fix. ``SKIPPED`` holds what torch itself cannot do.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.distributions as td
from torch.distributions import constraints, kl_divergence

import stochgrad.implicit as irt
from tests.implicit.examples import EXAMPLES


@dataclass
class Case:
    name: str
    cls: type
    # build(dtype, leaves): the law in ``dtype``; when a list ``leaves`` is given, its floating
    # parameters require grad and are appended to it
    build: Callable[..., td.Distribution]


def _leaf(value: torch.Tensor, dtype: torch.dtype, leaves: list | None) -> torch.Tensor:
    value = value.detach().to(dtype)  # registry tensors are shared between test modules
    if leaves is not None and value.is_floating_point():
        value = value.detach().clone().requires_grad_()
        leaves.append(value)
    return value


def _from_example(example) -> Case:
    make = getattr(example, "make", None) or example.cls

    def build(dtype: torch.dtype, leaves: list | None = None) -> td.Distribution:
        return make(**{name: _leaf(v, dtype, leaves) for name, v in example.params.items()})

    return Case(example.name, example.cls, build)


# --- laws torch accepts that the registry does not hold ---------------------------------------


def _laws(dtype, leaves, *values):
    """Each nested list as a parameter tensor in ``dtype`` (a gradient leaf if ``leaves``)."""
    return [_leaf(torch.tensor(v, dtype=torch.float64), dtype, leaves) for v in values]


def _mvn_mixture(dtype, leaves=None):
    logits, loc, tril = _laws(
        dtype,
        leaves,
        [0.3, -0.2],
        [[-1.0, 0.5], [1.0, 0.0]],
        [[[1, 0], [0.4, 0.8]], [[0.7, 0], [-0.3, 1.1]]],
    )
    return irt.MixtureSameFamily(
        td.Categorical(logits=logits), td.MultivariateNormal(loc, scale_tril=tril)
    )


def _low_rank_mixture(dtype, leaves=None):
    logits, loc, factor, diag = _laws(
        dtype,
        leaves,
        [0.0, 0.5],
        [[-1.0, 0.5], [1.0, 0.0]],
        [[[0.5], [-0.2]], [[0.3], [0.4]]],
        [[0.6, 0.9], [1.2, 0.5]],
    )
    return irt.MixtureSameFamily(
        td.Categorical(logits=logits), td.LowRankMultivariateNormal(loc, factor, diag)
    )


def _dirichlet_mixture(dtype, leaves=None):
    logits, concentration = _laws(dtype, leaves, [0.0, 0.5], [[0.5, 2.0, 4.0], [3.0, 1.0, 2.0]])
    return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Dirichlet(concentration))


def _uniform_mixture(dtype, leaves=None):
    logits, low, high = _laws(dtype, leaves, [0.0, 0.5], [-1.0, 0.0], [1.0, 3.0])
    return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Uniform(low, high))


def _binomial_mixture(dtype, leaves=None):
    logits, probs = _laws(dtype, leaves, [0.0, 0.5], [0.3, 0.6])
    count = torch.tensor([5.0, 8.0], dtype=dtype)
    return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Binomial(count, probs=probs))


def _unbatched_weights_mixture(dtype, leaves=None):
    # torch's own sample fails here (gather rank mismatch); ours should not
    logits, loc = _laws(dtype, leaves, [0.0, 0.5], [[-1.0, 1.0], [0.0, 2.0], [-2.0, 0.5]])
    return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Normal(loc, 1.0))


def _hetero_default_weights(dtype, leaves=None):
    loc, scale, shape, rate = _laws(
        dtype, leaves, [-1.0, 0.0, 2.0], [0.5, 1.0, 1.5], [2.0, 3.0, 0.5], [1.0, 2.0, 1.0]
    )
    return irt.Mixture([irt.Normal(loc, scale), irt.Gamma(shape, rate)])


EXTRA_CASES = [
    Case("mixture_of_multivariate_normals", irt.MixtureSameFamily, _mvn_mixture),
    Case("mixture_of_low_rank_normals", irt.MixtureSameFamily, _low_rank_mixture),
    Case("mixture_of_dirichlets", irt.MixtureSameFamily, _dirichlet_mixture),
    Case("mixture_of_uniforms_with_tensor_bounds", irt.MixtureSameFamily, _uniform_mixture),
    Case("mixture_of_binomials", irt.MixtureSameFamily, _binomial_mixture),
    Case(
        "mixture_same_family_unbatched_weights", irt.MixtureSameFamily, _unbatched_weights_mixture
    ),
    Case("mixture_heterogeneous_default_weights", irt.Mixture, _hetero_default_weights),
]
# --- end of the extra laws --------------------------------------------------------------------

CASES = [_from_example(example) for example in EXAMPLES] + EXTRA_CASES

# Open items of issue 11 owned by another change. A case in BROKEN_CASES xfails every check while
# its probe still raises; test_broken_cases_are_still_broken turns into a failure (strict XPASS)
# once the probe passes, so the entry must be deleted with the fix. KNOWN marks single checks.


BROKEN_CASES: dict[str, tuple[str, Callable[[Case], None]]] = {}
KNOWN: dict[tuple[str, str], str] = {
    # found by this module, not in issue 11's list: cdf(x) is the CDF of x - loc on [-π, π)
    # evaluated unwrapped, so it leaves [0, 1] where x - loc leaves [-π, π)
    ("vonmises", "cdf_range"): "VonMises.cdf leaves [0, 1] where value - loc leaves [-π, π)",
}
SKIPPED: dict[tuple[str, str], str] = {
    ("factorized_logistic", "pickle"): (
        "torch's own TransformedDistribution with SigmoidTransform().inv does not survive pickle "
        "or deepcopy (_InverseTransform holds a weak reference)"
    ),
}


def _params(check: str, cases=CASES):
    def marks(case):
        if (case.name, check) in KNOWN:
            return [pytest.mark.xfail(strict=True, reason=KNOWN[(case.name, check)])]
        if (case.name, check) in SKIPPED:
            return [pytest.mark.skip(reason=SKIPPED[(case.name, check)])]
        return []

    return [pytest.param(case, id=case.name, marks=marks(case)) for case in cases]


def _known(case: Case) -> None:
    """xfail every check of a case whose known problem is still there."""
    if case.name in BROKEN_CASES:
        reason, probe = BROKEN_CASES[case.name]
        try:
            probe(case)
        except Exception:
            pytest.xfail(reason)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason))
        for name, (reason, _) in BROKEN_CASES.items()
    ],
)
def test_broken_cases_are_still_broken(name):
    case = next(case for case in CASES if case.name == name)
    BROKEN_CASES[name][1](case)


def _draw(dist: td.Distribution, shape=()) -> torch.Tensor:
    return dist.rsample(shape) if dist.has_rsample else dist.sample(shape)


def test_every_public_class_has_a_case():
    covered = {case.cls for case in CASES}
    public = {
        getattr(irt, name)
        for name in irt.__all__
        if isinstance(getattr(irt, name), type) and issubclass(getattr(irt, name), td.Distribution)
    }
    missing = sorted(cls.__name__ for cls in public - covered)
    assert not missing, f"classes without a conformance case: {missing}"


@pytest.mark.parametrize("case", _params("construct"))
def test_constructs(case):
    _known(case)
    dist = case.build(torch.float64)
    assert isinstance(dist, case.cls)


# --- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("shapes"))
def test_sample_and_log_prob_shapes(case):
    _known(case)
    dist = case.build(torch.float64)
    assert isinstance(dist.batch_shape, torch.Size) and isinstance(dist.event_shape, torch.Size)
    for sample_shape in [(), (2,), (2, 3)]:
        value = dist.sample(sample_shape)
        assert value.shape == torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
        assert not value.requires_grad  # sample() is detached
        assert dist.log_prob(value).shape == torch.Size(sample_shape) + dist.batch_shape
    for prop in ("mean", "variance"):
        try:
            moment = getattr(dist, prop)
        except NotImplementedError:
            continue
        assert moment.shape == dist.batch_shape + dist.event_shape, prop


@pytest.mark.parametrize("case", _params("rsample"))
def test_rsample_carries_gradients_or_says_it_cannot(case):
    # torch's test_rsample_requires_grad; has_rsample must tell the truth either way.
    _known(case)
    leaves: list[torch.Tensor] = []
    dist = case.build(torch.float64, leaves)
    if not dist.has_rsample:
        with pytest.raises(NotImplementedError):
            dist.rsample()
        return
    z = dist.rsample((3,))
    assert z.requires_grad and z.shape == (3, *dist.batch_shape, *dist.event_shape)
    grads = torch.autograd.grad(z.sum(), leaves, allow_unused=True)
    reached = [g for g in grads if g is not None]
    assert reached and all(torch.isfinite(g).all() for g in reached)


# --- expand -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("expand"))
def test_expand(case):
    _known(case)
    dist = case.build(torch.float64)
    for prefix in [(), (2,), (3, 2)]:
        batch_shape = torch.Size(prefix) + dist.batch_shape
        expanded = dist.expand(batch_shape)
        assert type(expanded) is type(dist)
        assert expanded.batch_shape == batch_shape and expanded.event_shape == dist.event_shape
        value = expanded.sample((4,))
        assert value.shape == (4, *batch_shape, *dist.event_shape)
        torch.testing.assert_close(expanded.log_prob(value), dist.log_prob(value))


@pytest.mark.parametrize("case", _params("subclass_expand"))
def test_subclass_expand(case):
    # torch's test_distribution_subclass_expand: a user subclass keeps its class through expand.
    _known(case)
    dist = case.build(torch.float64)
    subclass = type("UserSubclass", (type(dist),), {})
    dist.__class__ = subclass
    expanded = dist.expand((2, *dist.batch_shape))
    assert type(expanded) is subclass
    value = expanded.sample()
    assert value.shape == (2, *dist.batch_shape, *dist.event_shape)
    torch.testing.assert_close(expanded.log_prob(value), dist.log_prob(value))


@pytest.mark.parametrize("case", _params("empty_batch"))
def test_empty_batch(case):
    # torch returns empty tensors for an empty batch (validation off, as torch's own check).
    _known(case)
    dist = case.build(torch.float64)
    empty = dist.expand((0, *dist.batch_shape))
    empty._validate_args = False
    value = empty.sample((2,))
    assert value.shape == (2, 0, *dist.batch_shape, *dist.event_shape)
    assert empty.log_prob(value).shape == (2, 0, *dist.batch_shape)
    if empty.has_rsample:
        assert empty.rsample().shape == (0, *dist.batch_shape, *dist.event_shape)


# --- support and parameter constraints --------------------------------------------------------


@pytest.mark.parametrize("case", _params("support"))
def test_support_and_parameter_constraints(case):
    _known(case)
    dist = case.build(torch.float64)
    torch.manual_seed(0)
    value = dist.sample((100,))
    assert dist.support.check(value).all()
    for name, constraint in dist.arg_constraints.items():
        if constraints.is_dependent(constraint):
            continue
        param = getattr(dist, name, None)
        if not isinstance(param, torch.Tensor):
            continue
        assert constraint.check(param).all(), name


# --- cdf / icdf -------------------------------------------------------------------------------


def _cdf_or_skip(dist, value):
    try:
        return dist.cdf(value)
    except NotImplementedError:
        pytest.skip(f"{type(dist).__name__} has no cdf")


@pytest.mark.parametrize("case", _params("cdf_icdf"))
def test_icdf_inverts_cdf(case):
    _known(case)
    dist = case.build(torch.float64)
    torch.manual_seed(0)
    value = dist.sample((20,))
    cdf = _cdf_or_skip(dist, value)
    try:
        recovered = dist.icdf(cdf)
    except NotImplementedError:
        pytest.skip(f"{type(dist).__name__} has no icdf")
    torch.testing.assert_close(recovered, value, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", _params("cdf_pdf"))
def test_cdf_derivative_is_the_density(case):
    _known(case)
    dist = case.build(torch.float64)
    if dist.event_shape or dist.support.is_discrete:
        pytest.skip("multivariate or discrete: no scalar cdf derivative")
    torch.manual_seed(0)
    value = dist.sample((20,)).requires_grad_()
    cdf = _cdf_or_skip(dist, value)
    (derivative,) = torch.autograd.grad(cdf.sum(), value)
    torch.testing.assert_close(derivative, dist.log_prob(value).exp().detach(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", _params("cdf_range"))
def test_cdf_is_a_probability_and_increases(case):
    _known(case)
    dist = case.build(torch.float64)
    if dist.event_shape:
        pytest.skip("multivariate: no cdf")
    torch.manual_seed(0)
    value = dist.sample((200,)).sort(0).values
    cdf = _cdf_or_skip(dist, value)
    assert ((cdf >= 0) & (cdf <= 1)).all()
    assert (cdf.diff(dim=0) >= 0).all()


# --- entropy by Monte Carlo -------------------------------------------------------------------

ENTROPY_DRAWS = 100_000


@pytest.mark.parametrize("case", _params("entropy"))
def test_entropy_matches_monte_carlo(case):
    # Seed 0, 10⁵ draws, within 5 standard errors; the twin moves the claim by 0.1 nats or 5 %,
    # whichever is larger, and must be rejected (the test has the power to see such an error).
    _known(case)
    dist = case.build(torch.float64)
    try:
        entropy = dist.entropy()
    except NotImplementedError:
        pytest.skip(f"{type(dist).__name__} has no entropy")
    torch.manual_seed(0)
    neg_log_prob = -dist.log_prob(dist.sample((ENTROPY_DRAWS,)))
    estimate = neg_log_prob.mean(0)
    standard_error = neg_log_prob.std(0) / math.sqrt(ENTROPY_DRAWS)
    assert entropy.shape == dist.batch_shape
    assert ((estimate - entropy).abs() < 5 * standard_error).all()
    wrong = entropy + torch.clamp(0.05 * entropy.abs(), min=0.1)
    assert ((estimate - wrong).abs() > 5 * standard_error).all()  # the twin


# --- KL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("kl"))
def test_kl_shape_and_self_divergence(case):
    _known(case)
    dist = case.build(torch.float64)
    try:
        kl = kl_divergence(dist, dist)
    except NotImplementedError:
        pytest.skip(f"no KL registered for {type(dist).__name__}")
    assert kl.shape == dist.batch_shape
    torch.testing.assert_close(kl, torch.zeros_like(kl), rtol=0, atol=1e-10)
    expanded = dist.expand((2, *dist.batch_shape))
    assert kl_divergence(expanded, expanded).shape == expanded.batch_shape


# --- validation -------------------------------------------------------------------------------


def _outside(dist: td.Distribution, value: torch.Tensor) -> torch.Tensor:
    """A value of the right shape outside the support."""
    support = dist.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.simplex:
        return torch.ones_like(value)
    if support is constraints.real or support is constraints.real_vector:
        return torch.full_like(value, math.nan)
    if support in (constraints.positive, constraints.nonnegative):
        return -torch.ones_like(value)
    if support is constraints.unit_interval:
        return torch.full_like(value, 2.0)
    if isinstance(support, (constraints.interval, constraints.half_open_interval)):
        return torch.as_tensor(support.upper_bound, dtype=value.dtype) + 1 + 0 * value
    return torch.full_like(value, math.nan)


@pytest.mark.parametrize("case", _params("validate_value"))
def test_log_prob_validates_its_argument(case):
    _known(case)
    dist = case.build(torch.float64)
    dist._validate_args = True
    value = dist.sample()
    bad = _outside(dist, value)
    assert not dist.support.check(bad).all()
    with pytest.raises(ValueError):
        dist.log_prob(bad)


# Bad parameters for every public class: pytest.param(make, keyword arguments, the name the
# ValueError must carry), with id "<class>-<what is wrong>".
def _bad(label: str, make, match: str, **kwargs):
    return pytest.param(make, kwargs, match, id=label)


_1 = torch.tensor(1.0, dtype=torch.float64)
_BAD = torch.tensor(-1.0, dtype=torch.float64)
_ON = {"validate_args": True}
BAD_EXAMPLES = [
    _bad("Gamma-concentration", irt.Gamma, "concentration", concentration=_BAD, rate=_1, **_ON),
    _bad("Gamma-rate", irt.Gamma, "rate", concentration=_1, rate=_BAD, **_ON),
    _bad("Beta-a", irt.Beta, "concentration1", concentration1=_BAD, concentration0=_1, **_ON),
    _bad("Beta-b", irt.Beta, "concentration0", concentration1=_1, concentration0=_BAD, **_ON),
    _bad(
        "Dirichlet-concentration",
        irt.Dirichlet,
        "concentration",
        concentration=torch.tensor([1.0, -1.0]),
        **_ON,
    ),
    _bad("StudentT-df", irt.StudentT, "df", df=_BAD, **_ON),
    _bad("StudentT-scale", irt.StudentT, "scale", df=_1, loc=_1, scale=_BAD, **_ON),
    _bad("Normal-scale", irt.Normal, "scale", loc=_1, scale=_BAD, **_ON),
    _bad(
        "MultivariateNormal-scale_tril",
        irt.MultivariateNormal,
        "scale_tril",
        loc=torch.zeros(2),
        scale_tril=-torch.eye(2),
        **_ON,
    ),
    _bad(
        "VonMises-concentration", irt.VonMises, "concentration", loc=_1, concentration=_BAD, **_ON
    ),
    _bad(
        "VonMises-infinite-concentration",
        irt.VonMises,
        "concentration",
        loc=_1,
        concentration=torch.tensor(math.inf),
        **_ON,
    ),
    _bad(
        "TruncatedNormal-scale",
        irt.TruncatedNormal,
        "scale",
        loc=_1,
        scale=_BAD,
        low=-_1,
        high=_1,
        **_ON,
    ),
    _bad(
        "TruncatedNormal-bounds",
        irt.TruncatedNormal,
        "high",
        loc=_1,
        scale=_1,
        low=_1,
        high=-_1,
        **_ON,
    ),
    _bad(
        "MixtureSameFamily-batch-shapes",
        irt.MixtureSameFamily,
        "batch_shape",
        mixture_distribution=td.Categorical(logits=torch.zeros(2)),
        component_distribution=td.Normal(torch.zeros(3), 1.0),
        **_ON,
    ),
    _bad(
        "Mixture-logits",
        irt.Mixture,
        "logits",
        components=[td.Normal(0.0, 1.0), td.Normal(0.0, 1.0)],
        logits=torch.zeros(3),
    ),
    _bad("Factorized-base", irt.Factorized, "base", base=torch.zeros(2)),
]


@pytest.mark.parametrize("make, kwargs, match", BAD_EXAMPLES)
def test_invalid_parameters_raise_naming_the_argument(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_every_public_class_has_a_bad_example():
    covered = {param.id.split("-")[0] for param in BAD_EXAMPLES}
    public = {
        getattr(irt, name).__name__
        for name in irt.__all__
        if isinstance(getattr(irt, name), type) and issubclass(getattr(irt, name), td.Distribution)
    }
    assert public <= covered, f"classes without a bad example: {sorted(public - covered)}"


# --- pickling, deepcopy, dtypes ---------------------------------------------------------------


@pytest.mark.parametrize("case", _params("pickle"))
def test_pickle_and_deepcopy_keep_the_law(case):
    _known(case)
    dist = case.build(torch.float64)
    value = dist.sample((5,))
    for clone in (pickle.loads(pickle.dumps(dist)), copy.deepcopy(dist)):
        assert type(clone) is type(dist) and clone.batch_shape == dist.batch_shape
        torch.testing.assert_close(clone.log_prob(value), dist.log_prob(value))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", _params("dtype"))
def test_dtype_propagates(case, dtype):
    _known(case)
    dist = case.build(dtype)
    value = dist.sample((3,))
    if not dist.support.is_discrete:
        assert value.dtype == dtype
    assert dist.log_prob(value).dtype == dtype
    if dist.has_rsample:
        assert _draw(dist, (3,)).dtype == dtype
    try:
        mean = dist.mean
    except NotImplementedError:
        return
    assert mean.dtype == dtype
