"""Mixture rsample via the distributional transform, and von Mises rsample (``stochgrad bench``).

1. A mixture of ``components`` diagonal Gaussians in ``dims`` dimensions, loss ``mean ‖z‖²``:
   rsample + backward time, memory kept for backward, and gradient error against the exact
   gradient of ``E‖z‖² = Σ_k w_k Σ_d (μ_kd² + σ_kd²)``, for
   * stochgrad's implicit gradient (``irt.MixtureSameFamily``, triangular solve),
   * Gumbel-softmax over the components (``RelaxedOneHotCategorical``, τ = 0.5): biased,
   * the score function (REINFORCE) on the mixture log-density: unbiased, high variance.
2. von Mises rsample + backward against torch's ``VonMises.sample`` (no gradient at all) and
   torch's own implicit-reparameterized ``Gamma.rsample`` + backward.

Everything is measured in one process, on one device; ratios are against the first method of
each table. Memory on CPU is the size of the tensors autograd saves for backward (on CUDA, the
peak allocated memory). Full sizes: ``python benchmarks/bench_mixture_vonmises.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.distributions as td

import stochgrad.implicit as irt
from stochgrad.special.vonmises import von_mises_cdf_and_dz_dconcentration

__all__ = [
    "METHODS",
    "mixture_report",
    "mixture_rows",
    "mixture_table",
    "von_mises_rows",
    "von_mises_table",
]

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _SavedBytes:
    """Bytes of the distinct storages autograd saves for backward (CPU memory proxy)."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def mib(self) -> float:
        return sum(self.storages.values()) / 2**20


def _params(components: int, dims: int, device: torch.device, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(components, generator=gen, dtype=dtype)
    loc = 2 * torch.randn(components, dims, generator=gen, dtype=dtype)
    scale = 0.5 + torch.rand(components, dims, generator=gen, dtype=dtype)
    return [p.to(device).requires_grad_() for p in (logits, loc, scale)]


def _exact_grads(params):
    logits, loc, scale = (p.detach().clone().requires_grad_() for p in params)
    dims = loc.shape[-1]
    expectation = (torch.softmax(logits, -1) * (loc**2 + scale**2).sum(-1)).sum() / dims
    return torch.autograd.grad(expectation, (logits, loc, scale))


def loss_implicit(logits, loc, scale, batch: int) -> torch.Tensor:
    mix = irt.MixtureSameFamily(
        td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
    )
    return (mix.rsample((batch,)) ** 2).mean(0).sum() / loc.shape[-1]


def loss_gumbel_softmax(logits, loc, scale, batch: int, temperature=0.5) -> torch.Tensor:
    weights = td.RelaxedOneHotCategorical(
        torch.tensor(temperature, dtype=loc.dtype, device=loc.device), logits=logits
    ).rsample((batch,))
    noise = torch.randn(batch, *loc.shape, dtype=loc.dtype, device=loc.device)
    z = (weights.unsqueeze(-1) * (loc + scale * noise)).sum(-2)
    return (z**2).mean(0).sum() / loc.shape[-1]


def loss_score_function(logits, loc, scale, batch: int) -> torch.Tensor:
    mix = td.MixtureSameFamily(
        td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
    )
    z = mix.sample((batch,))
    f = (z**2).sum(-1) / loc.shape[-1]
    baseline = f.mean().detach()  # a batch-mean baseline, as users would add
    surrogate = f + (f.detach() - baseline) * mix.log_prob(z)
    return surrogate.mean()


METHODS: dict[str, Loss] = {
    "implicit (stochgrad)": loss_implicit,
    "Gumbel-softmax τ=0.5": loss_gumbel_softmax,
    "score function": loss_score_function,
}


def mixture_rows(
    components: int = 10,
    dims: int = 32,
    batch: int = 4096,
    repeats: int = 5,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, tuple[float, float, list[float]]]:
    """method -> (median seconds, MiB, mean relative gradient error of logits, loc, scale)."""
    device = torch.device(device)
    params = _params(components, dims, device, dtype)
    exact = _exact_grads(params)
    rows = {}
    for name, loss_fn in METHODS.items():
        loss_fn(*params, batch).backward()  # warm-up
        times, errors = [], []
        saved = _SavedBytes()
        for rep in range(repeats):
            torch.manual_seed(rep)
            for p in params:
                p.grad = None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            start = time.perf_counter()
            if rep == 0 and device.type != "cuda":
                with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                    loss = loss_fn(*params, batch)
            else:
                loss = loss_fn(*params, batch)
            loss.backward()
            _sync(device)
            times.append(time.perf_counter() - start)
            errors.append(
                [float((p.grad - g).norm() / g.norm()) for p, g in zip(params, exact, strict=True)]
            )
        memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else saved.mib
        mean_errors = [statistics.mean(column) for column in zip(*errors, strict=True)]
        rows[name] = (statistics.median(times), memory, mean_errors)
    return rows


def mixture_table(rows: dict[str, tuple[float, float, list[float]]]) -> str:
    """Markdown table of :func:`mixture_rows`, ratios against the implicit gradient."""
    ref_time, ref_mem, _ = rows["implicit (stochgrad)"]
    lines = [
        "| method | time (ms) | ratio | memory (MiB) | ratio | error logits | error loc "
        "| error scale |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (seconds, mib, errors) in rows.items():
        lines.append(
            f"| {name} | {1e3 * seconds:.1f} | {seconds / ref_time:.2f} | {mib:.1f} | "
            f"{mib / ref_mem:.2f} | " + " | ".join(f"{e:.3f}" for e in errors) + " |"
        )
    return "\n".join(lines)


def _time(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def von_mises_rows(
    samples: int = 1_000_000,
    repeats: int = 5,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    concentrations: tuple[float, ...] = (0.5, 5.0, 50.0, 500.0),
) -> list[tuple[float, float, float, float, float]]:
    """``(κ, stochgrad, dz/dκ only, torch VonMises.sample, torch Gamma)`` median seconds."""
    device = torch.device(device)
    rows = []
    for kappa_value in concentrations:
        loc = torch.tensor(0.3, dtype=dtype, device=device, requires_grad=True)
        kappa = torch.tensor(kappa_value, dtype=dtype, device=device, requires_grad=True)

        def ours(loc=loc, kappa=kappa):
            z = irt.VonMises(loc, kappa).rsample((samples,))
            torch.sin(z).sum().backward()

        def torch_sample(loc=loc, kappa=kappa):
            td.VonMises(loc.detach(), kappa.detach()).sample((samples,))

        x = torch.rand(samples, dtype=dtype, device=device) * 6 - 3

        def dz_only(x=x, kappa=kappa):
            von_mises_cdf_and_dz_dconcentration(x, kappa.detach())

        def torch_gamma(kappa=kappa):
            z = td.Gamma(kappa, torch.ones_like(kappa)).rsample((samples,))
            z.sum().backward()

        rows.append(
            (kappa_value, *(_time(fn, device, repeats) for fn in (ours, dz_only, torch_sample)))
            + (_time(torch_gamma, device, repeats),)
        )
    return rows


def von_mises_table(rows: list[tuple[float, float, float, float, float]]) -> str:
    """Markdown table of :func:`von_mises_rows` with stochgrad's ratios to torch's methods."""
    lines = [
        "| κ | stochgrad (s) | dz/dκ only (s) | torch sample (s) | torch Gamma (s) "
        "| stochgrad / sample | stochgrad / Gamma |",
        "|---|---|---|---|---|---|---|",
    ]
    for kappa, ours, dz_only, sample, gamma in rows:
        lines.append(
            f"| {kappa:g} | {ours:.3f} | {dz_only:.3f} | {sample:.3f} | {gamma:.3f} "
            f"| {ours / sample:.2f} | {ours / gamma:.2f} |"
        )
    return "\n".join(lines)


def mixture_report(
    components: int = 10,
    dims: int = 32,
    batch: int = 1024,
    samples: int = 100_000,
    repeats: int = 3,
    device: torch.device | str = "cpu",
) -> str:
    """Both tables at small sizes (float32); the script's defaults are the full sizes."""
    threads = torch.get_num_threads()
    return "\n".join(
        [
            f"Mixture of {components} diagonal Gaussians in {dims} dims, batch {batch}, "
            f"rsample + backward of mean ‖z‖², median of {repeats} ({device}, float32, "
            f"{threads} threads); error: relative norm of one batch gradient minus the exact one",
            mixture_table(mixture_rows(components, dims, batch, repeats, device)),
            "",
            f"von Mises rsample + backward, {samples:,} samples, median of {repeats} "
            f"({device}, float32, {threads} threads)",
            von_mises_table(von_mises_rows(samples, repeats, device)),
        ]
    )
