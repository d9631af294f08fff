"""Shared fixtures and property checks for the test suite."""

import os

import pytest
import torch

# Tests must not depend on how many threads the machine has.
torch.set_num_threads(int(os.environ.get("STOCHGRAD_TEST_THREADS", "1")))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(autouse=True)
def _restore_default_validation():
    """Keep torch.distributions' global validation flag as each test found it.

    The first ``torch.compile`` / ``torch._dynamo`` call in a process switches argument validation
    off for every distribution (``Distribution.set_default_validate_args(False)`` in dynamo's
    one-time patching), so without this, tests that check ``ValueError`` on bad parameters would
    pass or fail depending on which tests ran earlier on the same worker.
    """
    flag = torch.distributions.Distribution._validate_args
    yield
    torch.distributions.Distribution.set_default_validate_args(flag)
