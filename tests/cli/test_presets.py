"""stochgrad preset: the published setups (settings and sources), run end to end on synthetic
files in MNIST's IDX format."""

import json
import math
import re
from dataclasses import fields

import numpy as np
import pytest
from tests.cli.test_data import _write_idx

from stochgrad.cli import main
from stochgrad.cli.presets import PRESETS
from stochgrad.cli.train import TrainConfig

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """120 training and 20 test 'digits' written as gzipped IDX files (MNIST's magic numbers
    and header, small counts)."""
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (120, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 120, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 20, dtype=np.uint8),
    }
    for key, name in IDX_NAMES.items():
        _write_idx(folder / name, arrays[key], compress=True)
    return folder


# The published numbers, as printed in the papers (Jang et al. 2017, Table 1, row 'VAE (Bern.)';
# Yin & Zhou 2019, Table 2(a), column 'Linear'), by --estimator.
PUBLISHED = {
    "jang2017": {"reinforce": 112.2, "muprop": 109.7, "plain_st": 116.0, "gumbel": 105.0,
                 "st": 111.5},
    "yin2019": {"reinforce": 164.0, "nvil": 113.1, "muprop": 113.0, "gumbel": 107.3,
                "rebar": 107.7, "relax": 113.6, "arm": 107.2},
}  # fmt: skip
# The settings the papers (or, where they are silent, the authors' code) state.
SETTINGS = {
    "jang2017": dict(latent="bernoulli", dim=200, hidden=(), optimizer="sgd", batch_size=100,
                     binarization="static", temperature=0.5, anneal_rate=1e-4,
                     anneal_every=1000, iwae_samples=1000, data="mnist"),
    "yin2019": dict(latent="bernoulli", dim=200, hidden=(), optimizer="adam", lr=1e-4,
                    batch_size=50, steps=1_200_000, binarization="static", iwae_samples=1000,
                    data="mnist"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_settings_and_numbers_match_the_paper(name):
    preset = PRESETS[name]
    assert {row.estimator: row.value for row in preset.published} == PUBLISHED[name]
    for field, value in SETTINGS[name].items():
        assert getattr(preset.config, field) == value, field


def test_learning_rates_are_from_the_papers_grids():
    # Jang et al. §4: each estimator's from {3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3};
    # Yin & Zhou §4.1: from {5, 1, 0.5} x 1e-4.
    grids = {"jang2017": {3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3}, "yin2019": {5e-4, 1e-4, 5e-5}}
    for name, grid in grids.items():
        preset = PRESETS[name]
        rates = {preset.config.lr if row.lr is None else row.lr for row in preset.published}
        assert rates <= grid, rates - grid


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_setting_has_a_source(name):
    preset = PRESETS[name]
    default = TrainConfig()
    changed = {
        f.name
        for f in fields(TrainConfig)
        if getattr(preset.config, f.name) != getattr(default, f.name)
    }
    assert changed  # the preset does set something
    assert changed <= set(preset.sources), changed - set(preset.sources)
    assert all(len(source) > 10 for source in preset.sources.values())


def _rows(table):
    """(estimator, published, ours, -ELBO, steps) for each data row of the printed table."""
    pattern = re.compile(
        r"^\| .* \((\w+)\) \| [=≤] ([\d.]+) \| ([-\w.]+) \| ([-\w.]+) \| ([\d,]+) \| [\w.]+ \|$"
    )
    return [
        (m[1], float(m[2]), float(m[3]), float(m[4]), int(m[5].replace(",", "")))
        for line in table.splitlines()
        if (m := pattern.match(line))
    ]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_runs_end_to_end_and_prints_the_published_numbers(name, mnist_dir, tmp_path, capsys):
    out = tmp_path / name
    code = main(["preset", name, "--data-dir", str(mnist_dir), "--steps", "2", "--out", str(out),
                 "--iwae-samples", "4", "--no-progress"])  # fmt: skip
    assert code == 0
    rows = _rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == list(PUBLISHED[name])
    for estimator, published, ours, neg_elbo, steps in rows:
        assert published == PUBLISHED[name][estimator]
        assert math.isfinite(ours) and math.isfinite(neg_elbo)
        # 784 pixels after 2 steps: far from trained, and a valid bound (positive nats)
        assert ours > 0 and neg_elbo > 0
        assert steps == 2
    saved = json.loads((out / "results.json").read_text())
    assert [row["estimator"] for row in saved["rows"]] == list(PUBLISHED[name])
    assert all(row["config"]["steps"] == 2 for row in saved["rows"])
    written = (out / "results.md").read_text()
    assert written.count("\n| ") == len(PUBLISHED[name]) + 1
    assert all(note in written for note in PRESETS[name].differences)


def test_preset_without_data_dir_is_one_line_error(capsys):
    assert main(["preset", "yin2019", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data-dir" in err and "Traceback" not in err


def test_preset_rejects_an_estimator_outside_its_table(mnist_dir, tmp_path, capsys):
    code = main(["preset", "jang2017", "--data-dir", str(mnist_dir), "--estimators", "arm",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "arm not in preset jang2017" in capsys.readouterr().err


def test_preset_subset_of_estimators(mnist_dir, tmp_path, capsys):
    code = main(["preset", "yin2019", "--data-dir", str(mnist_dir), "--estimators", "arm,nvil",
                 "--steps", "3", "--out", str(tmp_path), "--iwae-samples", "2",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    rows = _rows(capsys.readouterr().out)
    assert [(row[0], row[1], row[4]) for row in rows] == [("arm", 107.2, 3), ("nvil", 113.1, 3)]
