"""Feature extraction throughput (clips per second per space), cache speed, and musicnn's tags of real clips.

    .venv/bin/python benchmarks/features.py [--clips 12]

Extraction runs on synthetic 15-s clips at 16 kHz, one fresh cache per space: the cold pass
computes and writes, the warm pass reads. The tag table runs MTT_musicnn and MSD_musicnn on the 25
studyforrest clips in ../shared/data (skipped when absent).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

from encoding.features import FeatureCache, available_spaces, get_extractor  # noqa: E402
from encoding.simulation import synthesize_clips  # noqa: E402

FORREST = Path(__file__).parents[1] / ".." / "shared" / "data" / "studyforrest-music" / "stimuli"


def throughput(n_clips: int) -> None:
    clips = synthesize_clips(n_clips, duration=15.0, sample_rate=16000, seed=0)
    print(f"{'space':12s} {'dims':>5s} {'cold clips/s':>13s} {'warm clips/s':>13s} {'speed-up':>9s}")
    for name in available_spaces():
        ext = get_extractor(name)
        try:
            ext.extract(clips.subset(clips.ids[:1]), progress=False)  # load models, JIT
        except OSError as err:  # hub weights that are not on this machine
            print(f"{name:12s} skipped: {str(err).split('(')[0].strip()} (no weights offline)")
            continue
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache(folder)
            start = time.perf_counter()
            frames = ext.extract(clips, progress=False, cache=cache)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            ext.extract(clips, progress=False, cache=cache)
            warm = time.perf_counter() - start
        dims = next(iter(frames.values())).n_dims
        print(f"{name:12s} {dims:5d} {n_clips / cold:13.1f} {n_clips / warm:13.1f} {cold / warm:8.0f}x", flush=True)


def musicnn_tags() -> None:
    import librosa

    from encoding.features.musicnn import MSD_TAGS, MTT_TAGS

    if not FORREST.is_dir():
        print("\n(studyforrest clips absent: no tag table)")
        return
    print("\nmusicnn top-3 tags per genre (mean tag probability over 5 real clips each, studyforrest)")
    print(f"{'genre':10s} | {'MTT_musicnn':45s} | MSD_musicnn")
    genres = sorted({p.name.split('_')[0] for p in FORREST.glob('*.wav')})
    waves = {g: [librosa.load(p, sr=16000)[0] for p in sorted(FORREST.glob(f"{g}_*.wav"))] for g in genres}
    for genre in genres:
        cells = []
        for model, tags in (("MTT_musicnn", MTT_TAGS), ("MSD_musicnn", MSD_TAGS)):
            ext = get_extractor("musicnn", model=model, layer="taggram")
            mean = np.mean([ext.extract_clip(w, 16000).values.mean(axis=0) for w in waves[genre]], axis=0)
            cells.append(", ".join(f"{tags[i]} {mean[i]:.2f}" for i in np.argsort(mean)[::-1][:3]))
        print(f"{genre:10s} | {cells[0]:45s} | {cells[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()
    print(machine_info(), "\n")
    throughput(args.clips)
    musicnn_tags()


if __name__ == "__main__":
    main()
