"""stochgrad.vae.wrappers: shapes, densities and gradients over one list of latent families.

Every generic test loops over ``EXAMPLES`` (the latent families the VAE command line uses);
densities are checked against a loop calling the torch distribution one data point and one
sample at a time.
"""

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Gamma,
    Normal,
    OneHotCategorical,
    RelaxedBernoulli,
    VonMises,
)
from torch.nn.functional import softplus

from stochgrad.vae import (
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    GenerativeModelProtocol,
    InferenceNetworkProtocol,
    Prior,
)

DATA_DIM, BATCH, N_SAMPLES = 6, 3, 4


@dataclass
class Example:
    name: str
    dist_cls: type
    param_names: tuple
    latent_shape: tuple
    prior_params: dict
    transforms: dict = field(default_factory=dict)
    dist_kwargs: dict = field(default_factory=dict)


def positive(x):
    return softplus(x) + 0.1


EXAMPLES = [
    Example(
        "normal",
        Normal,
        ("loc", "scale"),
        (5,),
        {"loc": torch.zeros(5), "scale": torch.ones(5)},
        {"scale": positive},
    ),
    Example(
        "gamma",
        Gamma,
        ("concentration", "rate"),
        (5,),
        {"concentration": torch.ones(5), "rate": torch.ones(5)},
        {"concentration": positive, "rate": positive},
    ),
    Example(
        "beta",
        Beta,
        ("concentration1", "concentration0"),
        (5,),
        {"concentration1": torch.ones(5), "concentration0": torch.ones(5)},
        {"concentration1": positive, "concentration0": positive},
    ),
    Example(
        "von_mises",
        VonMises,
        ("loc", "concentration"),
        (5,),
        {"loc": torch.zeros(5), "concentration": torch.ones(5)},
        {"concentration": positive},
    ),
    Example("bernoulli", Bernoulli, ("logits",), (5,), {"logits": torch.zeros(5)}),
    Example(
        "relaxed_bernoulli",
        RelaxedBernoulli,
        ("logits",),
        (5,),
        {"logits": torch.zeros(5), "temperature": torch.tensor(0.5)},
        dist_kwargs={"temperature": torch.tensor(0.5)},
    ),
    Example(
        "one_hot_categorical", OneHotCategorical, ("logits",), (2, 3), {"logits": torch.zeros(2, 3)}
    ),
]


def _library_examples():
    """Families of stochgrad.implicit / stochgrad.relaxed, when those parts export them."""
    import stochgrad.implicit as implicit
    import stochgrad.relaxed as relaxed

    examples = []
    if hasattr(implicit, "Gamma"):
        examples.append(
            Example(
                "implicit_gamma",
                implicit.Gamma,
                ("concentration", "rate"),
                (5,),
                {"concentration": torch.ones(5), "rate": torch.ones(5)},
                {"concentration": positive, "rate": positive},
            )
        )
    if hasattr(relaxed, "RelaxedBernoulli"):
        temperature = torch.tensor(0.5)
        examples.append(
            Example(
                "stochgrad_relaxed_bernoulli",
                relaxed.RelaxedBernoulli,
                ("logits",),
                (5,),
                {"logits": torch.zeros(5), "temperature": temperature},
                dist_kwargs={"temperature": temperature},
            )
        )
    return examples


EXAMPLES += _library_examples()


def encoder_for(example, dtype=torch.float64):
    event = example.latent_shape
    width = len(example.param_names) * int(torch.tensor(event).prod())
    module = nn.Sequential(nn.Linear(DATA_DIM, width), nn.Unflatten(-1, event[:-1] + (-1,)))
    return DistributionNet(
        module.to(dtype),
        example.dist_cls,
        example.param_names,
        example.transforms,
        **example.dist_kwargs,
    )


def decoder_for(example, dtype=torch.float64):
    in_features = int(torch.tensor(example.latent_shape).prod())
    module = nn.Sequential(nn.Flatten(-len(example.latent_shape)), nn.Linear(in_features, DATA_DIM))
    return DistributionNet(module.to(dtype), Bernoulli, "logits")


def models_for(example, dtype=torch.float64):
    torch.manual_seed(0)
    inf_net = DistributionInferenceNetwork(encoder_for(example, dtype))
    prior_params = {k: v.to(dtype) for k, v in example.prior_params.items()}
    prior = Prior(example.dist_cls, **prior_params)
    gen_model = DistributionGenerativeModel(prior, decoder_for(example, dtype)).to(dtype)
    return inf_net, gen_model


def data_of(dtype=torch.float64):
    return torch.bernoulli(torch.full((BATCH, DATA_DIM), 0.5, dtype=dtype))


def test_examples_cover_the_cli_families():
    families = {e.dist_cls for e in EXAMPLES}
    assert {Normal, Gamma, Beta, VonMises, Bernoulli, OneHotCategorical} <= families


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_sample_and_log_prob_shapes(example, dtype):
    inf_net, _ = models_for(example, dtype)
    latents = inf_net(data_of(dtype)).sample(N_SAMPLES)
    assert latents.shape == (BATCH, N_SAMPLES, *example.latent_shape)
    assert latents.dtype == dtype
    log_q = inf_net.log_prob(latents)
    assert log_q.shape == (BATCH, N_SAMPLES)
    assert log_q.dtype == dtype
    assert torch.isfinite(log_q).all()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_samples_lie_in_support(example):
    inf_net, gen_model = models_for(example)
    latents = inf_net(data_of()).sample(N_SAMPLES)
    assert inf_net.dists_[0].support.check(latents.movedim(1, 0)).all()
    data, prior_latents = gen_model.sample(BATCH)
    assert prior_latents.shape == (BATCH, 1, *example.latent_shape)
    assert data.shape == (BATCH, DATA_DIM)
    assert ((data == 0) | (data == 1)).all()


def loop_log_prob(dist_cls, params, dist_kwargs, latents, n_latent_dims):
    """log density one data point and one sample at a time, summed over latent dims."""
    out = torch.empty(latents.shape[:2], dtype=latents.dtype)
    for b in range(latents.shape[0]):
        dist = dist_cls(**{k: v[b] for k, v in params.items()}, **dist_kwargs)
        for n in range(latents.shape[1]):
            value = dist.log_prob(latents[b, n])
            out[b, n] = value.sum() if value.dim() else value
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_inference_log_prob_matches_loop(example):
    inf_net, _ = models_for(example)
    latents = inf_net(data_of()).sample(N_SAMPLES)
    expected = loop_log_prob(
        example.dist_cls,
        inf_net.params_[0],
        example.dist_kwargs,
        latents,
        len(example.latent_shape),
    )
    torch.testing.assert_close(inf_net.log_prob(latents), expected)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_generative_log_prob_is_prior_plus_likelihood(example):
    inf_net, gen_model = models_for(example)
    data = data_of()
    latents = inf_net(data).sample(N_SAMPLES)
    log_p = gen_model(data, latents).log_prob(data, latents)
    prior = example.dist_cls(**{k: v.double() for k, v in example.prior_params.items()})
    expected_prior = torch.stack(
        [torch.stack([prior.log_prob(z).sum() for z in row]) for row in latents]
    )
    logits = gen_model.decoders[0].module(latents)
    expected_lik = Bernoulli(logits=logits).log_prob(data.unsqueeze(1)).sum(-1)
    torch.testing.assert_close(log_p, expected_prior + expected_lik)
    torch.testing.assert_close(gen_model.log_likelihood(data, latents), expected_lik)


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.dist_cls.has_rsample], ids=lambda e: e.name
)
def test_detach_params_keeps_only_the_path_gradient(example):
    inf_net, _ = models_for(example)
    weight = inf_net.heads[0].module[0].weight
    latents = inf_net(data_of()).rsample(N_SAMPLES)
    (path_and_score,) = torch.autograd.grad(
        inf_net.log_prob(latents).sum(), weight, retain_graph=True
    )
    (path_only,) = torch.autograd.grad(
        inf_net.log_prob(latents, detach_params=True).sum(), weight, retain_graph=True
    )
    (score_only,) = torch.autograd.grad(inf_net.log_prob(latents.detach()).sum(), weight)
    torch.testing.assert_close(path_only + score_only, path_and_score)
    assert path_only.abs().max() > 0 and score_only.abs().max() > 0


def test_rsample_without_reparameterization_raises():
    inf_net, _ = models_for(next(e for e in EXAMPLES if e.name == "bernoulli"))
    with pytest.raises(NotImplementedError, match="no reparameterized sampler"):
        inf_net(data_of()).rsample(2)


def test_wrappers_satisfy_the_protocols():
    inf_net, gen_model = models_for(EXAMPLES[0])
    assert isinstance(inf_net, InferenceNetworkProtocol)
    assert isinstance(gen_model, GenerativeModelProtocol)
    assert inf_net(data_of()) is inf_net
    latents = inf_net.sample(2)
    assert gen_model(data_of(), latents) is gen_model


def test_distribution_properties_give_analytic_kl_shapes():
    inf_net, gen_model = models_for(EXAMPLES[0])
    inf_net(data_of())
    assert inf_net.distribution.batch_shape == (BATCH,)
    assert gen_model.prior.batch_shape == ()
    assert torch.distributions.kl_divergence(inf_net.distribution, gen_model.prior).shape == (
        BATCH,
    )


def test_lists_of_data_and_latents():
    """Two latent groups (Normal, OneHotCategorical) and two data tensors."""
    torch.manual_seed(0)
    heads = [
        DistributionNet(_TwoInputs(4), Normal, ("loc", "scale"), {"scale": positive}),
        DistributionNet(_TwoInputs(3), OneHotCategorical, "logits"),
    ]
    inf_net = DistributionInferenceNetwork(heads).double()
    priors = [
        Prior(Normal, loc=torch.zeros(2), scale=torch.ones(2)),
        Prior(OneHotCategorical, logits=torch.zeros(3)),
    ]
    decoders = [DistributionNet(_TwoInputs(DATA_DIM, in_features=(2, 3)), Bernoulli, "logits")] * 2
    gen_model = DistributionGenerativeModel(priors, decoders).double()
    data = [data_of(), data_of()]
    latents = inf_net(data).sample(N_SAMPLES)
    assert [z.shape for z in latents] == [(BATCH, N_SAMPLES, 2), (BATCH, N_SAMPLES, 3)]
    log_q = inf_net.log_prob(latents)
    separately = sum(
        DistributionInferenceNetwork(h).double()(data).log_prob(z)
        for h, z in zip(heads, latents, strict=True)
    )
    torch.testing.assert_close(log_q, separately)
    log_p = gen_model(data, latents).log_prob(data, latents)
    assert log_p.shape == (BATCH, N_SAMPLES)
    dreamt, prior_latents = gen_model.sample(5)
    assert [x.shape for x in dreamt] == [(5, DATA_DIM)] * 2
    assert [z.shape for z in prior_latents] == [(5, 1, 2), (5, 1, 3)]
    with pytest.raises(ValueError, match="expected 2 latent tensors"):
        inf_net.log_prob(latents[0])


class _TwoInputs(nn.Module):
    """Concatenate two inputs, then a linear layer."""

    def __init__(self, out_features, in_features=(DATA_DIM, DATA_DIM)):
        super().__init__()
        self.linear = nn.Linear(sum(in_features), out_features)

    def forward(self, first, second):
        return self.linear(torch.cat([first, second], dim=-1))


def test_module_outputs_as_dict_tuple_and_chunked_tensor():
    data = torch.randn(BATCH, DATA_DIM)
    linear = nn.Linear(DATA_DIM, 4)
    chunked = DistributionNet(linear, Normal, ("loc", "scale"), {"scale": positive})
    as_tuple = DistributionNet(
        lambda x: linear(x).chunk(2, -1), Normal, ("loc", "scale"), {"scale": positive}
    )
    as_dict = DistributionNet(
        lambda x: dict(zip(("loc", "scale"), linear(x).chunk(2, -1), strict=True)),
        Normal,
        transforms={"scale": positive},
    )
    expected = chunked(data)
    for net in (as_tuple, as_dict):
        dist = net(data)
        torch.testing.assert_close(dist.loc, expected.loc)
        torch.testing.assert_close(dist.scale, expected.scale)


def test_distribution_net_errors():
    with pytest.raises(ValueError, match="param_names is required"):
        DistributionNet(nn.Linear(2, 2), Normal)(torch.randn(1, 2))
    with pytest.raises(ValueError, match="module returned 3 outputs, param_names has 2"):
        DistributionNet(lambda x: (x, x, x), Normal, ("loc", "scale"))(torch.randn(1, 2))
    with pytest.raises(ValueError, match="transforms names \\['scal'\\] not in param_names"):
        DistributionNet(nn.Linear(2, 2), Normal, ("loc", "scale"), {"scal": positive})


def test_prior_learnable_parameters_and_buffers_follow_dtype():
    fixed = Prior(Normal, loc=torch.zeros(3), scale=torch.ones(3))
    learnable = Prior(
        Normal,
        learnable=True,
        transforms={"scale": softplus},
        loc=torch.zeros(3),
        scale=torch.ones(3),
    )
    assert len(list(fixed.parameters())) == 0 and len(list(fixed.buffers())) == 2
    assert {n for n, _ in learnable.named_parameters()} == {"loc", "scale"}
    torch.testing.assert_close(learnable().scale, softplus(torch.ones(3)))
    assert fixed.double()().loc.dtype == torch.float64


def test_prior_keeps_the_dtype_of_tensor_parameters():
    prior = Prior(Normal, learnable=True, loc=torch.zeros(3, dtype=torch.float64), scale=1.0)
    assert prior.loc.dtype == torch.float64
    assert prior.scale.dtype == torch.get_default_dtype()


def test_log_prob_recomputes_the_decoder_for_other_latents():
    """log p(x, z) at latents other than the last forward pass's must not reuse its decoder."""
    inf_net, gen_model = models_for(EXAMPLES[0])
    data = data_of()
    first, second = inf_net(data).sample(N_SAMPLES), inf_net.sample(N_SAMPLES)
    after_other_forward = gen_model(data, first).log_prob(data, second)
    torch.testing.assert_close(after_other_forward, gen_model(data, second).log_prob(data, second))
    assert not torch.allclose(after_other_forward, gen_model.log_prob(data, first))
