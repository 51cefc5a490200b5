"""A self-contained HTML report of an output folder, after nilearn's reports.

``write_html_report(folder)`` writes ``folder/report.html``: one file that opens offline, with
every figure inlined (base64 PNG), the tables, the numbers of ``summary.json``, an interactive
3-D view of the test R^2 (nilearn's ``view_surf``, with plotly: ``brain2music[viewer]``), the
listening material of a decoding run (wav inlined, up to :data:`MAX_INLINE_AUDIO_BYTES`), the
methods paragraph and the run's provenance. Three kinds of folder are recognised:

====================  ==================================================================================
encoding output       ``summary.json`` with ``"scores"`` (``brain2music demo`` and ``fit`` write it); a
                      ``decoding/`` subfolder with its own ``summary.json`` adds a decoding section and
                      a link to ``decoding/report.html``
decoding output       ``summary.json`` with ``"targets"`` and no ``"scores"`` (``brain2music decode``)
study                 no ``summary.json``; subject output folders ``sub-*/`` and optional ``group/``
====================  ==================================================================================

The layout of a study folder::

    study/
      sub-01/           an encoding (or decoding) output folder; the study page lists its headline
      sub-02/ ...       numbers and links to its own report.html (when it has one)
      group/            optional group outputs:
        summary.json    any JSON object: its numbers are listed, nested keys joined by " / "
        figures/*.png   inlined
        *.csv           inlined as tables (the first column is the row label)
        methods.md      shown as the group's methods paragraph

The page loads nothing: no external fonts, styles or scripts. Its only script is a small one of
ours that records, when the page has loaded, how many images the browser decoded
(``<body data-images-loaded="N/M">``) and where the first map is drawn (``data-first-map``:
left, top, width, height in CSS pixels); plotly runs inside the viewer's
``<iframe srcdoc>``. Links go only to other ``report.html`` files, and to audio files that were
too many to inline (the page says so).
"""

from __future__ import annotations

import base64
import hashlib
import html
import html.parser
import importlib.util
import io
import json
import math
import numbers
import re
from pathlib import Path

import numpy as np
import pandas as pd

from encoding.errors import DataError, MissingInputError
from encoding.io import write_text

MAX_INLINE_AUDIO_BYTES = 20 * 2**20  # wav bytes inlined per page; the rest are linked

Section = tuple[str, str, str]  # anchor, title, body (HTML)

CAPTIONS = {  # figure name, or its prefix before "_<space>", to caption ({space}: the rest of the name)
    "test_r2": "Test R² on the held-out runs (repeats averaged), both hemispheres, lateral and medial views; "
               "the threshold is a display threshold, not a test.",
    "split_r2_bars": "Split R² per target, stacked by feature space; the test R² marked.",
    "split_r2": "Split R² of {space}: its share of the test R².",
    "best_space": "The feature space with the largest split R² at each vertex where the model predicts.",
    "significant_r2": "Test R² where it survives the corrected permutation test.",
    "unique_rgb": "Unique variance of three feature spaces as one RGB map, one colour channel per space.",
    "unique": "Unique variance of {space} (FDR-significant vertices; negative estimates not shown).",
    "planted_share": "The planted signal share: the simulation's ground truth.",
    "flat_significant_r2": "The significant test R² on the flat cortex, the atlas's auditory regions outlined.",
    "pycortex_significant_r2": "The significant test R² drawn by pycortex's quickflat.",
    "identification": "{space}: correlation of decoded and true clip embeddings; the diagonal should stand out.",
    "ranks": "{space}: rank of each test clip's true embedding among all test clips (1: identified).",
    "genres": "{space}: pairwise identification per genre, with bootstrap intervals.",
    "vertices": "{space}: the vertices the decoder reads.",
}

AUDIO_PRIORITY = ("original", "decoded", "oracle", "chance")  # what is inlined first when not all fits

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;
background:#fafafa;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:1.5em 2em 4em;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{border-bottom:2px solid #e3e3e3;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}nav.toc{background:#f3f5f8;border:1px solid #dde2ea;padding:.6em 1.2em;margin:1em 0}
nav.toc ol{margin:.3em 0;padding-left:1.4em;columns:2}a{color:#1f5fa8}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d7d7d7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.num,table.dataframe td{text-align:right;font-variant-numeric:tabular-nums}
div.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(470px,1fr));gap:1em}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}blockquote.methods{border-left:4px solid #c9d3e0;margin:1em 0;
padding:.4em 1em;background:#f7f9fb}pre{background:#f5f5f5;border:1px solid #ddd;padding:.8em;overflow:auto;
font-size:.85em}p.note{color:#666;font-style:italic}iframe.viewer{width:100%;height:620px;border:1px solid #ddd}
div.wide{overflow-x:auto}audio{width:190px}td.clip{min-width:16em;max-width:26em;font-size:.88em}details{margin:.6em 0}
"""

SCRIPT = """addEventListener("load", () => {
  const images = [...document.images];
  const decoded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = decoded + "/" + images.length;
  const map = document.querySelector("#maps img");
  if (map) {
    const box = map.getBoundingClientRect();
    document.body.dataset.firstMap = [box.left + scrollX, box.top + scrollY, box.width, box.height]
      .map(Math.round).join(",");
  }
});"""


class Markup(str):
    """Text that is already HTML (not escaped again by the table helpers)."""


# -- public API -----------------------------------------------------------------------------

def html_report(folder: str | Path, *, viewer: bool = True, summary: dict | None = None) -> str:
    """The self-contained HTML report of an output folder (see the module docstring for the layouts).

    Parameters
    ----------
    folder : str or Path
        An encoding output folder, a decoding output folder or a study folder.
    viewer : bool
        Embed the interactive 3-D view of the test R^2 (needs plotly; about 3 MB).
    summary : dict, optional
        The folder's summary, for writers that write ``summary.json`` after the report; read from
        ``folder/summary.json`` when not given.

    Returns
    -------
    str
        The page.

    Raises
    ------
    MissingInputError
        ``folder`` holds no ``summary.json`` and no ``sub-*/summary.json``.
    DataError
        ``summary.json`` is neither an encoding nor a decoding summary.
    """
    folder = Path(folder)
    summary = summary if summary is not None else _read_summary(folder)
    if summary is None:
        if not _subject_folders(folder):
            raise MissingInputError(
                f"{folder} has no summary.json: it is not a brain2music output folder (nor a study folder of "
                "sub-*/ output folders). Run `brain2music demo --out FOLDER` or `brain2music fit CONFIG --out "
                "FOLDER` first, then make the report of FOLDER.")
        return _document(f"brain2music study report: {folder.resolve().name}", _study_sections(folder))
    if "scores" in summary:
        d = summary["data"]
        return _document(f"brain2music encoding report: {d['subject']} ({d['source']})",
                         _encoding_sections(folder, summary, viewer))
    if "targets" in summary:
        return _document(f"brain2music decoding report: subject {summary['subject']}",
                         _decoding_sections(folder, summary))
    raise DataError(f"{folder / 'summary.json'} is neither an encoding summary (no \"scores\") nor a decoding "
                    "summary (no \"targets\"): make the report of the folder brain2music demo, fit or decode wrote.")


def write_html_report(folder: str | Path, path: str | Path | None = None, *, viewer: bool = True,
                      summary: dict | None = None) -> Path:
    """Write :func:`html_report` of ``folder`` atomically, to ``folder/report.html`` by default.

    Parameters
    ----------
    folder : str or Path
    path : str or Path, optional
        Where to write the page. Its links (to ``decoding/report.html``, ``sub-*/report.html``)
        are relative to ``folder``.
    viewer : bool
        Embed the interactive 3-D view (see :func:`html_report`).
    summary : dict, optional
        See :func:`html_report`.

    Returns
    -------
    Path
        The page written.
    """
    folder = Path(folder)
    return write_text(Path(path) if path is not None else folder / "report.html",
                      html_report(folder, viewer=viewer, summary=summary))


# -- the page -------------------------------------------------------------------------------

def _document(title: str, sections: list[Section]) -> str:
    """A whole page: title, table of contents, sections, the image-check script."""
    toc = "".join(f'<li><a href="#{anchor}">{_esc(name)}</a></li>' for anchor, name, _ in sections)
    body = "\n".join(f'<section id="{anchor}">\n<h2>{_esc(name)}</h2>\n{content}\n</section>'
                     for anchor, name, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{STYLE}</style></head>
<body><main>
<h1>{_esc(title)}</h1>
<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>
{body}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def _esc(value) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value))


def _fmt(value, digits: int = 4) -> str:
    """A value for a person: integers with thousands separators, floats to ``digits`` significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if v == 0 or math.isinf(v):
            return f"{v:g}"
        return f"{v:.{digits - 1}e}" if abs(v) >= 10 ** digits or abs(v) < 1e-3 else f"{v:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, digits) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k} {_fmt(v, digits)}" for k, v in value.items())
    return str(value)


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _key_values(rows: list[tuple[str, object]]) -> str:
    """A two-column table; values are formatted with :func:`_fmt` unless already text."""
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v if isinstance(v, str) else _fmt(v))}</td></tr>"
                    for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def _table(header: list[str], rows: list[list[object]], table_id: str | None = None) -> str:
    """A table with a header row; numbers formatted with :func:`_fmt`, text escaped (unless Markup)."""
    def cell(value) -> str:
        if isinstance(value, str):
            return f"<td>{_esc(value)}</td>"
        return f'<td class="num">{_esc(_fmt(value))}</td>'

    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _frame_html(frame: pd.DataFrame, table_id: str, index: bool = True) -> str:
    """A data frame as an HTML table, numbers formatted with :func:`_fmt`, text escaped."""
    shown = frame.map(lambda v: v if isinstance(v, str) else _fmt(v))
    table = shown.to_html(classes=["dataframe", table_id], table_id=table_id, escape=True, border=0, index=index)
    return f'<div class="wide">{table}</div>'


def _read_summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _subject_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("sub-*") if (p / "summary.json").is_file())


# -- figures --------------------------------------------------------------------------------

def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _caption(name: str) -> str:
    """The caption of a figure named ``name`` (the file's stem)."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    prefixes = sorted((k for k in CAPTIONS if name.startswith(k + "_")), key=len, reverse=True)
    if prefixes:
        return CAPTIONS[prefixes[0]].format(space=name[len(prefixes[0]) + 1:])
    return name.replace("_", " ")


def _figure(data: bytes, name: str, caption: str) -> str:
    return (f'<figure><img src="{_png_uri(data)}" alt="{_esc(caption)}">'
            f"<figcaption><b>{_esc(name)}</b>: {_esc(caption)}</figcaption></figure>")


def _figures(folder: Path, listed: dict[str, str] | None = None, first: str = "") -> str:
    """Every ``figures/*.png`` of ``folder``: the one named ``first``, then those the summary lists in its
    order, then the others."""
    paths = [folder / p for p in (listed or {}).values() if p.endswith(".png") and (folder / p).is_file()]
    paths += sorted(p for p in (folder / "figures").glob("*.png") if p not in paths)
    paths.sort(key=lambda p: p.stem != first)
    figures = "\n".join(_figure(p.read_bytes(), p.stem, _caption(p.stem)) for p in paths)
    return f'<div class="figures">{figures}</div>' if figures else ""


def _alpha_figure(arrays, threshold: float) -> tuple[bytes, str]:
    """Histograms of the chosen regularisation per band and of the cross-validation score, as PNG."""
    from matplotlib.figure import Figure

    above = arrays["test_r2"] > threshold
    where = above if above.any() else np.ones_like(above)
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, name in enumerate(arrays["band_names"]):
        left.hist(np.log10(arrays["best_alphas"][k, where]), bins=30, histtype="step", linewidth=1.6, label=str(name))
    left.set_xlabel("log10 alpha (the band's effective regularisation)")
    left.set_ylabel("vertices")
    left.legend(frameon=False, fontsize=8)
    cv = arrays["cv_score"][np.isfinite(arrays["cv_score"])]
    right.hist(cv, bins=60, color="#4c72b0", log=True)
    right.set_xlabel("cross-validation R² (mean over held-out training runs)")
    right.set_ylabel("vertices (log scale)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    what = f"vertices with test R² > {threshold:g}" if above.any() else "all vertices (none passes the threshold)"
    return buffer.getvalue(), f"Left: the chosen alpha per feature space, {what}. Right: the CV score, all vertices."


# -- encoding -------------------------------------------------------------------------------

def _encoding_sections(folder: Path, summary: dict, viewer: bool) -> list[Section]:
    """The sections of an encoding output folder's report."""
    arrays = _load_arrays(folder / "results.npz")
    sections = [("summary", "Summary", _encoding_summary(summary)),
                ("design", "Design", _design(summary)),
                ("model", "Model and cross-validation", _model(summary, arrays)),
                ("scores", "Scores on the held-out runs", _scores(summary))]
    if "noise_ceiling" in summary:
        sections.append(("noise-ceiling", "Noise ceiling", _noise_ceiling(summary["noise_ceiling"])))
    figures = _figures(folder, summary.get("files", {}).get("figures"), first="test_r2")
    if figures:
        sections.append(("maps", "Maps", figures))
    if viewer:
        sections.append(("viewer", "Interactive 3-D view", _viewer(summary, arrays)))
    if (folder / "statistics" / "rois.csv").is_file():
        sections.append(("rois", "Regions of interest", _rois(folder / "statistics")))
    if "statistics" in summary:
        sections.append(("statistics", "Corrected statistics", _statistics(summary["statistics"])))
        methods = folder / "statistics" / "methods.md"
        text = methods.read_text().strip() if methods.is_file() else summary["statistics"]["methods"]
        sections.append(("methods", "Methods", f'<blockquote class="methods">{_esc(text)}</blockquote>'))
    decoding = _read_summary(folder / "decoding")
    if decoding is not None and "targets" in decoding:
        sections.append(("decoding", "Decoding", _decoding_nested(folder / "decoding", decoding)))
    sections.append(("provenance", "Provenance", _provenance(folder, summary, ("config.toml", "results.npz"))))
    return sections


def _load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in ("test_r2", "best_alphas", "cv_score", "band_names") if k in data.files}


def _encoding_summary(summary: dict) -> str:
    d, s = summary["data"], summary["scores"]
    repeats = f" after averaging {d['n_test_repeats']} repeats" if (d.get("n_test_repeats") or 1) > 1 else ""
    spaces = ", ".join(f"{k} ({_fmt(v)})" for k, v in summary["features"].items())
    text = (f"Subject {d['subject']}, {d['source']} data: {_fmt(d['n_vertices'])} targets ({d['space']}), TR "
            f"{_fmt(d['tr_s'])} s, {_fmt(d['n_clips'])} clips. Training: {_fmt(d['n_train_runs'])} runs, "
            f"{_fmt(d['n_train_trs'])} TRs; test: {_fmt(d['n_test_runs'])} run(s), {_fmt(d['n_test_trs'])} TRs"
            f"{repeats}. Feature spaces (dimensions): {spaces}. Largest test R² {_fmt(s['test_r2_max'], 3)}; "
            f"{_fmt(s['n_vertices_above_threshold'])} targets above the display threshold R² > "
            f"{_fmt(s['map_threshold_r2'])}.")
    test = summary.get("statistics", {}).get("test")
    if test is not None:
        settings = summary["statistics"]["settings"]
        text += (f" {_fmt(test['n_significant'])} targets significant ({_correction(settings)} p ≤ "
                 f"{_fmt(settings['alpha'])}, {_fmt(test['n_permutations'])} permutations).")
    if "recovery" in summary:
        text += f" Recovery of the planted signal: AUC {_fmt(summary['recovery']['auc'], 3)}."
    return _p(text)


def _correction(settings: dict) -> str:
    from encoding.stats.report import FWER_LABELS

    name = settings["correction"].upper().replace("_", " ")
    if settings["correction"] == "fwer" and "fwer" in settings:  # decoding's FWER is over targets, max-T
        name += f" ({FWER_LABELS[settings['fwer']]})"
    return name


def _design(summary: dict) -> str:
    d, design = summary["data"], summary["design"]
    rows = [("training runs", d["n_train_runs"]), ("training TRs", d["n_train_trs"]),
            ("test runs", d["n_test_runs"]), ("test TRs", d["n_test_trs"]),
            ("test repeats (averaged)", d.get("n_test_repeats")), ("TR (s)", d["tr_s"]), ("clips", d["n_clips"]),
            ("FIR delays (TRs)", ", ".join(str(v) for v in design["delays_tr"])),
            ("regressors (spaces x delays)", design["n_features"])]
    pca = summary.get("pca") or {}
    spaces = _table(["feature space", "dimensions", *(["PCA"] if pca else [])],
                    [[name, dims, *([_fmt(pca.get(name))] if pca else [])]
                     for name, dims in summary["features"].items()])
    return _key_values(rows) + spaces


def _model(summary: dict, arrays: dict | None) -> str:
    m, s = summary["model"], summary["scores"]
    alphas = m["alphas"]
    rows = [("estimator", m["estimator"]), ("cross-validation", m["cv"]), ("band-weight candidates", m["n_iter"]),
            ("alpha grid", f"{len(alphas)} values from {alphas[0]:g} to {alphas[-1]:g}"),
            ("form / strategy", f"{m['form']} / {m['strategy']}")]
    rows += [(f"solver: {k.replace('_', ' ')}", v) for k, v in m.get("solver_profile", {}).items()]
    bands = _table(["feature space", f"mean split R² (test R² > {_fmt(s['map_threshold_r2'])})", "targets where best",
                    "median alpha"],
                   [[name, b["split_r2_mean_above_threshold"], b["n_vertices_best_above_threshold"],
                     b["median_alpha_above_threshold"]] for name, b in s["bands"].items()])
    parts = [_key_values(rows), bands]
    if arrays is not None and {"best_alphas", "cv_score", "band_names"} <= set(arrays):
        parts.append(_alpha_quantiles(arrays, s["map_threshold_r2"]))
        data, caption = _alpha_figure(arrays, s["map_threshold_r2"])
        parts.append(_figure(data, "alpha and CV score distributions", caption))
    return "\n".join(parts)


def _alpha_quantiles(arrays: dict, threshold: float) -> str:
    """Quantiles of each band's chosen alpha (above the threshold) and how the CV score relates to the test R^2."""
    above = arrays["test_r2"] > threshold
    where = above if above.any() else np.ones_like(above)
    quantiles = (5, 25, 50, 75, 95)
    rows = [[str(name), *np.percentile(arrays["best_alphas"][k, where], quantiles).tolist()]
            for k, name in enumerate(arrays["band_names"])]
    table = _table(["feature space", *(f"alpha, {q} %" for q in quantiles)], rows)
    cv, test = arrays["cv_score"], arrays["test_r2"]
    finite = np.isfinite(cv) & np.isfinite(test)
    r = float(np.corrcoef(cv[finite], test[finite])[0, 1]) if finite.sum() > 2 else None
    cv_rows = [("mean CV R²", float(np.mean(cv[finite]))), ("largest CV R²", float(np.max(cv[finite]))),
               (f"targets with CV R² > {threshold:g}", int((cv[finite] > threshold).sum())),
               ("correlation of CV R² and test R² over targets", r)]
    return table + _key_values(cv_rows)


def _scores(summary: dict) -> str:
    s = summary["scores"]
    rows = [("mean test R² (all targets)", s["test_r2_mean"]), ("largest test R²", s["test_r2_max"]),
            ("largest test r", s["test_r_max"]),
            (f"targets with test R² > {_fmt(s['map_threshold_r2'])}", s["n_vertices_above_threshold"]),
            ("their mean test R²", s["test_r2_mean_above_threshold"])]
    parts = [_key_values(rows)]
    if "recovery" in summary:
        r = summary["recovery"]
        parts += ["<h3>Ground-truth recovery (simulation)</h3>", _key_values([
            ("AUC of the test R², planted vs other targets", r["auc"]), ("planted targets", r["n_signal"]),
            ("band accuracy (largest split R² is the planted dominant space)", r["band_accuracy"]),
            ("noise", r["noise"]), ("peak SNR (one presentation)", r["snr_peak"])])]
    if "targets" in summary:
        bands = list(s["bands"])
        parts += ["<h3>Per target</h3>", _table(
            ["target", "test R²", "test r", *(f"split R² {b}" for b in bands)],
            [[name, t["test_r2"], t["test_r"], *(t["split_r2"][b] for b in bands)]
             for name, t in summary["targets"].items()], table_id="targets")]
    return "\n".join(parts)


def _noise_ceiling(nc: dict) -> str:
    return _key_values([(f"targets with explainable variance > {_fmt(nc['ev_threshold'])} (reliable)",
                         nc["n_vertices_reliable"]),
                        ("largest explainable variance", nc["explainable_variance_max"]),
                        ("median test r, reliable targets", nc["test_r_median_reliable"]),
                        ("median CC_norm, reliable targets (Schoppe et al. 2016)", nc["cc_norm_median_reliable"])])


def _viewer(summary: dict, arrays: dict | None) -> str:
    """nilearn's interactive view of the test R^2, its own page inside a sandboxed iframe."""
    if importlib.util.find_spec("plotly") is None:
        return _note("Not included: the interactive view needs plotly (pip install 'brain2music[viewer]').")
    if summary["data"]["space"] != "fsaverage5" or arrays is None:
        return _note("Not included: the interactive view needs fsaverage5 data and results.npz.")
    from atlases.plotting import view_surface

    threshold = summary["scores"]["map_threshold_r2"]
    test_r2 = arrays["test_r2"]
    vmax = max(float(np.nanpercentile(test_r2, 99.9)), 2 * threshold)
    page = view_surface(test_r2, "Test R²", threshold=threshold, vmax=vmax).get_standalone()
    page = re.sub(r'<link\s+rel="icon"[^>]*>', "", page)  # nilearn's favicon, the one thing it would fetch
    return (_p(f"Test R² on the inflated fsaverage5 (drag to rotate, scroll to zoom); values below the display "
               f"threshold {threshold:g} are not coloured.")
            + f'<iframe class="viewer" title="Interactive view of the test R²" '
              f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def _with_ci(table: pd.DataFrame, column: str) -> pd.Series:
    """``value [low, high]`` to three decimals (the value alone where the interval is missing)."""
    low, high = table.get(f"{column}_ci_low"), table.get(f"{column}_ci_high")

    def one(name) -> str:
        value = table.at[name, column]
        if low is None or high is None or not (np.isfinite(low[name]) and np.isfinite(high[name])):
            return f"{value:.3f}"
        return f"{value:.3f} [{low[name]:.3f}, {high[name]:.3f}]"

    return pd.Series([one(name) for name in table.index], index=table.index)


def _rois(folder: Path) -> str:
    """The compact ROI table (estimates with their 95 % intervals) and how the regions are made."""
    table = pd.read_csv(folder / "rois.csv", index_col=0)
    shown = pd.DataFrame(index=table.index)
    if "n_vertices" in table:
        shown["vertices"] = table["n_vertices"].map(_fmt)
    shown["test R²"] = _with_ci(table, "test_r2")
    for column, title in (("cc_norm_median", "CC_norm (median)"), ("fraction_significant", "share significant")):
        if column in table:
            shown[title] = table[column].map(lambda v: f"{v:.3f}")
    for column in table:
        if column.startswith("unique_") and f"{column}_ci_low" in table:
            shown[column.replace("_", " ", 1)] = _with_ci(table, column)
    shown = shown.rename_axis("region").reset_index()
    parts = [_p("ROI means over test samples with 95 % block-bootstrap intervals in brackets; every column, "
                "p-values and FDR shares included, is in statistics/rois.csv."),
             shown.to_html(classes=["dataframe", "rois"], table_id="rois-table", escape=True, border=0, index=False)]
    if (folder / "regions.csv").is_file():
        regions = pd.read_csv(folder / "regions.csv", index_col=0)
        parts.append("<details><summary>How each region is made</summary>"
                     + _frame_html(regions, "regions-table") + "</details>")
    return "\n".join(parts)


def _statistics(st: dict) -> str:
    """Significance, split-R^2 tests, power (simulations), variance partitioning and notes."""
    s = st["settings"]
    parts = []
    if "test" in st:
        t = st["test"]
        parts.append(_key_values([
            ("statistic", t["statistic"].upper()), ("null", f"{s['null']}, {s['scheme']} of {s['block_length']} TRs"),
            ("permutations", t["n_permutations"]), ("correction", f"{_correction(s)} at {s['alpha']:g}"),
            ("significant targets (corrected)",
             f"{_fmt(t['n_significant'])} ({_fmt(100 * t['fraction_significant'], 3)} %)"),
            (f"significant targets (uncorrected p ≤ {s['alpha']:g})", t["n_significant_uncorrected"]),
            ("smallest p (uncorrected / corrected)", f"{_fmt(t['min_p'])} / {_fmt(t['min_p_corrected'])}")]))
        if t.get("split"):
            parts.append(_table(["feature space", f"targets with significant split R² ({_correction(s)})"],
                                [[k, v] for k, v in t["split"].items()]))
        if t.get("fwer_procedures"):
            power = st.get("power", {}).get("by_procedure")
            parts.append(_table(
                ["FWER procedure (same permutations)", f"significant at {s['alpha']:g}"]
                + (["sensitivity", "false positives"] if power else []),
                [[m + (" (maps)" if m == s["fwer"] else ""), n]
                 + ([power[m]["sensitivity"], power[m]["n_false_positives"]] if power else [])
                 for m, n in t["fwer_procedures"].items()]))
    if "power" in st:
        p = st["power"]
        parts += ["<h3>Power (simulation)</h3>", _key_values([
            ("sensitivity (planted targets found)", p["sensitivity"]),
            ("sensitivity where the planted share is at least 0.1", p["sensitivity_share_above_0.1"]),
            ("false-positive rate", p["false_positive_rate"]), ("false positives", p["n_false_positives"])])]
    if "partition" in st:
        parts += ["<h3>Variance partitioning</h3>", _table(
            ["component", "mean over significant targets", "targets estimated", "share of them < 0"],
            [[name, v["mean_in_significant"], v.get("n_estimated"), v["fraction_negative"]]
             for name, v in st["partition"].items()]),
            _table(["feature space", f"targets with significant unique variance (bootstrap, FDR ≤ {s['alpha']:g})"],
                   [[k, v] for k, v in st.get("unique_significant_fdr", {}).items()])]
    parts += [_note(note) for note in st.get("notes", [])]
    return "\n".join(parts) or _note("No test was run.")


# -- decoding -------------------------------------------------------------------------------

def _decoding_sections(folder: Path, summary: dict) -> list[Section]:
    """The sections of a decoding output folder's report."""
    sections = [("summary", "Summary", _decoding_summary(summary))]
    sections += [(_anchor(title), title, body) for title, body in _decoding_parts(folder, summary, "")]
    sections.append(("provenance", "Provenance", _provenance(folder, summary, ("config.toml", "predictions.npz"))))
    return sections


def _decoding_nested(folder: Path, summary: dict) -> str:
    """The decoding section of an encoding report: the decoding report's parts, as subsections."""
    link = ('<p>The decoding run\'s own report: <a href="decoding/report.html">decoding/report.html</a>.</p>'
            if (folder / "report.html").is_file() else "")
    parts = [link, _decoding_summary(summary)]
    parts += [f"<h3>{_esc(title)}</h3>\n{body}" for title, body in _decoding_parts(folder, summary, "decoding/")]
    return "\n".join(parts)


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def _decoding_summary(summary: dict) -> str:
    text = (f"Subject {summary['subject']}: decoding of {', '.join(summary['targets'])} from the responses "
            f"({summary['selection']} selection), {_fmt(summary['window_s'])}-s windows every "
            f"{_fmt(summary['hop_s'])} s, lags {', '.join(str(v) for v in summary['lags_tr'])} TR(s).")
    rows = []
    for space, t in summary["targets"].items():
        ident = t["identification"]
        low, high = ident["ci"]["pairwise"]
        rows.append([space, t["n_dims"], t["n_train_samples"], t["n_test_clips"], t["n_vertices_decoded"],
                     t["alpha_median"], t["cv_r2_mean"],
                     f"{ident['values']['pairwise']:.3f} [{_fmt(low, 3)}, {_fmt(high, 3)}]",
                     ident["p_value"]["pairwise"]])
    return _p(text) + _table(["target", "dimensions", "training samples", "test clips", "vertices decoded",
                              "median alpha", "mean CV R²", "pairwise identification [95 % CI] (chance 0.5)", "p"],
                             rows, table_id="decoders")


def _decoding_parts(folder: Path, summary: dict, prefix: str) -> list[tuple[str, str]]:
    """(title, body) of the decoding tables, figures, listening material and methods; ``prefix``: the
    folder's path from the page (for the audio files linked, not inlined)."""
    parts = []
    if (folder / "identification.csv").is_file():
        parts.append(("Identification", _identification(pd.read_csv(folder / "identification.csv", index_col=0))))
    for name, title in (("per_genre.csv", "Identification per genre"), ("reconstructions.csv", "Reconstructions")):
        if (folder / name).is_file():
            parts.append((title, _frame_html(pd.read_csv(folder / name, index_col=0), _anchor(title) + "-table",
                                             index=False)))
    figures = _figures(folder, summary.get("files", {}).get("figures"))
    if figures:
        parts.append(("Decoding figures", figures))
    if (folder / "listen.html").is_file():
        parts.append(("Listening", _listening(folder, prefix)))
    methods = _markdown_section(folder / "report.md", "Methods")
    if methods:
        parts.append(("Decoding methods", f'<blockquote class="methods">{_esc(methods)}</blockquote>'))
    return parts


def _identification(table: pd.DataFrame) -> str:
    """Each target's metrics with bootstrap intervals, chance and permutation p-values."""
    rows = [[row["target"], row["metric"],
             f"{_fmt(row['value'], 3)} [{_fmt(row['ci_low'], 3)}, {_fmt(row['ci_high'], 3)}]",
             row["chance"], row["p_value"], row.get("p_value_external")] for _, row in table.iterrows()]
    return _table(["target", "metric", "value [95 % CI]", "chance", "p (clips permuted)", "p (decoder refitted)"],
                  rows, table_id="identification")


def _markdown_section(path: Path, title: str) -> str:
    """The text of the Markdown section ``## title`` of ``path`` ('' when absent)."""
    if not path.is_file():
        return ""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
        elif inside:
            lines.append(line)
    return "\n".join(lines).strip()


class _ListeningTable(html.parser.HTMLParser):
    """The cells of ``listen.html``'s table: their text (``<br>`` as a line break) and audio source."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[dict]] = []
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = {"text": "", "src": None}
        elif tag == "br" and self._cell is not None:
            self._cell["text"] += "\n"
        elif tag == "audio" and self._cell is not None:
            self._cell["src"] = dict(attrs).get("src")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None


def _listening(folder: Path, prefix: str) -> str:
    """The listening page's table (its first row: the column titles) with each wav inlined, originals and
    decoded columns first, up to :data:`MAX_INLINE_AUDIO_BYTES`; the rest linked."""
    parser = _ListeningTable()
    parser.feed((folder / "listen.html").read_text())
    header, rows = parser.rows[0], parser.rows[1:]
    titles = [cell["text"] for cell in header]
    rank = [next((k for k, word in enumerate(AUDIO_PRIORITY) if word in t), 1) for t in titles]
    cells = sorted(((rank[j], i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if cell["src"]))
    inline, used, total = {}, 0, 0
    for _, i, j in cells:
        path = _audio_path(folder, rows[i][j]["src"])
        size = path.stat().st_size if path is not None else 0
        total += size
        if path is not None and used + size <= MAX_INLINE_AUDIO_BYTES:
            inline[i, j] = path
            used += size
    body = []
    for i, row in enumerate(rows):
        html_cells = []
        for j, cell in enumerate(row):
            if cell["src"] is None:
                lines = [_esc(line) for line in cell["text"].split("\n")]
                html_cells.append(f'<td class="clip"><b>{lines[0]}</b><br>{"<br>".join(lines[1:])}</td>'
                                  if j == 0 else f"<td>{lines[0]}</td>")
            elif (i, j) in inline:
                data = base64.b64encode(inline[i, j].read_bytes()).decode("ascii")
                html_cells.append(f'<td><audio controls preload="none" src="data:audio/wav;base64,{data}">'
                                  "</audio></td>")
            else:
                html_cells.append(f'<td><a href="{_esc(prefix + cell["src"])}">{_esc(Path(cell["src"]).name)}</a></td>')
        body.append("<tr>" + "".join(html_cells) + "</tr>")
    n = len(cells)
    note = (f"All {n} clips are inlined ({used / 2**20:.1f} MB)." if len(inline) == n else
            f"{len(inline)} of {n} clips are inlined ({used / 2**20:.1f} of {total / 2**20:.1f} MB; the page inlines "
            f"at most {MAX_INLINE_AUDIO_BYTES / 2**20:.0f} MB of audio, originals and decoded clips first); the others "
            f"are linked to their files in {prefix}audio/, which play where the page sits beside that folder.")
    head = "".join(f"<th>{_esc(t)}</th>" for t in titles)
    return (_p("Each row is a test clip the decoder never saw in training: decoded columns come from the embedding "
               "decoded from the responses, oracle columns from the clip's true embedding, chance columns from a "
               "random library item. " + note)
            + f'<div class="wide"><table id="listening"><thead><tr>{head}</tr></thead>'
              f'<tbody>{"".join(body)}</tbody></table></div>')


def _audio_path(folder: Path, src: str) -> Path | None:
    """The file a listening-page source names, if it is a file inside ``folder``."""
    path = (folder / src).resolve()
    return path if path.is_file() and path.is_relative_to(folder.resolve()) else None


# -- provenance -----------------------------------------------------------------------------

def _provenance(folder: Path, summary: dict, hashed: tuple[str, ...]) -> str:
    """Versions, machine, command, seeds, hashes, timings and the configuration of a run."""
    prov = summary.get("provenance", {})
    platform = prov.get("platform", {})
    parts = [_key_values([("created", prov.get("created", "n/a")), ("command", prov.get("command", "n/a")),
                          ("system", platform.get("system", "n/a")), ("machine", platform.get("machine", "n/a")),
                          ("CPUs", platform.get("cpus"))])]
    if prov.get("versions"):
        parts += ["<h3>Versions</h3>", _table(["package", "version"], [[k, v] for k, v in prov["versions"].items()])]
    seeds = _seeds(prov.get("config", {}))
    if seeds:
        parts += ["<h3>Seeds</h3>", _table(["option", "value"], [[k, v] for k, v in seeds])]
    if prov.get("input_hashes"):
        parts += ["<h3>Input hashes (sha256)</h3>", _table(["input", "sha256"],
                                                           [[k, str(v)] for k, v in prov["input_hashes"].items()])]
    else:
        rows = [[name, hashlib.sha256((folder / name).read_bytes()).hexdigest()] for name in hashed
                if (folder / name).is_file()]
        parts += ["<h3>Output hashes (sha256)</h3>",
                  _note("The summary records no input hashes; these are hashes of this folder's own outputs, to tell "
                        "copies of this run apart from other runs."), _table(["file", "sha256"], rows)]
    if summary.get("timings_s"):
        parts += ["<h3>Timings (s)</h3>", _table(list(summary["timings_s"]), [list(summary["timings_s"].values())])]
    config = folder / "config.toml"
    if config.is_file():
        parts += ["<h3>Configuration (config.toml)</h3>", f'<pre id="config">{_esc(config.read_text())}</pre>']
    elif prov.get("config"):
        parts += ["<h3>Configuration (from summary.json)</h3>",
                  f'<pre id="config">{_esc(json.dumps(prov["config"], indent=2))}</pre>']
    return "\n".join(parts)


def _seeds(config: dict, path: str = "") -> list[tuple[str, object]]:
    """Every ``seed`` and ``random_state`` option of a configuration, with its dotted path."""
    found = []
    for key, value in config.items():
        name = f"{path}{key}"
        if isinstance(value, dict):
            found += _seeds(value, name + ".")
        elif key in ("seed", "random_state"):
            found.append((name, value))
    return found


# -- study ----------------------------------------------------------------------------------

def _study_sections(folder: Path) -> list[Section]:
    """The sections of a study folder's report: subjects with their headline numbers, group outputs."""
    subjects = _subject_folders(folder)
    lines = [_headline(p) for p in subjects]
    columns = list(dict.fromkeys(k for line in lines for k in line))
    rows = []
    for path, line in zip(subjects, lines, strict=True):
        name = (Markup(f'<a href="{_esc(path.name)}/report.html">{_esc(path.name)}</a>')
                if (path / "report.html").is_file() else f"{path.name} (no report.html yet)")
        rows.append([name, *(line.get(k, "n/a") for k in columns)])
    sections = [("subjects", "Subjects", _p(f"{len(subjects)} subject folder(s); each name links to the subject's own "
                                             "report.") + _table(["subject", *columns], rows, table_id="subjects"))]
    group = folder / "group"
    summary = _read_summary(group)
    if summary is not None:
        sections.append(("group", "Group results", _table(["quantity", "value"], _flatten(summary),
                                                          table_id="group-summary")))
    figures = _figures(group)
    if figures:
        sections.append(("group-figures", "Group figures", figures))
    for path in sorted(group.glob("*.csv")):
        sections.append((_anchor(f"group {path.stem}"), f"Group table: {path.stem}",
                         _frame_html(pd.read_csv(path, index_col=0), _anchor(f"group {path.stem}") + "-table")))
    if (group / "methods.md").is_file():
        text = _esc((group / "methods.md").read_text().strip())
        sections.append(("group-methods", "Group methods", f'<blockquote class="methods">{text}</blockquote>'))
    if len(sections) == 1:
        sections[0] = (*sections[0][:2], sections[0][2] + _note("No group outputs (group/summary.json, "
                                                                "group/figures/) in this study folder."))
    return sections


def _headline(path: Path) -> dict[str, str]:
    """A subject's headline numbers, formatted: encoding scores, statistics, recovery, decoding."""
    summary = _read_summary(path)
    line = {}
    if "scores" in summary:
        s = summary["scores"]
        line["targets"] = _fmt(summary["data"]["n_vertices"])
        line["largest test R²"] = _fmt(s["test_r2_max"], 3)
        line["targets above threshold"] = _fmt(s["n_vertices_above_threshold"])
        if "test" in summary.get("statistics", {}):
            line["significant (corrected)"] = _fmt(summary["statistics"]["test"]["n_significant"])
        if "noise_ceiling" in summary:
            line["median CC_norm (reliable)"] = _fmt(summary["noise_ceiling"]["cc_norm_median_reliable"], 3)
        if "recovery" in summary:
            line["recovery AUC"] = _fmt(summary["recovery"]["auc"], 3)
        summary = _read_summary(path / "decoding") or {}
    for space, t in summary.get("targets", {}).items():
        if "identification" in t:
            line[f"pairwise identification, {space}"] = _fmt(t["identification"]["values"]["pairwise"], 3)
    return line


MAX_LIST_SHOWN = 20  # a group summary's lists of scalars longer than this are counted, not listed


def _flatten(obj, path: str = "") -> list[list[str]]:
    """The scalars of a JSON object as rows (keys joined by " / ", formatted value); lists of scalars joined
    (counted when longer than :data:`MAX_LIST_SHOWN`)."""
    if isinstance(obj, dict):
        return [row for k, v in obj.items() for row in _flatten(v, f"{path} / {k}" if path else str(k))]
    if isinstance(obj, list) and not all(isinstance(v, str | numbers.Number) or v is None for v in obj):
        return [row for k, v in enumerate(obj) for row in _flatten(v, f"{path} / {k}")]
    if isinstance(obj, list) and len(obj) > MAX_LIST_SHOWN:
        return [[path, f"{len(obj):,} values"]]
    return [[path, _fmt(obj)]]
