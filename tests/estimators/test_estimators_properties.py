"""Deterministic and structural properties of the estimators: values, shapes, dtypes, state,
errors, and the variance step of RELAX. Statistical checks follow the policy stated in
``test_estimators_unbiased.py`` (seed, sample size, tolerance in standard errors, twin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal, Poisson

import stochgrad.estimators as est

NUM_SE = 5.0
TARGET = 0.45


def cost_fn(b: torch.Tensor) -> torch.Tensor:
    return (b - TARGET).square().sum(-1)


# Each Bernoulli estimator as a function (logits of shape (*batch, d)) -> surrogate (*batch).
def _score(estimator: est.ScoreFunctionEstimator) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(logits: torch.Tensor) -> torch.Tensor:
        q = Independent(Bernoulli(logits=logits), 1)
        z = q.sample()
        return estimator(cost_fn(z), q.log_prob(z), context=torch.ones(*logits.shape[:-1], 1))

    return run


def _leave_one_out(logits: torch.Tensor) -> torch.Tensor:
    q = Independent(Bernoulli(logits=logits.unsqueeze(-2).expand(*logits.shape[:-1], 3, -1)), 1)
    z = q.sample()
    return est.LeaveOneOutBaseline(dim=-1)(cost_fn(z), q.log_prob(z)).mean(-1)


def _relax(logits: torch.Tensor) -> torch.Tensor:
    control = nn.Sequential(nn.Linear(logits.shape[-1], 4), nn.Tanh(), nn.Linear(4, 1))
    return est.RELAX(control).to(logits.dtype)(cost_fn, logits)


BERNOULLI_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "reinforce": _score(est.Reinforce()),
    "moving_average": _score(est.MovingAverageBaseline()),
    "nvil": _score(est.NVILBaseline(nn.Linear(1, 1))),
    "leave_one_out": _leave_one_out,
    "muprop": lambda logits: est.muprop(cost_fn, Independent(Bernoulli(logits=logits), 1)),
    "arm": lambda logits: est.arm(cost_fn, logits),
    "disarm": lambda logits: est.disarm(cost_fn, logits),
    "rebar": lambda logits: est.REBAR().to(logits.dtype)(cost_fn, logits),
    "relax": _relax,
    "straight_through": lambda logits: cost_fn(est.straight_through_bernoulli(logits)),
    "gumbel_straight_through": lambda logits: cost_fn(
        est.gumbel_straight_through_bernoulli(logits, 0.5)
    ),
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
    [est.Reinforce(), est.MovingAverageBaseline(), est.NVILBaseline(), est.LeaveOneOutBaseline()],
    ids=lambda e: type(e).__name__,
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
        used.append((batch - log_prob.grad).unique().item())  # grad = cost - baseline
        ema = decay * ema + (1 - decay) * batch.mean().item()
        assert estimator.value.item() == pytest.approx(ema / (1 - decay**step))
    assert used[0] == 0.0  # no history: no baseline
    assert used[1] == pytest.approx(2.0) and used[2] == pytest.approx(
        ((1 - decay) * decay * 2.0 + (1 - decay) * 5.0) / (1 - decay**2)
    )


def test_eval_mode_freezes_statistics():
    estimator = est.MovingAverageBaseline().eval()
    estimator(torch.ones(3), torch.zeros(3))
    assert int(estimator.moments.num_updates) == 0


def test_nvil_normalisation_divides_by_running_std():
    torch.manual_seed(0)
    normalised, plain = est.NVILBaseline(decay=0.5), est.NVILBaseline(decay=0.5, normalize=False)
    for _ in range(3):
        costs = 100.0 * torch.randn(64)
        normalised(costs, torch.zeros(64))
        plain(costs, torch.zeros(64))
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
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    estimator = est.NVILBaseline(net, normalize=False)
    context = torch.randn(5, 2)
    cost = torch.randn(5, 3)
    estimator(cost, torch.zeros(5, 3), context=context).sum().backward()
    expected = torch.autograd.grad((cost - net(context)).square().sum(), net.weight)[0]
    torch.testing.assert_close(net.weight.grad, expected)


def test_nvil_unbiased_with_input_dependent_baseline_on_normal():
    """Seed 0, N = 200,000: ∇_μ E_{z ~ N(μ, 1)}[z²] = 2μ with an input-dependent NVIL baseline."""
    torch.manual_seed(0)
    num = 200_000
    context = torch.randn(num, 1)
    loc = (0.3 + 0.0 * context[:, 0]).requires_grad_(True)
    estimator = est.NVILBaseline(nn.Linear(1, 1), normalize=False)
    q = Normal(loc, 1.0)
    z = q.sample()
    (grad,) = torch.autograd.grad(estimator(z.square(), q.log_prob(z), context=context).sum(), loc)
    for exact, should_match in [(0.6, True), (0.6 * 1.1, False)]:
        z_score = (grad.mean() - exact).abs() / (grad.std() / num**0.5)
        assert bool(z_score <= NUM_SE) == should_match


DISTRIBUTIONS = {
    # name: (distribution from a parameter, f, exact ∇ E f at the parameter value)
    "normal_loc": (lambda p: Normal(p, 1.0), lambda z: z.square(), 0.7, lambda p: 2 * p),
    "poisson_rate": (lambda p: Poisson(p), lambda z: z.square(), 2.0, lambda p: 1 + 2 * p),
}


@pytest.mark.parametrize("family", list(DISTRIBUTIONS))
@pytest.mark.parametrize(
    "estimator",
    ["reinforce", "moving_average", "leave_one_out", "muprop"],
)
def test_unbiased_on_other_families(family, estimator):
    """Seed 0, N = 200,000 estimates: the mean is within 5 SE of the exact gradient; twin: the
    same estimates do not match 1.1× the exact gradient."""
    make, f, value, exact_fn = DISTRIBUTIONS[family]
    torch.manual_seed(0)
    num = 200_000
    param = torch.full((num, 1), value, dtype=torch.float64, requires_grad=True)
    if estimator == "muprop":
        surrogate = est.muprop(f, make(param))
    else:
        samples = 2 if estimator == "leave_one_out" else 1
        q = make(param.expand(num, samples))
        z = q.sample()
        module = {
            "reinforce": est.Reinforce(),
            "moving_average": est.MovingAverageBaseline(),
            "leave_one_out": est.LeaveOneOutBaseline(dim=1),
        }[estimator]
        if estimator == "moving_average":  # one warm-up call on other draws
            module(f(q.sample()), q.log_prob(z).detach())
        surrogate = module(f(z), q.log_prob(z)).mean(1)
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
    logits = alpha.detach().expand(num, 2, 4).clone().requires_grad_(True)
    q = Categorical(logits=logits)
    k = q.sample()
    surrogate = est.LeaveOneOutBaseline(dim=1)(costs[k], q.log_prob(k)).mean(1)
    (grad,) = torch.autograd.grad(surrogate.sum(), logits)
    grad = grad.sum(1)
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
    sample = est.gumbel_straight_through_categorical(logits, temperature=0.5)
    assert ((sample == 0) | (sample == 1)).all() and (sample.sum(-1) == 1).all()
    (grad,) = torch.autograd.grad((sample * costs).sum(), logits)
    se = grad.std(0) / 100_000**0.5
    assert not ((grad.mean(0) - exact).abs() <= NUM_SE * se).all()


def test_straight_through_bernoulli_gradient_is_sigmoid_derivative():
    logits = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    sample = est.straight_through_bernoulli(logits)
    assert ((sample == 0) | (sample == 1)).all()
    sample.sum().backward()
    prob = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, prob * (1 - prob))


def test_disarm_is_exact_for_one_fair_coin():
    """At α = 0 in one dimension DisARM has zero variance: each estimate is σ'(0)(f(1) − f(0))."""
    logits = torch.zeros(1000, 1, dtype=torch.float64, requires_grad=True)
    est.disarm(cost_fn, logits).sum().backward()
    exact = 0.25 * ((1 - TARGET) ** 2 - TARGET**2)
    torch.testing.assert_close(logits.grad, torch.full_like(logits, exact))


def _relax_variance_at(scale: float, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    relax = est.REBAR(temperature=0.4, scale=scale).double()
    logits = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(32, 6).clone()
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(relax(cost_fn, logits).mean(), logits, create_graph=True)
    return grad.square().sum()


def test_relax_variance_gradient_matches_finite_differences():
    """∂‖ĝ‖²/∂η from the variance step vs central differences with common random numbers.

    Dropping the dependence of the score coefficient [f(b) − c(z̃)] on η (a plain ``detach``)
    changes this derivative, so the check also guards the coefficient path."""
    torch.manual_seed(3)
    relax = est.REBAR(temperature=0.4, scale=0.8).double()
    relax.optimizer = torch.optim.SGD(relax.parameters(), lr=1.0)
    logits = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(32, 6).clone()
    logits.requires_grad_(True)
    relax.step(relax(cost_fn, logits).mean(), [logits])
    derivative = 0.8 - relax.scale.item()  # SGD with lr 1: η_new = η − ∂V/∂η
    h = 1e-2  # ‖ĝ‖² is quadratic in η, so central differences are exact up to rounding
    numeric = (_relax_variance_at(0.8 + h, 3) - _relax_variance_at(0.8 - h, 3)) / (2 * h)
    assert derivative == pytest.approx(numeric.item(), rel=1e-5)


def test_relax_step_writes_the_estimate_into_grad():
    torch.manual_seed(0)
    relax = est.REBAR().double()
    logits = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    (expected,) = torch.autograd.grad(relax(cost_fn, logits).mean(), logits)
    torch.manual_seed(1)
    (returned,) = relax.step(relax(cost_fn, logits).mean(), [logits])
    torch.testing.assert_close(returned, expected)
    torch.testing.assert_close(logits.grad, expected)


def test_relax_variance_step_reduces_variance():
    """Seed 0, N = 20,000 estimates before and after 100 variance steps on t = 0.499."""

    def cost(b):
        return (b - 0.499).square().sum(-1)

    def variance(relax):
        logits = torch.zeros(20_000, 1, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(relax(cost, logits).sum(), logits)
        return grad.var().item()

    torch.manual_seed(0)
    control = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    relax = est.RELAX(control, lr=3e-2).double()
    before = variance(relax)
    for _ in range(100):
        logits = torch.zeros(64, 1, dtype=torch.float64, requires_grad=True)
        relax.step(relax(cost, logits).mean(), [logits])
    after = variance(relax)
    # Measured: a 5·10⁴-fold reduction; 100-fold leaves a wide margin.
    assert after < 0.01 * before, (before, after)


def test_muprop_control_variate_cancels_linear_cost():
    """For linear f the Taylor control variate is exact: every estimate equals the gradient."""
    logits = torch.randn(50, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    q = Independent(Bernoulli(logits=logits), 1)
    est.muprop(lambda z: (z * weights).sum(-1), q).sum().backward()
    prob = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, weights * prob * (1 - prob))


ERRORS = [
    (lambda: est.MovingAverageBaseline(decay=1.0), "decay must be in"),
    (lambda: est.NVILBaseline(decay=-0.1), "decay must be in"),
    (lambda: est.NVILBaseline(nn.Linear(1, 1))(torch.ones(2), torch.ones(2)), "context"),
    (lambda: est.LeaveOneOutBaseline(dim=1)(torch.ones(2, 1), torch.ones(2, 1)), "at least 2"),
    (lambda: est.reinforce(torch.ones(3), torch.ones(2, 3)), "sum log_prob over"),
    (lambda: est.REBAR(temperature=0.0), "temperature must be > 0"),
    (lambda: est.RELAX(None, relaxed_cost=False), "control must be given"),
    (lambda: est.arm(cost_fn, torch.zeros(3), event_dims=2), "event_dims must be in"),
    (lambda: est.disarm(cost_fn, torch.zeros(3, dtype=torch.long)), "floating point"),
    (lambda: est.gumbel_straight_through_bernoulli(torch.zeros(3), -1.0), "temperature"),
    (lambda: est.gumbel_straight_through_categorical(torch.tensor(0.0)), "at least one"),
]


@pytest.mark.parametrize(("call", "match"), ERRORS, ids=[m for _, m in ERRORS])
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("estimator", [est.arm, est.disarm], ids=["arm", "disarm"])
def test_arm_and_disarm_keep_pathwise_gradient(estimator):
    """For f(b) = w Σ b the surrogate is ½ w (Σ b + Σ b̃), so ∂surrogate/∂w = surrogate / w."""
    torch.manual_seed(0)
    weight = torch.tensor(2.0, requires_grad=True)
    surrogate = estimator(lambda b: weight * b.sum(-1), torch.randn(8, 5))
    surrogate.sum().backward()
    assert weight.grad.item() == pytest.approx(surrogate.sum().item() / 2.0)
    assert surrogate.sum().item() > 0
