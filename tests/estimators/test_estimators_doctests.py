"""Every ``Example::`` in stochgrad.estimators runs (seeded) and shows what it claims."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "stochgrad.special._autograd",
    "stochgrad.estimators.baselines",
    "stochgrad.estimators.score_function",
    "stochgrad.estimators.arm",
    "stochgrad.estimators.relax",
    "stochgrad.estimators.straight_through",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
