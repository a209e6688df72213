"""Benchmarks are opt-in: they run only with ``pytest tests/benchmarks --benchmark-enable``."""

import pytest


@pytest.fixture(autouse=True)
def _only_when_enabled(request):
    cfg = request.config
    if cfg.getoption("benchmark_disable", default=False) and not cfg.getoption("benchmark_enable", default=False):
        pytest.skip("benchmarks run only with --benchmark-enable")
