"""Every registered method plugin must pass the conformance check: a new plugin is tested the moment it is added."""

import pytest

from vprbench.plugins.conformance import check_method
from vprbench.plugins.registry import default_registry

REGISTRY = default_registry()


def test_no_plugin_failed_to_import():
    assert REGISTRY.failures == {}


@pytest.mark.parametrize("name", REGISTRY.names())
def test_method_conforms(name):
    assert check_method(REGISTRY.get(name)) == []
