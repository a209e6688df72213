"""Plot styles and figures: one style per method everywhere, legends on every panel, bands from the
interval columns, small multiples of the distance matrix, the sweep helper."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from PIL import Image  # noqa: E402
from test_uncertainty import fake_run, load  # noqa: E402

from vprbench.core.errors import ConfigError  # noqa: E402
from vprbench.reporting.intervals import add_intervals  # noqa: E402
from vprbench.reporting.plots import (  # noqa: E402
    CORRECT_COLOR,
    WRONG_COLOR,
    curves_figure,
    distance_matrix_figure,
    make_plots,
    sweep_plot,
)
from vprbench.reporting.styles import FAMILY_LINESTYLES, PALETTE, assign_styles, styles_for, svg_swatch  # noqa: E402

FAMS = ["single-image", "sequential-descriptor", "sequence-matching", "hierarchical"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def many_methods(n: int) -> list[tuple[str, str]]:
    return [(f"m{i:02d}", FAMS[i % 4]) for i in range(n)]


def test_styles_are_distinct_grouped_by_family_and_independent_of_order():
    styles = assign_styles(many_methods(30))
    triples = {(s.color, s.marker, s.linestyle) for s in styles.values()}
    assert len(triples) == 30
    assert len({(s.color, s.marker) for s in styles.values()}) == 30  # even ignoring the line style
    first20 = list(styles.values())[:20]
    assert len({s.color for s in first20}) == 20  # up to 20 methods: all colours differ
    assert [s.family for s in styles.values()] == sorted((s.family for s in styles.values()), key=FAMS.index)  # legend by family
    for s in styles.values():
        assert s.linestyle == FAMILY_LINESTYLES[s.family]
    shuffled = assign_styles(reversed(many_methods(30)))
    assert shuffled == styles  # the same methods get the same styles whatever order they come in
    assert len(set(PALETTE)) == len(PALETTE) == 20
    # neighbours in a legend differ in colour and marker
    vals = list(styles.values())
    assert all(a.color != b.color and a.marker != b.marker for a, b in zip(vals, vals[1:]))
    unknown = assign_styles([("x", "novel-family"), ("y", "single-image")])
    assert unknown["y"].color == PALETTE[0] and unknown["x"].linestyle in ("-", "--", "-.", ":")


def test_svg_swatch_shows_colour_marker_and_dashes():
    st = assign_styles([("a", "single-image"), ("b", "sequential-descriptor")])["b"]
    svg = svg_swatch(st)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count(st.color) >= 2
    assert 'stroke-dasharray="5,3"' in svg and "<polygon" in svg


def summary_with_ci(tmp_path):
    fake_run(tmp_path)
    summary, frame, records = load(tmp_path)
    return add_intervals(summary, frame, records, tmp_path, n_boot=200, block_length=5), frame, records


def test_curves_have_bands_from_the_intervals_and_legends_on_every_panel(tmp_path):
    summary, frame, records = summary_with_ci(tmp_path)
    styles = styles_for(frame)
    by_label = {r["job"]["label"]: r for r in records}
    fig = curves_figure(summary, [(lab, by_label[lab]) for lab in summary["label"]], styles, "t")
    axes = fig.axes
    assert len(axes) == 3
    for ax in axes:
        legend = ax.get_legend()
        assert legend is not None
        texts = [t.get_text() for t in legend.get_texts()]
        assert all(any(t.startswith(lab) for t in texts) for lab in summary["label"])
    rn = axes[0]
    for _, row in summary.iterrows():
        line = next(ln for ln in rn.get_lines() if ln.get_label() == row["label"])
        st = styles[row["label"]]
        assert to_hex(line.get_color()) == st.color and line.get_marker() == st.marker and line.get_linestyle() == st.linestyle
        assert np.allclose(line.get_ydata(), [row[f"R@{n}"] for n in (1, 5, 10, 20)])
        # the band of this method: a polygon in its colour spanning lo..hi at each N
        band = next(c for c in rn.collections if to_hex(c.get_facecolor()[0][:3]) == st.color)
        verts = band.get_paths()[0].vertices
        for n in (1, 5, 10, 20):
            ys = verts[np.isclose(verts[:, 0], n), 1]
            assert ys.min() == pytest.approx(row[f"R@{n} lo"]) and ys.max() == pytest.approx(row[f"R@{n} hi"])
    # the same method has the same colour in the PR panel
    pr_line = next(ln for ln in axes[2].get_lines() if ln.get_label().startswith("weak"))
    assert to_hex(pr_line.get_color()) == styles["weak"].color


def test_distance_matrix_small_multiples_one_panel_per_method(tmp_path):
    fake_run(tmp_path, n=400)
    _, frame, records = load(tmp_path)
    nq, nr, r0 = 40, 30, 0
    rng = np.random.default_rng(0)
    gt = np.zeros((nq, nr), bool)
    gt[np.arange(nq), np.clip(np.arange(nq) * nr // nq, 0, nr - 1)] = True
    example = tmp_path / "example.npz"
    np.savez(example, distances=rng.random((nq, nr)).astype(np.float32), gt=gt, query_start=0, ref_start=r0)
    # give every method its own top-1 matches inside the crop
    recs = []
    for rec in records:
        if rec["job"]["seed"] != 0:
            continue
        path = tmp_path / rec["predictions"]
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["indices"][:, 0] = rng.integers(0, nr, arrays["indices"].shape[0])
        np.savez(path, **arrays)
        recs.append((rec["job"]["label"], rec))
    styles = styles_for(frame)
    fig = distance_matrix_figure(example, recs, tmp_path, styles)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(recs) == 3
    for ax, (label, rec) in zip(panels, recs):
        assert ax.get_title().startswith(label)
        assert to_hex(ax.title.get_color()) == styles[label].color
        images = ax.get_images()
        assert len(images) == 2  # the distances and the ground-truth layer
        assert np.array_equal(~np.ma.getmaskarray(images[1].get_array()), gt.T)
        assert ax.get_legend() is not None
        with np.load(tmp_path / rec["predictions"]) as z, np.load(tmp_path / rec["per_query"]) as pq:
            top1, correct = z["indices"][:nq, 0], pq["first_hit"][:nq] == 0
        ok, bad = ax.collections[0], ax.collections[1]
        assert to_hex(ok.get_facecolor()[0][:3]) == CORRECT_COLOR and to_hex(bad.get_edgecolor()[0][:3]) == WRONG_COLOR
        assert np.array_equal(ok.get_offsets()[:, 0], np.flatnonzero(correct)) and np.array_equal(ok.get_offsets()[:, 1], top1[correct])
        assert np.array_equal(bad.get_offsets()[:, 0], np.flatnonzero(~correct))
    assert len(fig.legends) == 1  # ground truth / correct / wrong, once for all panels


def test_make_plots_writes_each_group_with_one_style(tmp_path):
    fake_run(tmp_path)
    summary, frame, records = load(tmp_path)
    out = make_plots(frame, records, tmp_path, tmp_path / "plots")
    assert len(out) == 1
    (paths,) = out.values()
    assert [p.name.endswith("-curves.png") for p in paths] == [True]  # no example crop in this folder: no matrix plot
    with Image.open(paths[0]) as im:
        assert im.mode == "P" and im.size[0] > 1000
        assert len(im.getcolors(256) or []) > 20  # not blank


def test_sweep_plot_lines_bands_categories_and_errors():
    df = pd.DataFrame({
        "label": ["a", "a", "a", "b", "b", "b", "b"],
        "family": ["single-image"] * 3 + ["sequence-matching"] * 4,
        "L": [10, 2, 5, 2, 5, 10, 10],
        "R@1": [0.3, 0.1, 0.2, 0.5, 0.6, 0.6, 0.8],  # b at L=10 twice (two seeds): averaged to 0.7
        "lo": [0.25, 0.05, 0.15, 0.4, 0.5, 0.5, 0.7],
        "hi": [0.35, 0.15, 0.25, 0.6, 0.7, 0.7, 0.9],
    })
    fig = sweep_plot(df, "L", "R@1", hue="label", band=("lo", "hi"))
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"a", "b"}
    assert list(lines["a"].get_xdata()) == [2, 5, 10] and np.allclose(lines["a"].get_ydata(), [0.1, 0.2, 0.3])
    assert np.allclose(lines["b"].get_ydata(), [0.5, 0.6, 0.7])
    styles = styles_for(df)
    assert to_hex(lines["b"].get_color()) == styles["b"].color and lines["b"].get_linestyle() == "-."
    verts = ax.collections[1].get_paths()[0].vertices  # b's band
    at10 = verts[np.isclose(verts[:, 0], 10), 1]
    assert at10.min() == pytest.approx(0.6) and at10.max() == pytest.approx(0.8)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_xlabel() == "L" and ax.get_ylabel() == "R@1"

    half = sweep_plot(df.assign(hw=0.05), "L", "R@1", hue="label", band="hw").axes[0]
    verts = half.collections[0].get_paths()[0].vertices
    assert verts[np.isclose(verts[:, 0], 2), 1].max() == pytest.approx(0.15)

    cat = sweep_plot(pd.DataFrame({"loss": ["triplet", "sare", "triplet"], "v": [1.0, 2.0, 3.0], "m": ["x", "x", "y"]}),
                     "loss", "v", hue="m").axes[0]
    assert [t.get_text() for t in cat.get_xticklabels()] == ["triplet", "sare"]
    assert np.allclose({ln.get_label(): ln for ln in cat.get_lines()}["x"].get_ydata(), [1.0, 2.0])

    with pytest.raises(ConfigError, match=r"no column\(s\) \['R@5'\]"):
        sweep_plot(df, "L", "R@5", hue="label")
    with pytest.raises(ConfigError, match="band must be"):
        sweep_plot(df, "L", "R@1", band=("lo",))


def test_sweep_plots_keep_each_methods_colour_and_name_from_the_other_plots(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from vprbench.reporting.styles import assign_styles
    from vprbench.reporting.sweeps import plot_sweeps

    drawn = {}
    original = Axes.plot

    def record(self, *args, **kw):
        drawn[kw.get("label")] = kw
        return original(self, *args, **kw)

    monkeypatch.setattr(Axes, "plot", record)
    frame = pd.DataFrame([{"dataset": "d", "line": line, "family": fam, "x": x, "seed": 0, "R@1": 0.5}
                          for line, fam in (("netvlad", "single-image"), ("seqmatch", "sequence-matching")) for x in (1, 3)])
    styles = assign_styles([("single image (synthetic)", "single-image"), ("smoothing", "sequential-descriptor"),
                            ("seqmatch", "sequence-matching")])
    plot_sweeps(frame, "seq_len", tmp_path, styles=styles, display={"netvlad": "single image (synthetic)"})
    assert set(drawn) == {"single image (synthetic)", "seqmatch"}
    for label, kw in drawn.items():
        assert kw["color"] == styles[label].color and kw["marker"] == styles[label].marker


def test_long_method_specs_are_wrapped_in_panel_titles():
    from vprbench.reporting.plots import wrap_label

    spec = "hvpr[reranker=seqmatchnet[epochs=20,patience=6],shortlister=seqnet[epochs=30,patience=8]]"
    lines = wrap_label(spec, width=30).split("\n")
    assert "".join(lines) == spec and len(lines) >= 3
    assert all(len(line) <= 30 for line in lines)
    assert wrap_label("seqmatch") == "seqmatch"
    assert wrap_label("seqnet-s1+gism", width=10).split("\n") == ["seqnet-s1+", "gism"]
