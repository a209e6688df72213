"""Exceptions raised for bad input. Each message names what was wrong and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VPRBenchError(Exception):
    """Base class of every error vprbench raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(VPRBenchError, ValueError):
    """A bad argument, parameter, preset or configuration value."""


class DataError(VPRBenchError, ValueError):
    """Bad data: wrong shape, NaN values, missing or corrupt files, empty traverses."""


class OutputError(VPRBenchError, OSError):
    """Results cannot be written (full disk, read-only folder); finished jobs are kept."""


class UnknownNameError(ConfigError, KeyError):
    """An unknown method, dataset, parameter or preset name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists close matches and all valid names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    valid = ", ".join(known) if known else "(none)"
    what = f"{kind} {name!r}"
    for sep in (" of ", " with "):  # "parameter 'x' of method 'y'", not "parameter of method 'y' 'x'"
        if sep in kind:
            head, rest = kind.split(sep, 1)
            what = f"{head} {name!r}{sep}{rest}"
            break
    return UnknownNameError(f"unknown {what}.{hint} Known {_plural(kind)}: {valid}.")


def _plural(kind: str) -> str:
    """``kind`` with its head noun in the plural: "parameter of method 'x'" -> "parameters of method 'x'"."""
    for sep in (" of ", " with "):
        if sep in kind:
            head, rest = kind.split(sep, 1)
            return f"{_plural(head)}{sep}{rest}"
    return kind[:-1] + "ies" if kind.endswith("y") and not kind.endswith(("ey", "ay", "oy")) else kind + "s"
