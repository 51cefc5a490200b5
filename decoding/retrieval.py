"""Retrieval: the library items nearest to an embedding (Brain2Music's reconstruction by retrieval).

Brain2Music decodes a clip-level embedding from fMRI and "reconstructs" the music by retrieving the
library clip whose embedding is nearest. :class:`EmbeddingIndex` holds such a library: one vector per
item (clip-level: feature frames are mean-pooled), the item ids, a metadata table (captions, genre,
paths ... when known), and the feature space's name, parameters and fingerprint, so that a query
embedded in another space or with other parameters is refused instead of silently matched.

Similarity is cosine. Exact search (the default) normalises library and queries and ranks by
a blocked float32 matrix product with ``argpartition``: memory stays below ~128 MB of similarities
per block, and on 2 cores 1,000 queries against 100,000 items of 512 dimensions take 1.5-2 s
(time grows linearly with the library).

``method="faiss"`` searches an approximate index from the optional ``faiss-cpu`` package
(``pip install brain2music[retrieval]``) for libraries of 100,000 items and more. The index is a
**HNSW graph** (``faiss.IndexHNSWFlat``, inner product on the unit vectors, so similarities are exact
cosines and only the ranking is approximate). HNSW rather than IVF: it needs no training pass (IVF's
k-means on 100,000+ vectors of 512 dimensions is slow on few cores) and at equal query time it
reached a clearly higher recall on embedding-like data (low intrinsic dimension) here; its costs are
memory (a third copy of the vectors plus ``2 * m`` neighbour ids per item) and build time (25-40 s
for 100,000 x 512 on 2 cores; built on first use, kept by :meth:`EmbeddingIndex.save`). Parameters:
``m = 32`` neighbours per node, ``ef_construction = 40`` (faiss's default) and ``ef_search = 128``
candidates per query (raised to ``k`` when ``k`` is larger): recall@10 0.99 against exact search on
such data at 100,000 items, where its queries are only 1.5-5x faster than exact search; query time grows
about logarithmically with the library, so the gain is at millions of items (``benchmarks/retrieval.py``).
On isotropic random vectors of hundreds of dimensions, which have no neighbourhood structure, no
approximate index does well (HNSW recall@10 0.6-0.8 at 10,000-20,000 items of 512 dimensions); exact
search is the safe choice below a few hundred thousand items.
"""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encoding.data import ClipSet
from encoding.errors import ConfigError, DataError, MissingInputError
from encoding.features import (
    AudioExtractor,
    FeatureCache,
    FeatureExtractor,
    FeatureFrames,
    get_extractor,
)
from encoding.io import atomic_path

FORMAT = "brain2music-embedding-index/1"
TEXT_SPACES = ("caption", "clap_text")
JOINT_SPACES = {"clap_audio": "clap", "clap_text": "clap"}  # spaces whose audio and text embed into one space
OUTPUT_NEUTRAL_PARAMS = ("batch_size",)  # parameters that do not change an extractor's output
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aif", ".aiff", ".au")
RESULT_COLUMNS = ("query", "rank", "item_id", "similarity")
METHODS = ("exact", "faiss")
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
EXACT_BLOCK = 2**25  # similarities per block of the exact search (float32: 128 MB)
FAISS_HINT = "pip install brain2music[retrieval]"


class EmbeddingIndex:
    """A library of clip-level embeddings searched by cosine similarity.

    Parameters
    ----------
    embeddings : array-like, shape (n_items, n_dims)
        One vector per item, stored as float32; finite, none all zero.
    item_ids : sequence of str, length n_items
        Unique item ids.
    metadata : DataFrame or None
        Indexed by item id (rows are matched by id; items without a row get missing values, rows
        of other ids are dropped): ``caption``, ``genre``, ``path`` ... Columns are added to search
        results, so none may be named ``query``, ``rank``, ``item_id`` or ``similarity``.
    space : str or None
        Feature space of the embeddings (``"clap_audio"``, ``"caption"`` ...); None when unknown.
    fingerprint : str or None
        :meth:`encoding.features.FeatureExtractor.fingerprint` of the extractor that made them.
    params : dict or None
        That extractor's parameters (what :func:`get_extractor` needs to embed queries alike).
    sample_rate : int or None
        Rate the library audio was resampled to before extraction (audio spaces).

    Raises
    ------
    DataError
        If the embeddings are not 2-D, not finite or have an all-zero row, the ids are not unique
        or not as many as the rows, or a metadata column has a reserved name.
    """

    def __init__(self, embeddings, item_ids: Sequence[str], metadata: pd.DataFrame | None = None,
                 space: str | None = None, fingerprint: str | None = None, params: dict | None = None,
                 sample_rate: int | None = None):
        self._ids = _check_ids(item_ids)
        self._embeddings = _check_embeddings(embeddings, self._ids)
        self._metadata = _align_metadata(metadata, self._ids)
        self.space = space
        self.fingerprint = fingerprint
        self.params = dict(params or {})
        self.sample_rate = sample_rate
        self._unit: np.ndarray | None = None
        self._faiss = None  # (m, ef_construction, index), built on first use
        self._faiss_blob: tuple[int, int, np.ndarray] | None = None  # a saved index, deserialised on first use

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_frames(cls, frames: Mapping[str, FeatureFrames | np.ndarray], space: str | None = None,
                    fingerprint: str | None = None, metadata: pd.DataFrame | None = None,
                    params: dict | None = None, sample_rate: int | None = None) -> EmbeddingIndex:
        """An index of extracted features: each item's frames mean-pooled to one vector.

        Parameters
        ----------
        frames : mapping of str to FeatureFrames or ndarray
            Item id to its frames (:class:`FeatureFrames`, or an array of shape (n_frames, n_dims)
            or (n_dims,)), as :meth:`FeatureExtractor.extract` returns them.
        space, fingerprint, metadata, params, sample_rate
            As for :class:`EmbeddingIndex`.
        """
        ids = list(frames)
        if not ids:
            raise DataError("No items to index: the mapping of frames is empty.")
        vectors = [_pooled(frames[i]) for i in ids]
        odd = [i for i, v in zip(ids, vectors) if v.shape != vectors[0].shape]
        if odd:
            raise DataError(f"Items have embeddings of different sizes: {ids[0]!r} has {vectors[0].shape[0]} dims, "
                            f"{len(odd)} others differ, e.g. {odd[:5]}.")
        return cls(np.vstack(vectors), ids, metadata, space, fingerprint, params, sample_rate)

    @classmethod
    def from_audio_folder(cls, folder: str | Path, space: str, params: dict | None = None, *,
                          sample_rate: int = 16000, metadata: pd.DataFrame | None = None,
                          extensions: Sequence[str] = AUDIO_EXTENSIONS, cache: str | Path | None = None,
                          chunk_size: int = 32, progress: bool = True) -> EmbeddingIndex:
        """An index of every audio file under ``folder`` (subfolders included) in an audio feature space.

        Files are loaded as the pipeline loads stimuli (:func:`encoding.datasets.audio.load_excerpts`:
        mono, resampled to ``sample_rate``, RMS-normalised; no fades), ``chunk_size`` at a time so a
        large library never sits in memory whole; features are
        ``get_extractor(space, **params).extract(ClipSet)``, mean-pooled over frames.

        Parameters
        ----------
        folder : path
        space : str
            An audio feature space (``logmel``, ``clap_audio``, ``musicnn`` ...).
        params : dict or None
            Its parameters.
        sample_rate : int
            Hz.
        metadata : DataFrame or None
            Indexed by item id, joined to the ``path`` column.
        extensions : sequence of str
            File name endings counted as audio (case-insensitive).
        cache : path or None
            Folder caching waveforms and features (an interrupted build resumes).
        chunk_size : int
            Files loaded and extracted at a time.
        progress : bool

        Returns
        -------
        EmbeddingIndex
            Item ids are paths relative to ``folder`` without their ending (``rock/rock.00001``);
            metadata column ``path`` holds the relative path with it.

        Raises
        ------
        MissingInputError
            If ``folder`` is not a folder.
        ConfigError
            If ``space`` is unknown, not an audio space, or a parameter is wrong.
        DataError
            If the folder holds no audio file, two files give the same id, or one cannot be decoded.
        """
        from encoding.datasets.audio import load_excerpts

        folder = Path(folder)
        if not folder.is_dir():
            raise MissingInputError(f"Audio folder {folder} does not exist: give the folder of the library's audio files.")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}.")
        extractor = _extractor(space, params)
        if not isinstance(extractor, AudioExtractor):
            raise ConfigError(f"Feature space {space!r} is not an audio space: build a caption index with "
                              "EmbeddingIndex.from_captions, or choose an audio space (logmel, clap_audio ...).")
        files = _audio_files(folder, extensions)
        extractor.preflight()
        feature_cache = FeatureCache(cache) if cache is not None else None
        ids, pooled = list(files), []
        with tqdm(total=len(ids), desc=f"index: {space}", disable=not progress) as bar:
            for start in range(0, len(ids), chunk_size):
                chunk = pd.DataFrame(index=pd.Index(ids[start:start + chunk_size]))
                waves = load_excerpts(chunk, folder, sample_rate, locate=lambda _root, cid: files[cid],
                                      fade_seconds=0.0, cache=cache, progress=False)
                frames = extractor.extract(ClipSet(chunk, waves, sample_rate), progress=False, cache=feature_cache)
                pooled.extend(_pooled(frames[cid]) for cid in chunk.index)
                bar.update(len(chunk))
        table = pd.DataFrame({"path": [files[i].relative_to(folder).as_posix() for i in ids]}, index=ids)
        if metadata is not None:
            table = table.join(metadata.drop(columns="path", errors="ignore"))
        return cls(np.vstack(pooled), ids, table, space, extractor.fingerprint(), extractor.get_params(), sample_rate)

    @classmethod
    def from_captions(cls, table_or_path: pd.DataFrame | str | Path, space: str = "caption",
                      params: dict | None = None, *, id_column: str | None = None, caption_column: str = "caption",
                      cache: str | Path | None = None, progress: bool = True) -> EmbeddingIndex:
        """An index of captions embedded in a text space (``caption``, ``clap_text``).

        Parameters
        ----------
        table_or_path : DataFrame or path
            A table of captions, or a CSV file of one. A CSV with MusicCaps' columns (``ytid``,
            ``start_s`` ...) is read by :func:`encoding.datasets.musiccaps.load_musiccaps`.
        space : {"caption", "clap_text"}
        params : dict or None
            The space's parameters. ``caption``'s ``model="auto"`` is resolved here (MiniLM when
            installed, else LSA), so the fingerprint names the model that ran.
        id_column : str or None
            Column of item ids; None: the table's index (MusicCaps: ``<ytid>_<start>``).
        caption_column : str
            Column of the caption text (renamed ``caption`` in the metadata).
        cache : path or None
            Feature cache folder.
        progress : bool

        Raises
        ------
        MissingInputError
            If the file does not exist.
        ConfigError
            If ``space`` is not a text space or a parameter is wrong.
        DataError
            If a column is missing, ids repeat, or a caption is empty.
        """
        table = _caption_table(table_or_path, id_column, caption_column)
        if space not in TEXT_SPACES:
            raise ConfigError(f"Feature space {space!r} is not a text space: from_captions takes "
                              f"{' or '.join(TEXT_SPACES)}; index audio with EmbeddingIndex.from_audio_folder.")
        extractor = _extractor(space, params)
        extractor.preflight()
        clips = ClipSet(table, {}, sample_rate=1)
        frames = extractor.extract(clips, progress=progress, cache=FeatureCache(cache) if cache is not None else None)
        return cls.from_frames(frames, space, extractor.fingerprint(), table, extractor.get_params())

    # ------------------------------------------------------------------ contents

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return (f"EmbeddingIndex({len(self)} items x {self.n_dims} dims, space={self.space!r}, "
                f"metadata columns {list(self._metadata.columns)})")

    @property
    def n_dims(self) -> int:
        """Embedding dimensions."""
        return self._embeddings.shape[1]

    @property
    def item_ids(self) -> list[str]:
        """Item ids, in row order."""
        return self._ids.tolist()

    @property
    def embeddings(self) -> np.ndarray:
        """The embeddings as given, shape (n_items, n_dims), float32 (read-only)."""
        return self._embeddings

    @property
    def metadata(self) -> pd.DataFrame:
        """Metadata, indexed by ``item_id`` in row order (a copy)."""
        return self._metadata.copy()

    # ------------------------------------------------------------------ queries

    def check_query(self, space: str | None, fingerprint: str | None, n_dims: int) -> None:
        """Refuse queries that were not embedded like the library.

        Spaces must be equal, or the two sides of one joint space (``clap_audio`` and ``clap_text``
        of the same model and revision); fingerprints must agree up to parameters that do not change
        the output (``batch_size``); dimensions must be equal. A space or fingerprint that is None on
        either side is not compared.

        Raises
        ------
        DataError
            Naming the query's and the index's space, fingerprint and dimensions.
        """
        problems = []
        if int(n_dims) != self.n_dims:
            problems.append("dimensions")
        if space is not None and self.space is not None and JOINT_SPACES.get(space, space) != JOINT_SPACES.get(
                self.space, self.space):
            problems.append("spaces")
        elif fingerprint is not None and self.fingerprint is not None and _identity(space, fingerprint) != _identity(
                self.space, self.fingerprint):
            problems.append("fingerprints")
        if problems:
            redo = (f"embed the queries with get_extractor({self.space!r}, **{self.params!r})"
                    if self.space is not None else "embed the queries as the library was embedded")
            raise DataError(
                f"Query embeddings do not match the index ({' and '.join(problems)} differ): queries are in space "
                f"{space!r} (fingerprint {fingerprint!r}, {n_dims} dims), the index is in space {self.space!r} "
                f"(fingerprint {self.fingerprint!r}, {self.n_dims} dims). {redo[0].upper() + redo[1:]}, or build "
                "the index in the queries' space.")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts embedded in this index's space (its text side, for ``clap_audio``).

        Returns
        -------
        ndarray, shape (n_texts, n_dims)

        Raises
        ------
        ConfigError
            If the space has no text side, or is LSA (fitted on the library's captions: new texts
            cannot be placed in that fit; build the index with ``model="minilm"``).
        """
        extractor = self._text_extractor()
        texts = [str(t) for t in ([texts] if isinstance(texts, str) else texts)]
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise DataError(f"Query texts must not be empty; texts {empty[:5]} are.")
        clips = ClipSet(pd.DataFrame({"caption": texts}, index=[f"q{i}" for i in range(len(texts))]), {}, 1)
        frames = extractor.extract(clips, progress=False)
        return np.vstack([_pooled(frames[f"q{i}"]) for i in range(len(texts))])

    def search(self, queries, k: int = 5, method: str = "exact", *, query_ids: Sequence | None = None,
               space: str | None = None, fingerprint: str | None = None,
               ef_search: int = HNSW_EF_SEARCH) -> pd.DataFrame:
        """The ``k`` items most similar (cosine) to each query.

        Parameters
        ----------
        queries : ndarray, shape (n_queries, n_dims) or (n_dims,); mapping of id to vector or FeatureFrames; or list of str
            Query embeddings (a mapping's keys are the query ids; frames are mean-pooled), or texts,
            embedded by :meth:`embed_texts` (their ids default to the texts).
        k : int
            Items per query (at most the library's size).
        method : {"exact", "faiss"}
            Exact search, or the approximate HNSW index (built on first use, see the module notes).
        query_ids : sequence or None
            Ids of the queries (default: their positions 0, 1, ...).
        space, fingerprint : str or None
            Where the queries come from; checked by :meth:`check_query` when given (dimensions
            always are).
        ef_search : int
            HNSW candidates per query (``method="faiss"``): higher is slower and closer to exact.

        Returns
        -------
        DataFrame, shape (n_queries * k, 4 + n_metadata_columns)
            Long format, best first within each query: ``query``, ``rank`` (1 = most similar),
            ``item_id``, ``similarity`` (cosine, float32), then the item's metadata columns.

        Raises
        ------
        ConfigError
            For an unknown ``method``, ``k < 1``, or ``method="faiss"`` without faiss installed.
        DataError
            For queries of the wrong shape or space, non-finite or all-zero queries.
        """
        if method not in METHODS:
            raise ConfigError(f"Unknown search method {method!r}: choose 'exact' or 'faiss'.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k (items per query) must be a positive integer, got {k!r}.")
        if method == "faiss":
            _import_faiss()
        if isinstance(queries, Sequence) and not isinstance(queries, str) and queries and all(
                isinstance(q, str) for q in queries):
            query_ids = list(queries) if query_ids is None else query_ids
            text_side = self._text_extractor()
            space, fingerprint = text_side.name, text_side.fingerprint()
            queries = self.embed_texts(queries)
        vectors, ids = _query_matrix(queries, query_ids)
        self.check_query(space, fingerprint, vectors.shape[1])
        unit = _normalised(vectors, "query", ids)
        k = min(int(k), len(self))
        if method == "exact":
            sims, rows = exact_search(self._unit_vectors(), unit, k)
        else:
            sims, rows = self._faiss_search(unit, k, ef_search)
        return self._results(ids, sims, rows)

    def build_faiss(self, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> None:
        """Build the approximate HNSW index now (else :meth:`search` builds it on first use).

        Parameters
        ----------
        m : int
            Neighbours per graph node (memory ``2 * m`` ids per item; higher: better recall, slower build).
        ef_construction : int
            Candidates examined while inserting an item.
        """
        faiss = _import_faiss()
        for name, value in (("m", m), ("ef_construction", ef_construction)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise ConfigError(f"HNSW {name} must be an integer of at least 2, got {value!r}.")
        if self._faiss_blob is not None and self._faiss_blob[:2] == (m, ef_construction):
            index = faiss.deserialize_index(self._faiss_blob[2])
        else:
            index = faiss.IndexHNSWFlat(self.n_dims, int(m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
            index.add(self._unit_vectors())
        self._faiss_blob = None
        self._faiss = (int(m), int(ef_construction), index)

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the index to one ``.npz`` file, atomically.

        The file holds the embeddings, item ids, the metadata table (pandas' JSON "table" format,
        types kept), the space, parameters, fingerprint and sample rate, and the HNSW index when one
        was built (so loading does not rebuild it).
        """
        header = {"format": FORMAT, "space": self.space, "fingerprint": self.fingerprint, "params": self.params,
                  "sample_rate": self.sample_rate, "faiss": None}
        arrays = {"embeddings": self._embeddings, "item_ids": self._ids.astype(str)}
        blob = self._faiss_blob
        if self._faiss is not None:
            import faiss

            blob = (self._faiss[0], self._faiss[1], faiss.serialize_index(self._faiss[2]))
        if blob is not None:
            header["faiss"] = {"kind": "IndexHNSWFlat", "m": blob[0], "ef_construction": blob[1]}
            arrays["faiss_index"] = blob[2]
        arrays["header"] = np.array(json.dumps(header, default=str))
        arrays["metadata"] = np.array(self._metadata.to_json(orient="table", index=True))
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """Read an index written by :meth:`save`.

        Raises
        ------
        MissingInputError
            If the file does not exist.
        DataError
            If it is not an index written by :meth:`save`.
        """
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"Embedding index {path} does not exist: write one with EmbeddingIndex.save.")
        try:
            with np.load(path, allow_pickle=False) as f:
                header = json.loads(str(f["header"]))
                if header.get("format") != FORMAT:
                    raise ValueError(f"format {header.get('format')!r}")
                embeddings, ids = f["embeddings"], f["item_ids"].tolist()
                metadata = pd.read_json(io.StringIO(str(f["metadata"])), orient="table")
                blob = f["faiss_index"] if header.get("faiss") else None
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{path} is not an embedding index written by EmbeddingIndex.save ({err}).") from None
        index = cls(embeddings, ids, metadata, header["space"], header["fingerprint"], header["params"],
                    header["sample_rate"])
        if blob is not None:
            index._faiss_blob = (header["faiss"]["m"], header["faiss"]["ef_construction"], blob)
        return index

    # ------------------------------------------------------------------ internals

    def _unit_vectors(self) -> np.ndarray:
        if self._unit is None:
            self._unit = _normalised(self._embeddings, "item", self._ids)
        return self._unit

    def _faiss_search(self, unit: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(ef_search, bool) or not isinstance(ef_search, (int, np.integer)) or ef_search < 1:
            raise ConfigError(f"ef_search must be a positive integer, got {ef_search!r}.")
        if self._faiss is None:
            m, efc = self._faiss_blob[:2] if self._faiss_blob is not None else (HNSW_M, HNSW_EF_CONSTRUCTION)
            self.build_faiss(m, efc)
        index = self._faiss[2]
        index.hnsw.efSearch = max(int(ef_search), k)
        sims, rows = index.search(np.ascontiguousarray(unit, dtype=np.float32), k)
        return sims, rows

    def _results(self, query_ids: list, sims: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
        n_queries, k = rows.shape
        found = rows.ravel() >= 0  # faiss marks missing neighbours with -1
        picked = rows.ravel()[found]
        out = pd.DataFrame({
            "query": np.repeat(np.asarray(query_ids, dtype=object), k)[found],
            "rank": np.tile(np.arange(1, k + 1), n_queries)[found],
            "item_id": self._ids[picked],
            "similarity": sims.ravel()[found].astype(np.float32),
        })
        meta = self._metadata.iloc[picked].reset_index(drop=True)
        return pd.concat([out, meta], axis=1)

    def _text_extractor(self) -> FeatureExtractor:
        if self.space == "clap_audio":
            return get_extractor("clap_text", model=self.params.get("model", "laion/larger_clap_music"),
                                 revision=self.params.get("revision", "main"))
        if self.space not in TEXT_SPACES:
            raise ConfigError(f"The index is in space {self.space!r}, which has no text side: give query embeddings "
                              "instead of texts (text queries need a caption, clap_text or clap_audio index).")
        if self.space == "caption" and self.params.get("model") == "lsa":
            raise ConfigError("The index's caption space is LSA, fitted on the library's own captions: new texts "
                              "cannot be embedded in that fit. Build the index with params={'model': 'minilm'} "
                              "to query it with texts.")
        return get_extractor(self.space, **self.params)


def exact_search(library: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest inner products of each query with the library, by blocked GEMM and ``argpartition``.

    Parameters
    ----------
    library : ndarray, shape (n_items, n_dims)
        Unit vectors (then the products are cosines).
    queries : ndarray, shape (n_queries, n_dims)
    k : int
        At most n_items.

    Returns
    -------
    similarities : ndarray, shape (n_queries, k)
        Best first; ties broken by item order.
    rows : ndarray, shape (n_queries, k)
        Library rows.
    """
    library = np.asarray(library, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    n = len(library)
    block = max(1, EXACT_BLOCK // max(n, 1))
    sims = np.empty((len(queries), k), np.float32)
    rows = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start:start + block] @ library.T
        if k < n:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(n), scores.shape)
        values = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -values), axis=1)
        rows[start:start + block] = np.take_along_axis(top, order, axis=1)
        sims[start:start + block] = np.take_along_axis(values, order, axis=1)
    return sims, rows


def recall_at_k(found: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Mean share of each query's true neighbours (``truth``, e.g. exact search) that ``found`` retrieved.

    Parameters
    ----------
    found, truth : DataFrame
        Results of :meth:`EmbeddingIndex.search` with the same queries and ``k``.

    Returns
    -------
    float
        In [0, 1]: recall@k.
    """
    got = found.groupby("query", sort=False)["item_id"].agg(set)
    want = truth.groupby("query", sort=False)["item_id"].agg(set)
    return float(np.mean([len(got.get(q, set()) & items) / len(items) for q, items in want.items()]))


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError(f"method='faiss' needs the faiss package, which is not installed: {FAISS_HINT} "
                          "(or search with method='exact').") from None
    return faiss


def _extractor(space: str, params: dict | None) -> FeatureExtractor:
    """The extractor of ``space``; caption's ``model="auto"`` resolved so the fingerprint names the model that runs."""
    params = dict(params or {})
    extractor = get_extractor(space, **params)
    if params.get("model", "auto") == "auto" and hasattr(extractor, "resolved_model"):
        extractor = get_extractor(space, **{**params, "model": extractor.resolved_model()})
    return extractor


def _identity(space: str | None, fingerprint: str) -> tuple:
    """What must agree between two fingerprints: the parameters that change the output (for a joint
    space, only the model and revision)."""
    try:
        name, code, listed = fingerprint.split("|", 2)
        params = dict(ast.literal_eval(listed))
    except (ValueError, SyntaxError, TypeError):
        return (space, fingerprint)
    if params.get("model") == "auto":  # caption's "auto": the model it stands for on this machine
        try:
            params["model"] = get_extractor(name, **params).resolved_model()
        except (ConfigError, AttributeError):
            pass
    group = JOINT_SPACES.get(name)
    if group is not None:
        return (group, params.get("model"), params.get("revision", "main"))
    return (name, code, sorted((k, repr(v)) for k, v in params.items() if k not in OUTPUT_NEUTRAL_PARAMS))


def _check_ids(item_ids: Sequence[str]) -> np.ndarray:
    ids = np.asarray([str(i) for i in item_ids], dtype=object)
    if len(ids) == 0:
        raise DataError("An embedding index needs at least one item; got no item ids.")
    dup = pd.Index(ids)
    if not dup.is_unique:
        raise DataError(f"Item ids must be unique; repeated: {dup[dup.duplicated()].unique().tolist()[:5]}.")
    return ids


def _check_embeddings(embeddings, ids: np.ndarray) -> np.ndarray:
    values = np.asarray(embeddings)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise DataError(f"Embeddings must be a numeric 2-D array (n_items, n_dims); got shape {values.shape}, "
                        f"dtype {values.dtype}.")
    if len(values) != len(ids):
        raise DataError(f"Got {len(values)} embeddings for {len(ids)} item ids: give one id per row.")
    values = np.array(values, dtype=np.float32, order="C", copy=True)  # a copy: the caller's array stays writable
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(f"Embeddings of {bad.sum()} items are NaN or inf, e.g. {ids[bad].tolist()[:5]}.")
    values.setflags(write=False)
    return values


def _align_metadata(metadata: pd.DataFrame | None, ids: np.ndarray) -> pd.DataFrame:
    if metadata is None:
        table = pd.DataFrame(index=pd.Index(ids.tolist()))
    else:
        if not isinstance(metadata, pd.DataFrame):
            raise DataError(f"Metadata must be a DataFrame indexed by item id, got {type(metadata).__name__}.")
        reserved = [c for c in metadata.columns if c in RESULT_COLUMNS]
        if reserved:
            raise DataError(f"Metadata columns {reserved} clash with the columns of search results "
                            f"{list(RESULT_COLUMNS)}: rename them.")
        table = metadata.copy()
        table.index = table.index.astype(str)
        if not table.index.is_unique:
            raise DataError(f"Metadata has repeated item ids, e.g. {table.index[table.index.duplicated()].tolist()[:5]}.")
        table = table.reindex(ids.tolist())
    table.index.name = "item_id"
    return table


def _pooled(frames: FeatureFrames | np.ndarray) -> np.ndarray:
    values = frames.values if isinstance(frames, FeatureFrames) else np.asarray(frames, dtype=np.float32)
    return values if values.ndim == 1 else values.mean(axis=0)


def _normalised(vectors: np.ndarray, what: str, ids) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise DataError(f"Cosine similarity is undefined for all-zero vectors: {zero.sum()} {what} embeddings are "
                        f"zero, e.g. {np.asarray(ids, dtype=object)[zero].tolist()[:5]}.")
    return (vectors / norms).astype(np.float32)


def _query_matrix(queries, query_ids: Sequence | None) -> tuple[np.ndarray, list]:
    if isinstance(queries, Mapping):
        ids = list(queries) if query_ids is None else list(query_ids)
        vectors = np.vstack([_pooled(v) for v in queries.values()]) if queries else np.empty((0, 0))
    else:
        vectors = np.asarray(queries)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        ids = list(range(len(vectors))) if query_ids is None else list(query_ids)
    if vectors.ndim != 2 or len(vectors) == 0 or not np.issubdtype(vectors.dtype, np.number):
        raise DataError(f"Queries must be a numeric array (n_queries, n_dims) with at least one row; got shape "
                        f"{vectors.shape}, dtype {vectors.dtype}.")
    if len(ids) != len(vectors):
        raise DataError(f"Got {len(ids)} query ids for {len(vectors)} queries.")
    vectors = np.asarray(vectors, dtype=np.float32)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise DataError(f"{bad.sum()} queries are NaN or inf, e.g. {np.asarray(ids, dtype=object)[bad].tolist()[:5]}.")
    return vectors, ids


def _audio_files(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    endings = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(endings)
                   and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{folder} holds no audio files (endings {', '.join(endings)}): give the library's folder.")
    files: dict[str, Path] = {}
    for path in paths:
        rel = path.relative_to(folder)
        cid = rel.with_suffix("").as_posix()
        if cid in files:
            raise DataError(f"{files[cid]} and {path} give the same item id {cid!r}: keep one of them.")
        files[cid] = path
    return files


def _caption_table(table_or_path: pd.DataFrame | str | Path, id_column: str | None, caption_column: str
                   ) -> pd.DataFrame:
    """A table indexed by item id (str) with a non-empty ``caption`` column."""
    if isinstance(table_or_path, pd.DataFrame):
        source, table = "the caption table", table_or_path.copy()
    else:
        path = Path(table_or_path)
        source = str(path)
        if not path.is_file():
            raise MissingInputError(f"Caption table {path} does not exist.")
        header = pd.read_csv(path, encoding="utf-8-sig", nrows=0).columns
        if id_column is None and {"ytid", "start_s"} <= set(header):
            from encoding.datasets.musiccaps import load_musiccaps

            table = load_musiccaps(path)
        else:
            if id_column is None:
                raise DataError(f"{path}: give id_column, the column of item ids (columns are {list(header)}).")
            table = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    missing = [c for c in ([id_column] if id_column else []) + [caption_column] if c not in table.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; columns are {list(table.columns)}.")
    if id_column:
        table = table.set_index(id_column)
    table.index = pd.Index(table.index.astype(str).str.strip(), name="item_id")
    if not table.index.is_unique:
        raise DataError(f"{source}: repeated item ids, e.g. {table.index[table.index.duplicated()].unique().tolist()[:5]}.")
    if caption_column != "caption":
        table = table.drop(columns="caption", errors="ignore").rename(columns={caption_column: "caption"})
    table["caption"] = table["caption"].fillna("").astype(str).str.strip()
    empty = table.index[table["caption"] == ""].tolist()
    if empty:
        raise DataError(f"{source}: {len(empty)} items have an empty {caption_column!r}, e.g. {empty[:5]}.")
    return table
