"""stochgrad.vae.losses: the loss-object API, looped over one registry of every loss.

Properties: scalar output and histories, which parameters receive gradients (``updates``),
agreement with the functional twin on the same samples, argument checks, analytic vs Monte
Carlo KL. Exactness of the gradients is in ``test_exact_gradients.py``.
"""

import math
from dataclasses import dataclass, field
from functools import partial

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, RelaxedBernoulli

import stochgrad.vae as vae
from stochgrad.estimators import RELAX, DisARM, LeaveOneOutBaseline, NVILBaseline, Reinforce
from stochgrad.vae import (
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    Prior,
)
from stochgrad.vae import functional as F

DATA_DIM, LATENT_DIM, BATCH = 6, 3, 5


@dataclass
class LossExample:
    loss_cls: type
    latent: str  # "normal" (reparameterizable) or "bernoulli"
    n_samples: int
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self):
        return f"{self.loss_cls.__name__}-{self.latent}-{self.n_samples}"


LOSS_EXAMPLES = [
    LossExample(vae.ELBO, "normal", 1),
    LossExample(vae.ELBO, "normal", 3, {"analytic_kl": False}),
    LossExample(vae.IWAE, "normal", 4),
    LossExample(vae.DReG, "normal", 4),
    LossExample(vae.VIMCO, "bernoulli", 4),
    LossExample(vae.VIMCO, "normal", 2),
    LossExample(vae.ScoreFunctionELBO, "bernoulli", 1),
    LossExample(
        vae.ScoreFunctionELBO, "bernoulli", 3, {"estimator": Reinforce(LeaveOneOutBaseline())}
    ),
    LossExample(vae.PWake, "bernoulli", 4),
    LossExample(vae.QWake, "bernoulli", 4),
    LossExample(vae.QSleep, "bernoulli", 2),
    LossExample(vae.QSleep, "normal", 1),
]


def models(latent, dtype=torch.float64):
    torch.manual_seed(0)
    if latent == "normal":
        encoder = DistributionNet(
            nn.Linear(DATA_DIM, 2 * LATENT_DIM),
            Normal,
            ("loc", "scale"),
            {"scale": nn.functional.softplus},
        )
        prior = Prior(
            Normal, learnable=True, loc=torch.zeros(LATENT_DIM), scale=torch.ones(LATENT_DIM)
        )
    else:
        encoder = DistributionNet(nn.Linear(DATA_DIM, LATENT_DIM), Bernoulli, "logits")
        prior = Prior(Bernoulli, learnable=True, logits=torch.zeros(LATENT_DIM))
    decoder = DistributionNet(nn.Linear(LATENT_DIM, DATA_DIM), Bernoulli, "logits")
    inf_net = DistributionInferenceNetwork(encoder).to(dtype)
    return inf_net, DistributionGenerativeModel(prior, decoder).to(dtype)


def data_of(dtype=torch.float64):
    return torch.bernoulli(torch.full((BATCH, DATA_DIM), 0.5, dtype=dtype))


def make(example, dtype=torch.float64):
    inf_net, gen_model = models(example.latent, dtype)
    return example.loss_cls(inf_net, gen_model, example.n_samples, **example.kwargs)


def test_every_loss_has_examples():
    public = {
        getattr(vae, name)
        for name in vae.__all__
        if isinstance(getattr(vae, name), type)
        and issubclass(getattr(vae, name), vae.VAELoss)
        and getattr(vae, name) is not vae.VAELoss
    }
    assert public == {e.loss_cls for e in LOSS_EXAMPLES}


@pytest.mark.parametrize("example", LOSS_EXAMPLES, ids=lambda e: e.name)
def test_returns_scalar_and_records_history(example, dtype):
    loss_obj = make(example, dtype)
    for step in range(2):
        loss = loss_obj(data_of(dtype))
        assert loss.shape == () and loss.dtype == dtype and torch.isfinite(loss)
        assert loss_obj.loss_history_[-1] == loss.item()
        assert len(loss_obj.loss_history_) == len(loss_obj.mean_log_q_) == step + 1
    expected_log_p = 0 if example.loss_cls is vae.QSleep else 2
    assert len(loss_obj.mean_log_p_) == expected_log_p


@pytest.mark.parametrize("example", LOSS_EXAMPLES, ids=lambda e: e.name)
def test_gradients_reach_exactly_the_updated_models(example):
    loss_obj = make(example)
    loss_obj(data_of()).backward()
    for name, model in (("inf", loss_obj.inf_net), ("gen", loss_obj.gen_model)):
        grads = [p.grad for p in model.parameters()]
        if name in loss_obj.updates:
            assert all(g is not None for g in grads), name
            assert sum(g.abs().sum() for g in grads) > 0, name
        else:
            assert all(g is None for g in grads), name
    updated = {id(p) for p in loss_obj.updated_parameters()}
    expected = set()
    for name, model in (("inf", loss_obj.inf_net), ("gen", loss_obj.gen_model)):
        if name in loss_obj.updates:
            expected |= {id(p) for p in model.parameters()}
    assert updated == expected


def functional_twin(example, loss_obj, data, seed):
    """Recompute the loss with the functional twin on the samples the object drew."""
    inf_net, gen_model = loss_obj.inf_net, loss_obj.gen_model
    torch.manual_seed(seed)
    if example.loss_cls is vae.QSleep:
        dreamt, latents = gen_model.sample(BATCH * example.n_samples)
        return F.qsleep_loss(inf_net(dreamt).log_prob(latents))
    inf_net(data)
    reparameterized = example.loss_cls in (vae.ELBO, vae.IWAE, vae.DReG)
    latents = (
        inf_net.rsample(example.n_samples) if reparameterized else inf_net.sample(example.n_samples)
    )
    log_q = inf_net.log_prob(latents)
    log_p = gen_model(data, latents).log_prob(data, latents)
    if example.loss_cls is vae.ELBO:
        if example.kwargs.get("analytic_kl") is False:
            return F.elbo_loss(log_q, log_p)
        kl = torch.distributions.kl_divergence(inf_net.distribution, gen_model.prior)
        return F.elbo_loss_analytic_kl(gen_model.log_likelihood(data, latents), kl)
    if example.loss_cls is vae.ScoreFunctionELBO:
        return F.score_function_elbo_loss(log_q, log_p)
    functional = {
        vae.IWAE: F.iwae_loss,
        vae.DReG: F.iwae_loss,
        vae.VIMCO: F.vimco_loss,
        vae.PWake: F.pwake_loss,
        vae.QWake: F.qwake_loss,
    }[example.loss_cls]
    return functional(log_q, log_p)


@pytest.mark.parametrize("example", LOSS_EXAMPLES, ids=lambda e: e.name)
def test_value_matches_functional_twin(example):
    loss_obj = make(example)
    data = data_of()
    torch.manual_seed(3)
    value = loss_obj(data)
    torch.testing.assert_close(value, functional_twin(example, loss_obj, data, seed=3))


def test_dreg_encoder_gradient_matches_functional_dreg_loss():
    """On the same samples, the object's encoder gradient is that of ``F.dreg_loss`` and its
    decoder gradient that of ``F.iwae_loss``."""
    loss_obj = vae.DReG(*models("normal"), n_samples=4)
    inf_net, gen_model = loss_obj.inf_net, loss_obj.gen_model
    data = data_of()
    torch.manual_seed(5)
    inf_params, gen_params = list(inf_net.parameters()), list(gen_model.parameters())
    got = torch.autograd.grad(loss_obj(data), inf_params + gen_params)
    torch.manual_seed(5)
    latents = inf_net(data).rsample(4)
    log_q = inf_net.log_prob(latents, detach_params=True)
    log_p = gen_model(data, latents).log_prob(data, latents)
    expected_inf = torch.autograd.grad(F.dreg_loss(log_q, log_p), inf_params, retain_graph=True)
    expected_gen = torch.autograd.grad(F.iwae_loss(log_q, log_p), gen_params)
    for g, e in zip(got, expected_inf + expected_gen, strict=True):
        torch.testing.assert_close(g, e)


def test_nvil_baseline_network_is_trained_by_the_same_backward():
    baseline_net = nn.Linear(DATA_DIM, 1).double()
    loss_obj = vae.ScoreFunctionELBO(
        *models("bernoulli"), n_samples=2, estimator=Reinforce(NVILBaseline(baseline_net))
    )
    assert {id(p) for p in baseline_net.parameters()} <= {id(p) for p in loss_obj.parameters()}
    loss_obj(data_of()).backward()
    assert baseline_net.weight.grad is not None and baseline_net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "loss_cls, n_samples, message",
    [
        (vae.VIMCO, 1, "n_samples must be an integer >= 2"),
        (vae.IWAE, 0, "n_samples must be an integer >= 1"),
    ],
)
def test_invalid_sample_counts(loss_cls, n_samples, message):
    with pytest.raises(ValueError, match=message):
        loss_cls(*models("normal"), n_samples=n_samples)


REPARAMETERIZED = [vae.ELBO, vae.IWAE, vae.DReG]


@pytest.mark.parametrize("loss_cls", REPARAMETERIZED, ids=lambda c: c.__name__)
def test_reparameterized_loss_rejects_discrete_latents(loss_cls):
    with pytest.raises(ValueError, match=f"{loss_cls.__name__} needs reparameterizable latents"):
        loss_cls(*models("bernoulli"))(data_of())


class DetachedRsample(DistributionInferenceNetwork):
    """Wrong on purpose: rsample cuts the samples from the encoder's graph."""

    def rsample(self, n_samples=1):
        return super().rsample(n_samples).detach()


@pytest.mark.parametrize("loss_cls", REPARAMETERIZED, ids=lambda c: c.__name__)
def test_reparameterized_loss_rejects_latents_without_gradient(loss_cls):
    inf_net, gen_model = models("normal")
    inf_net = DetachedRsample(inf_net.heads[0])
    with pytest.raises(ValueError, match="returned latents that do not require grad"):
        loss_cls(inf_net, gen_model)(data_of())
    with torch.no_grad():  # evaluation without gradients is fine
        loss_cls(inf_net, gen_model)(data_of())


class NoDetachParams(DistributionInferenceNetwork):
    """An inference network whose log_prob lacks the ``detach_params`` keyword."""

    def log_prob(self, latents):
        return super().log_prob(latents)


def test_dreg_names_the_missing_detach_params():
    inf_net, gen_model = models("normal")
    with pytest.raises(TypeError, match="DReG needs inf_net.log_prob\\(latents, detach_params"):
        vae.DReG(NoDetachParams(inf_net.heads[0]), gen_model)(data_of())
    vae.IWAE(NoDetachParams(inf_net.heads[0]), gen_model)(data_of())


def test_elbo_kl_modes():
    data = data_of()
    normal = vae.ELBO(*models("normal"))
    normal(data)
    assert normal.uses_analytic_kl_
    monte_carlo = vae.ELBO(*models("normal"), analytic_kl=False)
    monte_carlo(data)
    assert not monte_carlo.uses_analytic_kl_
    # No closed form for RelaxedBernoulli: "auto" falls back to Monte Carlo, True refuses.
    temperature = torch.tensor(0.5, dtype=torch.float64)
    encoder = DistributionNet(
        nn.Linear(DATA_DIM, LATENT_DIM), RelaxedBernoulli, "logits", temperature=temperature
    )
    prior = Prior(RelaxedBernoulli, logits=torch.zeros(LATENT_DIM), temperature=temperature)
    decoder = DistributionNet(nn.Linear(LATENT_DIM, DATA_DIM), Bernoulli, "logits")
    inf_net = DistributionInferenceNetwork(encoder).double()
    gen_model = DistributionGenerativeModel(prior, decoder).double()
    auto = vae.ELBO(inf_net, gen_model)
    auto(data)
    assert not auto.uses_analytic_kl_
    with pytest.raises(ValueError, match="analytic_kl=True but no closed-form KL"):
        vae.ELBO(inf_net, gen_model, analytic_kl=True)(data)
    with pytest.raises(ValueError, match="analytic_kl must be"):
        vae.ELBO(inf_net, gen_model, analytic_kl="yes")


def test_elbo_with_closed_form_kl_evaluates_the_likelihood_once():
    """With the KL in closed form, log p(x | z) is evaluated once and log q(z | x) only for the
    record, without a graph; the value is the functional twin's."""
    inf_net, gen_model = models("normal")
    data = data_of()
    calls, log_qs = [], []
    log_likelihood, log_prob = gen_model.log_likelihood, inf_net.log_prob
    gen_model.log_likelihood = lambda d, z: calls.append(1) or log_likelihood(d, z)
    inf_net.log_prob = lambda z, **kw: log_qs.append(log_prob(z, **kw)) or log_qs[-1]
    loss_obj = vae.ELBO(inf_net, gen_model)
    loss = loss_obj(data)
    assert loss_obj.uses_analytic_kl_ and len(calls) == 1
    assert len(log_qs) == 1 and not log_qs[0].requires_grad
    latents = gen_model.latents_
    kl = torch.distributions.kl_divergence(inf_net.distribution, gen_model.prior)
    expected = F.elbo_loss_analytic_kl(log_likelihood(data, latents), kl)
    torch.testing.assert_close(loss, expected)
    assert loss_obj.mean_log_q_[-1] == pytest.approx(log_qs[0].mean().item())
    log_p = gen_model.log_prior(latents) + log_likelihood(data, latents)
    assert loss_obj.mean_log_p_[-1] == pytest.approx(log_p.mean().item())


class _RelaxedSamples(DistributionInferenceNetwork):
    """A Bernoulli q(z | x) sampled through its relaxation (Jang et al., 2017, with the exact
    discrete KL)."""

    def rsample(self, n_samples=1):
        logits = self.params_[0]["logits"]
        temperature = torch.tensor(0.5, dtype=logits.dtype)
        relaxed = RelaxedBernoulli(temperature, logits=logits).rsample((n_samples,))
        return relaxed.movedim(0, 1)


def test_elbo_closed_form_kl_expands_the_prior_to_the_batch():
    """torch's Bernoulli KL indexes with masks of each argument's shape: the prior, batch shape
    (), must be expanded to q's (batch_size,) (unexpanded: IndexError)."""
    torch.manual_seed(0)
    encoder = DistributionNet(
        nn.Linear(DATA_DIM, LATENT_DIM), Bernoulli, "logits", validate_args=False
    )
    # Densities at relaxed points: no support validation.
    prior = Prior(partial(Bernoulli, validate_args=False), logits=torch.full((LATENT_DIM,), -1.0))
    decoder = DistributionNet(nn.Linear(LATENT_DIM, DATA_DIM), Bernoulli, "logits")
    inf_net = _RelaxedSamples(encoder).double()
    gen_model = DistributionGenerativeModel(prior, decoder).double()
    data = data_of()
    loss_obj = vae.ELBO(inf_net, gen_model, analytic_kl=True)
    loss = loss_obj(data)
    assert loss_obj.uses_analytic_kl_
    q = torch.sigmoid(inf_net.params_[0]["logits"])
    r = torch.sigmoid(torch.tensor(-1.0, dtype=torch.float64))
    kl = (q * torch.log(q / r) + (1 - q) * torch.log((1 - q) / (1 - r))).sum(-1)
    log_likelihood = gen_model.log_likelihood(data, gen_model.latents_)
    torch.testing.assert_close(loss, (kl - log_likelihood.mean(-1)).mean())


def _elbo_z_score(offset):
    """The analytic-KL and Monte Carlo ELBO objects on the same 10000 samples per data point
    differ by the mean of d = log q(z | x) − log p(z) − KL(q ‖ p(z)), whose expectation is zero;
    z-score of (difference − ``offset``) with the standard error of that mean, d by hand."""
    inf_net, gen_model = models("normal")
    data, n_samples = data_of(), 10_000
    with torch.no_grad():
        values = {}
        for analytic_kl in (True, False):
            torch.manual_seed(0)
            loss_obj = vae.ELBO(inf_net, gen_model, n_samples, analytic_kl=analytic_kl)
            values[analytic_kl] = loss_obj(data).item()
            assert loss_obj.uses_analytic_kl_ is analytic_kl
        torch.manual_seed(0)
        latents = inf_net(data).rsample(n_samples)
        params, prior = inf_net.params_[0], gen_model.priors[0]
        loc, scale = params["loc"].unsqueeze(1), params["scale"].unsqueeze(1)
        log_q = Normal(loc, scale).log_prob(latents).sum(-1)
        log_prior = Normal(prior.loc, prior.scale).log_prob(latents).sum(-1)
        kl = (
            torch.log(prior.scale / scale)
            + (scale**2 + (loc - prior.loc) ** 2) / (2 * prior.scale**2)
            - 0.5
        ).sum(-1)
        d = log_q - log_prior - kl
    standard_error = (d.var(1) / n_samples).sum().sqrt() / BATCH
    torch.testing.assert_close(values[False] - values[True], d.mean().item())
    return ((values[False] - values[True] - offset) / standard_error).item()


def test_analytic_and_monte_carlo_elbo_agree():
    assert abs(_elbo_z_score(0.0)) < 4.5


def test_analytic_and_monte_carlo_check_fails_on_wrong_kl():
    assert abs(_elbo_z_score(0.05)) > 4.5


def test_qsleep_ignores_data_values():
    loss_obj = vae.QSleep(*models("bernoulli"), n_samples=2)
    data = data_of()
    torch.manual_seed(0)
    first = loss_obj(data)
    torch.manual_seed(0)
    second = loss_obj(torch.zeros(BATCH, DATA_DIM, dtype=torch.float64))
    assert first.item() == second.item()


def test_losses_train_a_tiny_model():
    """A few hundred steps of each wake-sleep pair/IWAE improve the IWAE bound on fixed data."""
    data = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float64).repeat(
        4, 1
    )
    inf_net, gen_model = models("bernoulli")
    evaluate = vae.VIMCO(inf_net, gen_model, n_samples=50)
    torch.manual_seed(0)
    with torch.no_grad():
        before = -evaluate(data).item()
    losses = [vae.PWake(inf_net, gen_model), vae.QWake(inf_net, gen_model)]
    optimizer = torch.optim.Adam([*inf_net.parameters(), *gen_model.parameters()], lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        sum(loss(data) for loss in losses).backward()
        optimizer.step()
    with torch.no_grad():
        after = -evaluate(data).item()
    # An untrained model is near 6 log(1/2) ≈ -4.16; the two-pattern data allow about log(1/2).
    assert before < -3.5 and after > -1.5, (before, after)
    assert math.isfinite(after)


@pytest.mark.parametrize("loss_cls", [vae.ELBO, vae.IWAE])
def test_seed_api_as_written(loss_cls):
    """The seed API, call by call: ``inf_net(data)`` returns itself and sets ``params_``;
    ``inf_net.sample()``, ``inf_net.log_prob(latents)``; ``gen_model(data, latents)``,
    ``gen_model.sample()``, ``gen_model.log_prob(data, latents)``; ``loss(data)`` is the scalar
    and ``loss.loss_history_`` records it."""
    inf_net, gen_model = models("normal")
    data = data_of()
    assert inf_net(data) is inf_net and inf_net.params_
    latents = inf_net.sample()
    assert inf_net.log_prob(latents).shape == (BATCH, 1)
    assert gen_model(data, latents) is gen_model
    dreamt, dreamt_latents = gen_model.sample()
    assert dreamt.shape == (1, DATA_DIM) and dreamt_latents.shape == (1, 1, LATENT_DIM)
    assert gen_model.log_prob(data, latents).shape == (BATCH, 1)
    loss = loss_cls(inf_net, gen_model)
    value = loss(data)
    assert value.shape == () and loss.loss_history_ == [value.item()]


@pytest.mark.parametrize("loss_cls", sorted({e.loss_cls for e in LOSS_EXAMPLES}, key=str))
def test_seed_api_loss_construction_for_every_loss(loss_cls):
    latent = "normal" if loss_cls in (vae.ELBO, vae.IWAE, vae.DReG) else "bernoulli"
    loss = loss_cls(*models(latent))
    value = loss(data_of())
    assert value.shape == () and loss.loss_history_ == [value.item()]


class SamplesFirst(DistributionInferenceNetwork):
    """Wrong on purpose: samples first, as torch's ``rsample((n,))`` gives them."""

    def sample(self, n_samples=1):
        return self.dists_[0].sample((n_samples,))

    def rsample(self, n_samples=1):
        return self.dists_[0].rsample((n_samples,))

    def log_prob(self, latents, *, detach_params=False):
        return self.dists_[0].log_prob(latents)


class IgnoresNSamples(DistributionInferenceNetwork):
    """Wrong on purpose: always one sample."""

    def sample(self, n_samples=1):
        return super().sample(1)

    def rsample(self, n_samples=1):
        return super().rsample(1)


class PerDimensionLogProb(DistributionInferenceNetwork):
    """Wrong on purpose: log q not summed over the latent dimensions."""

    def log_prob(self, latents, *, detach_params=False):
        return self.dists_[0].base_dist.log_prob(latents.movedim(1, 0)).movedim(0, 1)


SHAPE_CHECKED = [
    (vae.ELBO, "normal"),
    (vae.IWAE, "normal"),
    (vae.DReG, "normal"),
    (vae.VIMCO, "bernoulli"),
    (vae.PWake, "bernoulli"),
    (vae.QWake, "bernoulli"),
    (vae.ScoreFunctionELBO, "bernoulli"),
]
WRONG_NETWORKS = [
    (SamplesFirst, r"latents of shape \(3, 5, 3\), expected .* = \(5, 3, \.\.\.\): it puts the"),
    (IgnoresNSamples, r"latents of shape \(5, 1, 3\).*did not honour n_samples=3"),
    (PerDimensionLogProb, r"inf_net.log_prob returned shape \(5, 3, 3\), expected .* \(5, 3\)"),
]


@pytest.mark.parametrize(("loss_cls", "latent"), SHAPE_CHECKED, ids=lambda v: str(v))
@pytest.mark.parametrize(("network", "match"), WRONG_NETWORKS, ids=lambda v: str(v))
def test_wrong_sample_layout_is_a_value_error_naming_the_shapes(loss_cls, latent, network, match):
    inf_net, gen_model = models(latent)
    wrong = network(inf_net.heads[0])
    with pytest.raises(ValueError, match=match):
        loss_cls(wrong, gen_model, n_samples=3)(data_of())
    loss_cls(inf_net, gen_model, n_samples=3)(data_of())  # twin: the right layout runs


def test_relax_through_the_loss_trains_everything_from_one_backward():
    """RELAX's documented use: one loss, one backward, one optimizer over loss.parameters()
    (the models and the control variate); every group moves in one step."""
    # relaxed_cost=False: the control network alone, so f only sees binary latents.
    encoder = DistributionNet(nn.Linear(DATA_DIM, LATENT_DIM), Bernoulli, "logits")
    decoder = DistributionNet(nn.Linear(LATENT_DIM, DATA_DIM), Bernoulli, "logits")
    prior = Prior(Bernoulli, logits=torch.zeros(LATENT_DIM))
    control = nn.Sequential(nn.Linear(LATENT_DIM, 8), nn.Tanh(), nn.Linear(8, 1))
    loss_obj = vae.ScoreFunctionELBO(
        DistributionInferenceNetwork(encoder),
        DistributionGenerativeModel(prior, decoder),
        estimator=RELAX(control, relaxed_cost=False),
    ).double()
    before = {name: p.detach().clone() for name, p in loss_obj.named_parameters()}
    optimizer = torch.optim.SGD(loss_obj.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss_obj(data_of()).backward()
    optimizer.step()
    for name, p in loss_obj.named_parameters():
        assert p.requires_grad == (name != "estimator.scale")  # η is unused without f(σ(z/λ))
        assert torch.equal(p.detach(), before[name]) == (not p.requires_grad), name
    assert {n.split(".")[0] for n in before} == {"inf_net", "gen_model", "estimator"}


def test_estimators_needing_a_distribution_name_the_missing_member():
    class SamplerOnly(vae.InferenceNetwork):
        def __init__(self):
            super().__init__()
            self.net = DistributionInferenceNetwork(
                DistributionNet(nn.Linear(DATA_DIM, LATENT_DIM), Bernoulli, "logits")
            ).double()

        def forward(self, data):
            self.net(data)
            return self

        def sample(self, n_samples=1):
            return self.net.sample(n_samples)

        def log_prob(self, latents, *, detach_params=False):
            return self.net.log_prob(latents)

    _, gen_model = models("bernoulli")
    with pytest.raises(TypeError, match="DisARM needs q\\(z \\| x\\) as a torch distribution"):
        vae.ScoreFunctionELBO(SamplerOnly(), gen_model, estimator=DisARM())(data_of())
    vae.ScoreFunctionELBO(SamplerOnly(), gen_model)(data_of())  # REINFORCE needs no more
    with pytest.raises(TypeError, match="estimator must be a stochgrad.estimators.Estimator"):
        vae.ScoreFunctionELBO(SamplerOnly(), gen_model, estimator=NVILBaseline())
