"""Progress bars that stay quiet when not attached to a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_enabled(requested: bool | None = None) -> bool:
    """Show progress if requested explicitly, else only when stderr is a terminal."""
    if requested is not None:
        return requested
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar writing to stderr; disabled (no output) unless ``enabled``."""
    return tqdm(iterable, disable=not enabled, file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)
