"""Loss correctness against brute force (issue 5, "What must be shown" item 3).

Tiny discrete model (2 Bernoulli latents, 3 Bernoulli pixels): every K-tuple of latents is
enumerated, so the expected estimator Σ_t q(t) ĝ(t) and the exact objective (IWAE bound L_K,
log p(x), ELBO) and its gradient are computed exactly. Linear-Gaussian model: expectations over
reparameterization noise by Gauss-Hermite quadrature, compared with finite differences of an
independent NumPy quadrature of L_K. These checks are deterministic (float64); each has a twin
showing that a wrong estimator is caught.
"""

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal

from stochgrad.estimators import (
    REBAR,
    RELAX,
    DisARM,
    LeaveOneOutBaseline,
    MovingAverageBaseline,
    Reinforce,
    StraightThrough,
)
from stochgrad.vae import (
    ELBO,
    IWAE,
    VIMCO,
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    DReG,
    InferenceNetwork,
    Prior,
    PWake,
    QWake,
    ScoreFunctionELBO,
)
from stochgrad.vae import functional as F

DTYPE = torch.float64
DATA = torch.tensor([[1.0, 0.0, 1.0]], dtype=DTYPE)
STATES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)), dtype=DTYPE)


class FixedSamples(InferenceNetwork):
    """Protocol implementation around another inference network that returns given samples.

    ``sample`` returns ``latents``; ``rsample`` returns ``loc + scale * noise`` for a Normal
    inner network, so expectations over sampling noise can be taken by enumeration/quadrature.
    """

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.latents = None
        self.noise = None

    def forward(self, data):
        self.inner(data)
        return self

    def sample(self, n_samples=1):
        assert self.latents.shape[1] == n_samples
        return self.latents

    def rsample(self, n_samples=1):
        assert self.noise.shape[1] == n_samples
        params = self.inner.params_[0]
        return params["loc"].unsqueeze(1) + params["scale"].unsqueeze(1) * self.noise

    def log_prob(self, latents, *, detach_params=False):
        return self.inner.log_prob(latents, detach_params=detach_params)

    @property
    def distribution(self):
        return self.inner.distribution


def discrete_model(validate_args=None):
    """The tiny model; ``validate_args=False`` lets REBAR and RELAX evaluate its densities at
    relaxed latents in (0, 1)."""
    torch.manual_seed(0)
    bernoulli = functools.partial(Bernoulli, validate_args=validate_args)
    encoder = DistributionNet(nn.Linear(3, 2), bernoulli, ("logits",))
    decoder = DistributionNet(nn.Linear(2, 3), bernoulli, ("logits",))
    prior = Prior(bernoulli, learnable=True, logits=torch.tensor([0.3, -0.7]))
    inf_net = DistributionInferenceNetwork(encoder).to(DTYPE)
    gen_model = DistributionGenerativeModel(prior, decoder).to(DTYPE)
    with torch.no_grad():  # spread the parameters so that the weights differ markedly
        for p in (*inf_net.parameters(), *gen_model.parameters()):
            p.mul_(3.0)
    return FixedSamples(inf_net), gen_model


def params_of(inf_net, gen_model):
    return list(inf_net.parameters()) + list(gen_model.parameters())


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def tuples(n_samples):
    """All K-tuples of latent states, shape (4**K, K, 2)."""
    index = torch.tensor(list(itertools.product(range(len(STATES)), repeat=n_samples)))
    return STATES[index]


def encoder_logits(inf_net):
    """Logits of q(z | x) at DATA, straight from the encoder's linear layer, shape (1, 2)."""
    return inf_net.inner.heads[0].module(DATA)


def log_q_p(inf_net, gen_model, latents):
    """log q, log p for a batch of tuples (rows) at the single data point, written with torch's
    Bernoulli on the models' layers (not through the wrappers under test)."""
    decoder, prior_logits = gen_model.decoders[0].module, gen_model.priors[0].logits
    log_q = Bernoulli(logits=encoder_logits(inf_net).unsqueeze(1)).log_prob(latents).sum(-1)
    log_prior = Bernoulli(logits=prior_logits).log_prob(latents).sum(-1)
    log_lik = Bernoulli(logits=decoder(latents)).log_prob(DATA.unsqueeze(1)).sum(-1)
    return log_q, log_prior + log_lik


def exact_iwae_bound(inf_net, gen_model, n_samples):
    """L_K = Σ_t q(t) log(1/K Σ_k w_k(t)), differentiable in every parameter (the weights of this
    tiny model are moderate, so the naive log-mean-exp is exact enough in float64)."""
    log_q, log_p = log_q_p(inf_net, gen_model, tuples(n_samples))
    return (log_q.sum(-1).exp() * (log_p - log_q).exp().mean(-1).log()).sum()


def exact_log_marginal(inf_net, gen_model):
    _, log_p = log_q_p(inf_net, gen_model, STATES.unsqueeze(0))
    return log_p.exp().sum().log()


def expected_gradient(loss_obj, n_samples):
    """Σ_t q(t) ∇loss(t): the loss object's gradient averaged exactly over its samples."""
    inf_net, gen_model = loss_obj.inf_net, loss_obj.gen_model
    params = params_of(inf_net, gen_model)
    total = torch.zeros_like(flat(params))
    for latents in tuples(n_samples):
        inf_net.latents = latents.unsqueeze(0)
        with torch.no_grad():
            prob = log_q_p(inf_net, gen_model, inf_net.latents)[0].sum().exp()
        total += prob * flat(grads(loss_obj(DATA), params))
    return total


def n_inf_params(inf_net):
    return sum(p.numel() for p in inf_net.parameters())


def test_iwae_bound_increases_with_k_towards_log_marginal():
    inf_net, gen_model = discrete_model()
    with torch.no_grad():
        bounds = [exact_iwae_bound(inf_net, gen_model, k).item() for k in range(1, 6)]
        log_marginal = exact_log_marginal(inf_net, gen_model).item()
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False)), bounds
    assert bounds[-1] < log_marginal
    gaps = [log_marginal - b for b in bounds]
    assert all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:], strict=False)), gaps


def _large_k_bound_z_score(log_marginal_offset):
    """z-score of the K = 2000 IWAE bound (200 replicates) against log p(x) minus the delta-method
    bias Var_q(w)/(2K p(x)^2), with log p(x) shifted by ``log_marginal_offset``."""
    inf_net, gen_model = discrete_model()
    n_samples, n_replicates = 2000, 200
    with torch.no_grad():
        torch.manual_seed(1)
        inner = inf_net.inner(DATA.expand(n_replicates, -1))
        latents = inner.sample(n_samples)
        data = DATA.expand(n_replicates, -1)
        log_q = inner.log_prob(latents)
        log_p = gen_model(data, latents).log_prob(data, latents)
        bounds = F.iwae_bound(log_q, log_p)
        log_q_states, log_p_states = log_q_p(inf_net, gen_model, STATES.unsqueeze(0))
        q, w = log_q_states.exp()[0], (log_p_states - log_q_states).exp()[0]
        log_marginal = exact_log_marginal(inf_net, gen_model)
        relative_var = (q * (w / log_marginal.exp() - 1) ** 2).sum()
        target = log_marginal + log_marginal_offset - relative_var / (2 * n_samples)
    standard_error = bounds.std() / math.sqrt(n_replicates)
    return ((bounds.mean() - target) / standard_error).item()


def test_iwae_bound_converges_to_log_marginal():
    assert abs(_large_k_bound_z_score(0.0)) < 4.5


def test_iwae_bound_convergence_check_fails_on_wrong_log_marginal():
    assert abs(_large_k_bound_z_score(0.02)) > 4.5


def expected_and_exact_gradients(loss_cls, n_samples):
    """A fresh model: the exact expected gradient of ``loss_cls``, the exact ∇L_K, and the number
    of inference-network parameters (they come first in both)."""
    inf_net, gen_model = discrete_model()
    expected = expected_gradient(loss_cls(inf_net, gen_model, n_samples), n_samples)
    exact_bound = exact_iwae_bound(inf_net, gen_model, n_samples)
    return expected, flat(grads(exact_bound, params_of(inf_net, gen_model))), n_inf_params(inf_net)


@pytest.mark.parametrize("n_samples", [2, 3])
def test_vimco_gradient_is_exact_gradient_of_iwae_bound(n_samples):
    expected, exact, _ = expected_and_exact_gradients(VIMCO, n_samples)
    torch.testing.assert_close(expected, -exact, rtol=1e-10, atol=1e-12)


def test_exactness_check_fails_without_vimco_score_term():
    """Twin: the IWAE surrogate on non-reparameterized samples drops the score term."""

    class NoScore(VIMCO):
        def forward(self, data):
            inf_net = self.inf_net(data)
            latents = inf_net.sample(self.n_samples)
            log_q = inf_net.log_prob(latents)
            return F.iwae_loss(log_q, self.gen_model(data, latents).log_prob(data, latents))

    expected, exact, _ = expected_and_exact_gradients(NoScore, 2)
    assert (expected + exact).abs().max() > 1e-2


@pytest.mark.parametrize("n_samples", [1, 3])
def test_pwake_gradient_is_exact_generative_gradient_of_iwae_bound(n_samples):
    expected, exact, n_inf = expected_and_exact_gradients(PWake, n_samples)
    assert expected[:n_inf].abs().max() == 0
    torch.testing.assert_close(expected[n_inf:], -exact[n_inf:], rtol=1e-10, atol=1e-12)


def test_pwake_gradient_approaches_log_marginal_gradient():
    """Σ_k w̃_k ∇θ log p(x, z_k) is the gradient of L_K, which tends to ∇θ log p(x)."""
    inf_net, gen_model = discrete_model()
    exact = flat(grads(exact_log_marginal(inf_net, gen_model), list(gen_model.parameters())))
    n_inf = n_inf_params(inf_net)
    errors = [
        (expected_gradient(PWake(inf_net, gen_model, k), k)[n_inf:] + exact).norm().item()
        for k in (1, 2, 4)
    ]
    assert errors[0] > errors[1] > errors[2], errors


def numpy_qwake_expected_gradient(inf_net, gen_model, n_samples):
    """Brute force in NumPy: E_t[-Σ_k w̃_k ∇ log q(z_k)], with ∇_logits log Bern(z) = z − σ."""
    with torch.no_grad():
        log_q, log_p = (t[0].numpy() for t in log_q_p(inf_net, gen_model, STATES.unsqueeze(0)))
        probs = torch.sigmoid(encoder_logits(inf_net)[0]).numpy()
    states = STATES.numpy()
    total = np.zeros(2)
    for index in itertools.product(range(4), repeat=n_samples):
        index = list(index)
        log_w = log_p[index] - log_q[index]
        weights = np.exp(log_w - log_w.max())
        weights /= weights.sum()
        score = states[index] - probs
        total += np.exp(log_q[index].sum()) * -(weights[:, None] * score).sum(0)
    return total


@pytest.mark.parametrize("n_samples", [1, 2, 3])
def test_qwake_gradient_matches_numpy_brute_force(n_samples):
    inf_net, gen_model = discrete_model()
    expected = expected_gradient(QWake(inf_net, gen_model, n_samples), n_samples)
    n_inf = n_inf_params(inf_net)
    assert expected[n_inf:].abs().max() == 0
    # The encoder is Linear(3, 2) at x = (1, 0, 1): ∂logits/∂bias = I, ∂logits/∂weight[:, j] = x_j.
    bias_grad = expected[6:8].numpy()
    np.testing.assert_allclose(
        bias_grad,
        numpy_qwake_expected_gradient(inf_net, gen_model, n_samples),
        rtol=1e-10,
        atol=1e-13,
    )
    torch.testing.assert_close(expected[:6].reshape(2, 3), expected[6:8, None] * DATA)


def test_qwake_gradient_approaches_inclusive_kl_gradient():
    """As K grows, E[-Σ w̃_k ∇log q(z_k)] → ∇φ KL(p(z | x) ‖ q) = -E_p(z|x)[∇ log q(z)]."""
    inf_net, gen_model = discrete_model()
    with torch.no_grad():
        log_q, log_p = log_q_p(inf_net, gen_model, STATES.unsqueeze(0))
        posterior = torch.softmax(log_p[0], dim=0)
        probs = torch.sigmoid(encoder_logits(inf_net)[0])
    target = -(posterior[:, None] * (STATES - probs)).sum(0)
    errors = [
        (expected_gradient(QWake(inf_net, gen_model, k), k)[6:8] - target).norm().item()
        for k in (1, 2, 4)
    ]
    assert errors[0] > errors[1] > errors[2], errors


def exact_elbo(inf_net, gen_model):
    log_q, log_p = log_q_p(inf_net, gen_model, STATES.unsqueeze(1))
    return (log_q.exp() * (log_p - log_q)).sum()


ESTIMATORS = {
    "reinforce": (lambda: None, 1),
    "moving_average": (lambda: Reinforce(MovingAverageBaseline(decay=0.5)).eval(), 1),
    "leave_one_out": (lambda: Reinforce(LeaveOneOutBaseline()), 2),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_score_function_elbo_gradient_is_exact_elbo_gradient(name):
    make_estimator, n_samples = ESTIMATORS[name]
    inf_net, gen_model = discrete_model()
    estimator = make_estimator()
    if name == "moving_average":  # a non-zero, frozen baseline value
        estimator.train()
        estimator.baseline.moments.update(torch.tensor([3.0]))
        estimator.eval()
    loss_obj = ScoreFunctionELBO(inf_net, gen_model, n_samples, estimator=estimator)
    expected = expected_gradient(loss_obj, n_samples)
    exact = flat(grads(exact_elbo(inf_net, gen_model), params_of(inf_net, gen_model)))
    torch.testing.assert_close(expected, -exact, rtol=1e-10, atol=1e-12)


def test_score_function_check_fails_on_sample_dependent_baseline():
    """Twin: a baseline equal to the sample's own learning signal biases the estimator."""
    inf_net, gen_model = discrete_model()
    params = params_of(inf_net, gen_model)
    total = torch.zeros_like(flat(params))
    for latents in tuples(1):
        log_q, log_p = log_q_p(inf_net, gen_model, latents.unsqueeze(0))
        loss = F.score_function_elbo_loss(log_q, log_p, baseline=(log_p - log_q).detach())
        total += log_q.sum().exp().detach() * flat(grads(loss, params))
    exact = flat(grads(exact_elbo(inf_net, gen_model), params))
    assert (total + exact).abs().max() > 1e-2


NUM_SE = 5.0


def _relax_control():
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).to(DTYPE)


# Estimators for Bernoulli latents through ScoreFunctionELBO: (factory, warm-up steps of the
# estimator's own parameters by the user's optimizer before measuring).
BERNOULLI_ESTIMATORS = {
    "disarm": (DisARM, 0),
    "rebar": (lambda: REBAR(temperature=0.5).to(DTYPE), 50),
    "relax": (lambda: RELAX(_relax_control(), temperature=0.5).to(DTYPE), 50),
    "straight_through": (StraightThrough, 0),  # biased: the twin
}


def _elbo_gradient_estimates(name, n_runs=300, n_rows=200):
    """``n_runs`` independent estimates of ∇(−ELBO), each the gradient of one
    ScoreFunctionELBO call on ``n_rows`` copies of the data point (seed 0); and −∇ELBO exact."""
    make, warm_up = BERNOULLI_ESTIMATORS[name]
    # These estimators draw from inf_net.distribution (the encoder's Bernoulli), so the samples
    # fixed by FixedSamples.sample are not used.
    inf_net, gen_model = discrete_model(validate_args=False)
    torch.manual_seed(0)
    loss_obj = ScoreFunctionELBO(inf_net, gen_model, estimator=make())
    params = params_of(inf_net, gen_model)
    data = DATA.expand(n_rows, -1)
    own = list(loss_obj.estimator.parameters())
    if own:
        optimizer = torch.optim.Adam(own, lr=1e-2)
        for _ in range(warm_up):  # the control variate alone is trained
            optimizer.zero_grad()
            loss_obj(DATA.expand(64, -1)).backward()
            optimizer.step()
    estimates = torch.stack([flat(grads(loss_obj(data), params)) for _ in range(n_runs)])
    exact = -flat(grads(exact_elbo(inf_net, gen_model), params))
    return estimates, exact


def _max_z_score(estimates, target):
    """max over coordinates of |mean − target| / SE; a coordinate without noise (the encoder
    weights of the pixel x_j = 0 get exactly 0) must match exactly."""
    standard_error = estimates.std(0) / math.sqrt(estimates.shape[0])
    error = (estimates.mean(0) - target).abs()
    exact = standard_error == 0
    z_scores = torch.where(exact, torch.where(error == 0, 0.0, math.inf), error / standard_error)
    return z_scores.max().item()


@pytest.mark.parametrize("name", ["disarm", "rebar", "relax"])
def test_bernoulli_estimators_through_score_function_elbo_match_exact_gradient(name):
    """Seed 0, 300 estimates of 200 rows each: every coordinate of the mean (encoder, decoder
    and prior parameters) within 5 standard errors of the exact ELBO gradient; twin: the same
    estimates do not match 1.1× the exact gradient."""
    estimates, exact = _elbo_gradient_estimates(name)
    assert _max_z_score(estimates, exact) < NUM_SE
    assert _max_z_score(estimates, 1.1 * exact) > NUM_SE


def test_exact_gradient_check_fails_on_a_biased_estimator():
    """Twin: straight-through through the same ScoreFunctionELBO misses the exact gradient."""
    estimates, exact = _elbo_gradient_estimates("straight_through")
    assert _max_z_score(estimates, exact) > NUM_SE


# Linear-Gaussian model: z ~ N(0, 1), x | z ~ N(a z + b, 0.8²), q(z | x) = N(u x + c, exp(v x + d)).
OBS = 1.3
LIK_SCALE = 0.8
INIT = {"u": 0.4, "c": -0.2, "v": 0.3, "d": -0.5, "a": 1.5, "b": 0.4}


class RowwiseAffine(nn.Module):
    """Affine map whose parameters can be offset per data row, to read per-row gradients.

    After ``expand_rows(n)``, row r uses ``weight + weight_offsets[r]``; the offsets are zero
    leaves, so ``n * offsets.grad[r]`` is the gradient of row r's loss.
    """

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight, dtype=DTYPE))
        self.bias = nn.Parameter(torch.tensor(bias, dtype=DTYPE))
        self.weight_offsets = self.bias_offsets = None

    def expand_rows(self, n_rows):
        self.weight_offsets = torch.zeros(
            (n_rows, *self.weight.shape), dtype=DTYPE
        ).requires_grad_()
        self.bias_offsets = torch.zeros((n_rows, *self.bias.shape), dtype=DTYPE).requires_grad_()
        return [self.weight_offsets, self.bias_offsets]

    def forward(self, inputs):
        if self.weight_offsets is None:
            return inputs @ self.weight.T + self.bias
        weight = self.weight + self.weight_offsets
        bias = (self.bias + self.bias_offsets).reshape(
            (inputs.shape[0],) + (1,) * (inputs.dim() - 2) + self.bias.shape
        )
        return torch.einsum("roi,r...i->r...o", weight, inputs) + bias


def gaussian_model():
    encoder_net = RowwiseAffine([[INIT["u"]], [INIT["v"]]], [INIT["c"], INIT["d"]])
    encoder = DistributionNet(
        encoder_net, Normal, ("loc", "scale"), transforms={"scale": torch.exp}
    )
    decoder = DistributionNet(
        RowwiseAffine([[INIT["a"]]], [INIT["b"]]), Normal, ("loc",), scale=LIK_SCALE
    )
    prior = Prior(Normal, loc=torch.zeros(1, dtype=DTYPE), scale=torch.ones(1, dtype=DTYPE))
    inf_net = FixedSamples(DistributionInferenceNetwork(encoder))
    return inf_net, DistributionGenerativeModel(prior, decoder).to(DTYPE)


def numpy_iwae_bound_k2(u, c, v, d, a, b, n_nodes=80):
    """L_2 by tensor Gauss-Hermite quadrature in NumPy, independent of the library."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / math.sqrt(2 * math.pi)
    loc, scale = u * OBS + c, math.exp(v * OBS + d)
    z = loc + scale * nodes

    def normal_log_pdf(x, mean, sd):
        return -0.5 * ((x - mean) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)

    log_w = (
        normal_log_pdf(z, 0.0, 1.0)
        + normal_log_pdf(OBS, a * z + b, LIK_SCALE)
        - normal_log_pdf(z, loc, scale)
    )
    pair = np.logaddexp(log_w[:, None], log_w[None, :]) - math.log(2)
    return (weights[:, None] * weights[None, :] * pair).sum()


def numpy_gradient_k2():
    """Central finite differences of the NumPy quadrature, in the order of the torch parameters
    (encoder weight u, v; encoder bias c, d; decoder weight a; decoder bias b)."""
    names, step = ["u", "v", "c", "d", "a", "b"], 1e-5
    out = []
    for name in names:
        plus, minus = dict(INIT), dict(INIT)
        plus[name] += step
        minus[name] -= step
        out.append((numpy_iwae_bound_k2(**plus) - numpy_iwae_bound_k2(**minus)) / (2 * step))
    return torch.tensor(out, dtype=DTYPE)


def quadrature_expected_gradient(loss_obj, n_nodes):
    """E_ε[∇loss] over ε ~ N(0, I_2) by tensor Gauss-Hermite quadrature (exact for polynomials
    of degree < 2 n_nodes in ε)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / math.sqrt(2 * math.pi)
    inf_net, gen_model = loss_obj.inf_net, loss_obj.gen_model
    params = params_of(inf_net, gen_model)
    data = torch.tensor([[OBS]], dtype=DTYPE)
    total = torch.zeros_like(flat(params))
    for i, j in itertools.product(range(n_nodes), repeat=2):
        inf_net.noise = torch.tensor([[[nodes[i]], [nodes[j]]]], dtype=DTYPE)
        total += weights[i] * weights[j] * flat(grads(loss_obj(data), params))
    return total


def per_row_gradients(loss_cls, n_samples, n_rows, seed=0):
    """Gradients of ``n_rows`` independent single-point losses, shape (n_rows, 6), in the
    parameter order (u, v, c, d, a, b), from one backward pass."""
    inf_net, gen_model = gaussian_model()
    offsets = inf_net.inner.heads[0].module.expand_rows(n_rows)
    offsets += gen_model.decoders[0].module.expand_rows(n_rows)
    torch.manual_seed(seed)
    loss = loss_cls(inf_net.inner, gen_model, n_samples)(torch.full((n_rows, 1), OBS, dtype=DTYPE))
    return n_rows * torch.cat([g.reshape(n_rows, -1) for g in grads(loss, offsets)], dim=1)


def z_scores(samples, target):
    """(mean − target) / standard error, per coordinate."""
    return (samples.mean(0) - target) / (samples.std(0) / math.sqrt(samples.shape[0]))


N_ROWS = 20_000  # independent gradient estimates per statistical test


@pytest.mark.parametrize("loss_cls", [IWAE, DReG])
def test_reparameterized_iwae_gradients_are_unbiased(loss_cls):
    """Mean of 20000 K = 2 estimates vs finite differences of a NumPy quadrature of L_2,
    within 4.5 standard errors per parameter."""
    estimates = per_row_gradients(loss_cls, n_samples=2, n_rows=N_ROWS)
    assert z_scores(estimates, -numpy_gradient_k2()).abs().max() < 4.5


@pytest.mark.parametrize("loss_cls", [IWAE, DReG])
def test_unbiasedness_check_fails_on_scaled_gradient(loss_cls):
    estimates = per_row_gradients(loss_cls, n_samples=2, n_rows=N_ROWS)
    assert z_scores(1.1 * estimates, -numpy_gradient_k2()).abs().max() > 4.5


class DReGEverywhere(DReG):
    """Wrong on purpose: the functional ``dreg_loss`` alone also gives θ the weights w̃²."""

    def forward(self, data):
        inf_net = self.inf_net(data)
        latents = inf_net.rsample(self.n_samples)
        log_q = inf_net.log_prob(latents, detach_params=True)
        return F.dreg_loss(log_q, self.gen_model(data, latents).log_prob(data, latents))


def test_unbiasedness_check_fails_when_dreg_weights_reach_the_generative_model():
    estimates = per_row_gradients(DReGEverywhere, n_samples=2, n_rows=N_ROWS)
    scores = z_scores(estimates, -numpy_gradient_k2())
    assert scores[:4].abs().max() < 4.5  # the encoder part is right...
    assert scores[4:].abs().max() > 4.5  # ...the decoder part is not


class StickingTheLanding(DReG):
    """Wrong on purpose for K > 1: IWAE weights w̃ (not w̃²) on the stopped-parameter path
    gradient, which is biased for the IWAE bound (Tucker et al., 2019, sec. 4)."""

    def forward(self, data):
        inf_net = self.inf_net(data)
        latents = inf_net.rsample(self.n_samples)
        log_q = inf_net.log_prob(latents, detach_params=True)
        return F.iwae_loss(log_q, self.gen_model(data, latents).log_prob(data, latents))


def _encoder_mean_z_scores(loss_cls, n_samples=8):
    """K = 8, 20000 estimates each: z-scores of the encoder-gradient mean of ``loss_cls``
    against IWAE's (independent runs), and the per-parameter variance ratio."""
    iwae = per_row_gradients(IWAE, n_samples, N_ROWS, seed=1)[:, :4]
    other = per_row_gradients(loss_cls, n_samples, N_ROWS, seed=2)[:, :4]
    se = (iwae.var(0) / N_ROWS + other.var(0) / N_ROWS).sqrt()
    return (other.mean(0) - iwae.mean(0)) / se, other.var(0) / iwae.var(0)


def test_dreg_has_iwae_expectation_and_lower_variance():
    scores, variance_ratio = _encoder_mean_z_scores(DReG)
    assert scores.abs().max() < 4.5
    assert (variance_ratio < 1).all(), variance_ratio


def test_dreg_expectation_check_fails_on_sticking_the_landing():
    scores, _ = _encoder_mean_z_scores(StickingTheLanding)
    assert scores.abs().max() > 4.5


def exact_gaussian_elbo(inf_net, gen_model):
    """Closed-form ELBO of the linear-Gaussian model, differentiable in every parameter."""
    data = torch.tensor([[OBS]], dtype=DTYPE)
    params = inf_net.inner(data).params_[0]
    loc, scale = params["loc"][0, 0], params["scale"][0, 0]
    decoder = gen_model.decoders[0].module
    a, b = decoder.weight[0, 0], decoder.bias[0]
    expected_sq_error = (OBS - a * loc - b) ** 2 + (a * scale) ** 2
    expected_log_lik = -0.5 * expected_sq_error / LIK_SCALE**2 - math.log(LIK_SCALE)
    kl = 0.5 * (loc**2 + scale**2 - 1) - torch.log(scale)
    return expected_log_lik - 0.5 * math.log(2 * math.pi) - kl


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_gradient_matches_closed_form(analytic_kl):
    inf_net, gen_model = gaussian_model()
    loss_obj = ELBO(inf_net, gen_model, n_samples=2, analytic_kl=analytic_kl)
    expected = quadrature_expected_gradient(loss_obj, n_nodes=8)
    assert loss_obj.uses_analytic_kl_ is analytic_kl
    exact = flat(grads(exact_gaussian_elbo(inf_net, gen_model), params_of(inf_net, gen_model)))
    torch.testing.assert_close(expected, -exact, rtol=1e-10, atol=1e-12)
