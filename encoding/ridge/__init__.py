"""Banded ridge solver: design factorizations shared across vertices, folds and permutations.

:class:`~encoding.ridge.problem.RidgeProblem` holds what depends on the design only (Gram or kernel
matrices and their eigendecompositions per band-weight candidate);
:func:`~encoding.ridge.search.fit_banded_ridge` searches band weights and alphas by
leave-one-run-out cross-validation with large GEMMs, in vertex batches bounded by a memory
budget, serially or on a dask cluster.
"""

from encoding.ridge.problem import (
    CandidateFactorization,
    FoldFactorization,
    FullFactorization,
    GemmTimer,
    RidgeProblem,
)
from encoding.ridge.search import (
    FitCache,
    MemoryBudgetError,
    ScoreJob,
    SearchResult,
    SelectionResult,
    SerialRunner,
    band_weight_candidates,
    batch_size_for,
    fit_banded_ridge,
    halving_rounds,
    screen_folds,
    search_hyperparameters,
)

__all__ = ["CandidateFactorization", "FitCache", "FoldFactorization", "FullFactorization", "GemmTimer",
           "MemoryBudgetError", "RidgeProblem", "ScoreJob", "SearchResult", "SelectionResult", "SerialRunner",
           "band_weight_candidates", "batch_size_for", "fit_banded_ridge", "halving_rounds", "screen_folds",
           "search_hyperparameters"]
