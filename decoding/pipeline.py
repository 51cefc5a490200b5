"""The decoding pipeline: data -> target features -> decoding design -> decoder -> metrics -> retrieval -> audio.

Each step is a plain function, as in :mod:`encoding.pipeline` (whose data loading and feature
extraction it reuses); :func:`run_decoding` chains them and writes the outputs
(:mod:`decoding.report`). Before any heavy work it claims the output folder, checks the retrieval
library and loads every generator (:func:`preflight`); right after loading, it checks that the
test set is large enough for the N-way metric (:func:`check_against_data`).

Metrics are computed on clip-level embeddings (each test clip's windows averaged), standardised
with the training samples' mean and standard deviation per dimension, so that the dimensions
weigh alike and the embedding's mean (shared by every clip) does not make all clips look alike.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from decoding.design import DecodingDesign, clip_means, make_decoding_design
from decoding.metrics import IdentificationResult, identification
from decoding.model import RidgeDecoder, make_decoder
from decoding.permutation import permuted_predictions
from decoding.retrieval import EmbeddingIndex
from encoding.config import DecodingConfig, FeaturesConfig, PipelineConfig
from encoding.data import ClipSet, Experiment
from encoding.errors import ConfigError, DataError, MissingInputError
from encoding.features import FeatureFrames, get_extractor
from encoding.io import RunFolder
from encoding.pipeline import Steps, extract_features, load_data
from encoding.pipeline import preflight as encoding_preflight
from encoding.simulation import GroundTruth

TEXT_TARGETS = ("caption", "clap_text")


@dataclass
class TargetResult:
    """One decoded feature space.

    Attributes
    ----------
    space : str
    design : DecodingDesign
    decoder : RidgeDecoder
    clip_ids : list of str
        Test clips, in order.
    predicted, true : ndarray, shape (n_clips, n_dims)
        Decoded and true clip embeddings, in the space's units.
    identification : IdentificationResult
        With the per-genre table and genre classification when the clips have a ``genre`` label.
    fingerprint : str or None
        The target extractor's fingerprint (a retrieval library must match it).
    retrieval : DataFrame or None
        Items retrieved for each decoded clip (and, with ``source = "oracle"``, for its true embedding).
    """

    space: str
    design: DecodingDesign
    decoder: RidgeDecoder
    clip_ids: list[str]
    predicted: np.ndarray
    true: np.ndarray
    identification: IdentificationResult | None
    fingerprint: str | None = None
    retrieval: pd.DataFrame | None = None

    def standardised(self, values: np.ndarray) -> np.ndarray:
        """``values`` in the decoder's standardised units (training mean and scale per dimension)."""
        return (values - self.decoder.target_mean_) / self.decoder.target_scale_


@dataclass
class DecodingRun:
    """Everything a decoding run produced.

    ``audio`` maps (clip id, method, source) to (waveform, sample rate): method ``original``,
    ``retrieval_<space>`` or a generator; source ``true``, ``decoded``, ``oracle`` or ``chance``.
    """

    config: PipelineConfig
    experiment: Experiment
    targets: dict[str, TargetResult]
    reconstructions: pd.DataFrame | None = None
    audio: dict[tuple[str, str, str], tuple[np.ndarray, int]] = field(default_factory=dict)
    truth: GroundTruth | None = None
    timings: dict[str, float] = field(default_factory=dict)


# -- checks ------------------------------------------------------------------------------

def generators(cfg: DecodingConfig) -> dict:
    """The configured model-based generators (unloaded), by name (Griffin-Lim needs no model)."""
    made = {}
    for name in cfg.generators:
        params = cfg.generator_params.get(name, {})
        if name == "musicgen":
            from decoding.generation.text_to_music import TextToMusic

            made[name] = _built(TextToMusic, name, params)
        elif name == "latent_diffusion":
            from decoding.generation.latent_diffusion import EmbeddingToMusic

            made[name] = _built(EmbeddingToMusic, name, params)
    return made


def _built(cls, name: str, params: dict):
    try:
        return cls(**params)
    except TypeError as err:
        raise ConfigError(f"decoding.generator_params.{name}: {err}; its parameters: "
                          f"{', '.join(list(inspect.signature(cls).parameters))}.") from None


def preflight(config: PipelineConfig) -> None:
    """Check before heavy work that the data's spaces, the targets, the library and the generators can run.

    Raises
    ------
    UserError
        A target or generator model that cannot load (naming it and how to get it), a missing library.
    """
    cfg = config.decoding
    encoding_preflight(dataclasses.replace(config, features=_target_features(config)))
    if cfg.library:
        check_library(config)
    if cfg.library_method == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise ConfigError("decoding.library_method = 'faiss' needs the retrieval extra: pip install "
                              "'brain2music[retrieval]' (or use 'exact').") from None
    for generator in generators(cfg).values():
        generator.preflight()


def check_library(config: PipelineConfig) -> None:
    """A library serves every target: a saved index must be in each target's space, a caption table needs text
    targets (checked before any work; dimensions and fingerprints are checked at the search).

    Raises
    ------
    ConfigError, DataError
        Naming the library, its space and the target's.
    """
    cfg = config.decoding
    path = Path(cfg.library)
    if not path.exists():
        raise MissingInputError(f"decoding.library = {cfg.library!r} does not exist; give a caption table (CSV), a "
                                "folder of audio files or a saved index (.npz), or leave it empty to retrieve among "
                                "the experiment's clips.")
    if path.suffix == ".npz":
        index = EmbeddingIndex.load(path)
        for space in cfg.targets:  # the dimensions are checked when the decoded embeddings are searched
            index.check_query(space, None, index.n_dims)
    elif not path.is_dir():
        audio = [t for t in cfg.targets if t not in TEXT_TARGETS]
        if audio:
            raise ConfigError(f"decoding.library = {str(path)!r} is a caption table, but {audio} are audio spaces; "
                              "give a folder of audio files for them, or decode text spaces only ('caption', "
                              "'clap_text').")


def check_against_data(cfg: DecodingConfig, experiment: Experiment) -> None:
    """The decoding options that depend on the data, checked right after loading.

    Raises
    ------
    DataError
        A test set too small for the N-way metric, clips without the audio or captions a target needs.
    """
    train = {c for run in experiment.train_runs for c in run.events["clip_id"]}
    test = {c for run in experiment.test_runs for c in run.events["clip_id"]} - train
    need = max(cfg.top_k) + 1
    if len(test) < max(need, 2):
        raise DataError(f"The experiment has {len(test)} test clips that no training run plays; the N-way metric "
                        f"with top_k up to {max(cfg.top_k)} needs at least {need}. Lower decoding.top_k or add test "
                        "runs.")
    text = [t for t in cfg.targets if t in TEXT_TARGETS]
    if text and not any(experiment.clips.captions):
        raise DataError(f"decoding.targets has text spaces {text} but the clips have no captions; add a 'caption' "
                        "column to the clip table or decode an audio space.")
    audio = [t for t in cfg.targets if t not in TEXT_TARGETS]
    if audio and not experiment.clips.audio:
        raise DataError(f"decoding.targets has audio spaces {audio} but the clips have no audio; give the stimulus "
                        "audio (data.bids.audio_root) or decode a text space.")


def _target_features(config: PipelineConfig) -> FeaturesConfig:
    return FeaturesConfig(spaces=list(config.decoding.targets), params=config.features.params,
                          cache=config.features.cache)


# -- steps -------------------------------------------------------------------------------

def decode_target(experiment: Experiment, space: str, frames: dict[str, FeatureFrames], config: PipelineConfig,
                  progress: bool = True) -> TargetResult:
    """Design, fit, test predictions and identification metrics of one target space."""
    cfg = config.decoding
    design = make_decoding_design(experiment, frames, space, cfg.window, cfg.hop, cfg.delays)
    decoder = make_decoder(cfg, experiment.n_vertices, progress, config.model.backend, config.model.memory_gb)
    decoder.fit(design.X_train, design.Y_train, design.groups)
    clip_ids, predicted = clip_means(decoder.predict(design.X_test), design.test_samples)
    _, true = clip_means(design.Y_test, design.test_samples)
    null = None
    if cfg.n_permutations > 0:
        permuted = permuted_predictions(decoder, design.X_train, design.Y_train, design.groups, design.blocks,
                                        design.train_samples["window"].to_numpy(), design.X_test, cfg.n_permutations,
                                        cfg.random_state, progress)
        null = np.stack([clip_means(p, design.test_samples)[1] for p in permuted])
    fingerprint = get_extractor(space, **config.features.params.get(space, {})).fingerprint()
    target = TargetResult(space, design, decoder, clip_ids, predicted, true, None, fingerprint)
    labels = _labels(experiment.clips, clip_ids)
    train_ids, train_true = clip_means(design.Y_train, design.train_samples)
    target.identification = identification(
        target.standardised(predicted), target.standardised(true), ks=tuple(cfg.top_k),
        n_bootstrap=cfg.n_bootstrap, n_permutations=cfg.n_permutations,
        null_predictions=None if null is None else target.standardised(null), labels=labels,
        train_embeddings=None if labels is None else target.standardised(train_true),
        train_labels=None if labels is None else _labels(experiment.clips, train_ids),
        random_state=cfg.random_state,
    )
    return target


def _labels(clips: ClipSet, ids: list[str]) -> np.ndarray | None:
    if "genre" not in clips.table:
        return None
    return clips.table.loc[ids, "genre"].astype(str).to_numpy()


def library_index(cfg: DecodingConfig, space: str, experiment: Experiment, frames: dict[str, FeatureFrames],
                  params: dict, exclude: list[str] = (), progress: bool = True) -> EmbeddingIndex:
    """The retrieval library of a target space: ``cfg.library``, or the experiment's clips but ``exclude``.

    Without a library, the decoded test clips are retrieved among the other clips of the experiment
    (the training clips): a reconstruction from music the person did not hear at that moment.
    """
    if not cfg.library:
        kept = {c: f for c, f in frames.items() if c not in set(exclude)}
        return EmbeddingIndex.from_frames(kept, space, get_extractor(space, **params).fingerprint(),
                                          metadata=experiment.clips.table, params=params)
    path = Path(cfg.library)
    if path.suffix == ".npz":
        return EmbeddingIndex.load(path)
    if path.is_dir():
        return EmbeddingIndex.from_audio_folder(path, space, params, progress=progress)
    return EmbeddingIndex.from_captions(path, space, params, progress=progress)


def retrieve(target: TargetResult, index: EmbeddingIndex, cfg: DecodingConfig) -> pd.DataFrame:
    """Items nearest to each decoded clip embedding (``source = "decoded"``) and to its true one (``"oracle"``)."""
    tables = []
    for source, values in (("decoded", target.predicted), ("oracle", target.true)):
        found = index.search(values, k=min(cfg.n_retrieved, len(index.item_ids)), method=cfg.library_method,
                             query_ids=target.clip_ids, space=target.space, fingerprint=target.fingerprint)
        found.insert(0, "source", source)
        tables.append(found.rename(columns={"query": "clip_id"}))
    return pd.concat(tables, ignore_index=True)


def run_decoding(config: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True,
                 experiment: Experiment | None = None, truth: GroundTruth | None = None) -> DecodingRun:
    """Decode every target of ``config.decoding``; write the outputs to ``out_dir`` when given.

    Parameters
    ----------
    config : PipelineConfig
    out_dir : path or None
        Output folder (:func:`decoding.report.write_decoding_outputs` lists its files).
    progress : bool
    experiment, truth : optional
        An experiment already loaded (the demo passes the encoding run's); else ``config.data`` is loaded.

    Returns
    -------
    DecodingRun
    """
    folder = RunFolder(out_dir) if out_dir is not None else None
    cfg = config.decoding
    step = Steps(4 + bool(out_dir), "brain2music decode", progress)
    timings = step.timings
    done = False
    try:
        preflight(config)
        if experiment is None:
            experiment, truth = step("data", load_data, config.data, config.features.params, progress)
        else:
            step.skip()
        check_against_data(cfg, experiment)
        features = step("features", extract_features, experiment, _target_features(config), progress,
                        truth.features if truth is not None else None)
        targets = step("decoders", lambda: {space: decode_target(experiment, space, features[space], config, progress)
                                            for space in cfg.targets})
        run = DecodingRun(config, experiment, targets, truth=truth, timings=timings)
        step("reconstruction", reconstruct, run, features, progress)
        if folder is not None:
            from decoding.report import write_decoding_outputs

            step("outputs", write_decoding_outputs, run, folder.staging)
            folder.commit()
        done = True
    finally:
        step.close(done)
        if folder is not None:
            folder.discard()
    return run


def reconstruct(run: DecodingRun, features: dict[str, dict[str, FeatureFrames]], progress: bool = True) -> None:
    """Retrieval for every target, then audio for the first test clips: originals, retrieved and generated.

    Each reconstruction comes from the decoded embedding and, as an oracle, from the true one;
    retrieval adds a chance level (a random library item per clip). Their evaluation
    (:func:`evaluate_reconstructions`) is stored in ``run.reconstructions``.
    """
    cfg = run.config.decoding
    params = run.config.features.params
    rng = np.random.default_rng(cfg.random_state)
    chance, indexes = {}, {}  # chance: a random library item per clip, the retrieval's chance level
    for space, target in run.targets.items():
        indexes[space] = library_index(cfg, space, run.experiment, features[space], params.get(space, {}),
                                       target.clip_ids, progress)
        target.retrieval = retrieve(target, indexes[space], cfg)
        chance[space] = dict(zip(target.clip_ids, rng.choice(indexes[space].item_ids, size=len(target.clip_ids))))
    first = next(iter(run.targets.values()))
    clip_ids = first.clip_ids[:cfg.n_reconstructed]
    if not clip_ids:
        return
    clips = run.experiment.clips
    sample_rate = clips.sample_rate
    audio: dict[tuple[str, str, str], np.ndarray] = {}  # (clip, method, source) -> waveform at sample_rate
    for clip in clip_ids:
        if clip in clips.audio:
            audio[clip, "original", "true"] = np.asarray(clips.audio[clip], dtype=np.float32)
    for space, target in run.targets.items():
        found = target.retrieval[target.retrieval["rank"] == 1]
        picks = {source: found[found["source"] == source].set_index("clip_id")["item_id"]
                 for source in ("decoded", "oracle")}
        metadata = indexes[space].metadata
        paths = metadata["path"].dropna() if "path" in metadata else pd.Series(dtype=str)
        for source, chosen in {**picks, "chance": chance[space]}.items():
            for clip in clip_ids:
                item = chosen.get(clip)
                if item in clips.audio:
                    audio[clip, f"retrieval_{space}", source] = np.asarray(clips.audio[item], dtype=np.float32)
                elif item in paths:  # a library of audio files
                    audio[clip, f"retrieval_{space}", source] = _load_audio(paths[item], sample_rate)
    for name, made in _generated(run, clip_ids, features, sample_rate, progress).items():
        audio.update({(clip, name, source): wave for (clip, source), wave in made.items()})
    run.audio = {key: (wave, sample_rate) for key, wave in audio.items()}
    run.reconstructions = evaluate_reconstructions(run, audio, clip_ids, features)


def _load_audio(path, sample_rate: int) -> np.ndarray:
    """A library item's audio, mono at ``sample_rate``."""
    import librosa

    wave, _ = librosa.load(str(path), sr=sample_rate, mono=True)
    return wave.astype(np.float32)


def _generated(run: DecodingRun, clip_ids: list[str], features, sample_rate: int, progress: bool) -> dict:
    """Generated audio per generator: {(clip, source): waveform at ``sample_rate``}."""
    cfg = run.config.decoding
    out: dict[str, dict] = {}
    duration = {c: min(cfg.duration, run.experiment.clips.duration(c)) for c in clip_ids}
    if "griffinlim" in cfg.generators:
        from decoding.generation.resynthesis import resynthesize_logmel

        target = run.targets["logmel"]
        params = get_extractor("logmel", **run.config.features.params.get("logmel", {})).get_params()
        predicted = target.decoder.predict(target.design.X_test)
        made = {}
        for clip in tqdm(clip_ids, desc="decoding: Griffin-Lim", disable=not progress, leave=False):
            rows = np.flatnonzero(target.design.test_samples["clip_id"] == clip)
            starts = target.design.test_samples["start"].to_numpy()[rows]
            length = min(target.design.window, run.experiment.clips.duration(clip))
            made[clip, "decoded"] = resynthesize_logmel(predicted[rows], sample_rate, starts=starts,
                                                        ends=starts + length, duration=duration[clip], **params,
                                                        seed=cfg.random_state)
            made[clip, "oracle"] = resynthesize_logmel(features["logmel"][clip], sample_rate, duration=duration[clip],
                                                       **params, seed=cfg.random_state)
        out["griffinlim"] = made
    made_generators = generators(cfg)
    if "musicgen" in made_generators:
        space = next(t for t in ("caption", "clap_text", "clap_audio") if t in run.targets)
        found = run.targets[space].retrieval
        top = found[found["rank"] == 1]
        prompts = {source: top[top["source"] == source].set_index("clip_id") for source in ("decoded", "oracle")}
        captions = [str(prompts["decoded"].loc[c].get("caption", "")) for c in clip_ids]
        table = run.experiment.clips.table
        true_captions = table.loc[clip_ids, "caption"].astype(str).tolist() if "caption" in table else captions
        out["musicgen"] = _resampled(made_generators["musicgen"], {"decoded": captions, "oracle": true_captions},
                                     clip_ids, cfg, sample_rate, progress)
    if "latent_diffusion" in made_generators:
        target = run.targets["clap_audio"]
        out["latent_diffusion"] = _resampled(made_generators["latent_diffusion"],
                                             {"decoded": target.predicted[:len(clip_ids)],
                                              "oracle": target.true[:len(clip_ids)]},
                                             clip_ids, cfg, sample_rate, progress)
    return out


def _resampled(generator, conditions: dict, clip_ids: list[str], cfg: DecodingConfig, sample_rate: int,
               progress: bool) -> dict:
    """Run ``generator`` on each source's conditions; waveforms resampled to ``sample_rate``."""
    import librosa

    made = {}
    for source, condition in conditions.items():
        waves, rate = generator.generate(condition, duration=cfg.duration, seed=cfg.random_state, progress=progress)
        for clip, wave in zip(clip_ids, waves):
            made[clip, source] = librosa.resample(np.asarray(wave, dtype=np.float32), orig_sr=rate,
                                                  target_sr=sample_rate) if rate != sample_rate else wave
    return made


def evaluate_reconstructions(run: DecodingRun, audio: dict, clip_ids: list[str], features) -> pd.DataFrame:
    """How much of each clip a reconstruction keeps, beside its oracle and chance.

    For every (method, source) with audio for all ``clip_ids``: pairwise identification of the
    reconstructions re-embedded in each decoded audio space (their embedding against the true
    clips'), and agreement of musicnn's MagnaTagATune tags between the original clip and its
    reconstruction (Pearson r of the 50 tag probabilities), with the chance level of the same
    agreement between an original and the reconstructions of the *other* clips.

    Returns
    -------
    DataFrame
        Columns ``method``, ``source`` (``decoded``, ``oracle``, ``chance``), ``n_clips``, ``tag_r`` and
        ``top5_tags_shared`` (share of the original's five most probable tags among the
        reconstruction's), each with its ``_chance``, and ``pairwise_<space>`` per re-embedding space.
    """
    from decoding.evaluation import tag_agreement, tag_probabilities
    from decoding.metrics import pairwise_identification, similarity_matrix

    sample_rate = run.experiment.clips.sample_rate
    originals = [audio.get((c, "original", "true")) for c in clip_ids]
    have_originals = all(o is not None for o in originals)
    original_tags = tag_probabilities(originals, sample_rate) if have_originals else None
    methods = sorted({(m, s) for (_, m, s) in audio if m != "original"})
    spaces = [s for s in run.targets if s not in TEXT_TARGETS]
    rows = []
    for method, source in methods:
        waves = [audio.get((c, method, source)) for c in clip_ids]
        if any(w is None for w in waves):
            continue
        row = {"method": method, "source": source, "n_clips": len(clip_ids)}
        if original_tags is not None:
            tags = tag_probabilities(waves, sample_rate)
            agreement = tag_agreement(original_tags, tags)
            row["tag_r"] = float(np.nanmean(agreement["pearson"]))
            row["top5_tags_shared"] = float(np.mean(agreement["top_k_overlap"]))
            if len(clip_ids) > 1:  # chance: each original against the other clips' reconstructions
                others = [(i, j) for i in range(len(clip_ids)) for j in range(len(clip_ids)) if i != j]
                first, second = zip(*others)
                chance = tag_agreement(original_tags[list(first)], tags[list(second)])
                row["tag_r_chance"] = float(np.nanmean(chance["pearson"]))
                row["top5_tags_shared_chance"] = float(np.mean(chance["top_k_overlap"]))
        if len(clip_ids) >= 2:
            for space in spaces:
                target = run.targets[space]
                clipset = ClipSet(pd.DataFrame(index=[f"{c}-{method}" for c in clip_ids]),
                                  {f"{c}-{method}": w for c, w in zip(clip_ids, waves)}, sample_rate)
                params = run.config.features.params.get(space, {})
                frames = get_extractor(space, **params).extract(clipset, progress=False)
                embedded = np.stack([frames[f"{c}-{method}"].values.mean(axis=0) for c in clip_ids])
                true = target.true[[target.clip_ids.index(c) for c in clip_ids]]
                similarity = similarity_matrix(target.standardised(embedded), target.standardised(true))
                row[f"pairwise_{space}"] = float(pairwise_identification(similarity).mean())
        rows.append(row)
    return pd.DataFrame(rows)
