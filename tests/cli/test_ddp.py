"""Data-parallel training: ``torchrun --nproc_per_node=2`` on CPU (gloo) keeps ranks identical."""

import subprocess
import sys

import pytest
import torch

from stochgrad.cli.checkpoint import load_checkpoint

WORKER = """
import os, sys
import torch
from stochgrad.cli.train import TrainConfig, train

torch.set_num_threads(1)
out = sys.argv[1]
result = train(TrainConfig(latent="bernoulli", estimator="nvil", dim=20, epochs=2, data="digits",
                           train_size=200, test_size=40, batch_size=20, iwae_samples=10,
                           progress=False, out=out))
torch.save({"vae": result["model"].state_dict(), "objective": result["objective"].state_dict()},
           os.path.join(out, "rank%s.pt" % os.environ["RANK"]))
"""


@pytest.mark.slow
def test_two_cpu_processes_hold_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), str(out)]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for part in ("vae", "objective"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs"
    # Training moved the weights away from the shared initialisation, and the NVIL running
    # statistics were updated: identical ranks are not identical by doing nothing.
    torch.manual_seed(0)
    from stochgrad.cli.models import FAMILIES, VAE

    initial = VAE(FAMILIES["bernoulli"], 20, 64, "nvil").state_dict()
    assert not torch.equal(initial["encoder.0.weight"], ranks[0]["vae"]["encoder.0.weight"])
    assert any(value.abs().sum() > 0 for key, value in ranks[0]["objective"].items()
               if "running" in key)  # fmt: skip
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert len(state["rng"]["ranks"]) == 2
