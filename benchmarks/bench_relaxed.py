"""Benchmark ``rsample`` + ``backward`` of every stochgrad.relaxed class against relaxit 1.2.1.

Both libraries run in this process on the same parameters and shapes; the script prints the
median time of each and the ratio relaxit / stochgrad (above 1: stochgrad is faster), plus the
shapes each library returns, flagging where relaxit's shapes disagree with torch's conventions.
The measuring code lives in :mod:`stochgrad.cli.report_relaxed` (``stochgrad bench`` runs it at
small sizes).

Run: ``python benchmarks/bench_relaxed.py [--batch 256] [--categories 16] [--threads 1]``.
Needs ``relaxit==1.2.1`` (and its dependency ``pyro-ppl``): ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse

import torch

from stochgrad.cli.report_relaxed import import_relaxit, relaxed_rows, relaxed_table, shape_notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--categories", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    relaxit = import_relaxit()
    if relaxit is None:
        parser.error("relaxit is not installed: pip install relaxit==1.2.1 (or -e .[bench])")

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, relaxit {relaxit.__version__}, threads {args.threads}, "
        f"batch {args.batch}, categories {args.categories}, rsample() + backward(), "
        "best of the repeats' median process CPU time"
    )
    rows = relaxed_rows(args.batch, args.categories, args.min_run_time, args.repeats, relaxit)
    print(relaxed_table(rows))
    print("\nratio = relaxit time / stochgrad time (above 1: stochgrad is faster)\n")
    print("Shapes for parameters of batch shape", (args.batch, args.categories), "\n")
    print(shape_notes(args.batch, args.categories, relaxit))


if __name__ == "__main__":
    main()
