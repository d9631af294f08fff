"""Shapes, broadcasting, expand, dtype, gradient flow and argument validation of the implicit
families (generic tests loop over ``EXAMPLES``)."""

import pytest
import torch
import torch.distributions as td

import stochgrad.implicit as irt
from tests.implicit.examples import EXAMPLES

CASES = [pytest.param(ex, id=ex.name) for ex in EXAMPLES]


def _build(example, dtype=torch.float64, requires_grad=False):
    params = [p.to(dtype).clone().requires_grad_(requires_grad) for p in example.params.values()]
    return example.build(*params), params


@pytest.mark.parametrize("example", CASES)
def test_sample_and_log_prob_shapes(example):
    dist, _ = _build(example)
    assert dist.has_rsample
    shape = torch.Size((2, 3)) + dist.batch_shape + dist.event_shape
    for method in (dist.rsample, dist.sample):
        z = method((2, 3))
        assert z.shape == shape
        assert dist.log_prob(z).shape == (2, 3) + dist.batch_shape
        assert bool(dist.support.check(z).all())


@pytest.mark.parametrize("example", CASES)
def test_expand(example):
    dist, _ = _build(example)
    expanded = dist.expand(torch.Size((4,)) + dist.batch_shape)
    assert type(expanded) is type(dist)
    assert expanded.batch_shape == (4,) + dist.batch_shape
    assert expanded.event_shape == dist.event_shape
    z = expanded.rsample((2,))
    assert z.shape == (2, 4) + dist.batch_shape + dist.event_shape
    assert torch.allclose(expanded.log_prob(z), dist.log_prob(z))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("example", CASES)
def test_dtype_and_gradients_flow(example, dtype):
    dist, params = _build(example, dtype, requires_grad=True)
    torch.manual_seed(0)
    z = dist.rsample((50,))
    assert z.dtype == dtype and z.requires_grad
    grads = torch.autograd.grad(example.statistic(z).sum(), params)
    for grad, param in zip(grads, params, strict=True):
        assert grad.dtype == dtype and grad.shape == param.shape
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("example", CASES)
def test_no_graph_without_parameters_requiring_grad(example):
    dist, _ = _build(example)
    assert not dist.rsample((3,)).requires_grad
    with torch.no_grad():
        dist, _ = _build(example, requires_grad=True)
        assert not dist.rsample((3,)).requires_grad


@pytest.mark.parametrize("example", CASES)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)])
def test_rsample_shape_and_support(example, sample_shape, dtype):
    params = [p.to(dtype).requires_grad_() for p in example.params.values()]
    dist = example.build(*params)
    z = dist.rsample(sample_shape)
    assert z.shape == torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
    assert z.dtype == dtype
    assert dist.support.check(z).all()
    assert dist.log_prob(z).shape == torch.Size(sample_shape) + dist.batch_shape
    z.sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("example", CASES)
def test_expand_keeps_class_and_rsample(example):
    dist = example.build(*example.params.values())
    big = dist.expand(torch.Size([4]) + dist.batch_shape)
    assert type(big) is type(dist)
    assert big.rsample().shape == torch.Size([4]) + dist.batch_shape + dist.event_shape


def test_parameters_broadcast():
    d = irt.Gamma(torch.ones(3, 1), torch.ones(4))
    assert d.batch_shape == (3, 4)
    b = irt.Beta(torch.ones(2, 1), 0.5)
    assert b.batch_shape == (2, 1)
    t = irt.StudentT(torch.ones(3), torch.zeros(2, 1), 1.0)
    assert t.rsample().shape == (2, 3)


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: irt.Gamma(torch.tensor([-1.0]), 1.0, validate_args=True), "concentration"),
        (lambda: irt.Gamma(torch.tensor([float("nan")]), 1.0, validate_args=True), "concentration"),
        (lambda: irt.Beta(torch.tensor([0.0]), 1.0, validate_args=True), "concentration1"),
        (lambda: irt.Dirichlet(torch.tensor([1.0, -2.0]), validate_args=True), "concentration"),
        (lambda: irt.Dirichlet(torch.tensor(1.0)), "concentration"),
        (lambda: irt.StudentT(torch.tensor([0.0]), validate_args=True), "df"),
        (lambda: irt.Normal(torch.zeros(2)), "scale"),
    ],
)
def test_bad_parameters_raise_clear_errors(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_log_prob_validates_samples():
    with pytest.raises(ValueError):
        irt.Beta(torch.tensor(2.0), 2.0, validate_args=True).log_prob(torch.tensor(1.5))


def test_normal_call_forms():
    mvn = irt.Normal(torch.zeros(2), covariance_matrix=2 * torch.eye(2))
    assert isinstance(mvn, irt.MultivariateNormal)
    assert mvn.event_shape == (2,)
    assert isinstance(irt.Normal(0.0, 1.0), irt.Normal)
    with pytest.raises(ValueError, match="scale"):
        irt.Normal(torch.zeros(2), torch.ones(2), covariance_matrix=torch.eye(2))


BAD = [
    ("concentration", lambda: irt.VonMises(0.0, -1.0, validate_args=True)),
    ("high must be > low", lambda: irt.TruncatedNormal(0.0, 1.0, 2.0, 1.0, validate_args=True)),
    ("scale", lambda: irt.TruncatedNormal(0.0, -1.0, 0.0, 1.0, validate_args=True)),
    ("at least one", lambda: irt.Mixture([])),
    ("one per component", lambda: irt.Mixture([td.Normal(0.0, 1.0)], logits=torch.zeros(2))),
    ("event_shape", lambda: irt.Mixture([td.Normal(0.0, 1.0), td.Dirichlet(torch.ones(2))])),
    ("weights or logits", lambda: irt.Mixture([td.Normal(0.0, 1.0)], torch.ones(1), torch.ones(1))),
    ("univariate", lambda: irt.Factorized(td.MultivariateNormal(torch.zeros(2), torch.eye(2)))),
]


@pytest.mark.parametrize("message, build", BAD, ids=[b[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_arguments_raise_value_error_naming_them(message, build):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("validate", [None, True, False], ids=["default", "on", "off"])
def test_rsample_leaves_the_components_validation_setting_alone(validate):
    rate = torch.tensor([1.0, 2.0], requires_grad=True)
    component = td.Exponential(rate, validate_args=validate)
    before = component._validate_args
    mixture = irt.MixtureSameFamily(td.Categorical(logits=torch.zeros(2)), component)
    mixture.rsample((3,)).sum().backward()
    assert component._validate_args == before
    assert ("_validate_args" in vars(component)) == (validate is not None)
