"""What float32 can promise about a banded ridge fit, as assertions shared by the numerical tests.

The solver computes in float32 (unit roundoff ``EPS``); GEMM blocking, the OpenBLAS kernel
(Haswell, SkylakeX, Sandybridge, ...) and the number of BLAS threads change the order of the
roundings, so two fits of one problem agree only to what float32 and the conditioning allow:

- CV scores agree within :func:`score_tolerance`.
- The chosen (candidate, alpha) agree wherever the winner beats the runner-up by more than that
  tolerance. Where two choices tie within it, either fit may take either one: the two choices are
  different models (in the batched-fit test, two band weights tying to 1 ulp give predictions
  0.4% apart, coefficients 2e-3 apart: far more than rounding), so there each fit is
  checked against the float64 closed form of *its own* choice, and the choice it took must be
  optimal within the tolerance by the other fit's scores too.
- Coefficients agree with the float64 closed form within the bound of :func:`closed_form`, a perturbation
  bound built from ``EPS`` and the condition number of the penalised (band-scaled) Gram matrix.
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7

# CV R^2 = 1 - (y.y - 2 y.yhat + yhat.yhat) / SST, per run, averaged over runs. Each term is a float32
# dot product over the samples whose size is that of SST (z-scored runs), so its rounding error is
# about sqrt(n) to n ulps of SST (n = 50..150 samples per run here), and one more such layer
# comes from Z = A^T Y over all training samples. 256 ulps (3e-5) covers that with margin; measured
# with the Haswell kernel between batch sizes and against dask workers (1 BLAS thread): at most 5 ulps.
# A candidate or alpha that is truly worse by more than 3e-5 in R^2 is not a tie and must not be chosen.
SCORE_ULPS = 256

# Norm-wise perturbation bound of a linear solve (Higham, Accuracy and Stability, ch. 7):
# ||du|| <= c EPS (kappa ||u|| + ||A^-1|| ||db||), with c growing with the length of the float32 dot
# products that form the Gram matrix, the eigendecomposition and X^T y: about sqrt(n) for rounding
# errors of random sign, which is what COEF_ULPS * sqrt(n_samples) plays. Measured with Haswell,
# SkylakeX and Sandybridge kernels and 1 or 2 threads, the solver's error is at most ~0.1 of this bound
# (``coef_error_ratio``). The bound is ~5e-5 on the batched-fit and dask problems and 1e-5..7e-3 on
# the brute-force ones, so a coefficient wrong by 1e-2 fails, except where float32 itself cannot
# promise that much: alpha = 0.1 with a band weight of 2e-3 (kappa ~ 1e4) has a bound of 3e-2.
COEF_ULPS = 1.0


def score_tolerance(*scores) -> np.ndarray:
    """Tolerance on CV R^2: SCORE_ULPS ulps of the scores' magnitude (at least 1, R^2's scale)."""
    magnitude = np.max([np.abs(np.asarray(s, dtype=np.float64)) for s in scores], axis=0)
    return SCORE_ULPS * EPS * np.maximum(1.0, magnitude)


def _scales(bands, gamma, n_features):
    scale = np.empty(n_features)
    for cols, g in zip(bands.values(), gamma):
        scale[cols] = np.sqrt(g)
    return scale


def closed_form(X, Y, bands, gamma, alpha):
    """Float64 banded ridge weights for one (gamma, alpha) and their float32 error bound per vertex.

    Solves the band-scaled problem the solver works with, ``(S G S + alpha I) u = S X^T y`` with
    ``w = S u`` (so a near-zero band weight does not inflate the condition number).

    Returns
    -------
    W : ndarray, shape (n_features, n_vertices)
    bound : ndarray, shape (n_vertices,)
        Float32 bound on ``||w_float32 - W||_2``:
        ``c EPS ||S|| (kappa ||u|| + ||S|| ||X|| ||y|| / (lam_min + alpha))``, with
        ``kappa = (lam_max + alpha) / (lam_min + alpha)`` the condition number of the penalised
        scaled Gram matrix (the kernel ``X S^2 X^T`` when features outnumber samples: the weights
        live in its row space, and the null space of ``S G S`` gets no error) and
        ``c = COEF_ULPS sqrt(n_samples)``.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    scale = _scales(bands, gamma, X.shape[1])
    Xs = X * scale
    lam, V = np.linalg.eigh(Xs.T @ Xs)
    lam = np.clip(lam, 0, None)
    U = V @ ((V.T @ (Xs.T @ Y)) / (lam + alpha)[:, None])
    if X.shape[1] > X.shape[0]:  # dual form: the solver works in the n-dimensional kernel space, whose
        lam = np.clip(np.linalg.eigvalsh(Xs @ Xs.T), 0, None)  # spectrum sets the conditioning
    kappa = (lam[-1] + alpha) / (lam[0] + alpha)
    norm_x = np.sqrt(np.linalg.eigvalsh(X.T @ X)[-1])
    s = scale.max()
    c = COEF_ULPS * np.sqrt(len(X))
    rhs_term = s * norm_x * np.linalg.norm(Y, axis=0) / (lam[0] + alpha)  # ||A^-1|| ||db|| / (c EPS)
    bound = c * EPS * s * (kappa * np.linalg.norm(U, axis=0) + rhs_term)
    return scale[:, None] * U, bound


def _picks(result):
    return {(int(c), float(a)) for c, a in zip(result.best_candidate, result.best_alpha)}


def coef_error_ratio(result, X, Y, bands) -> np.ndarray:
    """``||coef - closed form||_2 / bound`` per vertex, at each vertex's own chosen hyperparameters."""
    Y = np.asarray(Y).reshape(len(X), -1)
    ratio = np.empty(Y.shape[1])
    for c, a in _picks(result):
        vertices = np.flatnonzero((result.best_candidate == c) & (result.best_alpha == a))
        W, bound = closed_form(X, Y[:, vertices], bands, result.candidates[c], a)
        error = np.linalg.norm(result.coef[:, vertices].astype(np.float64) - W, axis=0)
        ratio[vertices] = error / np.maximum(bound, np.finfo(np.float64).tiny)
    return ratio


def assert_coef_matches_closed_form(result, X, Y, bands) -> None:
    """Every vertex's coefficients equal the float64 closed form of its chosen (candidate, alpha)
    within the float32 bound of :func:`closed_form`."""
    ratio = coef_error_ratio(result, X, Y, bands)
    bad = np.flatnonzero(ratio > 1)
    assert bad.size == 0, (f"{bad.size} vertices exceed the float32 bound on the coefficients, e.g. vertex "
                           f"{bad[0]} at {ratio[bad[0]]:.3g} times the bound")


def assert_same_fit(a, b, X, Y, bands) -> None:
    """Two fits of one problem (other batch sizes, workers, BLAS kernel or threads) agree as far as
    float32 promises: scores, choices outside ties, and coefficients."""
    tol = score_tolerance(a.cv_scores, b.cv_scores)
    np.testing.assert_array_less(np.abs(a.cv_scores.astype(np.float64) - b.cv_scores), tol,
                                 err_msg="CV scores differ by more than float32 rounding")
    columns = np.arange(a.cv_scores.shape[1])
    differ = (a.best_candidate != b.best_candidate) | (a.best_alpha != b.best_alpha)
    # a vertex may change its choice only between candidates that tie within the tolerance, by
    # both fits' scores; cv_scores hold each candidate's best alpha only, so a change of alpha
    # within one candidate cannot be a visible tie and is not allowed.
    for first, second in ((a, b), (b, a)):
        best = first.cv_scores.max(axis=0)
        other = first.cv_scores[second.best_candidate, columns]
        worse = differ & (best - other > tol[first.best_candidate, columns])
        assert not worse.any(), (f"vertices {np.flatnonzero(worse)[:5]} chose a candidate worse than the best by "
                                 f"more than float32 rounding: {(best - other)[worse][:5]}")
    alpha_only = differ & (a.best_candidate == b.best_candidate)
    assert not alpha_only.any(), f"vertices {np.flatnonzero(alpha_only)[:5]} chose another alpha of one candidate"
    # every vertex, tied or not: each fit's coefficients are the float64 solution of its own choice to
    # within the float32 bound (where the choices agree, the two fits are thus within twice the bound)
    assert_coef_matches_closed_form(a, X, Y, bands)
    assert_coef_matches_closed_form(b, X, Y, bands)
