"""Every script in ``examples/`` runs end to end at tiny size: the smoke test of what users copy.

Convention: every example takes ``--steps N`` (training steps); ``--steps 2`` is the tiny run.
Scripts with alternatives (``--estimator``) are run once per alternative listed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
VARIANTS = {
    "discrete_vae_disarm.py": [["--estimator", name] for name in ("disarm", "relax")],
}
# What each example prints at its end: a held-out evaluation, or for the Pyro example (no data
# to hold out) its running ELBO loss.
LAST_WORDS = {"pyro_svi.py": "ELBO loss"}
CASES = [
    pytest.param(path, extra, id=" ".join([path.name, *extra]))
    for path in EXAMPLES
    for extra in VARIANTS.get(path.name, [[]])
]


def test_examples_exist():
    expected = {"vae_dirichlet.py", "discrete_vae_disarm.py", "pyro_svi.py"}
    assert expected <= {path.name for path in EXAMPLES}


@pytest.mark.parametrize(("path", "extra"), CASES)
def test_example_runs_at_tiny_size(path, extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(path), "--steps", "2", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert LAST_WORDS.get(path.name, "test") in result.stdout
