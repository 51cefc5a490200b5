"""The brain2music pipeline: data -> features -> design -> fit -> scores -> statistics -> outputs.

Each step is a plain function of the previous step's output and its own config section, so a
notebook can run, inspect or replace any of them; :func:`run_pipeline` chains them and writes the
outputs (:mod:`encoding.report`). The demo is this pipeline on the simulated experiment.

Before any heavy work, :func:`run_pipeline` claims the output folder (:class:`encoding.io.RunFolder`:
outputs are staged beside it and moved into place whole when the run completes) and checks that
every feature space can run (:func:`preflight`); right after loading, the options that depend on
the data are checked against it (:func:`check_against_data`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encoding.config import (
    SPATIAL_METHODS,
    DataConfig,
    DesignConfig,
    FeaturesConfig,
    ModelConfig,
    PipelineConfig,
    StatisticsConfig,
)
from encoding.data import Experiment
from encoding.datasets.bids import load_bids
from encoding.datasets.tables import load_tables
from encoding.design import Design, features_on_trs, make_design
from encoding.errors import ConfigError, DataError, OutputError
from encoding.features import FeatureCache, FeatureFrames, get_extractor
from encoding.features.reduction import reduce_space
from encoding.io import RunFolder
from encoding.model import BandedRidgeEncoder, resolve_backend
from encoding.noise_ceiling import cc_norm, explainable_variance, reliable_vertices
from encoding.ridge.backend import backend_module
from encoding.scoring import correlation_score, r2_score
from encoding.simulation import GroundTruth, simulate_experiment
from encoding.stats import (
    PermutationResult,
    fdr_within,
    partition_variance,
    permutation_test,
    subsets,
    unique_bootstrap,
)
from encoding.stats.bootstrap import roi_intervals
from encoding.stats.permutation import longest_block, shortest_permutable_run
from encoding.stats.report import summary_regions
from encoding.stats.spatial import SurfaceGraph, fsaverage5_graph

MAX_PARTITION_SPACES = 4  # 2^4 - 1 = 15 subset models


@dataclass
class EncodingResults:
    """Per-vertex results of an encoding fit.

    Attributes
    ----------
    band_names : list of str
        Feature spaces, in the order of the band axes below.
    test_r2 : ndarray, shape (n_vertices,)
        R^2 on the held-out test runs (repeats averaged).
    test_r : ndarray, shape (n_vertices,)
        Pearson correlation on the test runs.
    split_r2 : ndarray, shape (n_bands, n_vertices)
        Each band's share of the test R^2 (sums to ``test_r2``).
    best_alphas : ndarray, shape (n_bands, n_vertices)
        Chosen regularisation per band and vertex.
    cv_score : ndarray, shape (n_vertices,)
        Best leave-one-run-out cross-validation R^2 (mean over folds).
    explainable_variance : ndarray, shape (n_vertices,) or None
        Noise ceiling of a single presentation (bias-corrected), from the test repeats.
    cc_norm : ndarray, shape (n_vertices,) or None
        Test correlation divided by its ceiling CC_max (Schoppe et al. 2016).
    """

    band_names: list[str]
    test_r2: np.ndarray
    test_r: np.ndarray
    split_r2: np.ndarray
    best_alphas: np.ndarray
    cv_score: np.ndarray
    explainable_variance: np.ndarray | None = None
    cc_norm: np.ndarray | None = None

    def _repr_html_(self) -> str:
        from encoding.io import html_summary

        r2 = self.test_r2[np.isfinite(self.test_r2)]
        rows = {"feature spaces": ", ".join(self.band_names), "vertices": f"{self.test_r2.size:,}",
                "test R² (median, 99th percentile)": f"{np.median(r2):.3f}, {np.percentile(r2, 99):.3f}",
                "vertices with test R² > 0.05": f"{int((r2 > 0.05).sum()):,}"}
        if self.cc_norm is not None:
            rows["CC_norm (median over reliable vertices)"] = (
                f"{np.nanmedian(self.cc_norm[reliable_vertices(self.explainable_variance)]):.3f}"
                if reliable_vertices(self.explainable_variance).any() else "n/a")
        return html_summary("EncodingResults", rows)

    def view(self, quantity: str = "test_r2", threshold: float | None = 0.05):
        """An interactive 3-D map of ``quantity`` (a name of :meth:`arrays` or ``split_r2_<space>``), for
        Jupyter or ``.save_as_html`` (:func:`atlases.plotting.view_surface`; fsaverage5 results only)."""
        from atlases.plotting import view_surface

        arrays = self.arrays()
        arrays.update({f"split_r2_{name}": self.split_r2[k] for k, name in enumerate(self.band_names)})
        maps = [name for name, value in arrays.items() if np.ndim(value) == 1 and np.size(value) == self.test_r2.size]
        if quantity not in maps:
            raise ValueError(f"No per-vertex map {quantity!r}; choose from {', '.join(maps)}.")
        return view_surface(arrays[quantity], quantity, threshold=threshold)

    def arrays(self) -> dict[str, np.ndarray]:
        """The results as named arrays (the layout of ``results.npz``; noise ceilings when there are repeats)."""
        arrays = {
            "band_names": np.array(self.band_names),
            "test_r2": self.test_r2,
            "test_r": self.test_r,
            "split_r2": self.split_r2,
            "best_alphas": self.best_alphas,
            "cv_score": self.cv_score,
        }
        if self.explainable_variance is not None:
            arrays.update(explainable_variance=self.explainable_variance, cc_norm=self.cc_norm,
                          reliable=reliable_vertices(self.explainable_variance))
        return arrays


@dataclass
class StatisticsResults:
    """Outcome of :func:`run_statistics`.

    Attributes
    ----------
    settings : dict
        The statistics options used (from ``StatisticsConfig``).
    permutation : dict of str to PermutationResult or None
        ``"r2"`` (or ``"r"``) and ``"split_r2:<band>"``.
    subset_scores : dict of tuple to ndarray or None
        Test R^2 of every subset model, shape (n_vertices,) each; NaN where the subset models were
        not fitted (:func:`partition_targets`).
    atoms : dict of tuple to ndarray or None
        Raw unique (one space) and shared (several) variance, shape (n_vertices,) each; NaN where
        the subset models were not fitted.
    unique_tests : dict of str to dict or None
        Per space: bootstrap ``ci_low``, ``ci_high``, ``p`` of its unique variance, and ``p_fdr``
        adjusted over the vertices where the full model is significant (NaN elsewhere).
    rois : DataFrame or None
        Per ROI (:func:`encoding.stats.report.summary_regions`): mean test R^2 and unique variance
        with block-bootstrap 95 % intervals (:func:`encoding.stats.bootstrap.roi_intervals`).
    notes : list of str
        What was skipped and why.
    timings : dict
        Seconds per part.
    profile : dict
        The refit null's cost: seconds, GEMM seconds and flops, scoring seconds
        (:func:`~encoding.stats.permutation.permutation_test`'s ``profile``).
    """

    settings: dict
    permutation: dict[str, PermutationResult] | None = None
    subset_scores: dict | None = None
    atoms: dict | None = None
    unique_tests: dict | None = None
    rois: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)

    @property
    def main(self) -> PermutationResult | None:
        """The test of the full model's score."""
        return None if self.permutation is None else self.permutation[self.settings["metric"]]

    def significant(self) -> np.ndarray | None:
        """Vertices significant at ``alpha`` after ``correction`` (None without permutations)."""
        main = self.main
        return None if main is None else main.significant(self.settings["alpha"], self.settings["correction"])


@dataclass
class SharedFit:
    """One subject's part of the models a study fitted once for several subjects with the same design.

    Subjects who heard the same clips in the same runs have the same design matrices; their
    responses, side by side, are fitted once (:func:`encoding.study.fit_shared`): every
    band-weight candidate is factorized once for all of them, and each vertex's model is the one
    its own responses would get alone.

    Attributes
    ----------
    design : Design
        This subject's design.
    model : BandedRidgeEncoder
        This subject's columns of the shared fit (:meth:`BandedRidgeEncoder.select_targets`).
    subset_predictions : dict of tuple of str to ndarray, shape (n_test, n_vertices), or None
        Test predictions of the variance-partitioning subset models, fitted the same way.
    subjects : list of str
        Every subject of the shared fit.
    timings : dict
        Seconds of the shared fit and subset models (for all its subjects together).
    """

    design: Design
    model: BandedRidgeEncoder
    subset_predictions: dict | None
    subjects: list[str]
    timings: dict


@dataclass
class PipelineRun:
    """Everything a pipeline run produced (``truth`` only for simulations)."""

    config: PipelineConfig
    experiment: Experiment
    design: Design
    model: BandedRidgeEncoder
    results: EncodingResults
    truth: GroundTruth | None = None
    timings: dict[str, float] = field(default_factory=dict)
    statistics: StatisticsResults | None = None
    shared_fit: dict | None = None


def preflight(config: PipelineConfig) -> None:
    """Check, before any heavy work, that every feature space of the run can be computed here.

    Each extractor is built with its parameters and asked to load what it needs (a network's
    weights, cached for the extraction that follows); the simulation's planted spaces count too.

    Raises
    ------
    UserError
        A space whose parameters are refused or whose model cannot be loaded, with what to do.
    """
    try:
        backend_module(resolve_backend(config.model.backend))
    except (ImportError, RuntimeError) as err:
        raise ConfigError(f"model.backend = {config.model.backend!r} cannot run here ({err}); use 'auto' or "
                          "'numpy'.") from None
    caches = {"features.cache": config.features.cache, "model.cache": config.model.cache}
    if config.data.source == "bids":
        caches["data.bids.cache"] = config.data.bids.cache
    for key, folder in caches.items():
        if folder:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=folder).close()
            except OSError as err:
                raise OutputError(f"{key} = {folder!r} cannot be written ({err.strerror or err}); choose a writable "
                                  "folder or leave it empty.") from None
    provided = set(config.data.regressor_names())
    spaces = list(config.features.spaces)
    if config.data.source == "simulation":
        spaces += [s for s in config.data.simulation.territories if s not in spaces]
    for space in spaces:
        if space not in provided:
            get_extractor(space, **config.features.params.get(space, {})).preflight()


def load_data(cfg: DataConfig, feature_params: Mapping[str, dict], progress: bool = True
              ) -> tuple[Experiment, GroundTruth | None]:
    """Step 1: the experiment (and the ground truth when simulated)."""
    if cfg.source == "simulation":
        return simulate_experiment(cfg.simulation, feature_params=feature_params, progress=progress)
    if cfg.source == "bids":
        return load_bids(cfg.bids, cfg.preprocessing, progress=progress), None
    return load_tables(cfg.tables, cfg.preprocessing), None


def check_against_data(config: PipelineConfig, experiment: Experiment) -> None:
    """Step 1b: the options that depend on the data, checked before features and fit.

    Raises
    ------
    ConfigError
        Naming the option, the run at fault and the largest value that would work.
    DataError
        When the experiment lacks what the pipeline needs (test runs to score on).
    """
    if not experiment.test_runs:
        raise DataError(f"The experiment {experiment.subject!r} has no test runs to score on: name a test task "
                        "(data.bids.test_task), test runs (data.bids.test_runs) or test blocks "
                        "(data.tables.test_blocks).")
    shortest = min(experiment.runs, key=lambda r: r.n_trs)
    delays = config.design.delays
    if max(abs(d) for d in delays) >= shortest.n_trs:
        raise ConfigError(f"design.delays go up to {max(delays)} TRs but run {shortest.run_id!r} has only "
                          f"{shortest.n_trs} volumes.")
    stats = config.statistics
    if stats.n_permutations > 0 and stats.fwer in SPATIAL_METHODS and experiment.space != "fsaverage5":
        raise ConfigError(f"statistics.fwer = {stats.fwer!r} needs data on fsaverage5's mesh, but these data are "
                          f"{experiment.space!r} ({experiment.n_vertices:,} targets); use 'step-down' or 'max'.")
    if stats.n_permutations > 0 and stats.null in ("refit", "selection"):
        run = min(experiment.train_runs, key=lambda r: r.n_trs)
        _check_block_length(stats, run.n_trs, f"run {run.run_id!r}")
    pca = config.features.pca
    for space in pca:
        if all(space in run.regressors for run in experiment.runs):
            raise ConfigError(f"features.pca.{space}: {space!r} is a regressor of the data, not an extracted "
                              "space; PCA applies to extracted spaces only.")


def _check_block_length(stats: StatisticsConfig, n_samples: int, what: str) -> None:
    if n_samples < shortest_permutable_run(stats.scheme, stats.block_length):
        longest = longest_block(stats.scheme, n_samples)
        raise ConfigError(
            f"statistics.block_length = {stats.block_length} TRs is too long for {what} ({n_samples} volumes): a "
            f"permuted run must hold at least two blocks, or every permutation leaves it as it is and p-values are 1. "
            f"Use at most {longest}.")


def extract_features(experiment: Experiment, cfg: FeaturesConfig, progress: bool = True,
                     extracted: Mapping[str, dict[str, FeatureFrames]] | None = None
                     ) -> dict[str, dict[str, FeatureFrames]]:
    """Step 2: every configured feature space of every clip (spaces the runs carry as regressors excepted).

    ``extracted`` holds spaces already computed with the same parameters (a simulation's planted
    spaces), which are reused. Spaces named in ``cfg.pca`` are reduced by PCA fitted on the
    training clips; what was kept is recorded in ``experiment.info["pca"]``.
    """
    cache = FeatureCache(cfg.cache) if cfg.cache else None
    extracted = extracted or {}
    features = {
        space: extracted[space] if space in extracted
        else get_extractor(space, **cfg.params.get(space, {})).extract(experiment.clips, progress, cache)
        for space in cfg.spaces
        if not all(space in run.regressors for run in experiment.runs)
    }
    train_clips = [c for run in experiment.train_runs for c in run.events["clip_id"]]
    for space, n_components in cfg.pca.items():
        if space in features:
            dims = next(iter(features[space].values())).n_dims
            if n_components > dims:
                raise ConfigError(f"features.pca.{space} = {n_components} but {space!r} has {dims} dimensions; "
                                  f"ask for at most {dims} components.")
            features[space], info = reduce_space(features[space], train_clips, n_components)
            experiment.info.setdefault("pca", {})[space] = info
    return features


def build_design(experiment: Experiment, features: Mapping[str, Mapping[str, FeatureFrames]],
                 spaces: list[str], cfg: DesignConfig) -> Design:
    """Step 3: features on the TR grid, z-scored, delayed and stacked with the responses.

    ``spaces`` sets the band order; a space missing from ``features`` comes from the runs' regressors.
    """
    aligned = features_on_trs(experiment, features)
    tr_features = {}
    for space in spaces:
        if space in aligned:
            tr_features[space] = aligned[space]
            continue
        lacking = [r.run_id for r in experiment.runs if space not in r.regressors]
        if lacking:
            raise ValueError(f"Feature space {space!r} was neither extracted nor given as a regressor of runs {lacking}.")
        tr_features[space] = {r.run_id: r.regressors[space] for r in experiment.runs}
    return make_design(experiment, tr_features, cfg.delays)


def make_encoder(bands: Mapping[str, slice], cfg: ModelConfig, progress: bool = True,
                 n_iter: int | None = None) -> BandedRidgeEncoder:
    """The (unfitted) estimator ``cfg`` describes, for ``bands``; ``n_iter`` overrides ``cfg.n_iter``."""
    return BandedRidgeEncoder(
        bands=bands, alphas=cfg.alphas, n_iter=cfg.n_iter if n_iter is None else n_iter,
        concentration=cfg.concentration, form=cfg.form, strategy=cfg.strategy, backend=cfg.backend,
        memory_gb=cfg.memory_gb, scheduler=cfg.scheduler or None, cache=cfg.cache or None,
        search=cfg.search, screen=cfg.screen_r2,
        random_state=cfg.random_state, progress_bar=progress,
    )


def fit_model(design: Design, cfg: ModelConfig, progress: bool = True) -> BandedRidgeEncoder:
    """Step 4: banded ridge, leave-one-run-out over the training runs."""
    return make_encoder(design.bands, cfg, progress).fit(design.X_train, design.Y_train, design.groups)


def score_model(model: BandedRidgeEncoder, design: Design) -> EncodingResults:
    """Step 5: test-set scores, noise ceilings (with test repeats) and the chosen hyperparameters, per vertex."""
    prediction = model.predict(design.X_test)
    test_r = correlation_score(design.Y_test, prediction)
    ev = norm = None
    if design.Y_test_repeats is not None and design.Y_test_repeats.shape[0] >= 2:
        ev = explainable_variance(design.Y_test_repeats).astype(np.float32)
        norm = cc_norm(test_r, design.Y_test_repeats).astype(np.float32)
    return EncodingResults(
        band_names=model.band_names_,
        test_r2=r2_score(design.Y_test, prediction),
        test_r=test_r,
        split_r2=model.score_split(design.X_test, design.Y_test),
        best_alphas=model.best_alphas_,
        cv_score=np.nanmax(model.cv_scores_, axis=0),
        explainable_variance=ev,
        cc_norm=norm,
    )


def subset_n_iter(n_iter: int, n_spaces: int, n_bands: int) -> int:
    """Band-weight candidates of a subset model: the full search's density per simplex axis.

    A random search of ``n_iter`` candidates on the ``(n_bands - 1)``-simplex places about
    ``n_iter ** (1 / (n_bands - 1))`` candidates along each axis; a subset of ``n_spaces`` bands
    keeps that density with ``ceil(n_iter ** ((n_spaces - 1) / (n_bands - 1)))`` (one for a single space).
    """
    if n_spaces <= 1:
        return 1
    return int(np.ceil(n_iter ** ((n_spaces - 1) / (n_bands - 1)) - 1e-9))


def partitions(cfg: StatisticsConfig, n_bands: int) -> bool:
    """Whether the statistics step partitions the variance of ``n_bands`` feature spaces."""
    return cfg.partition and 2 <= n_bands <= MAX_PARTITION_SPACES


def fit_subset_models(design: Design, model_cfg: ModelConfig, progress: bool = True,
                      full_model: BandedRidgeEncoder | None = None, targets: np.ndarray | None = None
                      ) -> tuple[dict, dict]:
    """Fit every non-empty subset of the feature spaces with its own search; score each on the test runs.

    Each subset gets the alpha grid of the full model and ``subset_n_iter`` band-weight candidates;
    ``full_model``, when given, is the already fitted model of all spaces. A vertex's model depends
    on its own responses only, so fitting the subset models on ``targets`` alone gives those
    vertices what a fit on every vertex would (up to float32 rounding and candidate ties).

    Parameters
    ----------
    design : Design
    model_cfg : ModelConfig
    progress : bool
    full_model : BandedRidgeEncoder or None
    targets : ndarray of bool, shape (n_vertices,), or None
        The vertices whose variance is partitioned (:func:`partition_targets`); the other
        vertices' subset-model scores and predictions are NaN (the full model's stay whole).
        None: every vertex.

    Returns
    -------
    scores : dict of tuple of str to ndarray, shape (n_vertices,)
    predictions : dict of tuple of str to ndarray, shape (n_test, n_vertices)
    """
    names = list(design.bands)
    columns_fitted = slice(None) if targets is None else np.flatnonzero(targets)
    Y_train = design.Y_train[:, columns_fitted]
    scores, predictions = {}, {}
    for subset in subsets(names):
        if full_model is not None and len(subset) == len(names):
            predictions[subset] = full_model.predict(design.X_test)
            scores[subset] = r2_score(design.Y_test, predictions[subset])
            continue
        columns = np.concatenate([np.arange(design.bands[s].start, design.bands[s].stop) for s in subset])
        bands, start = {}, 0
        for s in subset:
            width = design.bands[s].stop - design.bands[s].start
            bands[s] = slice(start, start + width)
            start += width
        model = make_encoder(bands, model_cfg, progress, subset_n_iter(model_cfg.n_iter, len(subset), len(names)))
        model.fit(design.X_train[:, columns], Y_train, design.groups)
        fitted = model.predict(design.X_test[:, columns])
        if targets is None:
            predictions[subset] = fitted
        else:
            predictions[subset] = np.full(design.Y_test.shape, np.nan, dtype=fitted.dtype)
            predictions[subset][:, columns_fitted] = fitted
        scores[subset] = r2_score(design.Y_test, predictions[subset])
    return scores, predictions


def partition_targets(model: BandedRidgeEncoder, cfg: StatisticsConfig,
                      rois: Mapping[str, np.ndarray] | None = None) -> np.ndarray | None:
    """The vertices whose variance the statistics step partitions: the tested family and the ROIs.

    With ``cfg.family == "searched"`` the permutation test, and so the hierarchical test of unique
    variance within its significant vertices, considers only the vertices the fit's screen kept
    (``model.searched_``); the subset models are fitted there and on the ROIs' vertices (whose
    means get intervals), and other vertices' atoms are NaN. ``family == "all"``: None (every vertex).
    """
    if cfg.family == "all":
        return None
    targets = np.asarray(model.searched_, dtype=bool).copy()
    for mask in (rois or {}).values():
        targets |= np.asarray(mask, dtype=bool)
    return targets


def run_statistics(model: BandedRidgeEncoder, design: Design, cfg: StatisticsConfig, model_cfg: ModelConfig,
                   progress: bool = True, rois: Mapping[str, np.ndarray] | None = None,
                   graph: SurfaceGraph | None = None,
                   subset_predictions: Mapping[tuple, np.ndarray] | None = None) -> StatisticsResults:
    """Step 6: permutation tests of the test scores, variance partitioning and ROI intervals, as ``cfg`` says.

    ``rois`` (vertex masks, e.g. :func:`encoding.stats.report.summary_regions`) get their mean test
    R^2 and unique variance with block-bootstrap intervals (``cfg.n_bootstrap`` resamples).
    ``graph`` (the mesh of fsaverage5 data, :func:`encoding.stats.spatial.fsaverage5_graph`) lets
    the spatial FWER procedures run. ``subset_predictions``: the subset models' test predictions
    when they were already fitted (:class:`SharedFit`).
    """
    settings = dataclasses.asdict(cfg)
    results = StatisticsResults(settings)
    start = time.perf_counter()
    if cfg.n_permutations > 0:
        results.permutation = permutation_test(
            model, design.X_train, design.Y_train, design.groups, design.X_test, design.Y_test,
            n_permutations=cfg.n_permutations, null=cfg.null, scheme=cfg.scheme, block_length=cfg.block_length,
            metric=cfg.metric, split=cfg.null != "test" and len(design.bands) > 1,
            random_state=cfg.random_state, memory_gb=model_cfg.memory_gb, fwer=cfg.fwer, graph=graph,
            cluster_threshold=cfg.cluster_threshold, standardise=cfg.standardise,
            tested=model.searched_ if cfg.family == "searched" else None, progress=progress,
            profile=results.profile,
        )
        results.main.fwer_p_values(progress=progress)  # TFCE takes a while: here, under the step's bar
        results.timings["permutations"] = round(time.perf_counter() - start, 3)
    n_bands = len(design.bands)
    if partitions(cfg, n_bands):
        start = time.perf_counter()
        if subset_predictions is None:
            scores, predictions = fit_subset_models(design, model_cfg, progress, full_model=model,
                                                    targets=partition_targets(model, cfg, rois))
            results.timings["subset_models"] = round(time.perf_counter() - start, 3)
        else:
            predictions = dict(subset_predictions)
            scores = {subset: r2_score(design.Y_test, p) for subset, p in predictions.items()}
        start = time.perf_counter()
        results.subset_scores = scores
        results.atoms = partition_variance(scores, list(design.bands))
        tests = unique_bootstrap(design.Y_test, predictions, list(design.bands), cfg.n_bootstrap,
                                 cfg.block_length, cfg.random_state)
        # unique variance is tested where the full model predicts significantly (a hierarchical
        # procedure: elsewhere there is no explained variance to partition)
        tested = results.significant() if results.permutation is not None else np.ones(design.Y_test.shape[1], bool)
        for values in tests.values():
            values["p_fdr"] = fdr_within(values["p"], tested)
        results.unique_tests = tests
        results.timings["unique_bootstrap"] = round(time.perf_counter() - start, 3)
    elif cfg.partition and n_bands > MAX_PARTITION_SPACES:
        note = (f"Variance partitioning skipped: {n_bands} feature spaces would need {2**n_bands - 1} subset models "
                f"(at most {MAX_PARTITION_SPACES} spaces).")
        warnings.warn(note, stacklevel=2)
        results.notes.append(note)
    if rois:
        start = time.perf_counter()
        if results.atoms is None:
            predictions = {tuple(design.bands): model.predict(design.X_test)}
        results.rois = roi_intervals(design.Y_test, predictions, list(design.bands), rois, cfg.n_bootstrap,
                                     cfg.block_length, cfg.random_state)
        results.timings["roi_intervals"] = round(time.perf_counter() - start, 3)
    return results


def run_pipeline(config: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True,
                 experiment: Experiment | None = None, truth: GroundTruth | None = None,
                 shared: SharedFit | None = None) -> PipelineRun:
    """Run every step; write the outputs to ``out_dir`` when given.

    Parameters
    ----------
    config : PipelineConfig
    out_dir : path or None
        Output folder (see :func:`encoding.report.write_outputs` for its contents).
    progress : bool
        Show progress bars.
    experiment, truth : optional
        An experiment already loaded (a study loads its subjects first); else ``config.data`` is loaded.
    shared : SharedFit, optional
        This subject's design and models from a fit shared with other subjects (a study): the
        features, design and fit steps (and the subset models) are not run again.

    Returns
    -------
    PipelineRun
    """
    folder = RunFolder(out_dir) if out_dir is not None else None  # checked and claimed before any work
    step = Steps(7 if out_dir else 6, "brain2music", progress)
    timings = step.timings
    done = False
    try:
        preflight(config)
        if experiment is None:
            experiment, truth = step("data", load_data, config.data, config.features.params, progress)
        else:
            step.skip()
        check_against_data(config, experiment)
        if shared is None:
            features = step("features", extract_features, experiment, config.features, progress,
                            truth.features if truth is not None else None)
            design = step("design", build_design, experiment, features, config.features.spaces, config.design)
        else:
            step.skip(2)
            design = shared.design
        if config.statistics.n_permutations > 0 and config.statistics.null == "test":
            _check_block_length(config.statistics, len(design.Y_test), "the test set (repeats averaged)")
        if shared is None:
            model = step("fit", fit_model, design, config.model, progress)
        else:
            step.skip()
            model = shared.model
        results = step("scores", score_model, model, design)
        statistics = step("statistics", run_statistics, model, design, config.statistics, config.model, progress,
                          summary_regions(experiment, config.statistics.atlas),
                          fsaverage5_graph() if experiment.space == "fsaverage5" else None,
                          None if shared is None else shared.subset_predictions)
        run = PipelineRun(config, experiment, design, model, results, truth, timings, statistics,
                          None if shared is None else {"subjects": shared.subjects, "timings_s": shared.timings})
        if folder is not None:
            from encoding.report import write_outputs

            step("outputs", write_outputs, run, folder.staging)
            folder.commit()
        done = True
    finally:
        step.close(done)
        if folder is not None:
            folder.discard()  # nothing is left behind unless committed
    return run


class Steps:
    """A progress bar over the named steps of a run that times each step.

    ``steps(name, func, *args)`` runs ``func(*args)``, records its seconds in ``timings[name]``
    and advances the bar; ``close(done)`` clears the bar of a failed run, so that the error message
    stands on its own line.
    """

    def __init__(self, total: int, desc: str, progress: bool = True):
        self.timings: dict[str, float] = {}
        self._bar = tqdm(total=total, desc=desc, disable=not progress, delay=0.5)

    def __call__(self, name: str, func, *args, **kwargs):
        self._bar.set_postfix_str(name, refresh=False)
        start = time.perf_counter()
        out = func(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - start, 3)
        self._bar.update()
        return out

    def skip(self, n: int = 1) -> None:
        """Advance past ``n`` steps that have nothing to do."""
        self._bar.update(n)

    def close(self, done: bool) -> None:
        self._bar.leave = done
        self._bar.close()
