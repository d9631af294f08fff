"""A discrete VAE trained with DisARM (or RELAX, REBAR, REINFORCE) through the loss objects.

200 binary latents, MLP encoder and decoder, binarized 8x8 digits. The encoder gradient of the
ELBO comes from an estimator of :mod:`stochgrad.estimators` plugged into
:class:`stochgrad.vae.ScoreFunctionELBO`; one ``backward`` trains the encoder, the decoder, the
prior and the estimator's own control variate (RELAX's network, REBAR's η and λ), all stepped by
one optimizer over ``loss.parameters()``.

    python examples/discrete_vae_disarm.py --estimator disarm --steps 2000
    python examples/discrete_vae_disarm.py --estimator relax --steps 2000
"""

from __future__ import annotations

import argparse
import functools

import torch
from torch import nn
from torch.distributions import Bernoulli

from stochgrad.data import load_dataset
from stochgrad.estimators import REBAR, RELAX, DisARM, Estimator, LeaveOneOutBaseline, Reinforce
from stochgrad.vae import (
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    Prior,
    ScoreFunctionELBO,
)
from stochgrad.vae import functional as F

# REBAR and RELAX evaluate the ELBO at relaxed latents in (0, 1): no {0, 1} support check.
RelaxableBernoulli = functools.partial(Bernoulli, validate_args=False)


def make_estimator(name: str, latent_dim: int) -> Estimator:
    if name == "disarm":
        return DisARM()
    if name == "relax":
        control = nn.Sequential(nn.Linear(latent_dim, 64), nn.Tanh(), nn.Linear(64, 1))
        return RELAX(control)
    if name == "rebar":
        return REBAR()
    return Reinforce(LeaveOneOutBaseline(), n_samples=2)


def test_bound(inf_net, gen_model, data: torch.Tensor, n_samples: int = 100) -> float:
    """The IWAE bound log (1/K) Σ_k p(x, z_k) / q(z_k | x), averaged over ``data``."""
    with torch.no_grad():
        latents = inf_net(data).sample(n_samples)
        log_q = inf_net.log_prob(latents)
        log_p = gen_model(data, latents).log_prob(data, latents)
        return F.iwae_bound(log_q, log_p).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--estimator", choices=["disarm", "relax", "rebar", "reinforce"], default="disarm"
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latents", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    digits = load_dataset("digits")  # scikit-learn's 8x8 digits, grey levels in [0, 1]
    train, test = (digits.train_images > 0.45).float(), (digits.test_images > 0.45).float()
    data_dim, latent_dim = train.shape[1], args.latents

    def mlp(inputs: int, outputs: int) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, 128), nn.Tanh(), nn.Linear(128, outputs))

    inf_net = DistributionInferenceNetwork(
        DistributionNet(mlp(data_dim, latent_dim), RelaxableBernoulli, "logits")
    )
    gen_model = DistributionGenerativeModel(
        Prior(RelaxableBernoulli, learnable=True, logits=torch.zeros(latent_dim)),
        DistributionNet(mlp(latent_dim, data_dim), RelaxableBernoulli, "logits"),
    )
    loss_fn = ScoreFunctionELBO(
        inf_net, gen_model, estimator=make_estimator(args.estimator, latent_dim)
    )
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)  # models and control variate

    for step in range(1, args.steps + 1):
        batch = train[torch.randint(len(train), (args.batch_size,))]
        optimizer.zero_grad()
        loss_fn(batch).backward()
        optimizer.step()
        if step % 500 == 0 or step == args.steps:
            recent = loss_fn.loss_history_[-100:]
            print(f"step {step:5d}  train -ELBO {sum(recent) / len(recent):7.2f} nats")

    print(f"{args.estimator}: test IWAE bound (K=100) {test_bound(inf_net, gen_model, test):.2f}")


if __name__ == "__main__":
    main()
