"""Mixtures: components torch accepts, full-covariance Gaussian components, shapes and dtypes.

Gradients are checked two ways: unbiasedness of ``∇θ E[f(z)]`` against closed-form moments (with
a twin that fails on a wrong Jacobian), and the Jacobian ``dz/dθ`` of one draw against central
finite differences of the inverse distributional transform (solved by bisection in float64).
"""

import math

import pytest
import torch
import torch.distributions as td

import stochgrad.implicit as irt
import stochgrad.implicit.mixture as mixture_module
from tests.implicit.stats import Z_TOL, exact_gradients, per_sample_gradients, z_scores

DTYPE = torch.float64


def _t(values):
    return torch.tensor(values, dtype=DTYPE)


# ---------------------------------------------------------------- full-covariance Gaussians

LOGITS = _t([0.3, -0.4])
LOC = _t([[-1.0, 0.5, 1.5], [1.0, -0.5, 0.0]])
SCALE_TRIL = _t(
    [
        [[0.8, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.3, 0.4, 0.6]],
        [[1.1, 0.0, 0.0], [-0.6, 0.5, 0.0], [0.2, -0.7, 0.9]],
    ]
)
COV_FACTOR = _t([[[0.6, 0.1], [-0.4, 0.5], [0.3, 0.2]], [[0.2, -0.5], [0.7, 0.3], [-0.1, 0.4]]])
COV_DIAG = _t([[0.5, 0.8, 0.4], [0.9, 0.3, 0.6]])


def mvn_mixture(logits, loc, scale_tril):
    components = irt.MultivariateNormal(loc, scale_tril=scale_tril)
    return irt.MixtureSameFamily(td.Categorical(logits=logits), components)


def low_rank_mixture(logits, loc, cov_factor, cov_diag):
    components = td.LowRankMultivariateNormal(loc, cov_factor, cov_diag)
    return irt.MixtureSameFamily(td.Categorical(logits=logits), components)


def diagonal_mixture(logits, loc, scale):
    components = td.Independent(td.Normal(loc, scale), 1)
    return irt.MixtureSameFamily(td.Categorical(logits=logits), components)


def _statistic(z):
    # a linear and a quadratic part that couples the coordinates
    return z[..., 0] * z[..., 1] + z[..., 2] ** 2 + z[..., 1] - 0.5 * z[..., 0] * z[..., 2]


def _gaussian_moment(logits, loc, covariance):
    weights = torch.softmax(logits, -1)
    second = covariance + loc.unsqueeze(-1) * loc.unsqueeze(-2)
    per = second[..., 0, 1] + second[..., 2, 2] + loc[..., 1] - 0.5 * second[..., 0, 2]
    return (weights * per).sum(-1)


def _mvn_moment(logits, loc, scale_tril):
    scale_tril = scale_tril.tril()  # the upper triangle is not a parameter of the law
    return _gaussian_moment(logits, loc, scale_tril @ scale_tril.mT)


def _low_rank_moment(logits, loc, cov_factor, cov_diag):
    return _gaussian_moment(logits, loc, cov_factor @ cov_factor.mT + torch.diag_embed(cov_diag))


GAUSSIAN_CASES = {
    "mvn": (mvn_mixture, [LOGITS, LOC, SCALE_TRIL], _mvn_moment),
    "low_rank": (low_rank_mixture, [LOGITS, LOC, COV_FACTOR, COV_DIAG], _low_rank_moment),
}


def _max_z_score(make, params, moment, n, seed=0):
    torch.manual_seed(seed)
    estimates = per_sample_gradients(make, params, _statistic, n)
    exact = exact_gradients(moment, params)
    # 0/0 where an entry has no gradient at all (the upper triangle of scale_tril)
    scores = [
        z_scores(e, x).abs().nan_to_num(nan=0.0).max()
        for e, x in zip(estimates, exact, strict=True)
    ]
    return float(torch.stack(scores).max())


@pytest.mark.parametrize("case", list(GAUSSIAN_CASES))
def test_full_covariance_mixture_gradient_is_unbiased(case):
    make, params, moment = GAUSSIAN_CASES[case]
    assert _max_z_score(make, params, moment, 40_000) < Z_TOL


def test_full_covariance_twin_without_the_cross_coordinate_jacobian_fails(monkeypatch):
    """The same test rejects the gradient of a diagonal-only Jacobian (each coordinate solved
    on its own, as if the components were factorized)."""
    solve = mixture_module._implicit_solve

    def diagonal_only(z, u, jacobian):
        return solve(z, u, torch.diag_embed(jacobian.diagonal(dim1=-2, dim2=-1)))

    monkeypatch.setattr(mixture_module, "_implicit_solve", diagonal_only)
    make, params, moment = GAUSSIAN_CASES["mvn"]
    assert _max_z_score(make, params, moment, 40_000) > 2 * Z_TOL


def _gaussian_conditional_cdf(z, d, logits, loc, scale_tril):
    """``u_d = F(z_d | z_<d)`` of a mixture of Gaussians, for one point ``z`` (float64)."""
    head = z[: d + 1]
    eps = torch.linalg.solve_triangular(
        scale_tril[:, : d + 1, : d + 1], (head - loc[:, : d + 1]).unsqueeze(-1), upper=False
    ).squeeze(-1)
    diag = scale_tril.diagonal(dim1=-2, dim2=-1)[:, :d]
    log_marginal = (-0.5 * eps[:, :d] ** 2 - diag.log()).sum(-1)
    weights = torch.softmax(torch.log_softmax(logits, -1) + log_marginal, -1)
    return (weights * torch.special.ndtr(eps[:, d])).sum()


def _inverse_transform(u, logits, loc, scale_tril):
    """The point whose conditional CDFs are ``u``, coordinate by coordinate by bisection."""
    z = torch.zeros_like(u)
    for d in range(u.shape[-1]):
        low, high = -60.0, 60.0
        for _ in range(90):
            z[d] = (low + high) / 2
            if _gaussian_conditional_cdf(z, d, logits, loc, scale_tril) < u[d]:
                low = float(z[d])
            else:
                high = float(z[d])
        z[d] = (low + high) / 2
    return z


def _jacobian_against_finite_differences(make, params, to_gaussian, step=1e-6):
    """Autograd ``dz/dθ`` of one draw and its central finite difference, flattened."""
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    torch.manual_seed(3)
    z = make(*leaves).rsample()
    rows = [torch.autograd.grad(z[d], leaves, retain_graph=True) for d in range(z.shape[-1])]
    autograd = torch.stack([torch.cat([g.flatten() for g in row]) for row in rows])
    with torch.no_grad():
        base = to_gaussian(*params)
        u = torch.stack(
            [_gaussian_conditional_cdf(z.detach(), d, *base) for d in range(z.shape[-1])]
        )
        columns = []
        for i, param in enumerate(params):
            for j in range(param.numel()):
                shifted = []
                for sign in (1, -1):
                    moved = [p.clone() for p in params]
                    moved[i].view(-1)[j] += sign * step
                    shifted.append(_inverse_transform(u, *to_gaussian(*moved)))
                columns.append((shifted[0] - shifted[1]) / (2 * step))
    return autograd, torch.stack(columns, -1)


JACOBIAN_CASES = {
    "mvn": (mvn_mixture, [LOGITS, LOC, SCALE_TRIL], lambda lg, m, tril: (lg, m, tril)),
    "low_rank": (
        low_rank_mixture,
        [LOGITS, LOC, COV_FACTOR, COV_DIAG],
        lambda lg, m, f, d: (lg, m, td.LowRankMultivariateNormal(m, f, d).scale_tril),
    ),
    "diagonal": (
        diagonal_mixture,
        [LOGITS, LOC, COV_DIAG.sqrt()],
        lambda lg, m, s: (lg, m, torch.diag_embed(s)),
    ),
}


@pytest.mark.parametrize("case", list(JACOBIAN_CASES))
def test_mixture_jacobian_matches_dense_finite_differences(case):
    make, params, to_gaussian = JACOBIAN_CASES[case]
    autograd, finite = _jacobian_against_finite_differences(make, params, to_gaussian)
    # entries of the upper triangle of scale_tril do not enter the law: both are 0 there
    torch.testing.assert_close(autograd, finite, rtol=1e-6, atol=1e-7)


def _generic_normal_rsample(mix, z):
    """``z`` with the gradient of the generic coordinatewise path (through ``Normal.cdf``)."""
    components = mix.component_distribution
    log_weights = torch.log_softmax(mix.mixture_distribution.logits, -1)
    coordinates = mixture_module._Coordinatewise(components)
    flat = z.reshape(*z.shape[: z.dim() - len(mix.event_shape)], -1)
    transform = mix._factorized_transform(flat, log_weights, coordinates)
    return mixture_module._implicit_solve(flat, *transform).reshape(z.shape)


def _projected_gradients(z, params, seed=1):
    """``∂(z · w)/∂θ`` for two fixed random projections ``w``."""
    gen = torch.Generator().manual_seed(seed)
    grads = []
    for _ in range(2):
        w = torch.randn(z.shape, dtype=z.dtype, generator=gen)
        grads += torch.autograd.grad((z * w).sum(), params, retain_graph=True)
    return grads


def test_normal_closed_form_matches_the_generic_coordinatewise_path():
    """The diagonal-Gaussian fast path and the generic one (through ``cdf``) agree: the same
    Jacobian ``∂u/∂z``, and so (one solve further) the same ``dz/dθ``."""
    torch.manual_seed(0)
    logits, loc, scale = (p.clone().requires_grad_() for p in (LOGITS, LOC, COV_DIAG.sqrt()))
    mix = diagonal_mixture(logits, loc, scale)
    z = mix.sample((64,))
    log_weights = torch.log_softmax(logits, -1)
    with torch.no_grad():
        pieces = mixture_module._normal_pieces(z, log_weights, loc, scale)
    weighted_offset, score, _, density = pieces
    fast = mixture_module._normal_jacobian(weighted_offset, score, density)
    coordinates = mixture_module._Coordinatewise(td.Independent(td.Normal(loc, scale), 1))
    generic = mixture_module._factorized_transform(z, log_weights, coordinates.pieces)
    torch.testing.assert_close(fast, generic[1], rtol=1e-10, atol=1e-12)
    torch.manual_seed(1)
    fused = mix.rsample((64,))
    grads = [
        _projected_gradients(draw, (logits, loc, scale))
        for draw in (fused, _generic_normal_rsample(mix, fused.detach()))
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "batch_shape, sample_shape, dim",
    [((), (37,), 5), ((3,), (11, 2), 4), ((2,), (), 3), ((), (23,), 1)],
)
def test_chunked_normal_path_matches_the_generic_path(monkeypatch, batch_shape, sample_shape, dim):
    """The fused diagonal-Gaussian gradient, split into many uneven chunks of samples, equals the
    generic path's for batched components, sample shapes, and univariate events."""
    monkeypatch.setattr(mixture_module, "_CHUNK_ELEMENTS", 1)  # one sample row per chunk
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(*batch_shape, 3, dtype=DTYPE, generator=gen).requires_grad_()
    loc = torch.randn(*batch_shape, 3, dim, dtype=DTYPE, generator=gen).requires_grad_()
    scale = (0.5 + torch.rand(*batch_shape, 3, dim, dtype=DTYPE, generator=gen)).requires_grad_()
    if dim > 1:
        components = td.Independent(td.Normal(loc, scale), 1)
    else:
        components = td.Normal(loc.squeeze(-1), scale.squeeze(-1))
    mix = irt.MixtureSameFamily(td.Categorical(logits=logits), components)
    fused = mix.rsample(sample_shape)
    grads = [
        _projected_gradients(draw, (logits, loc, scale))
        for draw in (fused, _generic_normal_rsample(mix, fused.detach()))
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- components torch accepts


def _event_components():
    torch.manual_seed(0)
    return {
        "MultivariateNormal": td.MultivariateNormal(LOC, scale_tril=SCALE_TRIL),
        "LowRankMultivariateNormal": td.LowRankMultivariateNormal(LOC, COV_FACTOR, COV_DIAG),
        "Dirichlet": td.Dirichlet(_t([[1.5, 2.0, 0.5], [3.0, 1.0, 2.0]])),
    }


@pytest.mark.parametrize("name", ["MultivariateNormal", "LowRankMultivariateNormal", "Dirichlet"])
def test_event_shaped_components_behave_as_in_torch(name):
    components = _event_components()[name]
    ours = irt.MixtureSameFamily(td.Categorical(logits=LOGITS), components)
    theirs = td.MixtureSameFamily(td.Categorical(logits=LOGITS), components)
    assert (ours.batch_shape, ours.event_shape) == (theirs.batch_shape, theirs.event_shape)
    torch.manual_seed(1)
    value = theirs.sample((5,))
    torch.manual_seed(1)
    torch.testing.assert_close(ours.sample((5,)), value)
    torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value))
    torch.testing.assert_close(ours.mean, theirs.mean)
    torch.testing.assert_close(ours.variance, theirs.variance)
    expanded = ours.expand((4,))
    assert type(expanded) is irt.MixtureSameFamily
    assert expanded.sample((2,)).shape == (2, 4, 3)
    assert ours.has_rsample is (name != "Dirichlet")


def test_rsample_of_an_unsupported_component_names_it():
    concentration = _t([[1.5, 2.0, 0.5], [3.0, 1.0, 2.0]]).requires_grad_()
    mix = irt.MixtureSameFamily(td.Categorical(logits=LOGITS), td.Dirichlet(concentration))
    with pytest.raises(NotImplementedError, match="Dirichlet"):
        mix.rsample()
    assert mix.sample((3,)).shape == (3, 3)


def test_discrete_components_construct_and_score_but_do_not_claim_rsample():
    components = td.Binomial(total_count=_t([5.0, 10.0]), probs=_t([0.3, 0.6]))
    ours = irt.MixtureSameFamily(td.Categorical(logits=LOGITS), components)
    theirs = td.MixtureSameFamily(td.Categorical(logits=LOGITS), components)
    value = _t([0.0, 3.0, 5.0])
    torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value))
    assert not ours.has_rsample


def test_per_component_supports_accept_every_draw_and_score_inside_their_own():
    # The support is the union of the components' supports. torch's MixtureSameFamily asks for
    # all of them, so it rejects its own draws (and the components reject each other's).
    weights = torch.softmax(LOGITS, -1)
    binomials = td.Binomial(total_count=_t([5.0, 10.0]), probs=_t([0.3, 0.6]))
    uniforms = td.Uniform(_t([-1.0, 0.5]), _t([0.5, 3.0]))
    for components, only_second, outside in [(binomials, 8.0, 11.0), (uniforms, 2.0, 4.0)]:
        ours = irt.MixtureSameFamily(td.Categorical(logits=LOGITS), components, True)
        theirs = td.MixtureSameFamily(td.Categorical(logits=LOGITS), components, True)
        torch.manual_seed(0)
        assert ours.support.check(ours.sample((1000,))).all()
        value = _t(only_second)
        with pytest.raises(ValueError, match="support"):
            theirs.log_prob(value)
        second = td.Binomial(_t(10.0), _t(0.6)) if components is binomials else td.Uniform(0.5, 3.0)
        expected = weights[1].log() + second.log_prob(value)
        torch.testing.assert_close(ours.log_prob(value), expected)
        with pytest.raises(ValueError, match="support"):
            ours.log_prob(_t(outside))
    # the cdf of component k is 0 below and 1 above its support
    mix = irt.MixtureSameFamily(td.Categorical(logits=LOGITS), uniforms, True)
    torch.testing.assert_close(mix.cdf(_t(2.0)), weights[0] + weights[1] * 1.5 / 2.5)


def _uniform_moment(logits, low, high):
    weights = torch.softmax(logits, -1)
    return (weights * (low + high) / 2).sum(-1)


def test_uniform_components_with_tensor_bounds_have_unbiased_gradients():
    params = [LOGITS, _t([-1.0, 0.5]), _t([0.5, 3.0])]

    def make(logits, low, high):
        return irt.MixtureSameFamily(td.Categorical(logits=logits), td.Uniform(low, high))

    torch.manual_seed(0)
    estimates = per_sample_gradients(make, params, lambda z: z, 100_000)
    exact = exact_gradients(_uniform_moment, params)
    for estimate, value in zip(estimates, exact, strict=True):
        assert float(z_scores(estimate, value).abs().max()) < Z_TOL


def test_heterogeneous_mixture_with_tensor_bounds_matches_its_density():
    low, high = _t([-1.0, 0.0]), _t([1.0, 2.0])
    mix = irt.Mixture([td.Uniform(low, high), td.Normal(_t([0.0, 1.0]), 1.0)])
    value = _t([0.5, 2.5])
    expected = torch.logsumexp(
        torch.stack(
            [
                torch.where((value >= low) & (value < high), -torch.log(high - low), -math.inf),
                td.Normal(_t([0.0, 1.0]), 1.0).log_prob(value),
            ]
        )
        + math.log(0.5),
        0,
    )
    torch.testing.assert_close(mix.log_prob(value), expected)


# ---------------------------------------------------------------- shapes


def test_heterogeneous_mixture_with_sample_shape_and_unbatched_weights():
    loc, scale = _t([0.0, 1.0, 2.0]).requires_grad_(), _t([1.0, 0.5, 2.0])
    concentration, rate = _t([2.0, 3.0, 1.5]), _t([1.0, 2.0, 0.5]).requires_grad_()
    components = [irt.Normal(loc, scale), irt.Gamma(concentration, rate)]
    for weights in (None, _t([0.3, 0.7])):
        mix = irt.Mixture(components, weights=weights)
        z = mix.rsample((5,))
        assert z.shape == (5, 3)
        z.sum().backward()
        assert torch.isfinite(loc.grad).all() and torch.isfinite(rate.grad).all()


def test_unbatched_categorical_with_batched_components():
    """torch's own MixtureSameFamily fails in ``sample`` here (gather rank mismatch)."""
    loc = _t([[-1.0, 1.0], [0.0, 2.0], [3.0, -2.0]]).requires_grad_()
    components = td.Normal(loc, torch.ones(3, 2, dtype=DTYPE))
    mix = irt.MixtureSameFamily(td.Categorical(logits=_t([0.2, -0.2])), components)
    assert mix.batch_shape == (3,)
    z = mix.rsample((4,))
    assert z.shape == (4, 3)
    z.sum().backward()
    assert torch.isfinite(loc.grad).all()
    reference = td.MixtureSameFamily(
        td.Categorical(logits=_t([0.2, -0.2]).expand(3, 2)), components
    )
    torch.testing.assert_close(mix.log_prob(z.detach()), reference.log_prob(z.detach()))


def test_empty_batch_without_validation():
    loc = torch.zeros(0, 3, dtype=DTYPE, requires_grad=True)
    mix = irt.MixtureSameFamily(
        td.Categorical(logits=torch.zeros(0, 3, dtype=DTYPE), validate_args=False),
        td.Normal(loc, torch.ones(0, 3, dtype=DTYPE), validate_args=False),
        validate_args=False,
    )
    assert mix.rsample((2,)).shape == (2, 0)
    assert mix.sample().shape == (0,)
    assert mix.log_prob(torch.zeros(0, dtype=DTYPE)).shape == (0,)


def test_student_alias():
    assert irt.Student is irt.StudentT


# ---------------------------------------------------------------- half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype):
    logits = torch.tensor([0.2, -0.3], dtype=dtype, requires_grad=True)
    loc = torch.tensor([[-1.0, 0.5], [1.0, 0.0]], dtype=dtype, requires_grad=True)
    scale = torch.tensor([[0.8, 1.0], [0.6, 1.2]], dtype=dtype)
    mix = diagonal_mixture(logits, loc, scale)
    z = mix.rsample((50,))
    assert z.dtype == dtype
    (z**2).sum().backward()
    assert loc.grad.dtype == dtype and torch.isfinite(loc.grad).all()
    log_prob = mix.log_prob(z.detach())
    assert log_prob.dtype == dtype
    in_float32 = diagonal_mixture(logits.float(), loc.float(), scale.float())
    expected = in_float32.log_prob(z.detach().float()).to(dtype)
    torch.testing.assert_close(log_prob, expected)
    hetero = irt.Mixture([td.Normal(loc[0, 0], 1.0), td.Gumbel(loc[1, 0], 1.0)])
    sample = hetero.rsample((10,))
    assert sample.dtype == dtype and hetero.log_prob(sample.detach()).dtype == dtype
