"""Evaluation protocols as data: which references count as correct and which queries count.

Numbers of different papers disagree mostly because their protocols differ: the tolerance, which
reference counts as a positive for a sequence (the centre frame within the radius, as seqNet; or any
frame of the retrieved window, as JIST / SeqVLAD), and whether queries without a positive are
excluded (seqNet, VPR_Tutorial) or counted as misses (VPR-methods-evaluation, Patch-NetVLAD). A
protocol has a name, is stored in every record and printed in every table caption. A dataset
definition may carry named protocols::

    [protocols.patchnetvlad]
    description = "Patch-NetVLAD / downloader convention"
    tolerance = 10          # frames (frame-aligned data); or radius = 25.0 in the position unit
    no_positive = "miss"    # or "exclude" (default)
    positives = "frame"     # or "window"

Every dataset has the protocol ``default``: its own radius (or explicit ground truth), centre
frame, queries without a positive excluded. Window policy (shift / drop) and sequence length are
job settings recorded beside the protocol. A dataset with explicit ground truth (VPR_Tutorial's
GThard / GTsoft, VPR-Bench's lists) has no radius: its protocols are marked ``explicit`` (the
caption says "explicit ground truth"), and a protocol giving a radius or tolerance is refused
(:func:`for_ground_truth`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from vprbench.core.errors import ConfigError, unknown_name
from vprbench.core.params import Param, coerce_params

DEFAULT_PROTOCOL = "default"
DEFAULT_DESCRIPTION = "the dataset's own radius"
EXPLICIT_DESCRIPTION = "the dataset's own ground truth"
POSITIVE_RULES = ("frame", "window")
NO_POSITIVE_POLICIES = ("exclude", "miss")

PROTOCOL_PARAMS: dict[str, Param] = {
    "description": Param("", "one line shown in table captions"),
    "radius": Param(None, "localisation radius in the dataset's position unit (none: the dataset's)", type=float, lo=0.0, lo_open=True),
    "tolerance": Param(None, "frame-aligned data: |frame difference| <= tolerance frames (none: the dataset's)", type=int, lo=0),
    "positives": Param("frame", "a retrieved reference is correct if its frame (frame) or any frame of its window (window) is within the radius",
                       POSITIVE_RULES),
    "no_positive": Param("exclude", "queries without a positive: excluded from Recall@N (exclude) or counted as misses (miss)",
                         NO_POSITIVE_POLICIES),
}


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol (see the module docstring).

    Attributes:
        name: its name (``default`` is the dataset's own).
        radius: localisation radius in the position unit, or None for the dataset's radius / explicit ground truth.
        tolerance: for frame-aligned data, the tolerance in frames it was given as (radius = tolerance + 0.5).
        positives: ``"frame"`` or ``"window"``.
        no_positive: ``"exclude"`` or ``"miss"``.
        description: one line for captions.
        explicit: the dataset's ground truth is explicit (no radius applies); stored in
            :meth:`to_dict` only when true, so protocols of radius datasets keep their identity.
    """

    name: str = DEFAULT_PROTOCOL
    radius: float | None = None
    tolerance: int | None = None
    positives: str = "frame"
    no_positive: str = "exclude"
    description: str = ""
    explicit: bool = False

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any], unit: str, where: str) -> Protocol:
        """From a ``[protocols.NAME]`` table of a definition; ConfigError naming the definition and field."""
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [protocols.{name}] must be a table")
        values = coerce_params(PROTOCOL_PARAMS, table, f"{where} [protocols.{name}]", fill_defaults=True)
        if values["radius"] is not None and values["tolerance"] is not None:
            raise ConfigError(f"{where} [protocols.{name}]: give radius or tolerance, not both")
        if values["tolerance"] is not None and unit != "frame":
            raise ConfigError(f"{where} [protocols.{name}]: tolerance (frames) is for frame-aligned data; this dataset's "
                              f"positions are in {unit!r}: give radius")
        radius = values["radius"] if values["tolerance"] is None else values["tolerance"] + 0.5
        return cls(name, radius, values["tolerance"], values["positives"], values["no_positive"], values["description"])

    def effective_radius(self, dataset_radius: float) -> float:
        return float(self.radius if self.radius is not None else dataset_radius)

    def describe(self, unit: str, dataset_radius: float | None = None) -> str:
        """E.g. ``protocol default: radius 10 m, centre frame, queries without a positive excluded``.

        For a protocol of a dataset with explicit ground truth (``explicit``) the tolerance part
        reads "explicit ground truth", whatever ``dataset_radius`` says.
        """
        if self.explicit:
            tol = "explicit ground truth"
        elif self.tolerance is not None:
            tol = f"tolerance +-{self.tolerance} frames"
        elif self.radius is not None or dataset_radius is not None:
            r = self.effective_radius(dataset_radius or 0.0)
            tol = f"+-{r - 0.5:g} frames" if unit == "frame" and float(r - 0.5).is_integer() else f"radius {r:g} {unit}"
        else:
            tol = "explicit ground truth"
        rule = "centre frame" if self.positives == "frame" else "any frame of the window"
        nopos = "excluded" if self.no_positive == "exclude" else "counted as misses"
        return f"protocol {self.name}: {tol}, {rule}, queries without a positive {nopos}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["explicit"]:
            del d["explicit"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Protocol:
        return cls(**{k: d[k] for k in ("name", "radius", "tolerance", "positives", "no_positive", "description", "explicit") if k in d})


def protocols_from_definition(raw: dict[str, Any], unit: str, where: str) -> dict[str, Protocol]:
    """The ``default`` protocol and the named ones of a definition's ``[protocols.*]`` tables."""
    out = {DEFAULT_PROTOCOL: Protocol(description=DEFAULT_DESCRIPTION)}
    tables = raw.get("protocols", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: [protocols] must hold tables [protocols.NAME]")
    for name, table in tables.items():
        out[name] = Protocol.from_table(name, table, unit, where)
    return out


def for_ground_truth(protocols: dict[str, Protocol], explicit: bool, where: str) -> dict[str, Protocol]:
    """``protocols`` of a dataset; with ``explicit`` ground truth each one marked explicit.

    A protocol with a radius or tolerance cannot apply to explicit ground truth: ConfigError
    naming it (before any job runs, not when its metrics are computed).
    """
    if not explicit:
        return protocols
    out = {}
    for name, p in protocols.items():
        if p.radius is not None or p.tolerance is not None:
            raise ConfigError(
                f"{where} [protocols.{name}]: this dataset has explicit ground truth (no positions), so a radius or "
                "tolerance cannot apply to it; remove it (positives / no_positive still apply)"
            )
        if p.name == DEFAULT_PROTOCOL and p.description == DEFAULT_DESCRIPTION:
            p = replace(p, description=EXPLICIT_DESCRIPTION)
        out[name] = p if p.explicit else replace(p, explicit=True)
    return out


def get_protocol(protocols: dict[str, Protocol], name: str | None, dataset: str) -> Protocol:
    """Protocol ``name`` (None: ``default``) of a dataset; an unknown name is a ConfigError with suggestions."""
    name = name or DEFAULT_PROTOCOL
    if name not in protocols:
        raise unknown_name(f"protocol of dataset {dataset!r}", name, protocols)
    return protocols[name]
