"""Benchmark: mixture and von Mises ``rsample`` + backward against their references.

1. A mixture of 10 diagonal Gaussians in 32 dimensions, batch 4096, float32: ``rsample`` +
   backward of ``mean ‖z‖²`` against the same mixture's ``log_prob`` + backward (target ≤ 3×).
2. von Mises, 10^6 samples, float32: ``rsample`` + backward of ``mean cos z`` against torch's
   ``VonMises.sample()``, which carries no gradient at all (target ≤ 1×).

Ours and the reference are timed alternately in this process (``torch.utils.benchmark``); each
line gives the median of the paired ratios and their range over ``--rounds`` pairs. ``--busy``
repeats the measurement while a second process runs the same work (a "second rank").

Usage: ``python benchmarks/bench_mixture_vonmises.py [--rounds 5] [--busy] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.distributions as td
from torch.utils.benchmark import Timer

import stochgrad.implicit as irt

COMPONENTS, DIMS, BATCH, SAMPLES = 10, 32, 4096, 1_000_000
CONCENTRATIONS = (0.5, 5.0, 50.0, 500.0)


def mixture_pair(dtype: torch.dtype = torch.float32) -> tuple[Callable[[], None], ...]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(COMPONENTS, generator=gen, dtype=dtype).requires_grad_()
    loc = (2 * torch.randn(COMPONENTS, DIMS, generator=gen, dtype=dtype)).requires_grad_()
    scale = (0.5 + torch.rand(COMPONENTS, DIMS, generator=gen, dtype=dtype)).requires_grad_()

    def mixture() -> irt.MixtureSameFamily:
        components = td.Independent(td.Normal(loc, scale), 1)
        return irt.MixtureSameFamily(td.Categorical(logits=logits), components)

    value = mixture().sample((BATCH,))

    def ours() -> None:
        (mixture().rsample((BATCH,)) ** 2).mean(0).sum().backward()

    def reference() -> None:
        mixture().log_prob(value).mean().backward()

    return ours, reference


def von_mises_pair(kappa: float, dtype: torch.dtype = torch.float32):
    loc = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    concentration = torch.tensor(kappa, dtype=dtype, requires_grad=True)

    def ours() -> None:
        torch.cos(irt.VonMises(loc, concentration).rsample((SAMPLES,))).mean().backward()

    def reference() -> None:
        td.VonMises(loc.detach(), concentration.detach()).sample((SAMPLES,))

    return ours, reference


def cases() -> list[tuple[str, str, Callable[[], None], Callable[[], None]]]:
    out = [("mixture 10×32, batch 4096", "log_prob+backward", *mixture_pair())]
    for kappa in CONCENTRATIONS:
        out.append((f"VonMises κ={kappa:g}, 10^6", "torch sample()", *von_mises_pair(kappa)))
    return out


def _seconds(fn: Callable[[], None]) -> float:
    return Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.3).median


def measure(rounds: int) -> None:
    print("| case | reference | ours (ms) | reference (ms) | ratio median | ratio range |")
    print("|---|---|---|---|---|---|")
    for name, reference_name, ours, reference in cases():
        ours(), reference()  # warm up (lazy imports, allocator)
        pairs = [(_seconds(ours), _seconds(reference)) for _ in range(rounds)]
        ratios = [a / b for a, b in pairs]
        ours_ms = 1e3 * statistics.median(a for a, _ in pairs)
        reference_ms = 1e3 * statistics.median(b for _, b in pairs)
        print(
            f"| {name} | {reference_name} | {ours_ms:.1f} | {reference_ms:.1f} | "
            f"{statistics.median(ratios):.2f}× | {min(ratios):.2f}–{max(ratios):.2f}× |",
            flush=True,
        )


def busy_worker() -> None:
    """The second "rank": alternate ours and the reference over every case until killed."""
    work = [fn for _, _, ours, reference in cases() for fn in (ours, reference)]
    while True:
        for fn in work:
            fn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--busy", action="store_true", help="also measure beside a second process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        busy_worker()
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, CPU\n")
    measure(args.rounds)
    if args.busy:
        print("\nbusy neighbour: a second process runs the same work")
        command = [sys.executable, __file__, "--worker", "--threads", str(args.threads)]
        neighbour = subprocess.Popen(command)
        try:
            time.sleep(2.0)  # let it import and start working
            measure(args.rounds)
        finally:
            neighbour.terminate()
            neighbour.wait()


if __name__ == "__main__":
    main()
