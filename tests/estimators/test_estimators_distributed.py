"""Stateful estimators stay identical across ranks: a 2-process gloo group on the CPU.

``torch.multiprocessing.start_processes`` (the general form of ``spawn``) forks two workers from
the test process; each feeds *different* data to the same estimators for three steps. Both ranks
must end with equal state, equal to one process fed with the union of the data, and different
from what a rank would hold without synchronisation (the twin).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import stochgrad.estimators as est


def _rank_data(rank: int, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 * rank + step)
    return 3.0 * torch.randn(4, 8, generator=generator) + rank


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(0)  # the same initial control network on both ranks
        moving = est.MovingAverageBaseline(decay=0.8)
        nvil = est.NVILBaseline(decay=0.8)
        control = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        relax = est.RELAX(control, lr=0.05)
        torch.manual_seed(1 + rank)  # different Bernoulli draws on each rank
        for step in range(3):
            cost = _rank_data(rank, step)
            moving(cost, torch.zeros_like(cost))
            nvil(cost, torch.zeros_like(cost))
            logits = torch.full((16, 3), 0.5 * (rank + 1), requires_grad=True)
            relax.step(relax(lambda b: (b - 0.45).square().sum(-1), logits).mean(), [logits])
        state = {
            "logits_grad": {"value": logits.grad},
            "moving": moving.state_dict(),
            "nvil": nvil.state_dict(),
            "relax": {k: v.detach().clone() for k, v in relax.state_dict().items()},
        }
        torch.save(state, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_group_keeps_state_identical(tmp_path):
    # Build one RELAX first: its optimizer's lazy imports then happen once, before the fork,
    # instead of in each worker (seconds each).
    est.RELAX(nn.Linear(3, 1))
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    states = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    for name in ("moving", "nvil", "relax", "logits_grad"):
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

    # The control networks moved (so equality is not the trivial equality of the initialisation).
    torch.manual_seed(0)
    initial = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).state_dict()
    assert not torch.allclose(states[0]["relax"]["control.0.weight"], initial["0.weight"])
