"""The decoder's permutation null: clips shuffled within runs, the decoder refitted on each permutation.

Each permutation moves whole clip presentations (every window of a clip together, so the
autocorrelation within a clip stays), within each training run, and refits the decoder on the
permuted targets with the hyperparameters and vertices chosen on the real data (the encoding
refit null's convention). Permuting the targets against fixed responses is the same null as
block-permuting the responses against fixed targets, and costs GEMMs only: with the kernel
factorization ``K = U diag(lam) U^T`` of the (fixed) training responses,

    prediction_test = T diag(1 / (lam + alpha_d)) A^T Y_perm,   T = X_test M,

where ``A`` and ``M`` are the factorization's components and weight map
(:class:`encoding.ridge.problem.FullFactorization`).
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from decoding.model import RidgeDecoder
from encoding.errors import DataError
from encoding.model import resolve_backend
from encoding.ridge import RidgeProblem
from encoding.ridge.backend import backend_module


def clip_permutation(blocks: np.ndarray, groups: np.ndarray, windows: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """A permutation of training samples that shuffles clip presentations within each run.

    Parameters
    ----------
    blocks : ndarray of int, shape (n_samples,)
        Clip presentation of each sample.
    groups : ndarray, shape (n_samples,)
        Run of each sample.
    windows : ndarray of int, shape (n_samples,)
        Window index of each sample within its presentation.
    rng : numpy Generator

    Returns
    -------
    ndarray of int, shape (n_samples,)
        Sample ``i`` takes the target of sample ``indices[i]``: the same window (or the last one
        there is) of another presentation of the same run.
    """
    indices = np.arange(len(blocks))
    lookup = {(int(b), int(w)): i for i, (b, w) in enumerate(zip(blocks, windows))}
    last = {}
    for b, w in zip(blocks, windows):
        last[int(b)] = max(last.get(int(b), 0), int(w))
    for run in np.unique(groups):
        members = np.flatnonzero(groups == run)
        run_blocks = np.unique(blocks[members])
        if run_blocks.size < 2:
            raise DataError(f"Training run {run} holds a single clip: clips cannot be permuted within it.")
        mapping = dict(zip(run_blocks.tolist(), rng.permutation(run_blocks).tolist()))
        for i in members:
            other = mapping[int(blocks[i])]
            indices[i] = lookup[(other, min(int(windows[i]), last[other]))]
    return indices


def permuted_predictions(decoder: RidgeDecoder, X_train: np.ndarray, Y_train: np.ndarray, groups: np.ndarray,
                         blocks: np.ndarray, windows: np.ndarray, X_test: np.ndarray, n_permutations: int,
                         random_state: int | None = 0, progress: bool = True) -> np.ndarray:
    """Test predictions of the decoder refitted on clip-permuted training targets.

    Parameters
    ----------
    decoder : RidgeDecoder
        Fitted on ``(X_train, Y_train, groups)``; its vertices and alphas are held.
    X_train, Y_train, groups, blocks, windows
        The training samples (:class:`decoding.design.DecodingDesign`).
    X_test : ndarray, shape (n_test, n_columns)
    n_permutations : int
    random_state : int or None
    progress : bool

    Returns
    -------
    ndarray, shape (n_permutations, n_test, n_dims)
        Predictions in the target's units.
    """
    backend = resolve_backend(decoder.backend)
    b = backend_module(backend)
    X = np.asarray(X_train, dtype=np.float32)[:, decoder.columns_] - decoder.response_mean_
    problem = RidgeProblem(X, groups, {"responses": slice(0, X.shape[1])}, form=decoder.form, backend=backend)
    full = problem.factorize_full(np.ones(1))
    test_map = b.to_numpy(b.matmul(b.asarray(np.asarray(X_test, dtype=np.float32)[:, decoder.columns_]
                                             - decoder.response_mean_), full.weight_map))
    components = b.to_numpy(full.components)
    shrink = 1.0 / (b.to_numpy(full.eigenvalues)[:, None] + decoder.alpha_[None, :])  # (q, n_dims)
    Z = decoder._standardise(np.asarray(Y_train, dtype=np.float32))
    rng = np.random.default_rng(random_state)
    out = np.empty((n_permutations, len(test_map), Z.shape[1]), dtype=np.float32)
    for p in tqdm(range(n_permutations), desc="decoding: permutations", disable=not progress, leave=False):
        order = clip_permutation(blocks, groups, windows, rng)
        out[p] = decoder._unstandardise(test_map @ (shrink * (components.T @ Z[order])))
    return out
