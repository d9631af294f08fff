"""Variational inference in Pyro with stochgrad's implicit and relaxed distributions.

A hierarchical model of per-item Poisson counts, coin flips, angles, mixture locations and soft
gates, fitted with ``SVI(Trace_ELBO)``: every guide site is a stochgrad distribution under
``pyro.plate`` (implicit Gamma, Beta, von Mises and Gaussian-mixture gradients; a relaxed
Bernoulli), so the ELBO gradient is pathwise everywhere. Nothing to register: building a
stochgrad distribution once Pyro is imported makes Pyro treat it as its own.

    python examples/pyro_svi.py            # 300 steps on 20 items
    python examples/pyro_svi.py --tiny     # 5 steps on 3 items (a smoke test)
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
import torch.distributions as td
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

import stochgrad.implicit as irt
import stochgrad.relaxed as relaxed


def make_data(num_items: int) -> dict[str, torch.Tensor]:
    """Synthetic observations with rates ≈ 6, probabilities ≈ 0.8, angles ≈ 1, locations ≈ 2."""
    return {
        "counts": dist.Poisson(torch.full((num_items,), 6.0)).sample(),
        "heads": dist.Bernoulli(torch.full((num_items,), 0.8)).sample(),
        "angles": dist.VonMises(torch.ones(num_items), 4.0).sample(),
        "points": dist.Normal(torch.full((num_items,), 2.0), 0.5).sample(),
        "switches": torch.full((num_items,), 0.9),
    }


def model(data: dict[str, torch.Tensor]) -> None:
    with pyro.plate("items", len(data["counts"])):
        rate = pyro.sample("rate", irt.Gamma(torch.tensor(2.0), torch.tensor(1.0)))
        pyro.sample("counts", dist.Poisson(rate), obs=data["counts"])
        prob = pyro.sample("prob", irt.Beta(torch.tensor(1.0), torch.tensor(1.0)))
        pyro.sample("heads", dist.Bernoulli(prob), obs=data["heads"])
        angle = pyro.sample("angle", irt.VonMises(torch.tensor(0.0), torch.tensor(1.0)))
        pyro.sample("angles", dist.VonMises(angle, 4.0), obs=data["angles"])
        prior = irt.MixtureSameFamily(
            td.Categorical(logits=torch.zeros(2)), td.Normal(torch.tensor([-2.0, 2.0]), 1.0)
        )
        location = pyro.sample("location", prior)
        pyro.sample("points", dist.Normal(location, 0.5), obs=data["points"])
        gate = pyro.sample("gate", relaxed.RelaxedBernoulli(torch.tensor(0.5), probs=0.5))
        pyro.sample("switches", dist.Normal(gate, 0.2), obs=data["switches"])


def guide(data: dict[str, torch.Tensor]) -> None:
    n = len(data["counts"])
    positive = dist.constraints.positive
    shape = pyro.param("rate_shape", torch.full((n,), 2.0), constraint=positive)
    rate = pyro.param("rate_rate", torch.ones(n), constraint=positive)
    a = pyro.param("prob_a", torch.ones(n), constraint=positive)
    b = pyro.param("prob_b", torch.ones(n), constraint=positive)
    angle_loc = pyro.param("angle_loc", torch.zeros(n))
    angle_concentration = pyro.param("angle_concentration", torch.ones(n), constraint=positive)
    mixture_logits = pyro.param("mixture_logits", torch.zeros(n, 2))
    mixture_loc = pyro.param("mixture_loc", torch.tensor([-2.0, 2.0]).expand(n, 2).clone())
    gate_logits = pyro.param("gate_logits", torch.zeros(n))
    with pyro.plate("items", n):
        pyro.sample("rate", irt.Gamma(shape, rate))
        pyro.sample("prob", irt.Beta(a, b))
        pyro.sample("angle", irt.VonMises(angle_loc, angle_concentration))
        mixture = irt.MixtureSameFamily(
            td.Categorical(logits=mixture_logits), td.Normal(mixture_loc, 1.0)
        )
        pyro.sample("location", mixture)
        pyro.sample("gate", relaxed.RelaxedBernoulli(torch.tensor(0.5), logits=gate_logits))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="5 steps on 3 items")
    args = parser.parse_args(argv)
    steps, items = (5, 3) if args.tiny else (args.steps, args.items)

    torch.manual_seed(args.seed)
    pyro.clear_param_store()
    data = make_data(items)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for step in range(steps):
        loss = svi.step(data)
        if step % max(steps // 5, 1) == 0 or step == steps - 1:
            print(f"step {step:4d}  ELBO loss {loss:10.2f}")

    summary = {
        "mean rate": (pyro.param("rate_shape") / pyro.param("rate_rate")).mean().item(),
        "mean prob": (pyro.param("prob_a") / (pyro.param("prob_a") + pyro.param("prob_b")))
        .mean()
        .item(),
        "mean angle": pyro.param("angle_loc").mean().item(),
        "weight of +2": torch.softmax(pyro.param("mixture_logits"), -1)[:, 1].mean().item(),
        "gate open": torch.sigmoid(pyro.param("gate_logits")).mean().item(),
    }
    for name, value in summary.items():
        print(f"{name:>13}: {value:.3f}")
    return summary


if __name__ == "__main__":
    main()
