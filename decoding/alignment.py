"""Cross-subject decoding: one decoder for several subjects, aligned anatomically or functionally.

A decoder trained on some subjects decodes a held-out subject's test responses. Two ways to put the
subjects' responses in one space:

- **anatomical**: the same fsaverage5 vertices (columns of the decoding design) are taken as the
  same brain location in every subject; the decoder is trained on the training subjects' samples
  pooled as they are.
- **functional** (Ferrante, Ciferri et al.): every subject's responses are mapped to a reference
  subject's (the first training subject) by a :class:`FunctionalAlignment`, a multi-output ridge
  regression from the subject's columns to the reference's, fitted on the samples both heard (the
  same clip window, :func:`shared_samples`). The decoder is trained on the reference's own samples
  and the other training subjects' aligned samples, pooled, and decodes the held-out subject's test
  responses mapped through the held-out subject's alignment.

**No test data enter the alignment or the decoder.** Every alignment is fitted on training
samples only (``DecodingDesign.X_train`` of the subject and of the reference, paired by clip and
window), the decoder on the training subjects' training samples; the held-out subject's test
responses are only transformed and decoded. The held-out subject's test clips that any training
subject heard in a training run are left out of the test set (a test clip must be new to the
decoder, as within a subject). ``tests/test_alignment.py`` checks that the fitted alignments and
decoder do not change when every test response is replaced by noise.

Pooled samples are cross-validated by clip: each clip's samples, in every subject, sit in the fold
of the training run where the first pooled subject heard it (:func:`pooled_groups`), so no clip is
on both sides of a fold (with identical schedules, as in ds003720, the folds are the runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from decoding.design import DecodingDesign, clip_means, make_decoding_design
from decoding.metrics import IdentificationResult, identification
from decoding.model import DEFAULT_DECODER_ALPHAS, RidgeDecoder, make_decoder, vertex_columns
from encoding.config import DecodingConfig
from encoding.data import Experiment
from encoding.errors import ConfigError, DataError
from encoding.features.base import FeatureFrames
from encoding.model import resolve_backend
from encoding.ridge import RidgeProblem, batch_size_for
from encoding.ridge.backend import backend_module
from encoding.scoring import r2_score

ALIGNMENTS = ("anatomical", "functional")
DEFAULT_ALIGNMENT_ALPHAS = DEFAULT_DECODER_ALPHAS  # 1 .. 1e10, two per decade: the kernel sums many columns
SAMPLE_KEYS = ("clip_id", "window", "start")


# -- the alignment ---------------------------------------------------------------------------


class FunctionalAlignment(RegressorMixin, BaseEstimator):
    """Ridge regression from one subject's responses to a reference subject's, cross-validated by run.

    The encoding solver (:class:`encoding.ridge.RidgeProblem`) with the source subject's responses
    as the design and the reference's columns as the targets. There are usually far fewer samples
    than source columns (ds003720: ~2,000 windows, 20,484 vertices), so the solver works in its
    kernel (dual) form: one eigendecomposition of the samples' kernel per fold serves every alpha
    and every reference column. The fitted map is kept factored, ``W = weight_map_ @ components_``
    with ``weight_map_`` (n_source, q) and ``components_`` (q, n_reference), ``q`` = the samples
    in dual form: ``q (n_source + n_reference)`` numbers instead of ``n_source x n_reference``
    (160 MB each instead of 1.7 GB for two whole fsaverage5 surfaces).

    **One alpha per reference column** (default), chosen by leave-one-run-out R^2 over ``groups``
    from the log grid ``alphas``. The reference's columns differ widely in how much of them the
    source predicts: stimulus-driven vertices that both subjects share are predicted well at a
    moderate alpha, while the many vertices whose responses are the reference's own noise are
    predicted by nothing, take the largest alpha and are mapped to (almost) their mean. A single
    alpha would be set by that majority and over-shrink the shared vertices (or, set by them,
    fit noise everywhere else). Per-column alphas cost nothing more: the solver scores every alpha
    for every column anyway. ``shared_alpha=True`` takes the alpha of the best mean CV R^2 instead.

    Both sides are centred on their training means (the reference's mean is added back by
    :meth:`transform`); the decoding design has already z-scored every run.

    Parameters
    ----------
    alphas : array-like of float
        Regularisation grid (absolute: the kernel sums the squared responses of all source columns).
    shared_alpha : bool
        One alpha for all reference columns instead of one each.
    form, strategy, backend, memory_gb
        As :class:`encoding.model.BandedRidgeEncoder` (the same solver): ``form="auto"`` is dual when
        the source has more columns than samples; ``memory_gb`` bounds the batch of reference columns.
    progress_bar : bool

    Attributes
    ----------
    alpha_ : ndarray, shape (n_reference,)
        Chosen alpha of each reference column (all equal with ``shared_alpha``).
    cv_scores_ : ndarray, shape (n_reference,)
        Leave-one-run-out R^2 of each reference column at its alpha.
    weight_map_ : ndarray, shape (n_source, q)
    components_ : ndarray, shape (q, n_reference)
        The map's factors: ``transform(X) = (X - source_mean_) @ weight_map_ @ components_ + reference_mean_``.
    source_mean_ : ndarray, shape (n_source,)
    reference_mean_ : ndarray, shape (n_reference,)
    form_, strategy_ : str
        Solver form and CV strategy used.
    n_features_in_, n_outputs_ : int
        Source and reference columns.
    """

    def __init__(self, alphas=DEFAULT_ALIGNMENT_ALPHAS, shared_alpha: bool = False, form: str = "auto",
                 strategy: str = "auto", backend: str = "auto", memory_gb: float = 2.0, progress_bar: bool = False):
        self.alphas = alphas
        self.shared_alpha = shared_alpha
        self.form = form
        self.strategy = strategy
        self.backend = backend
        self.memory_gb = memory_gb
        self.progress_bar = progress_bar

    def fit(self, X_source: np.ndarray, X_reference: np.ndarray, groups: np.ndarray) -> FunctionalAlignment:
        """Fit the map on paired samples (row ``i`` of both is the same stimulus), CV over ``groups``.

        Parameters
        ----------
        X_source : ndarray, shape (n_samples, n_source)
            The subject's responses (e.g. :func:`paired_responses`'s first output).
        X_reference : ndarray, shape (n_samples, n_reference)
            The reference subject's responses to the same samples.
        groups : ndarray, shape (n_samples,)
            Run of each sample (at least two runs): each run is one validation fold.
        """
        X, Y, groups = self._check_fit_input(X_source, X_reference, groups)
        backend = resolve_backend(self.backend)
        b = backend_module(backend)
        alphas = np.sort(np.asarray(self.alphas, dtype=np.float64).ravel())
        if alphas.size == 0 or not (alphas > 0).all():
            raise ConfigError(f"The alignment's alphas must be positive numbers, got {list(self.alphas)!r}.")
        self.source_mean_ = X.mean(axis=0)
        self.reference_mean_ = Y.mean(axis=0)
        Y = Y - self.reference_mean_
        problem = RidgeProblem(X - self.source_mean_, groups, {"source": slice(0, X.shape[1])}, form=self.form,
                               backend=backend)
        n_outputs = Y.shape[1]
        strategy = problem.choose_strategy(n_outputs, len(alphas)) if self.strategy == "auto" else self.strategy
        size = batch_size_for(problem, n_outputs, len(alphas), strategy, self.memory_gb)
        factorization = problem.factorize(np.ones(1), alphas, strategy)
        curves = np.empty((len(alphas), n_outputs), dtype=np.float32)
        for start in tqdm(range(0, n_outputs, size), desc="alignment: CV", disable=not self.progress_bar,
                          leave=False):
            part = slice(start, min(start + size, n_outputs))
            curves[:, part] = b.to_numpy(problem.cv_scores(factorization, Y[:, part]))
        del factorization
        if self.shared_alpha:
            best = np.full(n_outputs, int(np.argmax(curves.mean(axis=1))))
        else:
            best = curves.argmax(axis=0)
        self.alpha_ = alphas[best].astype(np.float32)
        self.cv_scores_ = curves[best, np.arange(n_outputs)]
        full = problem.factorize_full(np.ones(1))
        self.weight_map_ = b.to_numpy(full.weight_map).astype(np.float32)
        eigenvalues = b.to_numpy(full.eigenvalues).astype(np.float32)
        projected = b.to_numpy(b.matmul(full.components.T, b.asarray(Y, dtype=b.float32)))  # A^T Y, (q, n_outputs)
        self.components_ = (projected / (eigenvalues[:, None] + self.alpha_[None, :])).astype(np.float32)
        self.form_, self.strategy_ = problem.form, strategy
        self.n_features_in_, self.n_outputs_ = X.shape[1], n_outputs
        return self

    @property
    def coef_(self) -> np.ndarray:
        """The map as one matrix, shape (n_source, n_reference) (computed on demand: it can be large)."""
        check_is_fitted(self, "components_")
        return self.weight_map_ @ self.components_

    def transform(self, X_source: np.ndarray) -> np.ndarray:
        """The subject's responses in the reference's space, shape (n_samples, n_reference), float32."""
        check_is_fitted(self, "components_")
        X = _as_responses(X_source, "X_source")
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X_source has {X.shape[1]} columns but the alignment was fitted on "
                            f"{self.n_features_in_}: give the same subject's responses, same vertices and lags.")
        return ((X - self.source_mean_) @ self.weight_map_ @ self.components_ + self.reference_mean_).astype(
            np.float32)

    def predict(self, X_source: np.ndarray) -> np.ndarray:
        """Same as :meth:`transform` (the sklearn regressor name)."""
        return self.transform(X_source)

    def score(self, X_source: np.ndarray, X_reference: np.ndarray) -> np.ndarray:
        """R^2 of each reference column, shape (n_reference,)."""
        return r2_score(_as_responses(X_reference, "X_reference"), self.transform(X_source))

    def _check_fit_input(self, X_source, X_reference, groups):
        X = _as_responses(X_source, "X_source")
        Y = _as_responses(X_reference, "X_reference")
        if Y.shape[0] != X.shape[0]:
            raise DataError(f"X_source and X_reference must pair the same samples row by row; got {X.shape[0]} and "
                            f"{Y.shape[0]} rows (see decoding.alignment.paired_responses).")
        groups = np.asarray(groups)
        if groups.shape != (X.shape[0],):
            raise DataError(f"groups must have shape ({X.shape[0]},), got {groups.shape}.")
        if np.unique(groups).size < 2:
            raise DataError(f"The alignment cross-validates by run and the shared samples come from "
                            f"{np.unique(groups).size} run(s); it needs at least two.")
        return X, Y, groups


def _as_responses(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_columns), got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise DataError(f"{name} contains NaN or inf values.")
    return X


# -- samples both subjects heard ---------------------------------------------------------------


def _check_same_samples(designs: Sequence[DecodingDesign]) -> None:
    first = designs[0]
    for other in designs[1:]:
        for name in ("window", "hop", "delays", "target"):
            if getattr(other, name) != getattr(first, name):
                raise DataError(f"The subjects' decoding designs differ in {name} ({getattr(first, name)!r} and "
                                f"{getattr(other, name)!r}); build them with the same decoding config.")


def _presentations(design: DecodingDesign) -> pd.DataFrame:
    """One row per training (clip, window): its rows in ``design`` and the run of the first one."""
    table = design.train_samples[list(SAMPLE_KEYS)].copy()
    table["start"] = table["start"].round(6)
    table["row"] = np.arange(len(table))
    table["group"] = design.groups
    return table.groupby(list(SAMPLE_KEYS), sort=False).agg(rows=("row", tuple), first=("row", "min"),
                                                              group=("group", "first")).reset_index()


def shared_samples(design_a: DecodingDesign, design_b: DecodingDesign) -> pd.DataFrame:
    """The training samples two subjects share: the same clip window, heard by both.

    Samples are matched on (``clip_id``, ``window``, ``start``); a window only one subject has (a
    clip the other did not hear, or a window that ran past the end of the other's run) is dropped.
    A window heard several times in a subject's training runs lists every presentation (they are
    averaged by :func:`paired_responses`, as the design averages test repeats).

    Parameters
    ----------
    design_a, design_b : DecodingDesign
        Built with the same window, hop and lags (checked).

    Returns
    -------
    DataFrame
        One row per shared window, in ``design_a``'s order: ``clip_id``, ``window``, ``start``,
        ``rows_a`` and ``rows_b`` (tuples of row indices into each design's training samples) and
        ``group`` (the training run, in ``design_a``, of the first presentation: the CV fold).
    """
    _check_same_samples([design_a, design_b])
    a, b = _presentations(design_a), _presentations(design_b)
    merged = a.merge(b, on=list(SAMPLE_KEYS), how="inner", suffixes=("_a", "_b"))
    merged = merged.sort_values("first_a", kind="stable").reset_index(drop=True)
    return merged[[*SAMPLE_KEYS, "rows_a", "rows_b", "group_a"]].rename(columns={"group_a": "group"})


def _averaged(X: np.ndarray, rows) -> np.ndarray:
    """Rows of ``X`` averaged within each tuple of ``rows``, shape (len(rows), n_columns)."""
    counts = np.array([len(r) for r in rows])
    if (counts == 1).all():
        return X[np.fromiter((r[0] for r in rows), dtype=int, count=len(rows))]
    columns = np.concatenate([np.asarray(r, dtype=int) for r in rows])
    owner = np.repeat(np.arange(len(rows)), counts)
    mean = sparse.csr_matrix((np.repeat(1.0 / counts, counts).astype(np.float32), (owner, columns)),
                             shape=(len(rows), X.shape[0]))
    return np.asarray(mean @ X, dtype=np.float32)


def paired_responses(design_a: DecodingDesign, design_b: DecodingDesign,
                     pairs: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both subjects' training responses to their shared samples, row by row.

    Parameters
    ----------
    design_a, design_b : DecodingDesign
    pairs : DataFrame, optional
        :func:`shared_samples` (computed when omitted).

    Returns
    -------
    X_a, X_b : ndarray, shapes (n_shared, n_columns_a) and (n_shared, n_columns_b)
        Training responses (repeated presentations averaged); never test samples.
    groups : ndarray of int, shape (n_shared,)
        The CV fold of each pair (``design_a``'s run).

    Raises
    ------
    DataError
        When the subjects share no training sample.
    """
    pairs = shared_samples(design_a, design_b) if pairs is None else pairs
    if pairs.empty:
        raise DataError("The two subjects share no training sample (the same clip window in both subjects' training "
                        "runs); functional alignment needs stimuli both heard.")
    return (_averaged(design_a.X_train, pairs["rows_a"]), _averaged(design_b.X_train, pairs["rows_b"]),
            pairs["group"].to_numpy())


def pooled_groups(designs: Sequence[DecodingDesign]) -> np.ndarray:
    """CV folds of the designs' training samples stacked in order: each clip in the fold where it first appears.

    A clip's samples, in every subject, share one fold: the training run of the first design (in
    order) that plays it. With identical schedules across subjects the folds are the runs.

    Returns
    -------
    ndarray of int, shape (sum of the designs' training samples,)
    """
    fold_of: dict[str, int] = {}
    out = []
    for design in designs:
        out.append(np.array([fold_of.setdefault(clip, int(group))
                             for clip, group in zip(design.train_samples["clip_id"], design.groups)], dtype=int))
    return np.concatenate(out)


# -- cross-subject decoding ------------------------------------------------------------------------


@dataclass
class CrossSubjectResult:
    """A held-out subject decoded by a decoder trained on the other subjects.

    Attributes
    ----------
    subject : str
        The held-out subject.
    alignment : {"anatomical", "functional"}
    reference : str or None
        The subject whose space the functional alignment maps to (None: anatomical).
    train_subjects : list of str
    decoder : RidgeDecoder
        Fitted on the pooled (aligned) training samples of ``train_subjects``.
    aligner : FunctionalAlignment or None
        The held-out subject's map to the reference (fitted on its training samples only).
    alignments : dict of str to FunctionalAlignment
        The training subjects' maps (all but the reference).
    test_rows : ndarray of int
        Rows of the held-out design's test samples decoded (clips no training subject trained on).
    clip_ids : list of str
    predicted, true : ndarray, shape (n_clips, n_dims)
        Decoded and true clip embeddings, in the target's units.
    identification : IdentificationResult
        On the embeddings standardised with the decoder's training mean and scale.
    n_train_samples : int
        Pooled training samples of the decoder.
    n_aligned_samples : int
        Shared training samples the held-out subject's alignment was fitted on (0: anatomical).
    target : str
        The decoded space's name.
    """

    subject: str
    alignment: str
    reference: str | None
    train_subjects: list[str]
    decoder: RidgeDecoder
    aligner: FunctionalAlignment | None
    alignments: dict[str, FunctionalAlignment]
    test_rows: np.ndarray
    clip_ids: list[str]
    predicted: np.ndarray
    true: np.ndarray
    identification: IdentificationResult
    n_train_samples: int
    n_aligned_samples: int = 0
    target: str = ""

    def predict(self, X_test: np.ndarray) -> np.ndarray:
        """Decode the held-out subject's responses (its own space): aligned first, when functional."""
        X = self.aligner.transform(X_test) if self.aligner is not None else X_test
        return self.decoder.predict(X)

    def row(self) -> dict:
        """The result as one row of :func:`cross_subject_decoding`'s table."""
        result = self.identification
        row = {"subject": self.subject, "alignment": self.alignment, "target": self.target,
               "reference": self.reference or "",
               "train_subjects": ",".join(self.train_subjects), "n_train_samples": self.n_train_samples,
               "n_aligned_samples": self.n_aligned_samples,
               "alignment_cv_r2": float(np.mean(self.aligner.cv_scores_)) if self.aligner is not None else np.nan,
               "pairwise": result.values["pairwise"], "ci_low": result.ci["pairwise"][0],
               "ci_high": result.ci["pairwise"][1], "mean_rank": result.values["mean_rank"]}
        row.update({f"top_{k}": result.values[f"top_{k}"] for k in result.ks})
        row.update({"p_value": result.p_value["pairwise"], "n_test_clips": result.n_clips})
        return row


def subject_designs(experiments: Sequence[Experiment] | Mapping[str, Experiment], frames: Mapping[str, FeatureFrames],
                    config: DecodingConfig, target: str = "target", vertices=None) -> dict[str, DecodingDesign]:
    """Each subject's decoding design (the same window, hop and lags), keyed by subject, in the given order.

    Parameters
    ----------
    experiments : sequence of Experiment (keyed by ``Experiment.subject``) or mapping of label to Experiment
    frames : mapping of clip id to FeatureFrames
        The target space of every clip any subject heard.
    config : DecodingConfig
    target : str
    vertices : array-like, optional
        Vertex indices or a boolean mask: keep only these vertices (at every lag) of every subject.
    """
    if isinstance(experiments, Mapping):
        labelled = dict(experiments)
    else:
        labelled = {}
        for experiment in experiments:
            if experiment.subject in labelled:
                raise DataError(f"Two experiments have the subject label {experiment.subject!r}; give them distinct "
                                "labels (or a mapping of label to experiment).")
            labelled[experiment.subject] = experiment
    if len(labelled) < 2:
        raise DataError(f"Cross-subject decoding needs at least two subjects, got {len(labelled)}.")
    designs = {label: make_decoding_design(e, frames, target, config.window, config.hop, config.delays)
               for label, e in labelled.items()}
    if vertices is not None:
        designs = {label: restrict_vertices(d, vertices) for label, d in designs.items()}
    return designs


def restrict_vertices(design: DecodingDesign, vertices) -> DecodingDesign:
    """The design with only ``vertices`` (indices or a boolean mask), at every lag."""
    chosen = np.asarray(vertices)
    if chosen.dtype == bool:
        if chosen.shape != (design.n_vertices,):
            raise DataError(f"The vertex mask has {chosen.size} entries but the responses have {design.n_vertices} "
                            "vertices.")
        chosen = np.flatnonzero(chosen)
    chosen = np.unique(chosen.astype(int))
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= design.n_vertices:
        raise DataError(f"Give vertex indices in [0, {design.n_vertices}), at least one.")
    columns = vertex_columns(chosen, design.n_vertices, len(design.delays))
    return dataclasses.replace(design, X_train=design.X_train[:, columns], X_test=design.X_test[:, columns],
                               n_vertices=int(chosen.size))


def _test_rows(designs: Mapping[str, DecodingDesign], held_out: str, train_subjects: list[str]) -> np.ndarray:
    seen = {c for s in train_subjects for c in designs[s].train_clips}
    return np.flatnonzero(~designs[held_out].test_samples["clip_id"].isin(seen).to_numpy())


def held_out_decoding(designs: Mapping[str, DecodingDesign], held_out: str, alignment: str, config: DecodingConfig,
                      decoder: RidgeDecoder | None = None, aligner: FunctionalAlignment | None = None,
                      progress: bool = False) -> CrossSubjectResult:
    """Decode ``held_out``'s test samples with a decoder trained on every other subject's training samples.

    Parameters
    ----------
    designs : mapping of subject to DecodingDesign
        Every subject's design (:func:`subject_designs`); the order sets the reference (the first
        subject other than ``held_out``).
    held_out : str
    alignment : {"anatomical", "functional"}
    config : DecodingConfig
        ``top_k``, ``n_bootstrap``, ``n_permutations`` (shuffle null) and ``random_state`` of the
        metrics; the decoder's settings when ``decoder`` is None.
    decoder : RidgeDecoder, optional
        Unfitted template (cloned); default: the config's (:func:`decoding.model.make_decoder`).
    aligner : FunctionalAlignment, optional
        Unfitted template of the alignments (cloned); default ``FunctionalAlignment()``.
    progress : bool

    Returns
    -------
    CrossSubjectResult
    """
    if alignment not in ALIGNMENTS:
        raise ConfigError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}.")
    if held_out not in designs:
        raise DataError(f"No subject {held_out!r}; the subjects are {list(designs)}.")
    _check_same_samples(list(designs.values()))
    train_subjects = [s for s in designs if s != held_out]
    if not train_subjects:
        raise DataError("Cross-subject decoding needs at least one training subject besides the held-out one.")
    rows = _test_rows(designs, held_out, train_subjects)
    _check_test_clips(designs[held_out], rows, config, held_out)
    n_vertices = designs[held_out].X_train.shape[1] // len(config.delays)
    decoder = clone(decoder) if decoder is not None else make_decoder(config, n_vertices, progress=progress)
    template = aligner if aligner is not None else FunctionalAlignment()
    held = designs[held_out]
    X_test = held.X_test[rows]

    reference, fitted, held_aligner, n_aligned = None, {}, None, 0
    train_X = [designs[s].X_train for s in train_subjects]
    if alignment == "anatomical":
        widths = {s: d.X_train.shape[1] for s, d in designs.items()}
        if len(set(widths.values())) > 1:
            raise DataError(f"Anatomical alignment needs the same vertices in every subject; the designs have "
                            f"{widths} columns. Resample them to one surface (fsaverage5) or use functional alignment.")
    else:
        reference = train_subjects[0]
        ref = designs[reference]
        for index, subject in enumerate(train_subjects[1:], start=1):
            fitted[subject] = clone(template).fit(*paired_responses(designs[subject], ref))
            train_X[index] = fitted[subject].transform(designs[subject].X_train)
        pairs = shared_samples(held, ref)
        held_aligner = clone(template).fit(*paired_responses(held, ref, pairs))
        n_aligned = len(pairs)
        X_test = held_aligner.transform(X_test)

    pooled = [designs[s] for s in train_subjects]
    X = np.vstack(train_X)
    Y = np.vstack([d.Y_train for d in pooled])
    decoder.fit(X, Y, pooled_groups(pooled))
    samples = held.test_samples.iloc[rows].reset_index(drop=True)
    clip_ids, predicted = clip_means(decoder.predict(X_test), samples)
    _, true = clip_means(held.Y_test[rows], samples)

    def standardised(values):
        return (values - decoder.target_mean_) / decoder.target_scale_

    result = identification(standardised(predicted), standardised(true), ks=tuple(config.top_k),
                            n_bootstrap=config.n_bootstrap, n_permutations=config.n_permutations,
                            random_state=config.random_state)
    return CrossSubjectResult(held_out, alignment, reference, train_subjects, decoder, held_aligner, fitted, rows,
                              clip_ids, predicted, true, result, len(X), n_aligned, held.target)


def _check_test_clips(design: DecodingDesign, rows: np.ndarray, config: DecodingConfig, subject: str) -> None:
    n_clips = design.test_samples["clip_id"].iloc[rows].nunique()
    need = max(2, max(config.top_k) + 1)
    if n_clips < need:
        raise DataError(f"Subject {subject!r} has {n_clips} test clips that no training subject heard in a training "
                        f"run; identification with top_k up to {max(config.top_k)} needs at least {need}. Lower "
                        "decoding.top_k or hold out clips no other subject trained on.")


def cross_subject_decoding(experiments: Sequence[Experiment] | Mapping[str, Experiment],
                           frames: Mapping[str, FeatureFrames], config: DecodingConfig, target: str = "target", *,
                           alignments: Sequence[str] = ALIGNMENTS, subjects: Sequence[str] | None = None,
                           vertices=None, decoder: RidgeDecoder | None = None,
                           aligner: FunctionalAlignment | None = None, backend: str = "auto", memory_gb: float = 2.0,
                           progress: bool = True) -> pd.DataFrame:
    """Leave-one-subject-out decoding, with anatomical and functional alignment side by side.

    For each held-out subject (``subjects``, default all): a decoder trained on the other subjects'
    training samples, pooled (anatomical: the same vertices; functional: mapped to the first
    training subject by :class:`FunctionalAlignment`), decodes the held-out subject's test clips
    (see :func:`held_out_decoding` and the module docstring: no test data are fitted on).

    Parameters
    ----------
    experiments : sequence of Experiment or mapping of label to Experiment
        The subjects, with the same clips' target features; the order sets the reference.
    frames : mapping of clip id to FeatureFrames
        The target space (as :func:`decoding.pipeline.decode_target` receives it).
    config : DecodingConfig
        Window, hop, lags, decoder and metric settings.
    target : str
        The target space's name.
    alignments : sequence of {"anatomical", "functional"}
    subjects : sequence of str, optional
        Held-out subjects to evaluate (default: every subject).
    vertices : array-like, optional
        Vertex indices or mask kept in every subject (e.g. a cortical ROI, for speed).
    decoder, aligner : optional
        Unfitted templates (cloned); defaults: the config's decoder (:func:`decoding.model.make_decoder`)
        and ``FunctionalAlignment`` on
        ``backend`` and ``memory_gb``.
    backend, memory_gb, progress

    Returns
    -------
    DataFrame
        One row per (held-out subject, alignment): ``subject``, ``alignment``, ``target``, ``reference``,
        ``train_subjects``, ``n_train_samples``, ``n_aligned_samples``, ``alignment_cv_r2`` (mean
        over the reference's columns of the held-out subject's alignment), ``pairwise`` with its
        bootstrap ``ci_low`` and ``ci_high``, ``mean_rank``, ``top_<k>``, ``p_value`` (pairwise,
        shuffle null) and ``n_test_clips``.
    """
    unknown = [a for a in alignments if a not in ALIGNMENTS]
    if unknown or not alignments:
        raise ConfigError(f"alignments must be among {ALIGNMENTS}, got {list(alignments)}.")
    designs = subject_designs(experiments, frames, config, target, vertices)
    held = list(designs) if subjects is None else list(subjects)
    missing = [s for s in held if s not in designs]
    if missing:
        raise DataError(f"No subjects {missing}; the subjects are {list(designs)}.")
    for subject in held:  # before any fit
        others = [s for s in designs if s != subject]
        _check_test_clips(designs[subject], _test_rows(designs, subject, others), config, subject)
    n_vertices = next(iter(designs.values())).X_train.shape[1] // len(config.delays)
    decoder = decoder if decoder is not None else make_decoder(config, n_vertices, False, backend, memory_gb)
    aligner = aligner if aligner is not None else FunctionalAlignment(backend=backend, memory_gb=memory_gb)
    rows = []
    jobs = [(s, a) for s in held for a in alignments]
    for subject, alignment in tqdm(jobs, desc="cross-subject decoding", disable=not progress):
        result = held_out_decoding(designs, subject, alignment, config, decoder, aligner)
        rows.append(result.row())
    return pd.DataFrame(rows)
