"""Deterministic and structural properties of the estimators: values, shapes, dtypes, state,
errors, and the variance step of RELAX. Statistical checks follow the policy stated in
``test_estimators_unbiased.py`` (seed, sample size, tolerance in standard errors, twin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    Normal,
    OneHotCategorical,
    Poisson,
)

import stochgrad.estimators as est

NUM_SE = 5.0
TARGET = 0.45


def cost_fn(b: torch.Tensor) -> torch.Tensor:
    return (b - TARGET).square().sum(-1)


def _bernoulli(logits: torch.Tensor) -> Independent:
    return Independent(Bernoulli(logits=logits), 1)


# Each Bernoulli estimator as a function (logits of shape (*batch, d)) -> surrogate (*batch),
# called through the protocol ``estimator(f, q, context)``.
def _protocol(estimator: est.Estimator) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(logits: torch.Tensor) -> torch.Tensor:
        context = torch.ones(*logits.shape[:-1], 1, dtype=logits.dtype)
        return estimator.to(logits.dtype)(cost_fn, _bernoulli(logits), context=context)

    return run


def _relax(logits: torch.Tensor) -> torch.Tensor:
    control = nn.Sequential(nn.Linear(logits.shape[-1], 4), nn.Tanh(), nn.Linear(4, 1))
    return _protocol(est.RELAX(control))(logits)


BERNOULLI_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "reinforce": _protocol(est.Reinforce()),
    "moving_average": _protocol(est.Reinforce(est.MovingAverageBaseline())),
    "nvil": _protocol(est.Reinforce(est.NVILBaseline(nn.Linear(1, 1)))),
    "leave_one_out": _protocol(est.Reinforce(est.LeaveOneOutBaseline(), n_samples=3)),
    "muprop": _protocol(est.MuProp()),
    "arm": _protocol(est.ARM()),
    "disarm": _protocol(est.DisARM()),
    "rebar": lambda logits: _protocol(est.REBAR())(logits),
    "relax": _relax,
    "straight_through": _protocol(est.StraightThrough()),
    "gumbel_straight_through": _protocol(est.GumbelStraightThrough(0.5)),
}


@pytest.mark.parametrize("name", list(BERNOULLI_ESTIMATORS))
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=str)
def test_shapes_and_dtype(name, batch_shape, dtype):
    torch.manual_seed(0)
    logits = torch.randn(*batch_shape, 5, dtype=dtype, requires_grad=True)
    surrogate = BERNOULLI_ESTIMATORS[name](logits)
    assert surrogate.shape == batch_shape
    assert surrogate.dtype == dtype
    (grad,) = torch.autograd.grad(surrogate.sum(), logits)
    assert grad.shape == logits.shape and grad.dtype == dtype
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list(BERNOULLI_ESTIMATORS))
def test_value_estimates_the_objective(name):
    """Seed 0, N = 20,000: the surrogate's value is an unbiased estimate of E f(b) (5 SE);
    its twin: the check rejects the objective at the target t = 0.40 instead of 0.45."""
    torch.manual_seed(0)
    logits = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).expand(20_000, -1)
    values = BERNOULLI_ESTIMATORS[name](logits.clone()).detach()
    prob = torch.sigmoid(logits[0])
    for target, should_match in [(TARGET, True), (0.40, False)]:
        exact = (prob * (1 - target) ** 2 + (1 - prob) * target**2).sum()
        z_score = (values.mean() - exact).abs() / (values.std() / values.numel() ** 0.5)
        assert bool(z_score <= NUM_SE) == should_match, (target, z_score)


@pytest.mark.parametrize(
    "estimator",
    [
        est.score_function_surrogate,
        est.MovingAverageBaseline(),
        est.NVILBaseline(normalize=False),
        est.LeaveOneOutBaseline(),
    ],
    ids=lambda e: getattr(e, "__name__", type(e).__name__),
)
def test_baseline_surrogate_value_is_cost(estimator):
    torch.manual_seed(0)
    cost = torch.randn(4, 3, requires_grad=True)
    log_prob = torch.randn(4, 3, requires_grad=True)
    surrogate = estimator(cost, log_prob)
    assert torch.equal(surrogate.detach(), cost.detach())
    surrogate.sum().backward()
    assert torch.equal(cost.grad, torch.ones_like(cost))  # the pathwise part is kept


def test_score_function_surrogate_gradient():
    cost = torch.tensor([2.0, -1.0], requires_grad=True)
    log_prob = torch.tensor([0.5, 0.1], requires_grad=True)
    est.score_function_surrogate(cost, log_prob, baseline=0.5).sum().backward()
    assert log_prob.grad.tolist() == [1.5, -1.5]
    assert cost.grad.tolist() == [1.0, 1.0]


def test_leave_one_out_baseline_formula():
    cost = torch.tensor([[1.0, 2.0, 6.0]])
    log_prob = torch.zeros(1, 3, requires_grad=True)
    est.LeaveOneOutBaseline(dim=1)(cost, log_prob).sum().backward()
    # b_k = mean of the other two costs
    assert log_prob.grad.tolist() == [[1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5]]


def test_moving_average_matches_bias_corrected_ema():
    decay = 0.7
    estimator = est.MovingAverageBaseline(decay=decay)
    batches = [torch.tensor([1.0, 3.0]), torch.tensor([5.0]), torch.tensor([0.0, 2.0, 4.0])]
    ema, used = 0.0, []
    for step, batch in enumerate(batches, start=1):
        log_prob = torch.zeros_like(batch, requires_grad=True)
        estimator(batch, log_prob).sum().backward()
        used.append(batch - log_prob.grad)  # grad = cost - baseline
        ema = decay * ema + (1 - decay) * batch.mean().item()
        assert estimator.value.item() == pytest.approx(ema / (1 - decay**step))
    # no history: each cost is centred by the mean of the others of its call, not by 0
    assert used[0].tolist() == [3.0, 1.0]
    used = [baselines.unique().item() for baselines in used[1:]]
    assert used[0] == pytest.approx(2.0) and used[1] == pytest.approx(
        ((1 - decay) * decay * 2.0 + (1 - decay) * 5.0) / (1 - decay**2)
    )


def test_eval_mode_freezes_statistics():
    estimator = est.MovingAverageBaseline().eval()
    estimator(torch.ones(3), torch.zeros(3))
    assert int(estimator.moments.num_updates) == 0


def _warmed_up_nvil_pair():
    """NVIL with and without normalisation after the same 3 calls on costs of scale 100
    (seed 0; the caller's draws follow them)."""
    torch.manual_seed(0)
    normalised, plain = est.NVILBaseline(decay=0.5), est.NVILBaseline(decay=0.5, normalize=False)
    for _ in range(3):
        costs = 100.0 * torch.randn(64)
        normalised(costs, torch.zeros(64))
        plain(costs, torch.zeros(64))
    return normalised, plain


def test_nvil_normalisation_divides_by_running_std():
    normalised, plain = _warmed_up_nvil_pair()
    costs = 100.0 * torch.randn(64)
    expected_scale = float(plain.moments.var.sqrt())
    grads = []
    for estimator in (normalised, plain):
        log_prob = torch.zeros(64, requires_grad=True)
        estimator(costs, log_prob).sum().backward()
        grads.append(log_prob.grad)
    scale = normalised.last_scale_
    assert scale == pytest.approx(expected_scale) and scale > 10
    torch.testing.assert_close(grads[0] * scale, grads[1])


def test_nvil_trains_its_network_on_squared_centred_cost():
    """The network predicts the centred cost in units of its spread: ψ minimises
    ((cost − c̄)/u − b_ψ(x))², u = max(1, rms(cost − c̄)); on the first call c̄ is the
    leave-one-out mean."""
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    estimator = est.NVILBaseline(net, normalize=False)
    context = torch.randn(5, 2)
    cost = 10.0 * torch.randn(5, 3)
    estimator(cost, torch.zeros(5, 3), context=context).sum().backward()
    residual = cost - (cost.sum() - cost) / (cost.numel() - 1)
    unit = residual.square().mean().sqrt()
    assert unit > 1
    fit = (residual / unit - net(context)).square().sum()
    expected = torch.autograd.grad(fit, net.weight)[0]
    torch.testing.assert_close(net.weight.grad, expected)
    # Twin: the unscaled fit (cost − c̄ − b_ψ(x))² gives another gradient.
    wrong = torch.autograd.grad((residual - net(context)).square().sum(), net.weight)[0]
    assert not torch.allclose(net.weight.grad, wrong)


def test_nvil_first_call_centres_by_the_other_costs():
    """Before any statistics, c̄ for element i is the mean of the other costs (independent of
    z_i, so unbiased) and σ̄² the mean square of the centred costs, not c̄ = 0 and σ̄ = 1:
    the first learning signal is not the raw cost."""
    cost = torch.tensor([1000.0, 1002.0, 1006.0, 1004.0])
    plain, normalised = est.NVILBaseline(normalize=False), est.NVILBaseline()
    grads = []
    for estimator in (plain, normalised):
        log_prob = torch.zeros(4, requires_grad=True)
        estimator(cost, log_prob).sum().backward()
        grads.append(log_prob.grad)
    centred = cost - (cost.sum() - cost) / 3
    torch.testing.assert_close(grads[0], centred)
    scale = float(centred.square().mean().sqrt())
    assert normalised.last_scale_ == pytest.approx(scale) and scale > 1
    torch.testing.assert_close(grads[1], centred / scale)
    # Both folded the call into their statistics: the next call uses the running mean.
    assert float(plain.moments.mean) == pytest.approx(float(cost.mean()))


def test_nvil_normalisation_divides_the_whole_estimate():
    """With normalisation the gradient is the unnormalised one divided by σ̄, the direct term
    ∇cost included (for an ELBO its noise, ∇log q with mean zero, would otherwise outweigh the
    normalised signal)."""
    normalised, plain = _warmed_up_nvil_pair()
    theta = torch.tensor(0.3, requires_grad=True)
    noise, log_prob = 100.0 * torch.randn(64), torch.randn(64)
    grads = []
    for estimator in (normalised, plain):
        cost = theta * noise  # depends on θ directly and through the score
        (grad,) = torch.autograd.grad(estimator(cost, theta * log_prob).sum(), theta)
        grads.append(grad)
    assert normalised.last_scale_ > 10
    torch.testing.assert_close(grads[0] * normalised.last_scale_, grads[1])


def test_nvil_unbiased_with_input_dependent_baseline_on_normal():
    """Seed 0, N = 200,000: ∇_μ E_{z ~ N(μ, 1)}[z²] = 2μ with an input-dependent NVIL baseline."""
    torch.manual_seed(0)
    num = 200_000
    context = torch.randn(num, 1)
    loc = (0.3 + 0.0 * context[:, 0]).requires_grad_(True)
    estimator = est.Reinforce(est.NVILBaseline(nn.Linear(1, 1), normalize=False))
    surrogate = estimator(lambda z: z.square(), Normal(loc, 1.0), context=context)
    (grad,) = torch.autograd.grad(surrogate.sum(), loc)
    for exact, should_match in [(0.6, True), (0.6 * 1.1, False)]:
        z_score = (grad.mean() - exact).abs() / (grad.std() / num**0.5)
        assert bool(z_score <= NUM_SE) == should_match


DISTRIBUTIONS = {
    # name: (distribution from a parameter, f, exact ∇ E f at the parameter value)
    "normal_loc": (lambda p: Normal(p, 1.0), lambda z: z.square(), 0.7, lambda p: 2 * p),
    "poisson_rate": (lambda p: Poisson(p), lambda z: z.square(), 2.0, lambda p: 1 + 2 * p),
}

OTHER_FAMILY_ESTIMATORS = {
    "reinforce": lambda: est.Reinforce(),
    "moving_average": lambda: est.Reinforce(est.MovingAverageBaseline()),
    "leave_one_out": lambda: est.Reinforce(est.LeaveOneOutBaseline(), n_samples=2),
    "muprop": lambda: est.MuProp(),
}


@pytest.mark.parametrize("family", list(DISTRIBUTIONS))
@pytest.mark.parametrize("estimator", list(OTHER_FAMILY_ESTIMATORS))
def test_unbiased_on_other_families(family, estimator):
    """Seed 0, N = 200,000 estimates: the mean is within 5 SE of the exact gradient; twin: the
    same estimates do not match 1.1× the exact gradient."""
    make, f, value, exact_fn = DISTRIBUTIONS[family]
    torch.manual_seed(0)
    num = 200_000
    param = torch.full((num, 1), value, dtype=torch.float64, requires_grad=True)
    module = OTHER_FAMILY_ESTIMATORS[estimator]()
    if estimator == "moving_average":  # one warm-up call on other draws
        module(f, make(param.detach()))
    surrogate = module(f, make(param))
    (grad,) = torch.autograd.grad(surrogate.sum(), param)
    exact = exact_fn(value)
    for target, should_match in [(exact, True), (1.1 * exact, False)]:
        z_score = (grad.mean() - target).abs() / (grad.std() / num**0.5)
        assert bool(z_score <= NUM_SE) == should_match, (target, float(z_score))


def test_categorical_leave_one_out_unbiased():
    """Seed 0, N = 100,000: ∇ E_{k ~ Cat(softmax(α))}[c_k] vs enumeration; twin: 1.1×."""
    torch.manual_seed(0)
    costs = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    alpha = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad((torch.softmax(alpha, -1) * costs).sum(), alpha)
    num = 100_000
    logits = alpha.detach().expand(num, 4).clone().requires_grad_(True)
    estimator = est.Reinforce(est.LeaveOneOutBaseline(), n_samples=2)
    surrogate = estimator(lambda k: costs[k], Categorical(logits=logits))
    (grad,) = torch.autograd.grad(surrogate.sum(), logits)
    se = grad.std(0) / num**0.5
    assert ((grad.mean(0) - exact).abs() <= NUM_SE * se).all()
    assert not ((grad.mean(0) - 1.1 * exact).abs() <= NUM_SE * se).all()


def test_gumbel_straight_through_categorical_is_one_hot_and_biased():
    """Seed 0, N = 100,000: one-hot values; its gradient misses the exact one by > 5 SE."""
    torch.manual_seed(0)
    costs = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    alpha = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad((torch.softmax(alpha, -1) * costs).sum(), alpha)
    logits = alpha.detach().expand(100_000, 4).clone().requires_grad_(True)
    samples = []

    def f(y):
        samples.append(y.detach())
        return (y * costs).sum(-1)

    surrogate = est.GumbelStraightThrough(temperature=0.5)(f, OneHotCategorical(logits=logits))
    (sample,) = samples
    assert ((sample == 0) | (sample == 1)).all() and (sample.sum(-1) == 1).all()
    (grad,) = torch.autograd.grad(surrogate.sum(), logits)
    se = grad.std(0) / 100_000**0.5
    assert not ((grad.mean(0) - exact).abs() <= NUM_SE * se).all()


def test_straight_through_bernoulli_gradient_is_sigmoid_derivative():
    logits = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    samples = []

    def f(b):
        samples.append(b.detach())
        return b

    est.StraightThrough()(f, Bernoulli(logits=logits)).sum().backward()
    assert ((samples[0] == 0) | (samples[0] == 1)).all()
    prob = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, prob * (1 - prob))


def test_disarm_is_exact_for_one_fair_coin():
    """At α = 0 in one dimension DisARM has zero variance: each estimate is σ'(0)(f(1) − f(0))."""
    logits = torch.zeros(1000, 1, dtype=torch.float64, requires_grad=True)
    est.DisARM()(cost_fn, _bernoulli(logits)).sum().backward()
    exact = 0.25 * ((1 - TARGET) ** 2 - TARGET**2)
    torch.testing.assert_close(logits.grad, torch.full_like(logits, exact))


def _relax_variance_at(scale: float, seed: int) -> torch.Tensor:
    """(1/N) Σ_i ‖ĝ_i‖² over the N = 32 rows, at η = ``scale`` (common random numbers)."""
    torch.manual_seed(seed)
    relax = est.REBAR(temperature=0.4, scale=scale).double()
    logits = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(32, 6).clone()
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(relax(cost_fn, _bernoulli(logits)).sum(), logits)
    return grad.square().sum() / 32


def test_relax_variance_gradient_matches_finite_differences():
    """∂/∂η of the mean ‖ĝ_i‖² that one backward of the surrogate's mean gives η, vs central
    differences with common random numbers.

    Dropping the dependence of the score coefficient [f(b) − c(z̃)] on η (a plain ``detach``)
    changes this derivative, so the check also guards the coefficient path."""
    torch.manual_seed(3)
    relax = est.REBAR(temperature=0.4, scale=0.8).double()
    logits = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(32, 6).clone()
    logits.requires_grad_(True)
    relax(cost_fn, _bernoulli(logits)).mean().backward()
    derivative = relax.scale.grad.item()
    h = 1e-2  # ‖ĝ‖² is quadratic in η, so central differences are exact up to rounding
    numeric = (_relax_variance_at(0.8 + h, 3) - _relax_variance_at(0.8 - h, 3)) / (2 * h)
    assert derivative == pytest.approx(numeric.item(), rel=1e-5)


@pytest.mark.parametrize("make", [est.REBAR, lambda: est.RELAX(nn.Linear(3, 1))])
def test_relax_one_backward_gives_estimate_and_leaves_value(make):
    """The value is f(b) (the variance term is zero), the logits get ĝ, nothing but η, λ, ρ
    gets the variance gradient: a parameter of f receives its pathwise gradient only."""
    torch.manual_seed(0)
    relax = make().double()
    logits = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    draws = []

    def f(b):
        draws.append(b)
        return weight * cost_fn(b)

    torch.manual_seed(1)
    surrogate = relax(f, _bernoulli(logits))
    b = draws[0]
    torch.testing.assert_close(surrogate.detach(), weight.detach() * cost_fn(b))
    (expected,) = torch.autograd.grad(surrogate.mean(), logits, retain_graph=True)
    surrogate.mean().backward()
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(weight.grad, cost_fn(b).mean())  # pathwise only
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in relax.parameters())


def test_relax_variance_step_reduces_variance():
    """Seed 0, N = 20,000 estimates before and after 100 optimizer steps on t = 0.499."""

    def cost(b):
        return (b - 0.499).square().sum(-1)

    def variance(relax):
        logits = torch.zeros(20_000, 1, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(relax(cost, _bernoulli(logits)).sum(), logits)
        return grad.var().item()

    torch.manual_seed(0)
    control = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    relax = est.RELAX(control).double()
    optimizer = torch.optim.Adam(relax.parameters(), lr=3e-2)
    before = variance(relax)
    for _ in range(100):
        logits = torch.zeros(64, 1, dtype=torch.float64, requires_grad=True)
        optimizer.zero_grad()
        relax(cost, _bernoulli(logits)).mean().backward()
        optimizer.step()
    after = variance(relax)
    # Measured: a 5·10⁴-fold reduction; 100-fold leaves a wide margin.
    assert after < 0.01 * before, (before, after)


def test_muprop_control_variate_cancels_linear_cost():
    """For linear f the Taylor control variate is exact: every estimate equals the gradient."""
    logits = torch.randn(50, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    est.MuProp()(lambda z: (z * weights).sum(-1), _bernoulli(logits)).sum().backward()
    prob = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, weights * prob * (1 - prob))


ERRORS = [
    (lambda: est.MovingAverageBaseline(decay=1.0), "decay must be in"),
    (lambda: est.NVILBaseline(decay=-0.1), "decay must be in"),
    (lambda: est.NVILBaseline(nn.Linear(1, 1))(torch.ones(2), torch.ones(2)), "context"),
    (lambda: est.LeaveOneOutBaseline(dim=1)(torch.ones(2, 1), torch.ones(2, 1)), "at least 2"),
    (lambda: est.score_function_surrogate(torch.ones(3), torch.ones(2, 3)), "sum log_prob over"),
    (lambda: est.REBAR(temperature=0.0), "temperature must be > 0"),
    (lambda: est.RELAX(None, relaxed_cost=False), "control must be given"),
    (lambda: est.ARM()(lambda b: b, _bernoulli(torch.zeros(2, 3))), "f must return costs"),
    (lambda: est.DisARM(n_samples=0), "n_samples must be an integer >= 1"),
    (
        lambda: est.Reinforce(est.LeaveOneOutBaseline())(cost_fn, _bernoulli(torch.zeros(3))),
        "needs n_samples >= 2",
    ),
    (lambda: est.GumbelStraightThrough(-1.0), "temperature"),
]


@pytest.mark.parametrize(("call", "match"), ERRORS, ids=[m for _, m in ERRORS])
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


UNSUPPORTED = [
    (est.ARM(), Normal(torch.zeros(3), 1.0), "Bernoulli or Independent\\(Bernoulli\\)"),
    (est.DisARM(), Categorical(logits=torch.zeros(3)), "Bernoulli"),
    (est.REBAR(), Independent(Normal(torch.zeros(2, 3), 1.0), 1), "got Independent\\(Normal\\)"),
    (est.RELAX(nn.Linear(3, 1)), Poisson(torch.ones(3)), "Bernoulli"),
    (est.StraightThrough(), Normal(torch.zeros(3), 1.0), "OneHotCategorical"),
    (est.GumbelStraightThrough(), Poisson(torch.ones(3)), "OneHotCategorical"),
    (est.MuProp(), None, "mean"),
    (est.Pathwise(), Bernoulli(logits=torch.zeros(3)), "rsample"),
    (est.Reinforce(), "not a distribution", "Distribution"),
]


@pytest.mark.parametrize(
    ("estimator", "distribution", "match"),
    UNSUPPORTED,
    ids=[type(e).__name__ for e, *_ in UNSUPPORTED],
)
def test_unsupported_distribution_is_a_type_error_naming_the_supported(
    estimator, distribution, match
):
    if distribution is None:  # a distribution without a mean
        distribution = torch.distributions.TransformedDistribution(
            Normal(torch.zeros(3), 1.0), [torch.distributions.ExpTransform()]
        )
    with pytest.raises(TypeError, match=match):
        estimator(lambda z: z, distribution)


@pytest.mark.parametrize("estimator", [est.ARM(), est.DisARM()], ids=["arm", "disarm"])
def test_arm_and_disarm_keep_pathwise_gradient(estimator):
    """For f(b) = w Σ b the surrogate is ½ w (Σ b + Σ b̃), so ∂surrogate/∂w = surrogate / w."""
    torch.manual_seed(0)
    weight = torch.tensor(2.0, requires_grad=True)
    surrogate = estimator(lambda b: weight * b.sum(-1), _bernoulli(torch.randn(8, 5)))
    surrogate.sum().backward()
    assert weight.grad.item() == pytest.approx(surrogate.sum().item() / 2.0)
    assert surrogate.sum().item() > 0


@pytest.mark.parametrize("n_samples", [1, 3])
def test_pathwise_is_the_reparameterization_gradient(n_samples):
    """Pathwise on N(μ, 1) and f(z) = z: the gradient is exactly 1 per element, the value the
    mean of the n_samples draws."""
    loc = torch.zeros(5, requires_grad=True)
    draws = []

    def f(z):
        draws.append(z.detach())
        return z

    surrogate = est.Pathwise(n_samples=n_samples)(f, Normal(loc, 1.0))
    expected_shape = (5,) if n_samples == 1 else (n_samples, 5)
    assert draws[0].shape == expected_shape
    torch.testing.assert_close(surrogate.detach(), draws[0].reshape(-1, 5).mean(0))
    surrogate.sum().backward()
    torch.testing.assert_close(loc.grad, torch.ones(5))
