"""The one parameter type system: method parameters, learned-method hyperparameters and dataset
parameters are all :class:`Param` specifications, converted and checked by :meth:`Param.coerce`.

A value may arrive as a native Python value (TOML, the Python API) or as text (the command line);
either way it is converted to the parameter's type, then checked against its choices, range and
validator. Every failure is a :class:`~vprbench.core.errors.ConfigError` that names where the
parameter belongs, the parameter, what was expected and what was given.

Types: ``bool``, ``int``, ``float``, ``str`` and ``tuple`` (of one scalar type; written
``a/b/c`` on the command line). ``optional=True`` also admits ``None`` (``none`` on the command
line), e.g. "take the value from the preset".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vprbench.core.errors import ConfigError, unknown_name

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Param:
    """A typed parameter.

    Attributes:
        default: the default value; its type is the parameter's type unless ``type`` is given.
        help: one line for ``vprbench list -v`` (state the unit: metres, frames, MiB).
        choices: the allowed values, or None.
        type: the value type (bool, int, float, str, tuple); needed when ``default`` is None.
        lo, hi: inclusive bounds (``lo_open`` / ``hi_open``: exclusive) for numbers.
        optional: None is an allowed value.
        validator: extra check, returns an error message (what was expected) or None.
    """

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    type: type | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    validator: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.default is None and self.type is None:
            raise ConfigError(f"Param({self.help!r}): a parameter whose default is None needs an explicit type")
        if self.default is None and not self.optional:
            object.__setattr__(self, "optional", True)

    @property
    def kind(self) -> type:
        """The value type."""
        return self.type if self.type is not None else type(self.default)

    def describe(self) -> str:
        """The allowed values in words, e.g. ``int >= 1`` or ``one of ['a', 'b']``."""
        if self.choices is not None:
            text = f"one of {list(self.choices)}"
        else:
            text = self.kind.__name__
            if self.lo is not None:
                text += f" {'>' if self.lo_open else '>='} {self.lo:g}"
            if self.hi is not None:
                text += f"{',' if self.lo is not None else ''} {'<' if self.hi_open else '<='} {self.hi:g}"
        return text + (" or none" if self.optional else "")

    def coerce(self, value: Any, name: str, where: str) -> Any:
        """``value`` converted to the parameter's type and checked; ConfigError naming ``where`` and ``name``."""
        if value is None or (self.optional and isinstance(value, str) and value.strip().lower() in ("none", "")):
            if self.optional:
                return None
            raise ConfigError(f"{where}: parameter {name!r} expects {self.describe()}, got None")
        value = self._convert(value, name, where)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: parameter {name!r} must be one of {list(self.choices)}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo_bad = self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo))
            hi_bad = self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))
            if lo_bad or hi_bad:
                help_text = f" ({self.help})" if self.help else ""
                raise ConfigError(f"{where}: parameter {name!r}{help_text} must be {self.describe()}, got {value!r}")
        if self.validator is not None:
            problem = self.validator(value)
            if problem:
                raise ConfigError(f"{where}: parameter {name!r} {problem}, got {value!r}")
        return value

    def _convert(self, value: Any, name: str, where: str) -> Any:
        kind = self.kind
        bad = ConfigError(f"{where}: parameter {name!r} expects {self.describe()} (e.g. {self.default!r}), got {value!r}")
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise bad
        if kind is int:
            if isinstance(value, bool):
                raise bad
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(f) or f != int(f):
                raise bad
            return int(f)
        if kind is float:
            if isinstance(value, bool):
                raise bad
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(f):
                raise bad
            return f
        if kind is str:
            if not isinstance(value, str):
                raise bad
            return value
        if kind is Stage:
            if isinstance(value, str) or hasattr(value, "name"):  # text, a MethodSpec or a Method
                return value
            raise bad
        if kind is tuple:
            items = value.split("/") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise bad
            elem = type(self.default[0]) if isinstance(self.default, tuple) and self.default else str
            try:
                return tuple(elem(v) for v in items)
            except (TypeError, ValueError):
                raise bad from None
        if isinstance(value, kind):
            return value
        raise bad


def coerce_params(spec: Mapping[str, Param], values: Mapping[str, Any], where: str, fill_defaults: bool = True) -> dict[str, Any]:
    """Every value checked against ``spec`` (unknown names are errors with suggestions); defaults filled in."""
    for key in values:
        if key not in spec:
            raise unknown_name(f"parameter of {where}", key, spec)
    out = {k: p.coerce(values[k], k, where) for k, p in spec.items() if k in values}
    if fill_defaults:
        out = {k: (out[k] if k in out else p.default) for k, p in spec.items()}
    return out


class Stage(str):
    """Value type of a parameter that names another method: a method spec such as ``seqnet`` or
    ``seqnet[pca_dim=0]`` (composition; resolved by the run's registry, see
    :meth:`vprbench.plugins.registry.Registry.create`)."""
