"""Factorizations of a banded ridge problem: they depend on the design, never on the responses.

Banded ridge with band weights ``gamma`` (on the simplex) and a global strength ``alpha`` is ridge
on the design whose band ``b`` is scaled by ``sqrt(gamma_b)``; each band's effective penalty is
``alpha / gamma_b``. For one training set and one ``gamma``, a single eigendecomposition serves
every ``alpha`` and every vertex. Write ``S = diag(sqrt(gamma))`` per column and ``A`` a matrix with
``A^T A = diag(lam)``:

- primal form (features <= samples): ``S X^T X S = V diag(lam) V^T`` and ``A = X S V``;
- dual (kernel) form: ``sum_b gamma_b X_b X_b^T = U diag(lam) U^T`` and ``A = U diag(sqrt(lam))``.

Then the fitted values are ``A diag(1 / (lam + alpha)) A^T Y`` and the weights
``M diag(1 / (lam + alpha)) A^T Y`` (``M = S V``, or ``S^2 X^T U diag(lam^-1/2)``).

Cross-validation over runs uses one of two exact strategies, chosen by their cost:

- ``folds``: one eigendecomposition per (fold, candidate); validation predictions
  ``X_val S V_f diag(1 / (lam_f + alpha)) V_f^T S X_train^T Y_train``. Cheap when the design is small.
- ``hat``: one eigendecomposition of all training samples per candidate, and the leave-one-run-out
  identity ``r_f = (I - H_ff)^{-1} (Y_f - Yhat_f)`` with ``H_ff = A_f diag(1 / (lam + alpha)) A_f^T``
  (the hat matrix's block of run ``f``). Cheap when eigendecompositions dominate (many features).

Responses enter only through large matrix products, so a permuted ``Y`` costs GEMMs, not refits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from encoding.config import FORMS
from encoding.ridge.backend import backend_module
from encoding.scoring import r2_from_sums

EIGH_COST = 10.0  # a symmetric eigendecomposition of size m costs about EIGH_COST * m^3 GEMM flops
MIN_RUN_CONDITION = 1e-3  # hat strategy: alphas with 1 - max leverage of a run below this are skipped


@dataclass
class FoldFactorization:
    """Eigendecomposition of one fold's training set (``folds`` strategy).

    Attributes
    ----------
    train, val : ndarray of int
        Sample indices.
    basis : array, shape (n_features, q) or (n_train, q)
        ``S V_f`` (primal) or ``U_f`` (dual); ``Z = basis^T T(Y)`` with ``T(Y) = X_train^T Y_train``
        (primal) or ``Y_train`` (dual).
    eigenvalues : array, shape (q,)
    val_map : array, shape (n_val, q)
        ``X_val S V_f`` or ``K_val,train U_f``: validation predictions are
        ``val_map diag(1 / (lam + alpha)) Z``.
    """

    train: np.ndarray
    val: np.ndarray
    basis: object
    eigenvalues: object
    val_map: object


@dataclass
class FullFactorization:
    """Eigendecomposition of all training samples: ``Yhat = A diag(1 / (lam + alpha)) A^T Y``.

    Attributes
    ----------
    components : array, shape (n_samples, q)
        ``A``, with ``A^T A = diag(lam)``.
    eigenvalues : array, shape (q,)
    weight_map : array, shape (n_features, q)
        ``M``: primal weights are ``M diag(1 / (lam + alpha)) A^T Y``.
    """

    components: object
    eigenvalues: object
    weight_map: object


@dataclass
class CandidateFactorization:
    """Everything the cross-validation of one band-weight candidate needs from the design.

    Attributes
    ----------
    gamma : ndarray, shape (n_bands,)
    alphas : ndarray, shape (n_alphas,)
    folds : list of FoldFactorization
        ``folds`` strategy (else empty).
    full : FullFactorization or None
        ``hat`` strategy.
    run_inverses : list of array, shape (n_alphas, n_val, n_val)
        ``hat`` strategy: ``(I - H_ff(alpha))^{-1}`` for each run ``f``.
    usable : ndarray of bool, shape (n_alphas,) or None
        ``hat`` strategy: alphas whose leave-one-run-out inverses are well conditioned (the others
        score ``-inf``).
    """

    gamma: np.ndarray
    alphas: np.ndarray
    folds: list = field(default_factory=list)
    full: FullFactorization | None = None
    run_inverses: list = field(default_factory=list)
    usable: np.ndarray | None = None

    @property
    def strategy(self) -> str:
        return "hat" if self.full is not None else "folds"

    @property
    def n_folds(self) -> int:
        """Validation folds the scores cover (all of them with ``hat``)."""
        return len(self.run_inverses) if self.full is not None else len(self.folds)

    @property
    def nbytes(self) -> int:
        """Memory its arrays hold (bytes)."""
        arrays = [self.gamma, self.alphas, self.usable, *self.run_inverses]
        for fold in self.folds:
            arrays += [fold.train, fold.val, fold.basis, fold.eigenvalues, fold.val_map]
        if self.full is not None:
            arrays += [self.full.components, self.full.eigenvalues, self.full.weight_map]
        return sum(_nbytes(a) for a in arrays if a is not None)


def _nbytes(array) -> int:
    """Bytes of a numpy array or a torch tensor."""
    return int(array.nbytes) if hasattr(array, "nbytes") else array.element_size() * array.nelement()


@dataclass
class RidgeProblem:
    """The design side of a banded ridge fit with leave-one-run-out cross-validation.

    Everything here depends on ``X`` and the runs only; it is computed once and shared by all
    vertices, all response permutations and (with dask) all workers.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
        Training design (float32 is used).
    groups : ndarray, shape (n_samples,)
        Run of each sample; each run is one validation fold.
    bands : mapping of str to slice
        Columns of each feature space.
    form : {"auto", "primal", "dual"}
        ``auto``: primal when the features are no more than the samples.
    backend : str
        himalaya backend name (``numpy``, ``torch``, ``torch_cuda``).
    """

    X: np.ndarray
    groups: np.ndarray
    bands: Mapping[str, slice]
    form: str = "auto"
    backend: str = "numpy"
    folds: list = field(init=False, repr=False)

    def __post_init__(self) -> None:
        b = backend_module(self.backend)
        X = np.asarray(self.X, dtype=np.float32)
        groups = np.asarray(self.groups)
        if X.ndim != 2 or groups.shape != (X.shape[0],):
            raise ValueError(f"X must be (n_samples, n_features) with one group per sample; got X {X.shape}, "
                             f"groups {groups.shape}.")
        runs = np.unique(groups)
        if runs.size < 2:
            raise ValueError("Leave-one-run-out cross-validation needs at least two training runs.")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}.")
        columns = np.full(X.shape[1], -1)
        for index, cols in enumerate(self.bands.values()):
            columns[cols] = index
        if (columns < 0).any():
            raise ValueError(f"The bands leave columns {np.flatnonzero(columns < 0)[:5].tolist()} (first 5) of X "
                             f"uncovered; every column must belong to one band.")
        self.band_of_column = columns
        self.folds = [(np.flatnonzero(groups != run), np.flatnonzero(groups == run)) for run in runs]
        if self.form == "auto":
            self.form = "primal" if X.shape[1] <= X.shape[0] else "dual"
        self.X = b.asarray(X)
        if self.form == "primal":
            self.gram = b.matmul(self.X.T, self.X)
            self.val_grams = [b.matmul(self.X[b.asarray(val)].T, self.X[b.asarray(val)]) for _, val in self.folds]
        else:
            self.kernels = b.stack([b.matmul(self.X[:, cols], self.X[:, cols].T) for cols in self.bands.values()])

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    # -- costs and memory (used to choose the strategy and the vertex batch) -------------------

    def _sizes(self):
        n, p = self.n_samples, self.n_features
        trains = np.array([len(t) for t, _ in self.folds], dtype=float)
        vals = np.array([len(v) for _, v in self.folds], dtype=float)
        q_folds = np.full_like(trains, p) if self.form == "primal" else trains
        q_full = p if self.form == "primal" else n
        return n, p, trains, vals, q_folds, q_full

    def strategy_flops(self, strategy: str, n_vertices: int, n_alphas: int) -> float:
        """Approximate floating-point work of one candidate's cross-validation."""
        n, p, trains, vals, q_folds, q_full = self._sizes()
        v = n_vertices
        if strategy == "folds":
            rows = p if self.form == "primal" else trains
            return float(np.sum(EIGH_COST * q_folds**3 + 2 * q_folds * rows * v + 2 * vals * q_folds * v * n_alphas))
        return float(EIGH_COST * q_full**3 + 2 * n * q_full * v * (1 + n_alphas)
                     + np.sum(2 * vals**2 * v * n_alphas + n_alphas * (2 * vals**2 * q_full + 2 * vals**3)))

    def choose_strategy(self, n_vertices: int, n_alphas: int) -> str:
        """The cheaper exact strategy for this many vertices and alphas."""
        costs = {s: self.strategy_flops(s, n_vertices, n_alphas) for s in ("folds", "hat")}
        return min(costs, key=costs.get)

    def design_nbytes(self) -> int:
        """Memory held by the design-side arrays (bytes)."""
        held = [self.X, *(self.val_grams + [self.gram] if self.form == "primal" else [self.kernels])]
        return int(sum(_nbytes(a) for a in held))

    def factorization_nbytes(self, strategy: str, n_alphas: int) -> int:
        """Peak memory of one candidate's factorization, temporaries included (bytes).

        The larger of the search's factorization and the refit's (``factorize_full``), with the
        eigensolver's workspace (float32) and, in dual form, the candidate's kernel and scaled design.
        """
        n, p, trains, vals, q_folds, q_full = self._sizes()
        dual_extra = n * n + n * p if self.form == "dual" else 0
        full = n * q_full + p * q_full + q_full + 3 * q_full**2 + dual_extra
        if strategy == "folds":
            rows = p if self.form == "primal" else trains
            search = np.sum(q_folds * (rows + vals + 1)) + 3 * q_folds.max() ** 2 + dual_extra
        else:
            search = full + n_alphas * np.sum(vals**2) + 8 * vals.max() ** 2  # float64 inverses, one run
        return int(4 * max(search, full))

    def vertex_nbytes(self, strategy: str, n_alphas: int) -> int:
        """Working memory per vertex while scoring or refitting (bytes, float32)."""
        n, p, trains, vals, q_folds, q_full = self._sizes()
        q = q_folds.max() if strategy == "folds" else q_full
        return int(4 * (3 * n + 2 * p + 3 * q + 2 * vals.max() + 3 * n_alphas + 64))

    # -- factorizations ---------------------------------------------------------------------

    def factorize(self, gamma, alphas, strategy: str, folds=None) -> CandidateFactorization:
        """What cross-validating one band-weight candidate needs, for either strategy.

        Parameters
        ----------
        gamma : array-like, shape (n_bands,)
            Band weights (non-negative).
        alphas : array-like, shape (n_alphas,)
        strategy : {"folds", "hat"}
        folds : sequence of int, optional
            Validation folds (indices into ``self.folds``) to score; default all. The ``hat``
            strategy always covers every fold (one factorization serves them all).

        Returns
        -------
        CandidateFactorization
        """
        b = backend_module(self.backend)
        gamma = np.asarray(gamma, dtype=np.float64)
        alphas = np.asarray(alphas, dtype=np.float64)
        if (alphas <= 0).any():
            raise ValueError(f"alphas must be positive, got {alphas.min():g}.")
        if strategy == "hat":
            full = self.factorize_full(gamma)
            inverses, usable = zip(*(_run_inverse(full, val, alphas, b) for _, val in self.folds))
            return CandidateFactorization(gamma, alphas, full=full, run_inverses=list(inverses),
                                          usable=np.all(usable, axis=0))
        if strategy != "folds":
            raise ValueError(f"strategy must be 'folds' or 'hat', got {strategy!r}.")
        chosen = range(len(self.folds)) if folds is None else [int(f) for f in folds]
        scale = self._scale(gamma, b)
        if self.form == "primal":
            parts = [self._fold_primal(*self.folds[f], self.gram - self.val_grams[f], scale, b) for f in chosen]
        else:
            kernel = self._kernel(gamma)
            parts = [self._fold_dual(*self.folds[f], kernel, b) for f in chosen]
        return CandidateFactorization(gamma, alphas, folds=parts)

    def factorize_full(self, gamma) -> FullFactorization:
        """Eigendecomposition of all training samples for one candidate (refit and ``hat``)."""
        b = backend_module(self.backend)
        gamma = np.asarray(gamma, dtype=np.float64)
        scale = self._scale(gamma, b)
        if self.form == "primal":
            eigenvalues, vectors = _eigh(scale[:, None] * self.gram * scale[None, :], b)
            weight_map = scale[:, None] * vectors
            return FullFactorization(b.matmul(self.X, weight_map), eigenvalues, weight_map)
        eigenvalues, vectors = _eigh(self._kernel(gamma), b)
        root = b.sqrt(eigenvalues)
        inverse_root = b.asarray(np.where(b.to_numpy(root) > 0, 1.0 / np.maximum(b.to_numpy(root), 1e-30), 0.0),
                                 dtype=b.float32)
        weight_map = b.matmul((self.X * (scale * scale)[None, :]).T, vectors) * inverse_root[None, :]
        return FullFactorization(vectors * root[None, :], eigenvalues, weight_map)

    def _scale(self, gamma, b):
        return b.asarray(np.sqrt(gamma[self.band_of_column]).astype(np.float32))

    def _kernel(self, gamma):
        return sum(float(g) * k for g, k in zip(gamma, self.kernels))

    def _fold_primal(self, train, val, gram, scale, b) -> FoldFactorization:
        eigenvalues, vectors = _eigh(scale[:, None] * gram * scale[None, :], b)
        basis = scale[:, None] * vectors
        return FoldFactorization(train, val, basis, eigenvalues, b.matmul(self.X[b.asarray(val)], basis))

    def _fold_dual(self, train, val, kernel, b) -> FoldFactorization:
        t, v = b.asarray(train), b.asarray(val)
        eigenvalues, vectors = _eigh(kernel[t[:, None], t], b)
        return FoldFactorization(train, val, vectors, eigenvalues, b.matmul(kernel[v[:, None], t], vectors))

    # -- response side: GEMMs only --------------------------------------------------------

    def cv_scores(self, factorization: CandidateFactorization, Y, profile: dict | None = None):
        """Leave-one-run-out R^2 of every alpha for a batch of vertices, averaged over the folds
        the factorization covers (every run, unless it was made for some folds only).

        Parameters
        ----------
        factorization : CandidateFactorization
            ``factorize(gamma, alphas, strategy)``.
        Y : array, shape (n_samples, n_vertices)
        profile : dict, optional
            Accumulates ``gemm_seconds`` and ``gemm_flops`` of the per-alpha products.

        Returns
        -------
        array, shape (n_alphas, n_vertices)
        """
        b = backend_module(self.backend)
        Y = b.asarray(Y, dtype=b.float32)
        alphas = b.asarray(factorization.alphas.astype(np.float32))
        scores = b.zeros((len(alphas), Y.shape[1]), dtype=b.float32)
        timer = GemmTimer(synchronize=b.name == "torch_cuda")
        if factorization.strategy == "hat":
            self._scores_hat(factorization, Y, alphas, scores, timer, b)
        else:
            self._scores_folds(factorization, Y, alphas, scores, timer, b)
        if profile is not None:
            profile["gemm_seconds"] = profile.get("gemm_seconds", 0.0) + timer.seconds
            profile["gemm_flops"] = profile.get("gemm_flops", 0) + timer.flops
        return scores / factorization.n_folds

    def _scores_folds(self, factorization, Y, alphas, scores, timer, b) -> None:
        full_stat = b.matmul(self.X.T, Y) if self.form == "primal" else None
        for fold in factorization.folds:
            val = b.asarray(fold.val)
            Y_val = Y[val]
            if self.form == "primal":
                stat = full_stat - b.matmul(self.X[val].T, Y_val)
            else:
                stat = Y[b.asarray(fold.train)]
            Z = b.matmul(fold.basis.T, stat)  # (q, n_vertices)
            inverse = 1.0 / (fold.eigenvalues[None, :] + alphas[:, None])  # (n_alphas, q)
            cross = b.matmul(inverse, b.matmul(fold.val_map.T, Y_val) * Z)  # y . prediction, per alpha
            squares = b.sum(Y_val * Y_val, 0)
            total = _total_squares(Y_val, squares, b)
            with timer(2 * len(alphas) * fold.val_map.shape[0] * fold.val_map.shape[1] * Y.shape[1]):
                for index in range(len(alphas)):
                    prediction = b.matmul(fold.val_map * inverse[index][None, :], Z)
                    norm = b.einsum("ij,ij->j", prediction, prediction)
                    scores[index] += r2_from_sums(squares - 2.0 * cross[index] + norm, total, len(fold.val))
                    del prediction

    def _scores_hat(self, factorization, Y, alphas, scores, timer, b) -> None:
        full = factorization.full
        Z = b.matmul(full.components.T, Y)  # (q, n_vertices)
        vals = [b.asarray(val) for _, val in self.folds]
        totals = [_total_squares(Y[val], b.sum(Y[val] * Y[val], 0), b) for val in vals]
        n, q = full.components.shape
        sum_squares = sum(len(v) ** 2 for _, v in self.folds)
        with timer(2 * len(alphas) * (n * q + sum_squares) * Y.shape[1]):
            for index in range(len(alphas)):
                if not factorization.usable[index]:
                    scores[index] = -np.inf
                    continue
                residual = Y - b.matmul(full.components * (1.0 / (full.eigenvalues + alphas[index]))[None, :], Z)
                for val, inverse, total in zip(vals, factorization.run_inverses, totals):
                    held_out = b.matmul(inverse[index], residual[val])
                    scores[index] += r2_from_sums(b.einsum("ij,ij->j", held_out, held_out), total, len(val))
                del residual

    def weights(self, full: FullFactorization, Y, alphas):
        """Primal weights fitted on all training samples, one alpha per vertex.

        Parameters
        ----------
        full : FullFactorization
            ``factorize_full(gamma)``.
        Y : array, shape (n_samples, n_vertices)
        alphas : array, shape (n_vertices,)

        Returns
        -------
        array, shape (n_features, n_vertices)
        """
        b = backend_module(self.backend)
        Y = b.asarray(Y, dtype=b.float32)
        alphas = b.asarray(np.asarray(alphas, dtype=np.float32))
        Z = b.matmul(full.components.T, Y)
        return b.matmul(full.weight_map, Z / (full.eigenvalues[:, None] + alphas[None, :]))


def _run_inverse(full: FullFactorization, val: np.ndarray, alphas: np.ndarray, b):
    """``(I - H_ff(alpha))^{-1}`` for one run and every alpha, computed in float64.

    Returns
    -------
    inverses : array, shape (n_alphas, n_val, n_val), float32
    usable : ndarray of bool, shape (n_alphas,)
        False where ``(I - H_ff)`` is so ill-conditioned (alpha tiny next to the eigenvalues) that
        float32 residuals multiplied by its inverse would be noise; those alphas are not selected.
    """
    block = b.to_numpy(full.components[b.asarray(val)]).astype(np.float64)  # (n_val, q)
    eigenvalues = b.to_numpy(full.eigenvalues).astype(np.float64)
    identity = np.eye(len(val))
    inverses = np.empty((len(alphas), len(val), len(val)), dtype=np.float32)
    usable = np.ones(len(alphas), dtype=bool)
    for index, alpha in enumerate(alphas):
        leave_out = identity - (block / (eigenvalues + alpha)) @ block.T
        smallest = np.linalg.eigvalsh(leave_out)[0]  # 1 - largest leverage of the run
        usable[index] = smallest > MIN_RUN_CONDITION
        inverses[index] = np.linalg.inv(leave_out) if usable[index] else 0.0
    return b.asarray(inverses), usable


def _total_squares(Y_val, squares, b):
    """Sum of squares about the validation mean per vertex (a vertex constant in the run scores 0 there:
    :mod:`encoding.scoring`)."""
    return squares - Y_val.shape[0] * b.mean_float64(Y_val, 0) ** 2


def _eigh(matrix, b):
    """Symmetric eigendecomposition (float32, divide-and-conquer on numpy); eigenvalues clipped at 0."""
    if b.name == "numpy":
        from scipy.linalg import eigh

        eigenvalues, vectors = eigh(matrix, driver="evd", check_finite=False)
    else:
        eigenvalues, vectors = b.eigh(matrix)
    return b.clip(eigenvalues, 0, None), vectors


class GemmTimer:
    """Wall time and flops of the GEMM-bound phases (CUDA is synchronised so that the time is real).

    ``with timer(flops): ...`` adds the block's seconds to ``seconds`` and ``flops`` to ``flops``.
    """

    def __init__(self, synchronize: bool = False):
        self.seconds, self.flops = 0.0, 0
        self._start, self._pending = 0.0, 0
        self._sync = synchronize

    def _wait(self):
        if self._sync:
            import torch

            torch.cuda.synchronize()

    def __call__(self, flops: int):
        self._pending = flops
        return self

    def __enter__(self):
        self._wait()
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self._wait()
        self.seconds += time.perf_counter() - self._start
        self.flops += self._pending
