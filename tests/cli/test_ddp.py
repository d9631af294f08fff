"""Data-parallel training: ``torchrun --nproc_per_node=2`` on CPU (gloo) keeps ranks identical.

NVIL keeps running statistics; RELAX a learned control variate trained from the same backward.
"""

import subprocess
import sys

import pytest
import torch

from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import make_objective

WORKER = """
import os, sys
import torch
from stochgrad.cli.train import TrainConfig, train

torch.set_num_threads(1)
out, estimator = sys.argv[1], sys.argv[2]
result = train(TrainConfig(latent="bernoulli", estimator=estimator, dim=20, epochs=2,
                           data="digits", train_size=200, test_size=40, batch_size=20,
                           iwae_samples=10, progress=False, out=out))
torch.save({"vae": result["model"].state_dict(), "objective": result["objective"].state_dict()},
           os.path.join(out, "rank%s.pt" % os.environ["RANK"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["nvil", "relax"])
def test_two_cpu_processes_hold_identical_parameters(tmp_path, estimator):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), str(out), estimator]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for part in ("vae", "objective"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs"
    # Training moved the weights away from the shared initialisation, and the estimator's own
    # state (NVIL's running statistics, RELAX's control variate) was updated: identical ranks
    # are not identical by doing nothing.
    torch.manual_seed(0)
    initial = VAE(FAMILIES["bernoulli"], 20, 64, estimator)
    objective = make_objective(estimator, initial, 64, samples=5, temperature=0.5)
    first = "inf_net.heads.0.module.body.0.weight"
    assert not torch.equal(initial.state_dict()[first], ranks[0]["vae"][first])
    estimator_state = {
        key: value
        for key, value in objective.state_dict().items()
        if ".estimator." in key and value.is_floating_point()
    }
    assert estimator_state
    assert any(
        not torch.equal(value, ranks[0]["objective"][key]) for key, value in estimator_state.items()
    )
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert len(state["rng"]["ranks"]) == 2
