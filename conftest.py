"""Run the documentation: every Python block of README.md and docs/*.md, every docstring example.

Sybil (https://sybil.readthedocs.io) collects them as pytest items: a Markdown file's Python
blocks run in order in one namespace; a module's ``>>>`` examples run in the module's namespace.
Each document starts from ``torch.manual_seed(0)``, so printed random values are reproducible,
with ``torch`` in its namespace (as torch's own docstring examples assume). A document's examples
depend on each other, so under ``-n`` they must stay on one worker: pyproject's addopts set
``--dist loadfile``.
"""

from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

import torch
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser
from sybil.parsers.rest import DocTestParser

OPTIONS = ELLIPSIS | NORMALIZE_WHITESPACE


def _seeded(namespace: dict) -> None:
    torch.manual_seed(0)
    namespace["torch"] = torch


markdown = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=OPTIONS)],
    patterns=["README.md", "docs/*.md"],
    setup=_seeded,
    name="markdown",
)
docstrings = Sybil(
    parsers=[DocTestParser(optionflags=OPTIONS)],
    path="src",
    patterns=["*.py"],
    setup=_seeded,
    name="docstrings",
)

pytest_collect_file = (markdown + docstrings).pytest()
