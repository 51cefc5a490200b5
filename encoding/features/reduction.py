"""Dimensionality reduction of large feature spaces: PCA fitted on the training clips only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from sklearn.decomposition import PCA

from encoding.errors import DataError
from encoding.features.base import FeatureFrames


def reduce_space(frames: Mapping[str, FeatureFrames], train_clips: Iterable[str], n_components: int,
                 seed: int = 0) -> tuple[dict[str, FeatureFrames], dict]:
    """Project a space's frames on its leading principal axes, fitted on the training clips' frames.

    Fitting on training clips only keeps the test clips out of every step that learns from data.

    Parameters
    ----------
    frames : mapping of clip id to FeatureFrames
    train_clips : iterable of str
        Clips whose frames fit the PCA.
    n_components : int
        Kept dimensions (at most the number of training frames and the space's dimensions).
    seed : int
        Seed of the randomized SVD solver, when used.

    Returns
    -------
    frames : dict of clip id to FeatureFrames
        With ``n_components`` dimensions.
    info : dict
        ``n_components``, ``explained_variance`` (total share kept), ``n_train_clips``,
        ``n_train_frames``, ``input_dims``: for provenance.
    """
    train = [c for c in dict.fromkeys(train_clips) if c in frames]
    if not train:
        raise DataError("PCA needs training clips with features; none of the training clips has any.")
    X = np.vstack([frames[c].values for c in train])
    k = int(min(n_components, X.shape[0], X.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(X)
    reduced = {c: FeatureFrames(pca.transform(f.values), f.starts, f.ends) for c, f in frames.items()}
    info = {"n_components": k, "explained_variance": float(pca.explained_variance_ratio_.sum()),
            "n_train_clips": len(train), "n_train_frames": int(X.shape[0]), "input_dims": int(X.shape[1])}
    return reduced, info
