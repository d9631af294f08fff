"""The example registry of tests/relaxed covers every public class of stochgrad.relaxed."""

from tests.registry import public_classes
from tests.relaxed.test_relaxed_properties import EXAMPLES

import stochgrad.relaxed as relaxed


def test_has_examples():
    covered = {type(example.build()) for example in EXAMPLES}
    missing = sorted(cls.__name__ for cls in public_classes(relaxed) - covered)
    assert not missing, f"classes without an example in test_relaxed_properties.py: {missing}"
