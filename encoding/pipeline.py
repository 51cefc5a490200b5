"""The brain2music pipeline: data -> features -> design -> fit -> scores -> outputs.

Each step is a plain function of the previous step's output and its own config section, so a
notebook can run, inspect or replace any of them; :func:`run_pipeline` chains them and writes the
outputs (:mod:`encoding.report`). The demo is this pipeline on the simulated experiment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoding.config import DataConfig, DesignConfig, FeaturesConfig, ModelConfig, PipelineConfig
from encoding.data import Experiment
from encoding.datasets.bids import load_bids
from encoding.datasets.tables import load_tables
from encoding.design import Design, features_on_trs, make_design
from encoding.features import FeatureCache, FeatureFrames, get_extractor
from encoding.features.reduction import reduce_space
from encoding.model import BandedRidgeEncoder
from encoding.noise_ceiling import cc_norm, explainable_variance, reliable_vertices
from encoding.scoring import correlation_score, r2_score
from encoding.simulation import GroundTruth, simulate_experiment
from encoding.stats import StatisticsResults, run_statistics


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


def load_data(cfg: DataConfig, feature_params: Mapping[str, dict], progress: bool = True
              ) -> tuple[Experiment, GroundTruth | None]:
    """Step 1: the experiment (and the ground truth when simulated)."""
    if cfg.source == "simulation":
        return simulate_experiment(cfg.simulation, feature_params=feature_params, progress=progress)
    if cfg.source == "bids":
        return load_bids(cfg.bids, cfg.preprocessing, progress=progress), None
    if cfg.source == "tables":
        return load_tables(cfg.tables, cfg.preprocessing), None
    raise ValueError(f"Unknown data source {cfg.source!r}.")


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
        memory_gb=cfg.memory_gb, scheduler=cfg.scheduler or None, random_state=cfg.random_state,
        progress_bar=progress,
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
        cv_score=model.cv_scores_.max(axis=0),
        explainable_variance=ev,
        cc_norm=norm,
    )


def run_pipeline(config: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True) -> PipelineRun:
    """Run every step; write the outputs to ``out_dir`` when given.

    Parameters
    ----------
    config : PipelineConfig
    out_dir : path or None
        Output folder (see :func:`encoding.report.write_outputs` for its contents).
    progress : bool
        Show progress bars.

    Returns
    -------
    PipelineRun
    """
    timings: dict[str, float] = {}
    steps = tqdm(total=7 if out_dir else 6, desc="brain2music", disable=not progress)

    def step(name: str, func, *args, **kwargs):
        steps.set_postfix_str(name)
        start = time.perf_counter()
        out = func(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 3)
        steps.update()
        return out

    experiment, truth = step("data", load_data, config.data, config.features.params, progress)
    features = step("features", extract_features, experiment, config.features, progress,
                    truth.features if truth is not None else None)
    design = step("design", build_design, experiment, features, config.features.spaces, config.design)
    model = step("fit", fit_model, design, config.model, progress)
    results = step("scores", score_model, model, design)
    statistics = step("statistics", run_statistics, model, design, config.statistics, config.model, progress)
    run = PipelineRun(config, experiment, design, model, results, truth, timings, statistics)
    if out_dir is not None:
        from encoding.report import write_outputs

        step("outputs", write_outputs, run, Path(out_dir))
    steps.close()
    return run
