"""Shapes, broadcasting, expand, support, validation and finiteness of the foundation families."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad.implicit as irt
from tests.implicit.examples import EXAMPLES


def _make(example, params):
    if example.cls is irt.MultivariateNormal:
        return example.cls(params[0], scale_tril=params[1])
    return example.cls(*params)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)])
def test_rsample_shape_and_support(example, sample_shape, dtype):
    params = [p.to(dtype).requires_grad_() for p in example.params.values()]
    dist = _make(example, params)
    z = dist.rsample(sample_shape)
    assert z.shape == torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
    assert z.dtype == dtype
    assert dist.support.check(z).all()
    assert dist.log_prob(z).shape == torch.Size(sample_shape) + dist.batch_shape
    z.sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_expand_keeps_class_and_rsample(example):
    dist = _make(example, list(example.params.values()))
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


def test_cdfs_match_reference():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = torch.tensor([0.05, 0.3, 0.9, 0.999], dtype=torch.float64)
    expected = scipy_stats.beta(0.7, 2.5).cdf(x.numpy())
    got = irt.Beta(torch.tensor(0.7, dtype=torch.float64), 2.5).cdf(x)
    torch.testing.assert_close(got, torch.as_tensor(expected), rtol=1e-12, atol=0)
    t = torch.tensor([-3.0, -0.2, 0.0, 0.7, 12.0], dtype=torch.float64)
    expected = scipy_stats.t(3.5, loc=0.5, scale=2.0).cdf(t.numpy())
    got = irt.StudentT(torch.tensor(3.5, dtype=torch.float64), 0.5, 2.0).cdf(t)
    torch.testing.assert_close(got, torch.as_tensor(expected), rtol=1e-12, atol=1e-15)


log_concentration = st.floats(min_value=-3, max_value=4)


@settings(max_examples=40, deadline=None)
@given(a=log_concentration, b=log_concentration, double=st.booleans())
def test_gradients_finite_over_parameter_range(a, b, double):
    dtype = torch.float64 if double else torch.float32
    c1 = torch.tensor(10.0**a, dtype=dtype, requires_grad=True)
    c0 = torch.tensor(10.0**b, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    for dist in (
        irt.Gamma(c1, c0),
        irt.Beta(c1, c0),
        irt.Dirichlet(torch.stack([c1, c0])),
        # below df = 0.5 float32 draws can exceed 3.4e38 (|t| ~ U^(-1/df)) and overflow
        *([irt.StudentT(c1, 0.0, c0)] if c1 >= 0.5 else []),
    ):
        z = dist.rsample((64,))
        assert torch.isfinite(z).all()
        grads = torch.autograd.grad(z.sum(), (c1, c0), allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), (type(dist).__name__, a, b)


def test_small_concentrations_do_not_underflow_in_float32():
    torch.manual_seed(0)
    c = torch.full((2,), 0.01, requires_grad=True)
    z = irt.Dirichlet(c).rsample((1000,))
    assert (z > 0).all() and torch.isfinite(z).all()
    z[..., 0].mean().backward()
    assert torch.isfinite(c.grad).all()
    a = torch.tensor(0.05, requires_grad=True)
    x = irt.Beta(a, a).rsample((1000,))
    assert ((x > 0) & (x < 1)).all()
    x.mean().backward()
    assert torch.isfinite(a.grad)
