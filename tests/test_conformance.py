"""Every registered method plugin must pass the conformance checks; each (method, check) pair is its
own test item (like scikit-learn's parametrize_with_checks), selected by the method's metadata."""

import pytest

from vprbench.plugins.conformance import checks_for, run_check
from vprbench.plugins.registry import default_registry

REGISTRY = default_registry()
CASES = [(name, check) for name in REGISTRY.names() for check in checks_for(REGISTRY.get(name).info)]


def test_no_plugin_failed_to_import():
    assert REGISTRY.failures == {}


@pytest.mark.parametrize("name,check", CASES, ids=[f"{n}-{c.name}" for n, c in CASES])
def test_method_conforms(name, check):
    problem = run_check(check, name, REGISTRY)
    assert problem is None, f"{name} fails check {check.name!r}: {problem}"
