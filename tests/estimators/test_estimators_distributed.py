"""Estimators stay identical across ranks: a 2-process gloo group on the CPU.

``torch.multiprocessing.start_processes`` (the general form of ``spawn``) forks two workers from
the test process; each feeds *different* data for three steps. The running statistics of the
baselines are all-reduced by the baselines themselves; REBAR and RELAX are trained under
``DistributedDataParallel`` by the user's optimizer from one backward. Both ranks must end with
equal state, the baselines equal to one process fed with the union of the data, and different
from what a rank would hold without synchronisation (the twins).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributions import Bernoulli, Independent
from torch.nn.parallel import DistributedDataParallel

import stochgrad.estimators as est


def _rank_data(rank: int, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 * rank + step)
    return 3.0 * torch.randn(4, 8, generator=generator) + rank


class _Model(nn.Module):
    """Encoder logits plus the REBAR and RELAX estimators, trained from one loss."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(3))
        self.relax = est.RELAX(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)))
        self.rebar = est.REBAR()

    def forward(self, offset: float) -> torch.Tensor:
        q = Independent(Bernoulli(logits=(self.logits + offset).expand(16, 3)), 1)

        def f(b: torch.Tensor) -> torch.Tensor:
            return (b - 0.45).square().sum(-1)

        return self.relax(f, q).mean() + self.rebar(f, q).mean()


def _train(model: nn.Module, rank: int) -> None:
    """Three steps of the user's own optimizer on rank-dependent data, one backward each."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        model(0.5 * (rank + 1)).backward()
        optimizer.step()


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        moving = est.MovingAverageBaseline(decay=0.8)
        nvil = est.NVILBaseline(decay=0.8)
        for step in range(3):
            cost = _rank_data(rank, step)
            moving(cost, torch.zeros_like(cost))
            nvil(cost, torch.zeros_like(cost))
        torch.manual_seed(0)  # the same initial model on both ranks
        model = DistributedDataParallel(_Model())
        torch.manual_seed(1 + rank)  # different Bernoulli draws on each rank
        _train(model, rank)
        torch.manual_seed(0)
        local = _Model()  # twin: the same training without DistributedDataParallel
        torch.manual_seed(1 + rank)
        _train(local, rank)
        state = {
            "logits_grad": {"value": model.module.logits.grad},
            "moving": moving.state_dict(),
            "nvil": nvil.state_dict(),
            "model": {k: v.detach().clone() for k, v in model.module.state_dict().items()},
            "local": {k: v.detach().clone() for k, v in local.state_dict().items()},
        }
        torch.save(state, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_group_keeps_state_identical(tmp_path):
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    states = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    for name in ("moving", "nvil", "model", "logits_grad"):
        for key, value in states[0][name].items():
            torch.testing.assert_close(value, states[1][name][key], msg=f"{name}.{key}")

    # One process fed with both ranks' data holds the same statistics.
    union_moving, union_nvil = est.MovingAverageBaseline(decay=0.8), est.NVILBaseline(decay=0.8)
    local_moving = est.MovingAverageBaseline(decay=0.8)
    for step in range(3):
        both = torch.cat([_rank_data(0, step), _rank_data(1, step)])
        union_moving(both, torch.zeros_like(both))
        union_nvil(both, torch.zeros_like(both))
        local_moving(_rank_data(0, step), torch.zeros_like(_rank_data(0, step)))
    for key, value in union_moving.state_dict().items():
        torch.testing.assert_close(states[0]["moving"][key], value)
    for key, value in union_nvil.state_dict().items():
        torch.testing.assert_close(states[0]["nvil"][key], value)
    # Twin: without synchronisation rank 0 would hold a different running mean.
    assert not torch.allclose(local_moving.moments.running_mean, union_moving.moments.running_mean)

    # The control variates moved (so equality is not the trivial equality of the
    # initialisation), and without DistributedDataParallel the ranks would disagree.
    torch.manual_seed(0)
    initial = _Model().state_dict()
    for key in ("relax.control.0.weight", "relax.log_temperature", "rebar.scale"):
        assert not torch.allclose(states[0]["model"][key], initial[key]), key
        assert not torch.allclose(states[0]["local"][key], states[1]["local"][key]), key
