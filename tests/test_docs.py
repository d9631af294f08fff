"""Every public module of stochgrad shows a runnable docstring example.

The examples themselves (and the Python blocks of README.md and docs/) run as sybil items,
collected by the repository's root conftest.py; this file checks that there is something to run.
"""

import doctest
import importlib
import pathlib

import pytest

import stochgrad

SOURCE = pathlib.Path(stochgrad.__file__).parent
# Scripts run as `python -m ...` (documented in README.md and docs/), not library API.
ENTRY_POINTS = {("__main__",), ("special", "build")}
# Public modules of the library: not private (_name), not the command line front end.
MODULES = sorted(
    ".".join(("stochgrad", *path.relative_to(SOURCE).with_suffix("").parts))
    for path in SOURCE.rglob("*.py")
    if not any(part.startswith("_") for part in path.relative_to(SOURCE).parts)
    and path.relative_to(SOURCE).parts[0] != "cli"
    and path.relative_to(SOURCE).with_suffix("").parts not in ENTRY_POINTS
)
# Known gaps, strict so that the marker goes when the examples are written.
WITHOUT_EXAMPLES: set[str] = set()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason="no docstring example yet")
            if name in WITHOUT_EXAMPLES
            else (),
        )
        for name in MODULES
    ],
)
def test_module_has_docstring_examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    assert sum(len(test.examples) for test in tests) > 0, f"{name} has no >>> example"
