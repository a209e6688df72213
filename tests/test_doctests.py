"""Run the docstring examples of the library modules (they are part of the documentation)."""

import doctest
import importlib

import pytest

MODULES = [
    "vprbench.metrics.recall",
    "vprbench.metrics.pr",
    "vprbench.metrics.evaluator",
    "vprbench.data.groundtruth",
    "vprbench.data.windows",
    "vprbench.matching.distances",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
