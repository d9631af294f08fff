"""Benchmark ``rsample`` + ``backward`` of every stochgrad.relaxed class against relaxit 1.2.1.

Both libraries run in this process on the same parameters and shapes; the script prints the
median time of each and the ratio relaxit / stochgrad (above 1: stochgrad is faster), plus the
shapes each library returns, flagging where relaxit's shapes disagree with torch's conventions.

Run: ``python benchmarks/bench_relaxed.py [--batch 256] [--categories 16] [--threads 1]``.
Needs ``relaxit==1.2.1`` (and its dependency ``pyro-ppl``): ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark

import stochgrad.relaxed as ours


@dataclass
class Case:
    name: str
    ours: Callable[[dict], torch.distributions.Distribution]
    theirs: Callable[[dict], object]
    params: Callable[[int, int], dict]
    note: str = ""


def _correlation(k: int) -> torch.Tensor:
    """An equicorrelated matrix with correlation 0.3."""
    return 0.7 * torch.eye(k) + 0.3 * torch.ones(k, k)


def _cases(relaxit) -> list[Case]:
    d = relaxit.distributions
    return [
        Case(
            "GaussianRelaxedBernoulli",
            lambda p: ours.GaussianRelaxedBernoulli(p["loc"], p["scale"]),
            lambda p: d.GaussianRelaxedBernoulli(p["loc"], p["scale"]),
            lambda b, k: {"loc": torch.rand(b, k), "scale": torch.full((b, k), 0.5)},
        ),
        Case(
            "CorrelatedRelaxedBernoulli",
            lambda p: ours.CorrelatedRelaxedBernoulli(p["pi"], p["R"], p["tau"]),
            lambda p: d.CorrelatedRelaxedBernoulli(p["pi"], p["R"], p["tau"]),
            lambda b, k: {
                "pi": torch.rand(b, k) * 0.8 + 0.1,
                "R": _correlation(k),
                "tau": torch.tensor(0.5),
            },
            "relaxit's log_prob is a clipped-normal density, not the law of its rsample",
        ),
        Case(
            "GumbelSoftmaxTopK",
            lambda p: ours.GumbelSoftmaxTopK(p["logits"], 3, p["tau"], hard=True),
            lambda p: d.GumbelSoftmaxTopK(
                logits=p["logits"], K=torch.tensor(3), tau=p["tau"], hard=True
            ),
            lambda b, k: {"logits": torch.randn(b, k), "tau": torch.tensor(0.5)},
            "relaxit perturbs probs instead of logits, rsample takes no sample_shape, "
            "event_shape is () and log_prob is a Bernoulli cross-entropy",
        ),
        Case(
            "StraightThroughBernoulli",
            lambda p: ours.StraightThroughBernoulli(p["probs"]),
            lambda p: d.StraightThroughBernoulli(p["probs"]),
            lambda b, k: {"probs": torch.rand(b, k)},
        ),
        Case(
            "StochasticTimesSmooth",
            lambda p: ours.StochasticTimesSmooth(p["probs"]),
            lambda p: d.StochasticTimesSmooth(p["probs"]),
            lambda b, k: {"probs": torch.rand(b, k)},
            "relaxit returns sqrt(p) * Bernoulli(sqrt p), not a Bernoulli(p) draw",
        ),
        Case(
            "InvertibleGaussian",
            lambda p: ours.InvertibleGaussian(p["loc"], p["scale"], p["temperature"]),
            lambda p: d.InvertibleGaussian(p["loc"], p["scale"], p["temperature"]),
            lambda b, k: {
                "loc": torch.randn(b, k - 1),
                "scale": torch.ones(b, k - 1),
                "temperature": torch.tensor(0.5),
            },
            "relaxit: event_shape () and batch_shape (B, K-1) for samples of shape (B, K); "
            "log_prob has the wrong Jacobian sign and shape (B, K-1)",
        ),
        Case(
            "HardConcrete",
            lambda p: ours.HardConcrete(p["alpha"], p["beta"], p["xi"], p["gamma"]),
            lambda p: d.HardConcrete(p["alpha"], p["beta"], p["xi"], p["gamma"]),
            lambda b, k: {
                "alpha": torch.rand(b, k) + 0.5,
                "beta": torch.tensor(2 / 3),
                "xi": torch.tensor(1.1),
                "gamma": torch.tensor(-0.1),
            },
            "relaxit draws one uniform of shape (1,) shared by the whole batch",
        ),
        Case(
            "LogisticNormalSoftmax",
            lambda p: ours.LogisticNormalSoftmax(p["loc"], p["scale"]),
            lambda p: d.LogisticNormalSoftmax(p["loc"], p["scale"]),
            lambda b, k: {"loc": torch.randn(b, k), "scale": torch.ones(b, k)},
            "relaxit's log_prob treats softmax as a bijection of R^K (it is not)",
        ),
        Case(
            "GeneralizedGumbelSoftmax",
            lambda p: ours.GeneralizedGumbelSoftmax(p["values"], logits=p["logits"], tau=p["tau"]),
            lambda p: d.GeneralizedGumbelSoftmax(p["values"], logits=p["logits"], tau=p["tau"]),
            lambda b, k: {
                "values": torch.arange(k, dtype=torch.float32),
                "logits": torch.randn(b, k),
                "tau": torch.tensor(0.5),
            },
            "relaxit: rsample takes no sample_shape; event_shape () for one-hot samples",
        ),
        Case(
            "DecoupledStraightThroughGumbelSoftmax",
            lambda p: ours.DecoupledStraightThroughGumbelSoftmax(p["logits"], 0.5, 2.0),
            lambda p: d.DecoupledStraightThroughGumbelSoftmax(0.5, 2.0, logits=p["logits"]),
            lambda b, k: {"logits": torch.randn(b, k)},
            "relaxit's forward temperature does not change the forward law (argmax is invariant)",
        ),
        Case(
            "RebarRelaxation",
            lambda p: ours.RebarRelaxation(p["theta"], p["lambd"]),
            lambda p: d.RebarRelaxation(p["theta"], p["lambd"]),
            lambda b, k: {"theta": torch.rand(b, k) * 0.8 + 0.1, "lambd": torch.tensor(0.5)},
            "relaxit draws one scalar uniform shared by the whole batch and defines no "
            "arg_constraints",
        ),
    ]


def _rsample_backward(make: Callable, params: dict) -> None:
    leaves = {
        k: v.detach().requires_grad_(v.is_floating_point() and k not in ("values", "R"))
        for k, v in params.items()
    }
    z = make(leaves).rsample()
    z.sum().backward()


def _time(make: Callable, params: dict, min_run_time: float) -> float:
    # Process CPU time, not wall time: on a shared machine, time spent descheduled is not ours.
    timer = benchmark.Timer(
        stmt="run(make, params)",
        globals={"run": _rsample_backward, "make": make, "params": params},
        timer=time.process_time,
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _shapes(dist) -> str:
    try:
        value = dist.rsample()
    except Exception as error:  # report, do not crash: this is a survey of another library
        return f"rsample failed: {type(error).__name__}"
    try:
        log_prob = tuple(dist.log_prob(value.detach()).shape)
    except Exception as error:
        log_prob = f"log_prob failed: {type(error).__name__}"
    return (
        f"sample {tuple(value.shape)} batch {tuple(dist.batch_shape)} "
        f"event {tuple(dist.event_shape)} log_prob {log_prob}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--categories", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import relaxit  # imported here so --help works without it
    import relaxit.distributions  # noqa: F401  (the subpackage is not imported by relaxit)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # relaxit's RebarRelaxation warns that it defines no arg_constraints on every construction.
    warnings.filterwarnings("ignore", message=".*does not define `arg_constraints`")
    print(
        f"torch {torch.__version__}, relaxit {relaxit.__version__}, threads {args.threads}, "
        f"batch {args.batch}, categories {args.categories}, rsample() + backward(), "
        "best of the repeats' median process CPU time"
    )
    print(f"{'class':40s} {'stochgrad':>12s} {'relaxit':>12s} {'ratio':>7s}")
    notes, ratios = [], []
    for case in _cases(relaxit):
        params = case.params(args.batch, args.categories)
        # Interleaved repeats, best median of each: the machine may be shared.
        ours_times, theirs_times = [], []
        for _ in range(args.repeats):
            ours_times.append(_time(case.ours, params, args.min_run_time))
            theirs_times.append(_time(case.theirs, params, args.min_run_time))
        ours_time, theirs_time = min(ours_times), min(theirs_times)
        ratios.append(theirs_time / ours_time)
        print(
            f"{case.name:40s} {ours_time * 1e6:10.1f}us {theirs_time * 1e6:10.1f}us "
            f"{theirs_time / ours_time:7.2f}"
        )
        notes.append(
            f"{case.name}:\n  stochgrad {_shapes(case.ours(params))}\n"
            f"  relaxit   {_shapes(case.theirs(params))}"
            + (f"\n  note: {case.note}" if case.note else "")
        )
    geometric_mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"{'geometric mean':40s} {'':12s} {'':12s} {geometric_mean:7.2f}")
    print("\nratio = relaxit time / stochgrad time (above 1: stochgrad is faster)\n")
    print("Shapes for parameters of batch shape", (args.batch, args.categories), "\n")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
