"""Shared fixtures and property checks for the test suite."""

import os

import pytest
import torch

# Tests must not depend on how many threads the machine has.
torch.set_num_threads(int(os.environ.get("STOCHGRAD_TEST_THREADS", "1")))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param
