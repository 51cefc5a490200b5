"""The statistics step of the pipeline: permutation maps, variance partitioning, their settings."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from encoding.scoring import r2_score
from encoding.stats.partition import partition_variance, subsets, unique_bootstrap
from encoding.stats.permutation import PermutationResult, permutation_test

MAX_PARTITION_SPACES = 4  # 2^4 - 1 = 15 subset models


@dataclass
class StatisticsResults:
    """Outcome of :func:`run_statistics`.

    Attributes
    ----------
    settings : dict
        The statistics options used (from ``StatisticsConfig``) and what was skipped.
    permutation : dict of str to PermutationResult or None
        ``"r2"`` (or ``"r"``) and ``"split_r2:<band>"``.
    subset_scores : dict of tuple to ndarray or None
        Test R^2 of every subset model, shape (n_vertices,) each.
    atoms : dict of tuple to ndarray or None
        Raw unique (one space) and shared (several) variance, shape (n_vertices,) each.
    unique_tests : dict of str to dict or None
        Per space: bootstrap ``ci_low``, ``ci_high``, ``p`` of its unique variance, and ``p_fdr``
        adjusted over the vertices where the full model is significant (NaN elsewhere).
    notes : list of str
        What was skipped and why.
    timings : dict
        Seconds per part.
    """

    settings: dict
    permutation: dict[str, PermutationResult] | None = None
    subset_scores: dict | None = None
    atoms: dict | None = None
    unique_tests: dict | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def main(self) -> PermutationResult | None:
        """The test of the full model's score."""
        return None if self.permutation is None else self.permutation[self.settings["metric"]]

    def significant(self) -> np.ndarray | None:
        """Vertices significant at ``alpha`` after ``correction`` (None without permutations)."""
        main = self.main
        return None if main is None else main.significant(self.settings["alpha"], self.settings["correction"])


def subset_n_iter(n_iter: int, n_spaces: int, n_bands: int) -> int:
    """Band-weight candidates of a subset model: the full search's density per simplex axis.

    A random search of ``n_iter`` candidates on the ``(n_bands - 1)``-simplex places about
    ``n_iter ** (1 / (n_bands - 1))`` candidates along each axis; a subset of ``n_spaces`` bands
    keeps that density with ``ceil(n_iter ** ((n_spaces - 1) / (n_bands - 1)))`` (one for a single space).
    """
    if n_spaces <= 1:
        return 1
    return int(np.ceil(n_iter ** ((n_spaces - 1) / (n_bands - 1)) - 1e-9))


def fit_subset_models(design, model_cfg, progress: bool = True, full_model=None) -> tuple[dict, dict]:
    """Fit every non-empty subset of the feature spaces with its own search; score each on the test runs.

    Each subset gets the alpha grid of the full model and ``subset_n_iter`` band-weight candidates;
    ``full_model``, when given, is the already fitted model of all spaces.

    Returns
    -------
    scores : dict of tuple of str to ndarray, shape (n_vertices,)
    predictions : dict of tuple of str to ndarray, shape (n_test, n_vertices)
    """
    from encoding.pipeline import make_encoder  # the pipeline runs this module: import when called

    names = list(design.bands)
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
        model.fit(design.X_train[:, columns], design.Y_train, design.groups)
        predictions[subset] = model.predict(design.X_test[:, columns])
        scores[subset] = r2_score(design.Y_test, predictions[subset])
    return scores, predictions


def run_statistics(model, design, cfg, model_cfg, progress: bool = True) -> StatisticsResults:
    """Permutation tests of the test scores and variance partitioning, as ``cfg`` (``StatisticsConfig``) says."""
    settings = dataclasses.asdict(cfg)
    results = StatisticsResults(settings)
    start = time.perf_counter()
    if cfg.n_permutations > 0:
        results.permutation = permutation_test(
            model, design.X_train, design.Y_train, design.groups, design.X_test, design.Y_test,
            n_permutations=cfg.n_permutations, null=cfg.null, scheme=cfg.scheme, block_length=cfg.block_length,
            metric=cfg.metric, split=cfg.null == "refit" and len(design.bands) > 1,
            random_state=cfg.random_state, memory_gb=model_cfg.memory_gb, progress=progress,
        )
        results.timings["permutations"] = round(time.perf_counter() - start, 3)
    n_bands = len(design.bands)
    if cfg.partition and 2 <= n_bands <= MAX_PARTITION_SPACES:
        start = time.perf_counter()
        scores, predictions = fit_subset_models(design, model_cfg, progress, full_model=model)
        results.timings["subset_models"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        results.subset_scores = scores
        results.atoms = partition_variance(scores, list(design.bands))
        tests = unique_bootstrap(design.Y_test, predictions, list(design.bands), cfg.n_bootstrap,
                                 cfg.block_length, cfg.random_state)
        from statsmodels.stats.multitest import multipletests

        # unique variance is tested where the full model predicts significantly (a hierarchical
        # procedure: elsewhere there is no explained variance to partition); vertices without a
        # p-value (constant responses) stay out of the FDR too
        tested = results.significant() if results.permutation is not None else np.ones(design.Y_test.shape[1], bool)
        for values in tests.values():
            values["p_fdr"] = np.full_like(values["p"], np.nan)
            keep = tested & np.isfinite(values["p"])
            if keep.any():
                values["p_fdr"][keep] = multipletests(values["p"][keep], method="fdr_bh")[1]
        results.unique_tests = tests
        results.timings["unique_bootstrap"] = round(time.perf_counter() - start, 3)
    elif cfg.partition and n_bands > MAX_PARTITION_SPACES:
        note = (f"Variance partitioning skipped: {n_bands} feature spaces would need {2**n_bands - 1} subset models "
                f"(at most {MAX_PARTITION_SPACES} spaces).")
        warnings.warn(note, stacklevel=2)
        results.notes.append(note)
    return results
