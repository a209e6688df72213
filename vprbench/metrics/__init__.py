"""Metrics as pure functions (recall, precision-recall, uncertainty) and the evaluator that applies them.

The first version's flat ``vprbench.metrics`` names are importable from here.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "recall_at_n": "vprbench.metrics.recall", "recall_vs_radius": "vprbench.metrics.recall", "DEFAULT_NS": "vprbench.metrics.recall",
    "PRCurve": "vprbench.metrics.pr", "precision_recall": "vprbench.metrics.pr",
    "Evaluation": "vprbench.metrics.evaluator", "RecallEvaluator": "vprbench.metrics.evaluator",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vprbench.metrics' has no attribute {name!r}")
