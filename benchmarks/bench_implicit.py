"""Speed of implicit-gradient rsample + backward against torch's native rsample (same process).

python benchmarks/bench_implicit.py [--size 1000000] [--repeats 15] [--dtype float32]
"""

import argparse

import torch

from stochgrad.cli.report_implicit import speed_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}")
    print("| case | stochgrad (s, best) | torch native (s, best) | ratio (median of pairs) |")
    print("|---|---|---|---|")
    for name, ours, native, ratio in speed_rows(args.size, args.repeats, dtype):
        print(f"| {name} | {ours:.3f} | {native:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
