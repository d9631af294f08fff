"""Every ``Example::`` in stochgrad.vae runs (seeded) and shows what it claims."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = ["protocols", "wrappers", "losses", "functional"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(f"stochgrad.vae.{name}")
    torch.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
