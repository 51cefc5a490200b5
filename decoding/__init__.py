"""brain2music decoding: from responses back to the encoding feature spaces, and on to music.

Built on the encoding package's data model, feature spaces and ridge solver (nothing is copied)::

    design.py        decoding samples: responses averaged over each embedding window, lagged
    model.py         RidgeDecoder: one alpha per target dimension, nested vertex selection
    permutation.py   the null: clips permuted within runs, the decoder refitted (GEMMs only)
    metrics.py       pairwise and N-way identification, ranks, bootstrap CIs, nulls, genres
    retrieval.py     EmbeddingIndex: exact or approximate (faiss) cosine search of a library
    generation/      Griffin-Lim, MusicGen, CLAP-conditioned latent diffusion; wav files
    evaluation.py    musicnn tag agreement between originals and reconstructions
    pipeline.py      the steps chained (``brain2music decode``); report.py writes the outputs

The main names are available from the package itself (``from decoding import RidgeDecoder``),
imported on first use.
"""

from importlib import import_module

_PUBLIC = {
    "DecodingDesign": "decoding.design", "make_decoding_design": "decoding.design", "clip_means": "decoding.design",
    "RidgeDecoder": "decoding.model", "make_decoder": "decoding.model",
    "FunctionalAlignment": "decoding.alignment", "cross_subject_decoding": "decoding.alignment",
    "shared_samples": "decoding.alignment",
    "permuted_predictions": "decoding.permutation",
    "identification": "decoding.metrics", "IdentificationResult": "decoding.metrics",
    "EmbeddingIndex": "decoding.retrieval",
    "run_decoding": "decoding.pipeline", "DecodingRun": "decoding.pipeline",
}
__all__ = tuple(sorted(_PUBLIC))


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'decoding' has no attribute {name!r}")
