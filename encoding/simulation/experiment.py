"""The simulated music-listening experiment: clips, a ds003720-shaped design and fsaverage5 responses."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encoding.config import SimulationConfig
from encoding.data import Experiment, Run
from encoding.design import align_to_trs
from encoding.features import get_extractor
from encoding.simulation.brain import (
    N_VERTICES,
    GroundTruth,
    NoiseGenerator,
    planted_weights,
    stimulus_signals,
    territory_shares,
)
from encoding.simulation.music import synthesize_clips


def schedule(clip_ids: list[str], clip_duration: float) -> pd.DataFrame:
    """Clips back to back from t = 0: columns ``clip_id``, ``onset``, ``duration`` (s)."""
    return pd.DataFrame({
        "clip_id": clip_ids,
        "onset": np.arange(len(clip_ids)) * clip_duration,
        "duration": np.full(len(clip_ids), clip_duration),
    })


def simulate_experiment(
    config: SimulationConfig | None = None,
    feature_params: Mapping[str, dict] | None = None,
    progress: bool = True,
    heard: tuple[Experiment, GroundTruth] | None = None,
) -> tuple[Experiment, GroundTruth]:
    """Simulate one subject listening to synthetic music, with planted ground truth.

    Parameters
    ----------
    config : SimulationConfig
        Sizes, territories, noise, seed and which subject of the population (defaults:
        :class:`SimulationConfig`). Every subject hears the same clips in the same runs; with
        ``n_subjects > 1`` each has its own weights, noise and landmark shifts, seeded by
        ``(seed, subject)``.
    feature_params : mapping of space name to dict
        Parameters of the planted spaces' extractors (default parameters otherwise).
    progress : bool
        Show progress bars.
    heard : (Experiment, GroundTruth), optional
        Another subject of the same study (every subject hears the same clips): its clips and
        planted features are used as they are instead of being synthesized and extracted again.

    Returns
    -------
    experiment : Experiment
        On fsaverage5 (20,484 vertices), with clip table, events and train/test runs.
    truth : GroundTruth
    """
    cfg = config or SimulationConfig()
    feature_params = feature_params or {}
    rng = np.random.default_rng(cfg.seed)
    n_train = cfg.n_train_runs * cfg.clips_per_run
    if heard is None:
        clips = synthesize_clips(n_train + cfg.n_test_clips, cfg.clip_duration, cfg.sample_rate, seed=cfg.seed)
        known = {}
    else:
        clips, known = heard[0].clips, heard[1].features
        if len(clips.ids) != n_train + cfg.n_test_clips or clips.sample_rate != cfg.sample_rate:
            raise ValueError(f"heard: another subject's {len(clips.ids)} clips at {clips.sample_rate} Hz are not "
                             f"the {n_train + cfg.n_test_clips} clips at {cfg.sample_rate} Hz of this simulation.")
    order = list(rng.permutation(clips.ids))
    shifts = None
    if cfg.n_subjects > 1:  # a study member: its own stream for weights, noise and anatomy
        rng = np.random.default_rng([cfg.seed, cfg.subject])
        landmarks = sorted({name for names in cfg.territories.values() for name in names})
        shifts = {name: rng.normal(0.0, cfg.subject_shift, (2, 3)) for name in landmarks}
    train_ids, test_ids = order[:n_train], order[n_train:]
    events = [schedule(train_ids[i * cfg.clips_per_run : (i + 1) * cfg.clips_per_run], cfg.clip_duration)
              for i in range(cfg.n_train_runs)]
    events += [schedule(test_ids, cfg.clip_duration)] * cfg.n_test_repeats
    n_trs = [math.ceil(len(ev) * cfg.clip_duration / cfg.tr) + cfg.extra_trs for ev in events]

    spaces = list(cfg.territories)
    shares = territory_shares(cfg.territories, cfg.peak_share, cfg.width, shifts)
    signal_vertices = np.flatnonzero(shares.sum(axis=0) > 0)
    weights, signals, planted_features = {}, [], {}
    for k, space in enumerate(tqdm(spaces, desc="simulation: planted spaces", disable=not progress, leave=False)):
        frames = (known[space] if space in known else
                  get_extractor(space, **feature_params.get(space, {})).extract(clips, progress=progress))
        planted_features[space] = frames
        on_trs = [align_to_trs(frames, ev, n, cfg.tr) for ev, n in zip(events, n_trs)]
        train_features = np.concatenate(on_trs[: cfg.n_train_runs])
        if shifts is None:
            weights[space] = planted_weights(train_features, signal_vertices.size, cfg.n_components, rng)
        else:  # a study: each vertex's weights mix the population's (shared by all subjects) and the subject's own
            shared = planted_weights(train_features, N_VERTICES, cfg.n_components,
                                     np.random.default_rng([cfg.seed, 0, k]))[:, signal_vertices]
            own = planted_weights(train_features, signal_vertices.size, cfg.n_components, rng)
            weights[space] = (np.sqrt(cfg.subject_similarity) * shared
                              + np.sqrt(1.0 - cfg.subject_similarity) * own).astype(np.float32)
        amplitude = np.sqrt(shares[k, signal_vertices])
        signals.append([s * amplitude for s in stimulus_signals(on_trs, weights[space], cfg.tr)])

    noise = NoiseGenerator(cfg.noise, rng)
    noise_scale = np.sqrt(1.0 - shares.sum(axis=0)).astype(np.float32)
    runs = []
    for r, (ev, n) in enumerate(zip(tqdm(events, desc="simulation: runs", disable=not progress, leave=False), n_trs)):
        y = noise.run(n) * noise_scale
        y[:, signal_vertices] += sum(signals[k][r] for k in range(len(spaces)))
        is_train = r < cfg.n_train_runs
        run_id = f"train-{r + 1:02d}" if is_train else f"test-{r - cfg.n_train_runs + 1:02d}"
        runs.append(Run(run_id, y, cfg.tr, ev, role="train" if is_train else "test",
                        repeat_id=None if is_train else "test-sequence"))

    experiment = Experiment(
        subject=cfg.subject_labels()[cfg.subject - 1], runs=runs, clips=clips, space="fsaverage5",
        info={"source": "simulation", "noise": noise.kind},
    )
    truth = GroundTruth(
        band_names=spaces, signal_share=shares.astype(np.float32), weights=weights,
        signal_vertices=signal_vertices, noise=noise.kind, snr_peak=cfg.peak_share / (1 - cfg.peak_share),
        features=planted_features,
    )
    return experiment, truth
