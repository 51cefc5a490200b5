"""Group-level statistics across subjects on a common surface (or a common set of ROIs).

- :func:`sign_flip_test`: vertex-wise one-sample t-tests of subject maps against zero, with a
  sign-flip permutation null (exact when 2^n_subjects is small, random flips otherwise), FWER
  (step-down, TFCE or clusters on the surface) and FDR through
  :class:`~encoding.stats.permutation.PermutationResult`;
- :func:`roi_mixed_model`: ROI summaries from a linear mixed-effects model (statsmodels
  ``MixedLM``: one fixed effect per ROI, a random intercept per subject), with Wald confidence
  intervals, and Cohen's d per ROI with a bootstrap interval over subjects.
"""

from __future__ import annotations

import warnings
from itertools import product

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from encoding.config import CLUSTER_THRESHOLD
from encoding.stats.permutation import PermutationResult
from encoding.stats.spatial import SurfaceGraph

EXACT_LIMIT = 4096  # enumerate every sign pattern up to this many (12 subjects)


def one_sample_t(maps: np.ndarray) -> np.ndarray:
    """One-sample t statistic of each column against zero, shape (n_vertices,)."""
    maps = np.asarray(maps, dtype=np.float64)
    n = maps.shape[0]
    std = maps.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, maps.mean(axis=0) / (std / np.sqrt(n)), 0.0)


def sign_flip_test(maps: np.ndarray, n_permutations: int = 10000, random_state: int | None = 0,
                   statistic: str = "t", fwer: str = "step-down", graph: SurfaceGraph | None = None,
                   cluster_threshold: float = CLUSTER_THRESHOLD) -> PermutationResult:
    """Sign-flip permutation test of subject maps against zero (one-sided: mean > 0).

    Parameters
    ----------
    maps : ndarray, shape (n_subjects, n_vertices)
        One map per subject (e.g. test correlations), on a common surface or ROI set.
    n_permutations : int
        Random sign patterns when ``2^n_subjects`` exceeds 4,096; otherwise every pattern but
        the identity is used (an exact test).
    random_state : int or None
    statistic : {"t", "mean"}
        The one-sample t, or the mean over subjects. With few subjects the t's variance estimate
        is noisy and its maximum over thousands of vertices heavy-tailed, so max-T loses power;
        the mean suits maps whose null spread is the same at every vertex (Fisher-z correlations:
        about ``1 / sqrt(n_samples - 3)`` everywhere).
    fwer, graph, cluster_threshold
        FWER procedure of the result and the mesh the spatial ones need
        (:class:`~encoding.stats.permutation.PermutationResult`). The statistic is scaled by one
        spread pooled over vertices, not each vertex's own (a vertex's sign-flip spread is its root
        mean square over subjects: standardising by it would turn the mean into a t, whose maximum
        is heavy-tailed with few subjects), so thresholds are in pooled null standard deviations.

    Returns
    -------
    PermutationResult
        ``statistic`` as given, with the null map of every sign pattern.

    Notes
    -----
    A sign flip leaves each vertex's sum of squares unchanged, so every pattern's statistic
    follows from its mean: one matrix product for all patterns.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2 or maps.shape[0] < 2:
        raise ValueError(f"maps must have shape (n_subjects >= 2, n_vertices); got {maps.shape}.")
    if statistic not in ("t", "mean"):
        raise ValueError(f"statistic must be 't' or 'mean', got {statistic!r}.")
    n = maps.shape[0]
    if 2**n <= EXACT_LIMIT:
        patterns = np.array(list(product((1.0, -1.0), repeat=n)))[1:]  # all but the identity
        exact = True
    else:
        rng = np.random.default_rng(random_state)
        patterns = rng.choice((1.0, -1.0), size=(n_permutations, n))
        exact = False
    squares = (maps**2).sum(axis=0)

    def compute(means: np.ndarray) -> np.ndarray:
        if statistic == "mean":
            return means
        variance = np.maximum(squares - n * means**2, 0.0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(variance > 0, means / np.sqrt(variance / n), 0.0)

    observed = compute(maps.mean(axis=0))
    null = np.concatenate([compute(patterns[s:s + 512] @ maps / n).astype(np.float32)
                           for s in range(0, len(patterns), 512)])
    settings = dict(null="sign_flip", exact=exact, n_subjects=n, seed=random_state)
    return PermutationResult(observed, null, statistic, settings, fwer=fwer, graph=graph,
                             cluster_threshold=cluster_threshold, standardise=False)


def roi_mixed_model(table: pd.DataFrame, value: str = "value", roi: str = "roi", subject: str = "subject",
                    n_bootstrap: int = 2000, random_state: int | None = 0) -> pd.DataFrame:
    """Per-ROI effects from a mixed model ``value ~ 0 + C(roi) + (1 | subject)``, with effect sizes.

    Parameters
    ----------
    table : DataFrame
        Long format: one row per (subject, ROI) observation (several per pair are allowed, e.g.
        held-out blocks).
    value, roi, subject : str
        Column names.
    n_bootstrap : int
        Resamples of subjects for the Cohen's d intervals.
    random_state : int or None

    Returns
    -------
    DataFrame indexed by ROI
        ``estimate``, ``ci_low``, ``ci_high`` (95 % Wald), ``z``, ``p`` (two-sided, mixed model);
        ``mean``, ``cohen_d`` of the subject means with ``d_ci_low``, ``d_ci_high`` (percentile
        bootstrap over subjects); ``n_subjects``; ``converged`` and ``optimizer_note`` (statsmodels'
        convergence warnings, e.g. a subject variance on the boundary of its parameter space).
    """
    import statsmodels.formula.api as smf

    missing = [c for c in (value, roi, subject) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}.")
    data = table[[value, roi, subject]].rename(columns={value: "value", roi: "roi", subject: "subject"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = smf.mixedlm("value ~ 0 + C(roi)", data, groups=data["subject"]).fit(reml=True)
    # a subject variance at its boundary (0) is common with few subjects: the fixed effects stand
    note = "; ".join(sorted({str(w.message).split(",")[0] for w in caught if issubclass(w.category,
                                                                                        ConvergenceWarning)}))
    interval = fit.conf_int()
    rows = {}
    means = data.groupby(["subject", "roi"])["value"].mean().unstack("roi")
    rng = np.random.default_rng(random_state)
    for name in means.columns:
        term = f"C(roi)[{name}]"
        subject_means = means[name].dropna().to_numpy()
        d = _cohen_d(subject_means)
        boots = [_cohen_d(rng.choice(subject_means, len(subject_means))) for _ in range(n_bootstrap)]
        rows[name] = dict(estimate=fit.params[term], ci_low=interval.loc[term, 0], ci_high=interval.loc[term, 1],
                          z=fit.tvalues[term], p=fit.pvalues[term], mean=subject_means.mean(), cohen_d=d,
                          d_ci_low=np.nanpercentile(boots, 2.5), d_ci_high=np.nanpercentile(boots, 97.5),
                          n_subjects=len(subject_means), converged=bool(fit.converged), optimizer_note=note)
    return pd.DataFrame.from_dict(rows, orient="index")


def _cohen_d(values: np.ndarray) -> float:
    std = values.std(ddof=1)
    return float(values.mean() / std) if std > 0 else np.nan
