"""Benchmark: mixture rsample through the distributional transform, and von Mises rsample.

1. A mixture of 10 diagonal Gaussians in 32 dimensions, batch 4096, loss ``mean ‖z‖²``:
   rsample + backward time, memory kept for backward, and gradient error against the exact
   gradient of ``E‖z‖² = Σ_k w_k Σ_d (μ_kd² + σ_kd²)``, for
   * stochgrad's implicit gradient (``irt.MixtureSameFamily``, triangular solve),
   * Gumbel-softmax over the components (``RelaxedOneHotCategorical``, τ = 0.5): biased,
   * the score function (REINFORCE) on the mixture log-density: unbiased, high variance.
2. von Mises rsample + backward per million samples, against torch's ``VonMises.sample`` (no
   gradient at all) and torch's own implicit-reparameterized ``Gamma.rsample`` + backward.

Everything is measured in this process, on the same device; ratios are printed against the
reference of each section. Memory on CPU is the size of the tensors autograd saves for backward
(on CUDA, the peak allocated memory).

Usage: ``python benchmarks/bench_mixture_vonmises.py [--device cuda] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.distributions as td

import stochgrad.implicit as irt
from stochgrad.special.vonmises import von_mises_cdf_and_dz_dconcentration

K, D, BATCH = 10, 32, 4096


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


def _params(device, dtype):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(K, generator=gen, dtype=dtype)
    loc = 2 * torch.randn(K, D, generator=gen, dtype=dtype)
    scale = 0.5 + torch.rand(K, D, generator=gen, dtype=dtype)
    return [p.to(device).requires_grad_() for p in (logits, loc, scale)]


def _exact_grads(params):
    logits, loc, scale = (p.detach().clone().requires_grad_() for p in params)
    expectation = (torch.softmax(logits, -1) * (loc**2 + scale**2).sum(-1)).sum() / D
    return torch.autograd.grad(expectation, (logits, loc, scale))


def loss_implicit(logits, loc, scale):
    mix = irt.MixtureSameFamily(
        td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
    )
    return (mix.rsample((BATCH,)) ** 2).mean(0).sum() / D


def loss_gumbel_softmax(logits, loc, scale, temperature=0.5):
    weights = td.RelaxedOneHotCategorical(torch.tensor(temperature), logits=logits).rsample(
        (BATCH,)
    )
    components = loc + scale * torch.randn(BATCH, K, D, dtype=loc.dtype, device=loc.device)
    z = (weights.unsqueeze(-1) * components).sum(-2)
    return (z**2).mean(0).sum() / D


def loss_score_function(logits, loc, scale):
    mix = td.MixtureSameFamily(
        td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
    )
    z = mix.sample((BATCH,))
    f = (z**2).sum(-1) / D
    baseline = f.mean().detach()  # a batch-mean baseline, as users would add
    surrogate = f + (f.detach() - baseline) * mix.log_prob(z)
    return surrogate.mean()


METHODS = {
    "implicit (stochgrad)": loss_implicit,
    "Gumbel-softmax τ=0.5": loss_gumbel_softmax,
    "score function": loss_score_function,
}


def bench_mixture(device, dtype, repeats):
    print(f"\nMixture of {K} diagonal Gaussians in {D} dims, batch {BATCH} ({device}, {dtype})")
    params = _params(device, dtype)
    exact = _exact_grads(params)
    rows = {}
    for name, loss_fn in METHODS.items():
        loss_fn(*params).backward()  # warm-up
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
                    loss = loss_fn(*params)
            else:
                loss = loss_fn(*params)
            loss.backward()
            _sync(device)
            times.append(time.perf_counter() - start)
            errors.append(
                [float((p.grad - g).norm() / g.norm()) for p, g in zip(params, exact, strict=True)]
            )
        memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else saved.mib
        mean_errors = [statistics.mean(column) for column in zip(*errors, strict=True)]
        rows[name] = (statistics.median(times), memory, mean_errors)
    ref_time, ref_mem, _ = rows["implicit (stochgrad)"]
    print("relative error of one batch gradient vs the exact one, per parameter group")
    header = f"{'method':22s} {'time ms':>8s} {'x':>6s} {'mem MiB':>8s} {'x':>5s}"
    print(header + f" {'logits':>7s} {'loc':>7s} {'scale':>7s}")
    for name, (t, m, e) in rows.items():
        cells = f"{name:22s} {1e3 * t:8.1f} {t / ref_time:6.2f} {m:8.1f} {m / ref_mem:5.2f}"
        print(cells + "".join(f" {v:7.3f}" for v in e))
    return rows


def _time(fn, device, repeats):
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_von_mises(device, dtype, repeats, n=1_000_000):
    print(f"\nvon Mises rsample + backward, {n:,} samples ({device}, {dtype}); seconds")
    columns = ("stochgrad", "dz/dκ only", "torch sample", "torch Gamma")
    print(f"{'κ':>7s} " + " ".join(f"{c:>12s}" for c in columns))
    for kappa_value in (0.5, 5.0, 50.0, 500.0):
        loc = torch.tensor(0.3, dtype=dtype, device=device, requires_grad=True)
        kappa = torch.tensor(kappa_value, dtype=dtype, device=device, requires_grad=True)

        def ours(loc=loc, kappa=kappa):
            z = irt.VonMises(loc, kappa).rsample((n,))
            torch.sin(z).sum().backward()

        def torch_sample(loc=loc, kappa=kappa):
            td.VonMises(loc.detach(), kappa.detach()).sample((n,))

        x = torch.rand(n, dtype=dtype, device=device) * 6 - 3

        def dz_only(x=x, kappa=kappa):
            von_mises_cdf_and_dz_dconcentration(x, kappa.detach())

        def torch_gamma(kappa=kappa):
            z = td.Gamma(kappa, torch.ones_like(kappa)).rsample((n,))
            z.sum().backward()

        t_ours = _time(ours, device, repeats)
        t_dz = _time(dz_only, device, repeats)
        t_sample = _time(torch_sample, device, repeats)
        t_gamma = _time(torch_gamma, device, repeats)
        print(
            f"{kappa_value:7.1f} "
            + " ".join(f"{t:12.3f}" for t in (t_ours, t_dz, t_sample, t_gamma))
            + f"   (ours/sample {t_ours / t_sample:.2f}, ours/Gamma {t_ours / t_gamma:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_mixture(device, torch.float32, args.repeats)
    bench_von_mises(device, torch.float32, args.repeats)


if __name__ == "__main__":
    main()
