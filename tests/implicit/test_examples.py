"""The example registry covers every public class of stochgrad.implicit (as torch's
test_has_examples)."""

import stochgrad.implicit as irt
from tests.implicit.examples import EXAMPLES
from tests.registry import public_classes


def test_has_examples():
    covered = {example.cls for example in EXAMPLES}
    missing = sorted(cls.__name__ for cls in public_classes(irt) - covered)
    assert not missing, f"classes without an example in tests/implicit/examples.py: {missing}"


def test_example_names_are_unique():
    names = [example.name for example in EXAMPLES]
    assert len(names) == len(set(names))


def test_every_example_has_a_moment_and_builds_its_class():
    for example in EXAMPLES:
        assert example.moments, example.name
        assert isinstance(example.build(*example.params.values()), example.cls), example.name
