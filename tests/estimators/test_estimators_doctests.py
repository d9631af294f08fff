"""Every ``Example::`` in stochgrad.estimators runs (seeded) and shows what it claims."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = ["surrogate", "baselines", "muprop", "arm", "relax", "straight_through"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(f"stochgrad.estimators.{name}")
    torch.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
