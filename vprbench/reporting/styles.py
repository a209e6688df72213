"""One plot style per method, the same in every plot (and table swatch) of a report.

A style is a (colour, marker, line style) triple. Methods are taken in family order (the
paper's: single-image, sequential-descriptor, sequence-matching, hierarchical), then by label;
the line style says the family (solid, dashed, dash-dot, dotted), colours and markers run through
the methods so that neighbours in a legend always differ in both. Twenty colours (matplotlib's
tab10, then ten darker or muted ones from Paul Tol's schemes that differ from them in hue or
lightness) and twelve filled markers: up to twenty methods have distinct colours, and up to 80 have
distinct (colour, marker) pairs, so a report with 15+ methods stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vprbench.plugins.api import FAMILIES

PALETTE: tuple[str, ...] = (
    # matplotlib tab10
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    # Paul Tol's muted / dark colours, chosen apart from the above
    "#332288", "#117733", "#882255", "#999933", "#44aa99", "#aa4499", "#661100", "#6699cc", "#ddaa33", "#000000",
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", "p", ">", "h", "*")
FAMILY_LINESTYLES: dict[str, str] = {"single-image": "-", "sequential-descriptor": "--", "sequence-matching": "-.", "hierarchical": ":"}
_DASHES = ("-", "--", "-.", ":")
#: SVG stroke-dasharray of each line style (a swatch in the HTML table matches the plots).
SVG_DASHES = {"-": "", "--": "5,3", "-.": "6,2,1.5,2", ":": "1.5,2"}


@dataclass(frozen=True)
class Style:
    """How one method is drawn."""

    label: str
    family: str
    color: str
    marker: str
    linestyle: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot`` (colour, marker, line style)."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


def family_order(family: str) -> int:
    return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)


def assign_styles(methods: Iterable[tuple[str, str]]) -> dict[str, Style]:
    """Styles of (label, family) pairs, keyed by label, in legend order (family order, then label).

    The i-th method gets colour ``PALETTE[i % 20]`` and marker ``MARKERS[(i + i // 20) % 12]``
    (the shift keeps methods 20 apart on different markers); the line style is its family's.
    """
    unique = {label: family for label, family in methods}
    order = sorted(unique.items(), key=lambda lf: (family_order(lf[1]), lf[1], lf[0]))
    extra = [f for f in dict.fromkeys(f for _, f in order) if f not in FAMILY_LINESTYLES]
    styles = {}
    for i, (label, family) in enumerate(order):
        ls = FAMILY_LINESTYLES.get(family) or _DASHES[extra.index(family) % len(_DASHES)]
        styles[label] = Style(label, family, PALETTE[i % len(PALETTE)], MARKERS[(i + i // len(PALETTE)) % len(MARKERS)], ls)
    return styles


def styles_for(frame: Any) -> dict[str, Style]:
    """Styles of every method label of a records or summary frame (columns ``label``, ``family``)."""
    if frame is None or len(frame) == 0:
        return {}
    return assign_styles(zip(frame["label"].astype(str), frame["family"].astype(str)))


def svg_swatch(style: Style, width: int = 34, height: int = 14) -> str:
    """An inline SVG of the style's line and marker (for tables beside the plots)."""
    from matplotlib.markers import MarkerStyle

    ms = MarkerStyle(style.marker)
    path = ms.get_path().transformed(ms.get_transform())
    size = height * 0.32
    polys = []
    for poly in path.to_polygons(closed_only=False):
        pts = " ".join(f"{width / 2 + x * size:.2f},{height / 2 - y * size:.2f}" for x, y in poly)
        polys.append(f'<polygon points="{pts}"/>')
    dash = SVG_DASHES.get(style.linestyle, "")
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<svg class="swatch" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
        f'<line x1="1" y1="{height / 2}" x2="{width - 1}" y2="{height / 2}" stroke="{style.color}" stroke-width="2"{dash_attr}/>'
        f'<g fill="{style.color}" stroke="{style.color}" stroke-width="0.6">{"".join(polys)}</g></svg>'
    )
