"""Outputs of a decoding run: tables, figures, audio, a listening page and a report.

``write_decoding_outputs(run, out)`` writes, each file atomically:

==================================  ======================================================================
``identification.{csv,md,tex}``     per target: pairwise identification, N-way top-k, mean rank, with
                                    bootstrap CIs over clips, chance levels and permutation p-values
                                    (clips shuffled; decoder refitted on clip-permuted training targets);
                                    genre classification rows where clips have genres
``per_genre.{csv,md,tex}``          per target and genre: identification with CIs
``retrieval.csv``                   items retrieved for each decoded (and true: ``oracle``) clip embedding
``reconstructions.{csv,md,tex}``    evaluation of retrieved and generated audio beside oracles and chance
``predictions.npz``                 decoded and true clip embeddings per target (``<space>_predicted`` ...)
``audio/*.wav``                     originals, retrieved and generated clips (decoded and oracle)
``listen.html``                     the clips side by side in a browser, with captions
``figures/*.png``                   identification matrix, rank histogram and per-genre bars per target
``report.md``                       the numbers beside the published ones, and the protocol
``config.toml``, ``summary.json``   the configuration, and numbers with provenance (written last)
==================================  ======================================================================
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encoding.html_report import write_html_report
from encoding.io import provenance, save_figure, write_arrays, write_json, write_text
from encoding.stats.report import write_table

PUBLISHED = (  # ../shared/GUIDE.md, "Numbers to beat" (real data, ds003720, 60 test clips)
    ("Brain2Music (Denk et al. 2023), MuLan music embedding", 0.876,
     "128-d MuLan per 10-s window; fMRI averaged over the window; ridge per dimension from the best-ROI voxels"),
    ("Ciferri et al. 2025, CLAP, functional alignment", 0.914,
     "CLAP embedding; several subjects' responses aligned to a reference subject by ridge on the training runs"),
    ("Ciferri et al. 2025, CLAP, anatomical alignment", 0.796, "the same, anatomical alignment"),
)


def write_decoding_outputs(run, out: Path) -> dict:
    """Write every output of ``run`` (a :class:`decoding.pipeline.DecodingRun`) into ``out``; return the summary."""
    start = time.perf_counter()
    out = Path(out)
    write_text(out / "config.toml", run.config.to_toml())
    tables = {}
    identification = pd.concat([t.identification.table().assign(target=s) for s, t in run.targets.items()],
                               ignore_index=True)
    identification = identification[["target", *[c for c in identification if c != "target"]]]
    tables["identification"] = write_table(identification, out, "identification")
    genres = [t.identification.by_label.assign(target=s) for s, t in run.targets.items()
              if t.identification.by_label is not None]
    if genres:
        tables["per_genre"] = write_table(pd.concat(genres, ignore_index=True), out, "per_genre")
    retrieval = [t.retrieval.assign(target=s) for s, t in run.targets.items() if t.retrieval is not None]
    if retrieval:
        write_text(out / "retrieval.csv", pd.concat(retrieval, ignore_index=True).to_csv(index=False))
    if run.reconstructions is not None and len(run.reconstructions):
        tables["reconstructions"] = write_table(run.reconstructions, out, "reconstructions")
    write_arrays(out / "predictions.npz", **{f"{s}_{k}": v for s, t in run.targets.items()
                                             for k, v in (("predicted", t.predicted), ("true", t.true),
                                                          ("clip_ids", np.array(t.clip_ids)))})
    audio = write_audio(run, out / "audio")
    if audio:
        write_text(out / "listen.html", listening_page(run, audio))
    figures = make_figures(run, out / "figures", run.config.output.dpi) if run.config.output.figures else {}
    summary = summarize(run)
    summary["files"] = {"tables": tables, "figures": figures, "audio": sorted(audio.values())}
    write_text(out / "report.md", markdown_report(run, summary, figures))
    run.timings["outputs"] = round(time.perf_counter() - start, 3)
    summary["timings_s"] = {**run.timings, "total": round(sum(run.timings.values()), 3)}
    summary["provenance"] = provenance(run.config.to_dict())
    summary["files"]["html"] = "report.html"
    write_html_report(out, summary=summary)  # the self-contained page (encoding.html_report); before the summary
    write_json(out / "summary.json", summary)
    return summary


def summarize(run) -> dict:
    """The numbers of a decoding run, JSON-ready."""
    cfg = run.config.decoding
    targets = {}
    for space, t in run.targets.items():
        d = t.design
        targets[space] = {
            "n_dims": int(t.true.shape[1]), "n_train_samples": len(d.X_train), "n_test_clips": len(t.clip_ids),
            "n_vertices_decoded": int(t.decoder.vertices_.size), "alpha_median": float(np.median(t.decoder.alpha_)),
            "cv_r2_mean": float(np.mean(t.decoder.cv_scores_)),
            "identification": t.identification.to_dict(),
        }
    out = {"subject": run.experiment.subject, "window_s": cfg.window, "hop_s": cfg.hop, "lags_tr": list(cfg.delays),
           "selection": cfg.selection, "targets": targets}
    if run.reconstructions is not None:
        out["reconstructions"] = run.reconstructions.replace({np.nan: None}).to_dict(orient="records")
    return out


# -- audio and the listening page -----------------------------------------------------------

def write_audio(run, folder: Path) -> dict[tuple[str, str, str], str]:
    """Write every clip of ``run.audio`` as a 16-bit wav; returns (clip, method, source) -> path in the run folder."""
    if not run.audio:
        return {}
    from decoding.generation.audio import write_wav

    files = {}
    for key, (wave, rate) in run.audio.items():
        name = f"{_safe('_'.join(key))}.wav"
        write_wav(folder / name, wave, rate)
        files[key] = f"audio/{name}"
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def listening_page(run, audio: dict[tuple[str, str, str], str]) -> str:
    """An HTML page: one row per reconstructed clip, its original, retrievals and generations side by side."""
    order = next(iter(run.targets.values())).clip_ids
    clips = sorted({clip for clip, _, _ in audio}, key=order.index)
    columns = sorted({(method, source) for _, method, source in audio},
                     key=lambda c: (c[0] != "original", c[1] == "chance", c[1] == "oracle", c))
    table = run.experiment.clips.table
    captions = table["caption"] if "caption" in table else pd.Series(dtype=str)
    retrieved = {}
    for space, target in run.targets.items():
        if target.retrieval is not None and "caption" in target.retrieval:
            top = target.retrieval[(target.retrieval["rank"] == 1) & (target.retrieval["source"] == "decoded")]
            retrieved[space] = top.set_index("clip_id")["caption"]
    head = "".join(f"<th>{html.escape(_column_title(*c))}</th>" for c in columns)
    rows = []
    for clip in clips:
        cells = []
        for method, source in columns:
            path = audio.get((clip, method, source))
            cells.append(f'<td><audio controls preload="none" src="{html.escape(path)}"></audio></td>' if path
                         else "<td>-</td>")
        notes = [f"<b>{html.escape(clip)}</b>"]
        if clip in captions:
            notes.append(f"heard: <i>{html.escape(str(captions[clip]))}</i>")
        notes += [f"retrieved ({html.escape(s)}): <i>{html.escape(str(r[clip]))}</i>" for s, r in retrieved.items()
                  if clip in r]
        rows.append(f"<tr><td class='clip'>{'<br>'.join(notes)}</td>{''.join(cells)}</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>brain2music: listen to the reconstructions</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:6px;vertical-align:top}}td.clip{{max-width:28em;font-size:90%}}
audio{{width:200px}}</style></head><body>
<h1>Original, retrieved and generated music, side by side</h1>
<p>Subject {html.escape(run.experiment.subject)}. Each row is a test clip the decoder never saw in training.
<em>decoded</em> columns come from the embedding decoded from fMRI; <em>oracle</em> columns from the clip's true
embedding (what the method can do at best); <em>chance</em> columns hold a random library item; retrieval
searches the library (the other clips of the experiment unless a library was given) for the nearest item.</p>
<table><tr><th>clip</th>{head}</tr>
{chr(10).join(rows)}
</table></body></html>
"""


def _column_title(method: str, source: str) -> str:
    if method == "original":
        return "original"
    return f"{method.replace('_', ' ')} ({source})"


# -- figures --------------------------------------------------------------------------------

def make_figures(run, folder: Path, dpi: int = 110) -> dict[str, str]:
    """Identification matrix, rank histogram, per-genre bars and (fsaverage5) the decoded vertices of every target."""
    files = {}
    on_surface = run.experiment.space == "fsaverage5"
    for space, target in run.targets.items():
        for name, fig in ((f"identification_{space}", identification_matrix(target)),
                          (f"ranks_{space}", rank_histogram(target)),
                          (f"genres_{space}", genre_bars(target)),
                          (f"vertices_{space}", decoded_vertices_map(target, run.config.decoding.atlas)
                           if on_surface else None)):
            if fig is not None:
                save_figure(fig, folder / f"{name}.png", dpi)
                files[name] = f"figures/{name}.png"
    return files


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def identification_matrix(target):
    """corr(decoded_i, true_j) over test clips (sorted by genre when known); the diagonal should stand out."""
    result = target.identification
    order = np.arange(result.n_clips)
    labels = result.by_label is not None and target.identification.genre is not None
    if labels:
        order = np.argsort(result.genre.true_labels, kind="stable")
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot()
    similarity = result.similarity[np.ix_(order, order)]
    limit = float(np.abs(similarity).max())
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=ax, label="Pearson r (decoded, true)")
    ax.set_xlabel("true embedding of clip j" + (" (by genre)" if labels else ""))
    ax.set_ylabel("decoded embedding of clip i" + (" (by genre)" if labels else ""))
    ax.set_title(f"{target.space}: pairwise identification {result.values['pairwise']:.3f} (chance 0.5)", fontsize=10)
    if labels:  # one tick per genre block, the blocks separated
        names = np.asarray(result.genre.true_labels)[order]
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
        ends = np.r_[starts[1:], len(names)]
        for edge in starts[1:] - 0.5:
            ax.axhline(edge, color="0.15", linewidth=0.6)
            ax.axvline(edge, color="0.15", linewidth=0.6)
        centres = (starts + ends - 1) / 2
        ax.set_yticks(centres, names[starts], fontsize=8)
        ax.set_xticks(centres, names[starts], fontsize=8, rotation=90)
    return fig


def decoded_vertices_map(target, atlas: str = "desikan_killiany"):
    """The vertices a decoder reads, on the flat cortex with the atlas's regions outlined.

    With ``selection = "encoding"`` each chosen vertex shows its training-run encoding R^2 (the
    score that chose it); otherwise the chosen vertices are shown at 1.
    """
    from atlases.parcellations import atlas_rois
    from atlases.plotting import plot_flat_map

    decoder = target.decoder
    values = np.full(decoder.n_features_in_ // decoder.n_delays, np.nan)
    scores = decoder.selection_scores_
    values[decoder.vertices_] = 1.0 if scores is None else scores[decoder.vertices_]
    label = "selected" if scores is None else "training-run encoding R²"
    return plot_flat_map(values, f"{target.space}: the {decoder.vertices_.size} vertices decoded from",
                         vmax=None if scores is not None else 1.0, cmap="YlOrRd", label=label,
                         outlines=atlas_rois(atlas))


def region_counts(target, atlas: str = "desikan_killiany") -> pd.DataFrame:
    """How many of a decoder's vertices fall in each region of the atlas (both hemispheres), and their share."""
    from atlases.parcellations import atlas_rois

    chosen = np.zeros(target.decoder.n_features_in_ // target.decoder.n_delays, bool)
    chosen[target.decoder.vertices_] = True
    rows = {name: {"vertices_decoded": int((mask & chosen).sum()), "region_vertices": int(mask.sum()),
                   "share_of_decoded": float((mask & chosen).sum() / chosen.sum())}
            for name, mask in atlas_rois(atlas).items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def rank_histogram(target):
    """Rank of each clip's true embedding among all test clips (1 = identified), against the uniform chance."""
    result = target.identification
    n = result.n_clips
    fig = _figure(4.6, 3.2)
    ax = fig.add_subplot()
    ax.hist(result.rank, bins=np.arange(0.5, n + 1.5), color="#4c72b0")
    ax.axhline(1.0, color="0.4", linestyle="--", label="chance (uniform ranks)")
    ax.set_xlabel(f"rank of the true clip among {n} (1 = best)")
    ax.set_ylabel("test clips")
    ax.set_title(f"{target.space}: mean rank {result.values['mean_rank']:.1f} (chance {(n + 1) / 2:.1f})", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def genre_bars(target):
    """Pairwise identification per genre with bootstrap intervals (None without genres)."""
    table = target.identification.by_label
    if table is None:
        return None
    fig = _figure(max(3.5, 0.5 * len(table) + 1.5), 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    err = np.vstack([table["pairwise"] - table["ci_low"], table["ci_high"] - table["pairwise"]])
    ax.bar(x, table["pairwise"], yerr=np.nan_to_num(err), color="#55a868", capsize=3)
    ax.axhline(0.5, color="0.4", linestyle="--", label="chance")
    ax.set_xticks(x, table["genre"], rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("pairwise identification")
    ax.set_title(f"{target.space}: per genre (95% CI over clips)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# -- the report -------------------------------------------------------------------------------

def markdown_report(run, summary: dict, figures: dict[str, str]) -> str:
    """The decoding report: numbers with CIs beside the published ones, the protocol, reconstructions."""
    lines = [f"# brain2music decoding: subject {run.experiment.subject}", ""]
    for space, target in run.targets.items():
        result = target.identification
        low, high = result.ci["pairwise"]
        lines += [f"## {space}", "",
                  f"Pairwise identification **{result.values['pairwise']:.3f}** (95% CI {low:.3f}-{high:.3f}, chance "
                  f"0.5) over {result.n_clips} test clips; decoder: {target.decoder.vertices_.size} vertices, "
                  f"{target.true.shape[1]}-d target, leave-one-run-out CV R^2 {np.mean(target.decoder.cv_scores_):.3f}.",
                  "", result.table().to_markdown(index=False, floatfmt=".4g"), ""]
        for kind in ("identification", "ranks", "genres"):
            if f"{kind}_{space}" in figures:
                lines += [f"![{kind} {space}]({figures[f'{kind}_{space}']})", ""]
        if run.experiment.space == "fsaverage5":
            atlas = run.config.decoding.atlas
            lines += [f"Where the decoder reads ({atlas} regions, both hemispheres):", "",
                      region_counts(target, atlas).to_markdown(floatfmt=".3f"), ""]
            if f"vertices_{space}" in figures:
                lines += [f"![decoded vertices {space}]({figures[f'vertices_{space}']})", ""]
    lines += ["## Beside the published numbers", "",
              "| result | pairwise identification | protocol |", "|---|---|---|"]
    for space, target in run.targets.items():
        lines.append(f"| this run, {space} | {target.identification.values['pairwise']:.3f} | "
                     f"{protocol(run, target)} |")
    lines += [f"| {name} | {value:.3f} | {how} |" for name, value, how in PUBLISHED]
    lines += ["", "Protocol differences to keep in mind: the published numbers are real ds003720 data (60 test clips, "
              "each heard 4 times, 12 training runs); "
              + ("this run is a **simulation** (its test set, runs and embedding differ), so its numbers show that the "
                 "pipeline recovers a planted embedding, not how well brains encode music; "
                 if run.config.data.source == "simulation" else "")
              + "Brain2Music decoded MuLan (not public; CLAP and the caption spaces here are open stand-ins); Ciferri "
              "et al. pooled subjects with functional alignment, a single subject here. Identification is computed on "
              "clip-level embeddings (each clip's windows averaged), standardised by the training samples' mean and "
              "SD per dimension.", ""]
    if run.reconstructions is not None and len(run.reconstructions):
        lines += ["## Reconstructions", "",
                  ("Each reconstruction from the decoded embedding beside its oracle (from the true embedding) and, "
                   "for retrieval, chance (a random library item); "
                   "`tag_r`: correlation of musicnn's 50 MagnaTagATune tag probabilities between original and "
                   "reconstruction (`tag_r_chance`: with the other clips' reconstructions); `pairwise_<space>`: "
                   "identification of the reconstructions re-embedded in that space. Listen: [listen.html](listen.html)."),
                  "", run.reconstructions.to_markdown(index=False, floatfmt=".3f"), ""]
    lines += ["## Methods", "", methods_paragraph(run), ""]
    return "\n".join(lines)


def protocol(run, target) -> str:
    """One line on how this run's number was made."""
    cfg = run.config.decoding
    selection = {"encoding": f"{cfg.n_vertices} vertices by training-run encoding R^2 (nested)",
                 "all": "all vertices", "roi": f"{cfg.atlas} regions {', '.join(cfg.rois)}"}[cfg.selection]
    return (f"{target.true.shape[1]}-d {target.space}, {cfg.window:g}-s windows, {len(target.clip_ids)} test clips, "
            f"{len(target.design.train_clips)} training clips, {selection}")


def roi_vertices(cfg) -> int:
    """Vertices of the decoding config's ROIs (``selection = "roi"``), both hemispheres."""
    from atlases.parcellations import atlas_rois

    masks = atlas_rois(cfg.atlas)
    return int(np.any([masks[name] for name in cfg.rois], axis=0).sum())


def methods_paragraph(run) -> str:
    """A methods paragraph for the decoding analysis, written from the parameters used."""
    cfg = run.config.decoding
    targets = ", ".join(f"{s} ({t.true.shape[1]} dimensions)" for s, t in run.targets.items())
    first = next(iter(run.targets.values()))
    n_runs = first.design.train_samples["run_id"].nunique()
    lags = ", ".join(map(str, cfg.delays))
    selection = {
        "encoding": (f"the {cfg.n_vertices} vertices best predicted by an encoding model of the target "
                     "(leave-one-run-out R^2 on the training runs; the selection was repeated within each "
                     "cross-validation fold, so that no validation or test data informed it)"),
        "all": "all vertices", "roi": f"the vertices of the {cfg.atlas} regions {', '.join(cfg.rois)}"}[cfg.selection]
    if cfg.selection == "roi":
        selection += f" ({roi_vertices(cfg)} vertices in both hemispheres)"
    return (
        f"We decoded {targets} from the responses of {selection}. Responses (z-scored per run) were averaged over "
        f"each {cfg.window:g}-s embedding window (hop {cfg.hop:g} s), lagged by {lags} TR(s); the target embedding "
        f"was averaged over the same window. A ridge regression was fitted for each target dimension, its "
        f"regularisation chosen among {cfg.n_alphas} log-spaced values from {cfg.alpha_min:g} to {cfg.alpha_max:g} by "
        f"leave-one-run-out cross-validation over the {n_runs} training runs (brain2music's ridge solver, "
        f"{first.decoder.form_} form). Test predictions were averaged per clip (test repeats averaged before "
        "decoding). Pairwise identification (Denk et al. 2023) is, for each test clip, the fraction of other test "
        "clips j with corr(decoded_i, true_i) > corr(decoded_i, true_j); N-way top-k accuracy and the mean rank are "
        f"computed among all {first.identification.n_clips} test clips. Confidence intervals are percentile "
        f"bootstrap intervals over test clips ({cfg.n_bootstrap} resamples); p-values come from "
        f"{cfg.n_permutations} permutations, both of the clips' assignment and of clip presentations within "
        "training runs with the decoder refitted (hyperparameters and vertices held).")
