"""Group-level statistics across subjects on a common surface (or a common set of ROIs).

- :func:`sign_flip_test`: vertex-wise one-sample t-tests of subject maps against zero, with a
  sign-flip permutation null (exact when 2^n_subjects is small, random flips otherwise), max-T
  FWER and FDR through :class:`~encoding.stats.permutation.PermutationResult`;
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

from encoding.stats.permutation import PermutationResult, _NullAccumulator, step_down_fwer

EXACT_LIMIT = 4096  # enumerate every sign pattern up to this many (12 subjects)


def one_sample_t(maps: np.ndarray) -> np.ndarray:
    """One-sample t statistic of each column against zero, shape (n_vertices,)."""
    maps = np.asarray(maps, dtype=np.float64)
    n = maps.shape[0]
    std = maps.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, maps.mean(axis=0) / (std / np.sqrt(n)), 0.0)


def sign_flip_test(maps: np.ndarray, n_permutations: int = 10000, random_state: int | None = 0,
                   statistic: str = "t") -> PermutationResult:
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

    Returns
    -------
    PermutationResult
        ``statistic`` as given; p-values, FWER and FDR as for any permutation test, FWER by the
        step-down max statistic (:func:`~encoding.stats.permutation.step_down_fwer`).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2 or maps.shape[0] < 2:
        raise ValueError(f"maps must have shape (n_subjects >= 2, n_vertices); got {maps.shape}.")
    if statistic not in ("t", "mean"):
        raise ValueError(f"statistic must be 't' or 'mean', got {statistic!r}.")
    compute = one_sample_t if statistic == "t" else (lambda values: values.mean(axis=0))
    n = maps.shape[0]
    if 2**n <= EXACT_LIMIT:
        patterns = np.array(list(product((1.0, -1.0), repeat=n)))[1:]  # all but the identity
        exact = True
    else:
        rng = np.random.default_rng(random_state)
        patterns = rng.choice((1.0, -1.0), size=(n_permutations, n))
        exact = False
    observed = compute(maps)
    accumulator = _NullAccumulator(observed, len(patterns))
    everything = np.arange(maps.shape[1])
    for k, signs in enumerate(patterns):
        accumulator.add(everything, [k], compute(maps * signs[:, None])[None])
    result = accumulator.result(statistic, dict(null="sign_flip", exact=exact, n_subjects=n, seed=random_state,
                                                fwer="step-down max statistic"))
    result.step_down = step_down_fwer(observed, (compute(maps * signs[:, None]) for signs in patterns))
    return result


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
