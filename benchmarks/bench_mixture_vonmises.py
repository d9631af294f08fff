"""Benchmark: mixture rsample through the distributional transform, and von Mises rsample.

1. A mixture of 10 diagonal Gaussians in 32 dimensions, batch 4096, loss ``mean ‖z‖²``:
   rsample + backward time, memory kept for backward, and gradient error against the exact
   gradient, for stochgrad's implicit gradient, Gumbel-softmax over the components and the
   score function.
2. von Mises rsample + backward per million samples, against torch's ``VonMises.sample`` (no
   gradient at all) and torch's own implicit-reparameterized ``Gamma.rsample`` + backward.

The measuring code lives in :mod:`stochgrad.cli.report_mixture` (``stochgrad bench`` runs it at
small sizes). Usage: ``python benchmarks/bench_mixture_vonmises.py [--device cuda] [--repeats 5]``
"""

from __future__ import annotations

import argparse

import torch

from stochgrad.cli.report_mixture import (
    mixture_rows,
    mixture_table,
    von_mises_rows,
    von_mises_table,
)

COMPONENTS, DIMS, BATCH, SAMPLES = 10, 32, 4096, 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(
        f"\nMixture of {COMPONENTS} diagonal Gaussians in {DIMS} dims, batch {BATCH} "
        f"({args.device}, float32); relative error of one batch gradient vs the exact one"
    )
    rows = mixture_rows(COMPONENTS, DIMS, BATCH, args.repeats, args.device)
    print(mixture_table(rows))
    print(f"\nvon Mises rsample + backward, {SAMPLES:,} samples ({args.device}, float32)")
    print(von_mises_table(von_mises_rows(SAMPLES, args.repeats, args.device)))


if __name__ == "__main__":
    main()
