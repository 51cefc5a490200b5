"""The self-contained HTML report: inlined figures and audio, nothing loaded from elsewhere, tables
equal to the files they come from, decoding and study pages, and the page in a real browser."""

from __future__ import annotations

import base64
import html
import html.parser
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import encoding.html_report as html_report_module
from decoding.generation.audio import write_wav
from decoding.report import listening_page
from encoding.errors import MissingInputError
from encoding.html_report import html_report, write_html_report
from encoding.report import write_outputs

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(html.parser.HTMLParser):
    """Every tag's attributes, and the text of ``<pre id="config">``, of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.config: str | None = None
        self._in_config = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "pre" and attrs.get("id") == "config":
            self._in_config, self.config = True, ""

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_config = False

    def handle_data(self, data):
        if self._in_config:
            self.config += data

    def attributes(self, tag: str, name: str) -> list[str]:
        return [attrs[name] for t, attrs in self.tags if t == tag and name in attrs]


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def written(tiny_run, tmp_path_factory):
    """The tiny run's output folder, written as the pipeline writes it (report.html included)."""
    out = tmp_path_factory.mktemp("html") / "run"
    write_outputs(tiny_run, out)
    return out


@pytest.fixture(scope="module")
def page(written):
    return (written / "report.html").read_text()


def test_the_report_is_written_with_the_outputs_and_listed(written, page):
    summary = json.loads((written / "summary.json").read_text())
    assert summary["files"]["html"] == "report.html"
    # written from the summary in memory before summary.json: the same page as from the folder afterwards
    assert html_report(written) == page
    for title in ("Summary", "Design", "Model and cross-validation", "Noise ceiling", "Maps", "Interactive 3-D view",
                  "Regions of interest", "Corrected statistics", "Methods", "Provenance"):
        assert f"<h2>{title}</h2>" in page
    assert f"{summary['statistics']['test']['n_significant']:,} targets significant" in page
    assert "sim01" in page and "output hashes" in page.lower()


def test_every_image_is_an_inlined_png_and_every_figure_is_shown(written, page):
    sources = parse(page).attributes("img", "src")
    prefix = "data:image/png;base64,"
    assert sources and all(s.startswith(prefix) for s in sources)
    images = [base64.b64decode(s[len(prefix):], validate=True) for s in sources]
    assert all(image.startswith(PNG) for image in images)
    figures = {p.read_bytes() for p in (written / "figures").glob("*.png")}
    assert len(figures) >= 10 and figures <= set(images)


def test_the_page_loads_nothing_and_links_only_to_reports(page):
    assert 'src="http' not in page and 'href="http' not in page
    parsed = parse(page)
    links = [v for _, attrs in parsed.tags for k, v in attrs.items() if k in ("src", "href")]
    assert all(v.startswith(("data:", "#")) or v.endswith("report.html") for v in links)
    assert not [attrs for tag, attrs in parsed.tags if tag in ("link", "object", "embed")]
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert len(scripts) == 1 and "src" not in scripts[0]  # ours, inline
    # the 3-D viewer is a whole page inside srcdoc: its scripts (plotly) are inlined too
    frames = parsed.attributes("iframe", "srcdoc")
    if html_report_module.importlib.util.find_spec("plotly") is not None:
        assert len(frames) == 1
        inner = parse(frames[0])
        assert not inner.attributes("script", "src")
        inner_links = [v or "" for _, attrs in inner.tags for k, v in attrs.items() if k in ("src", "href")]
        assert not [v for v in inner_links if "//" in v]  # nothing fetched (nilearn's favicon link removed)
        assert "Plotly" in frames[0]


def test_the_roi_table_equals_the_csv(written, page):
    csv = pd.read_csv(written / "statistics" / "rois.csv", index_col=0)
    shown = pd.read_html(io.StringIO(page), attrs={"id": "rois-table"})[0].set_index("region")
    assert list(shown.index) == list(csv.index)
    number = r"(-?\d+\.\d+)"
    columns = ["test_r2", *[c for c in csv if c.startswith("unique_") and f"{c}_ci_low" in csv]]
    assert len(columns) == 4
    for column in columns:
        title = "test R²" if column == "test_r2" else column.replace("_", " ", 1)
        for region, cell in shown[title].items():
            value, low, high = map(float, re.fullmatch(rf"{number} \[{number}, {number}\]", cell).groups())
            expected = csv.loc[region, [column, f"{column}_ci_low", f"{column}_ci_high"]].to_numpy(float)
            np.testing.assert_allclose([value, low, high], expected, atol=5.1e-4)
    np.testing.assert_array_equal(shown["vertices"].astype(str).str.replace(",", "").astype(int), csv["n_vertices"])


def test_the_methods_and_the_config_are_shown_as_written(written, page):
    methods = (written / "statistics" / "methods.md").read_text().strip()
    assert len(methods) > 500 and html.escape(methods) in page
    assert parse(page).config == (written / "config.toml").read_text()


def test_a_folder_without_summary_is_refused(tmp_path):
    with pytest.raises(MissingInputError, match=r"no summary\.json.*brain2music demo") as err:
        html_report(tmp_path)
    assert str(tmp_path) in str(err.value)


def _decoding_folder(folder: Path) -> Path:
    """A small decoding output: one target's summary and identification table, a figure, two clips and
    the listening page as decoding.report writes it."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True)
    ident = {"values": {"pairwise": 0.9}, "ci": {"pairwise": [0.8, 1.0]}, "p_value": {"pairwise": 0.01}}
    summary = {"subject": "sim01", "window_s": 10.0, "hop_s": 1.5, "lags_tr": [3], "selection": "encoding",
               "targets": {"caption": {"n_dims": 384, "n_train_samples": 256, "n_test_clips": 12,
                                       "n_vertices_decoded": 2000, "alpha_median": 1000.0, "cv_r2_mean": 0.16,
                                       "identification": ident}},
               "files": {"figures": {"ranks_caption": "figures/ranks_caption.png"}}, "provenance": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"target": ["caption"], "metric": ["pairwise"], "value": [0.9], "ci_low": [0.8], "ci_high": [1.0],
                  "chance": [0.5], "p_value": [0.01], "p_value_external": [0.02]}).to_csv(folder / "identification.csv")
    fig = Figure(figsize=(2, 2))
    fig.subplots().bar([1, 2], [3, 1], color="tab:red")
    (folder / "figures").mkdir()
    fig.savefig(folder / "figures" / "ranks_caption.png")
    rate = 8000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    audio = {("a", "original", "true"): "audio/a_original_true.wav",
             ("a", "retrieval_caption", "decoded"): "audio/a_retrieval_caption_decoded.wav"}
    for path in audio.values():
        write_wav(folder / path, tone, rate)
    run = SimpleNamespace(targets={"caption": SimpleNamespace(clip_ids=["a"], retrieval=None)},
                          experiment=SimpleNamespace(subject="sim01", clips=SimpleNamespace(
                              table=pd.DataFrame({"caption": ["a quiet <piano> piece"]}, index=["a"]))))
    (folder / "listen.html").write_text(listening_page(run, audio))
    return folder


def test_a_decoding_folder_inlines_its_tables_figures_and_audio(tmp_path, monkeypatch):
    folder = _decoding_folder(tmp_path / "decoding")
    page = write_html_report(folder).read_text()
    parsed = parse(page)
    clips = [base64.b64decode(s.removeprefix("data:audio/wav;base64,")) for s in parsed.attributes("audio", "src")]
    assert clips == [(folder / "audio" / "a_original_true.wav").read_bytes(),
                     (folder / "audio" / "a_retrieval_caption_decoded.wav").read_bytes()]
    assert "a quiet &lt;piano&gt; piece" in page and "All 2 clips are inlined" in page
    shown = pd.read_html(io.StringIO(page), attrs={"id": "identification"})[0]
    assert shown.loc[0, "value [95 % CI]"] == "0.9 [0.8, 1]" and shown.loc[0, "p (decoder refitted)"] == 0.02
    assert parsed.attributes("img", "src")[0].startswith("data:image/png;base64,")
    # over the audio budget: the original is inlined first, the other clip linked, and the page says so
    monkeypatch.setattr(html_report_module, "MAX_INLINE_AUDIO_BYTES", (folder / "audio" / "a_original_true.wav")
                        .stat().st_size)
    page = html_report(folder)
    assert len(parse(page).attributes("audio", "src")) == 1 and "1 of 2 clips are inlined" in page
    assert parse(page).attributes("a", "href")[-1] == "audio/a_retrieval_caption_decoded.wav"


def test_an_encoding_report_includes_its_decoding_folder(written, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(written, folder)
    write_html_report(_decoding_folder(folder / "decoding"))
    page = html_report(folder, viewer=False)
    assert "<h2>Decoding</h2>" in page and '<a href="decoding/report.html">' in page
    assert len(parse(page).attributes("audio", "src")) == 2 and "Interactive 3-D view" not in page


def test_a_study_page_lists_subjects_and_inlines_the_group(written, tmp_path):
    study = tmp_path / "study"
    for name in ("sub-01", "sub-02"):
        (study / name).mkdir(parents=True)
        shutil.copy(written / "summary.json", study / name)
    shutil.copy(written / "report.html", study / "sub-01")
    group = study / "group"
    (group / "figures").mkdir(parents=True)
    (group / "summary.json").write_text(json.dumps({"n_subjects": 2, "settings": {"alpha": 0.05},
                                                    "identification": [{"target": "caption", "value": 0.91}]}))
    shutil.copy(written / "figures" / "test_r2.png", group / "figures" / "group_t.png")
    pd.DataFrame({"r": [0.5, 0.25]}, index=["HG", "STG"]).to_csv(group / "cross_subject.csv")
    page = html_report(study)
    parsed = parse(page)
    assert parsed.attributes("a", "href")[-1:] == ["sub-01/report.html"] and "sub-02 (no report.html yet)" in page
    summary = json.loads((written / "summary.json").read_text())
    subjects = pd.read_html(io.StringIO(page), attrs={"id": "subjects"})[0]
    assert subjects["significant (corrected)"].tolist() == [summary["statistics"]["test"]["n_significant"]] * 2
    assert "identification / 0 / value" in page and "cross_subject" in page
    images = [base64.b64decode(s.split(",", 1)[1]) for s in parsed.attributes("img", "src")]
    assert images == [(written / "figures" / "test_r2.png").read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_report_opens_in_a_headless_browser(written, tmp_path):
    from matplotlib.image import imread

    page = (written / "report.html").resolve().as_uri()
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    loaded, total = map(int, re.search(r'data-images-loaded="(\d+)/(\d+)"', body).groups())
    assert total >= 10 and loaded == total  # every inlined PNG decoded in the browser
    left, top, width, height = map(int, re.search(r'data-first-map="([\d,]+)"', body).group(1).split(","))
    assert width > 300 and height > 200
    shot = tmp_path / "report.png"
    window = top + height + 50
    subprocess.run([*browser, f"--screenshot={shot}", f"--window-size=1400,{window}", page], capture_output=True,
                   timeout=180, check=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (window, 1400) and pixels.std() > 0.05  # not a blank page
    region = pixels[top:top + height, left:left + width]
    colourful = (region.max(axis=-1) - region.min(axis=-1)) > 0.2  # not grey, white or black
    assert colourful.mean() > 0.004, colourful.mean()  # the test R² map's coloured vertices and colour bar (~1 %)
