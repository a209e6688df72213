"""The results page: self-contained, complete, and working as a person sees it in a real browser."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_uncertainty import fake_run, load

from vprbench.cli.main import main
from vprbench.reporting.html import ExtraFigure, ExtraTable, render_html
from vprbench.reporting.intervals import add_intervals
from vprbench.reporting.report import report
from vprbench.running.layout import example_path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def results_folder(root: Path) -> None:
    """A fake run (3 methods, one with 2 seeds) with a distance-matrix crop, as the runner leaves it."""
    fake_run(root)
    nq = nr = 60
    rng = np.random.default_rng(0)
    gt = np.eye(nq, nr, dtype=bool) | np.eye(nq, nr, 1, dtype=bool)
    path = example_path(root, "fake", "test", "q", "f" * 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, distances=rng.random((nq, nr)).astype(np.float32), gt=gt, query_start=0, ref_start=0)


def test_page_is_self_contained_and_complete(tmp_path):
    results_folder(tmp_path)
    summary, paths = report(tmp_path, html=True, n_boot=200)
    text = paths["html"].read_text(encoding="utf-8")
    parsed = Collect()
    parsed.feed(text)
    # nothing is loaded from anywhere: images are data URIs, links are in-page anchors, no external script/style
    srcs = [v for t, k, v in parsed.attrs if k == "src"]
    assert len(srcs) == 2 and all(v.startswith("data:image/png;base64,") for v in srcs)
    assert all(v.startswith("#") for t, k, v in parsed.attrs if k == "href")
    assert "link" not in parsed.tags and "iframe" not in parsed.tags and "@import" not in text and "url(" not in text
    assert not re.search(r"https?://", text)
    for src in srcs:  # the embedded plots are real PNG images
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 500
    # every method row, with its interval, the best / indistinguishable marks and provenance
    labels = re.findall(r'<tr class="row[^"]*" data-label="([^"]+)"', text)
    assert sorted(labels) == sorted(summary["label"])
    assert re.findall(r'<tr class="prov" data-for="([^"]+)"', text) == labels  # each row's provenance right under it
    for _, row in summary.iterrows():
        assert f"{row['R@1 lo']:.3f}&ndash;{row['R@1 hi']:.3f}" in text
    best_row = re.search(r'data-label="best">.*?</tr>', text, re.S).group(0)
    close_row = re.search(r'data-label="close">.*?</tr>', text, re.S).group(0)
    assert 'class="best"' in best_row and 'class="tie"' in close_row
    prov = re.search(r'data-for="close">.*?</tr>', text, re.S).group(0)
    assert "alpha=1" in prov and "preset" in prov and "numpy" in prov
    assert "seed 0:" in prov and "seed 1:" in prov and "peak memory 100 MB" in prov
    assert "circular block bootstrap" in text and "400 queries" in text
    assert len(text) < 1_000_000  # small enough to mail


def test_extra_tables_and_figures_go_to_their_dataset(tmp_path):
    results_folder(tmp_path)
    summary, frame, records = load(tmp_path)
    summary = add_intervals(summary, frame, records, tmp_path, n_boot=50, block_length=4)
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buf, format="PNG")
    text = render_html(
        summary, records,
        extra_tables=[ExtraTable("Published here", pd.DataFrame({"method": ["x"], "R@1 paper": [0.5]}), datasets=["fake"]),
                      ExtraTable("Published elsewhere", pd.DataFrame({"method": ["y"], "R@1 paper": [np.nan]}), datasets=["nordland"])],
        extra_figures=[ExtraFigure("Sweep of L", buf.getvalue(), datasets=["fake"], caption="a sweep")],
    )
    section = text[text.index('<section id="ds-fake">'):text.index("</section>")]
    assert "Published here" in section and "Sweep of L" in section and "Published elsewhere" not in section
    more = text[text.index('<section id="more">'):]
    assert "Published elsewhere" in more and ">-</td>" in more  # NaN shown as "-"
    assert '<a href="#more">' in text


def test_published_numbers_beside_ours_in_the_dataset_section(tmp_path, capsys):
    from test_uncertainty import fake_result

    rng = np.random.default_rng(3)
    ev = np.ones(200, bool)
    fh = np.where(rng.random(200) < 0.45, 0, 3)
    fake_result(tmp_path, "netvlad", "single-image", fh, ev, rng.random(200), dataset="oxford-v1.0")
    assert main(["report", "--html", "--compare", "seqmatchnet", str(tmp_path)]) == 0
    text = (tmp_path / "report.html").read_text()
    section = text[text.index('<section id="ds-oxford-v1-0">'):]
    section = section[:section.index("</section>")]
    assert "seqmatchnet: Table 2: comparison with other sequential methods" in section
    ours = (fh[ev] == 0).mean()
    row = re.search(r"<tr><td class=\"text\">no sequence</td><td class=\"text\">NetVLAD</td>(.*?)</tr>", section).group(1)
    cells = re.findall(r">([^<]*)</td>", row)
    assert cells[0] == f"{ours:.3f}" and cells[2] == "0.470" and cells[3] == f"{ours - 0.47:.3f}"  # R@1 ours, std, paper, diff
    assert "brisbane" not in text.lower().split("<section id=\"more\">")[-1]  # datasets without results get no table


def test_cli_report_html_prints_the_path_and_checks_the_block_length(tmp_path, capsys):
    results_folder(tmp_path)
    assert main(["report", "--html", "--block-length", "7", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"results page: {tmp_path / 'report.html'}" in out
    assert "blocks of 7 consecutive queries, set by the user" in (tmp_path / "report.html").read_text()
    assert main(["report", "--html", "--block-length", "0", str(tmp_path)]) == 2
    assert "--block-length must be >= 1" in capsys.readouterr().err


def test_run_ends_with_the_page(tmp_path, capsys):
    assert main(["run", "--methods", "netvlad,seqmatch", "--dataset", "synth-tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"results page: {tmp_path / 'report.html'}" in out
    text = (tmp_path / "report.html").read_text()
    assert sorted(re.findall(r'<tr class="row[^"]*" data-label="([^"]+)"', text)) == ["seqmatch", "single image (synthetic)"]


# --- in a real browser ---------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    """Headless Debian chromium driven by selenium (no browser download, no network)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium, chromium-driver (apt) and selenium (the test extra)")
        pytest.skip("needs /usr/bin/chromium, /usr/bin/chromedriver and selenium")
    profile = tempfile.mkdtemp(prefix="vprbench-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def labels_in_order(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = drv.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
    labels = [r.get_attribute("data-label") for r in rows if "row" in r.get_attribute("class").split()]
    # provenance rows travel with their method row
    assert [r.get_attribute("data-for") for r in rows if r.get_attribute("class") == "prov"] == labels
    return labels


def test_page_in_a_real_browser_shows_tables_plots_and_sorts(tmp_path, browser):
    from selenium.webdriver.common.by import By

    results_folder(tmp_path)
    summary, paths = report(tmp_path, html=True, n_boot=200)
    browser.get(paths["html"].resolve().as_uri())
    assert browser.title.startswith("vprbench results")
    # the DOM has every method row and the plots decoded
    assert sorted(labels_in_order(browser)) == sorted(summary["label"])
    widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 2 and min(widths) > 500
    heads = {h.text.strip(): h for h in browser.find_elements(By.CSS_SELECTOR, "table.results thead th")}
    by_r1 = summary.sort_values("R@1", ascending=False)["label"].tolist()
    heads["R@1"].click()
    assert labels_in_order(browser) == by_r1  # numbers: largest first
    assert heads["R@1"].get_attribute("aria-sort") == "descending"
    heads["R@1"].click()
    assert labels_in_order(browser) == by_r1[::-1]
    heads["method"].click()
    assert labels_in_order(browser) == sorted(summary["label"])
    heads["family"].click()  # back to the paper's family order
    fam_order = summary.sort_values(["family_order"], kind="stable")["label"].tolist()
    assert labels_in_order(browser)[0] == fam_order[0]
    # provenance opens on demand, under its row
    prov = browser.find_element(By.CSS_SELECTOR, 'tr.prov[data-for="close"]')
    assert not prov.is_displayed()
    browser.find_element(By.CSS_SELECTOR, 'tr[data-label="close"] button.prov-toggle').click()
    assert prov.is_displayed() and "alpha=1" in prov.text and "peak memory" in prov.text
    heads["R@5"].click()  # still under its row after sorting
    assert labels_in_order(browser) == summary.sort_values("R@5", ascending=False)["label"].tolist() and prov.is_displayed()
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    # a full-page screenshot that is not blank
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 8000))
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[0] > 1500
    non_white = (rgb < 235).any(axis=2).mean()
    assert 0.05 < non_white < 0.9
    assert len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 200  # text, swatches, plots: many colours
    keep = os.environ.get("VPRBENCH_SCREENSHOT")
    if keep:  # for looking at it: VPRBENCH_SCREENSHOT=/tmp/page.png pytest tests/test_html.py
        shutil.copy(shot, keep)
