"""Banded ridge: our solver against himalaya on the same synthetic problem, in one run.

Each (method, size) runs in its own process, so its peak memory is its own. Methods:

- ``ours``: :class:`encoding.model.BandedRidgeEncoder` (``encoding.ridge``), numpy backend;
- ``ours-torch``: the same on himalaya's torch backend (CPU here; ``torch_cuda`` on a GPU);
- ``himalaya-banded``: himalaya ``BandedRidgeCV`` (random search, numpy), the issue's baseline;
- ``himalaya-mkr``: himalaya ``MultipleKernelRidgeCV`` on linear kernels (random search, torch);
- ``himalaya-ridge``: himalaya ``RidgeCV`` with one alpha per vertex (no bands; the floor).

All banded methods get the same band-weight candidates, alpha grid and leave-one-run-out folds.
The table gives fit time, peak resident memory, mean test R^2, mean CV score, the speed-up of
``ours`` over each method, and for ``ours`` the throughput of its GEMM phases against the
machine's float32 GEMM peak measured in this run. Sizes:

- ``small``: 4 runs x 300 TRs, 3 bands x 64 features, 2,000 vertices;
- ``issue``: 10 runs x 300 TRs, 2,688 features (3 bands x 224 x 4 delays), 2,500 vertices (issue 5);
- ``cortex``: ds003720 size, 12 runs x 410 TRs (4,920), 3 bands x 64 features x 4 delays, 20,484 vertices.

    .venv/bin/python benchmarks/ridge.py                                  # small and issue sizes
    .venv/bin/python benchmarks/ridge.py --sizes cortex --methods ours    # whole cortex
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info  # noqa: E402

SIZES = {
    "small": dict(n_runs=4, run_trs=300, band_features=(64, 64, 64), n_vertices=2000),
    "issue": dict(n_runs=10, run_trs=300, band_features=(896, 896, 896), n_vertices=2500),
    "cortex": dict(n_runs=12, run_trs=410, band_features=(256, 256, 256), n_vertices=20484),
}
METHODS = ("ours", "ours-torch", "himalaya-banded", "himalaya-mkr", "himalaya-ridge")
ALPHAS = np.logspace(-2, 8, 21)


def make_problem(n_runs: int, run_trs: int, band_features, n_vertices: int, seed: int = 0):
    """Smooth features, each vertex driven by a random subset of bands with its own SNR."""
    rng = np.random.default_rng(seed)
    n_train, n_test = n_runs * run_trs, 2 * run_trs
    n = n_train + n_test
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    X = rng.standard_normal((n, sum(band_features)))
    X = np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 0, X)
    X = (X - X.mean(0)) / X.std(0)
    signal = np.zeros((n, n_vertices))
    start = 0
    for features in band_features:
        active = rng.random(n_vertices) < 0.5
        weights = rng.standard_normal((features, n_vertices)) * active / np.sqrt(features)
        signal += X[:, start:start + features] @ weights
        start += features
    signal /= signal.std(0) + 1e-12
    snr = rng.uniform(0.1, 1.0, n_vertices)
    Y = snr * signal + rng.standard_normal((n, n_vertices))
    Y = (Y - Y.mean(0)) / Y.std(0)
    bands, start = {}, 0
    for index, features in enumerate(band_features):
        bands[f"band{index}"] = slice(start, start + features)
        start += features
    groups = np.repeat(np.arange(n_runs), run_trs)
    f32 = np.float32
    return X[:n_train].astype(f32), Y[:n_train].astype(f32), groups, X[n_train:].astype(f32), \
        Y[n_train:].astype(f32), bands


def gemm_peak() -> float:
    """float32 GEMM throughput of numpy here (GFLOP/s), best of 3 at 4,000 x 4,000."""
    a = np.random.default_rng(0).random((4000, 4000), dtype=np.float32)
    a @ a
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * 4000**3 / best / 1e9


def run_method(method: str, size: str, n_iter: int, out: Path) -> dict:
    from himalaya.backend import set_backend

    from encoding.ridge import band_weight_candidates
    from encoding.scoring import r2_score

    X, Y, groups, X_test, Y_test, bands = make_problem(**SIZES[size])
    candidates = band_weight_candidates(len(bands), n_iter, random_state=0)
    cv = list(__import__("sklearn.model_selection", fromlist=["LeaveOneGroupOut"]).LeaveOneGroupOut()
              .split(X, Y, groups))
    info: dict = {}
    start = time.perf_counter()
    if method.startswith("ours"):
        from encoding.model import BandedRidgeEncoder

        model = BandedRidgeEncoder(bands, alphas=ALPHAS, n_iter=candidates, progress_bar=False,
                                   backend="torch" if method == "ours-torch" else "numpy")
        model.fit(X, Y, groups)
        fit_s = time.perf_counter() - start
        prediction = model.predict(X_test)
        cv_score, log_alphas = model.cv_scores_.max(0), np.log10(model.best_alphas_)
        profile = model.fit_profile_
        info = {"form": model.form_, "batch": profile["batch_size"],
                "gemm_gflops": profile["gemm_flops"] / profile["gemm_seconds"] / 1e9}
    elif method == "himalaya-banded":
        from himalaya.ridge import BandedRidgeCV, ColumnTransformerNoStack

        set_backend("numpy")
        split = ColumnTransformerNoStack([(k, "passthrough", c) for k, c in bands.items()])
        solver = BandedRidgeCV(groups="input", cv=cv, solver_params=dict(
            n_iter=candidates, alphas=ALPHAS, progress_bar=False, n_targets_batch=1000))
        Xs = split.fit_transform(X)
        solver.fit(Xs, Y)
        fit_s = time.perf_counter() - start
        prediction = np.asarray(solver.predict(split.transform(X_test)))
        cv_score, log_alphas = np.asarray(solver.cv_scores_).max(0), -np.asarray(solver.deltas_) / np.log(10)
    elif method == "himalaya-mkr":
        from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
        from sklearn.pipeline import make_pipeline

        backend = set_backend("torch")
        pipeline = make_pipeline(
            ColumnKernelizer([(k, Kernelizer(kernel="linear"), c) for k, c in bands.items()]),
            MultipleKernelRidgeCV(kernels="precomputed", cv=cv, Y_in_cpu=True, solver_params=dict(
                n_iter=candidates, alphas=ALPHAS, progress_bar=False, n_targets_batch=1000,
                n_targets_batch_refit=1000)))
        pipeline.fit(X, Y)
        fit_s = time.perf_counter() - start
        prediction = backend.to_numpy(pipeline.predict(X_test))
        solver = pipeline[-1]
        cv_score = backend.to_numpy(solver.cv_scores_).max(0)
        log_alphas = -backend.to_numpy(solver.deltas_) / np.log(10)
    elif method == "himalaya-ridge":
        from himalaya.ridge import RidgeCV

        set_backend("numpy")
        solver = RidgeCV(alphas=ALPHAS, cv=cv, solver_params=dict(n_targets_batch=1000)).fit(X, Y)
        fit_s = time.perf_counter() - start
        prediction = np.asarray(solver.predict(X_test))
        cv_score, log_alphas = np.asarray(solver.cv_scores_).max(0), None
    else:
        raise ValueError(method)
    np.savez(out / f"{method}-{size}.npz", prediction=prediction,
             log_alphas=log_alphas if log_alphas is not None else np.zeros(0))
    return {"method": method, "size": size, "fit_s": fit_s, "test_r2": float(r2_score(Y_test, prediction).mean()),
            "cv_score": float(np.mean(cv_score)), "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "shape": f"{X.shape[0]}x{X.shape[1]}->{Y.shape[1]}", **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "issue"], choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n-iter", type=int, default=10, help="band-weight candidates (default 10)")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_method(args.one[0], args.one[1], args.n_iter, Path(args.one[2]))))
        return
    print(machine_info())
    peak = gemm_peak()
    print(f"float32 GEMM peak (numpy, 4000x4000): {peak:.0f} GFLOP/s | candidates {args.n_iter}, "
          f"alphas {len(ALPHAS)}, leave-one-run-out")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for method in args.methods:
                done = subprocess.run([sys.executable, __file__, "--n-iter", str(args.n_iter), "--one", method, size,
                                       tmp], capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{method} {size} failed:\n{done.stderr[-2000:]}")
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  done {method:16s} {size:7s} {rows[-1]['fit_s']:8.1f} s", flush=True)
            ours = next((r for r in rows if r["method"] == "ours" and r["size"] == size), None)
            if ours is not None:
                mine = np.load(Path(tmp) / f"ours-{size}.npz")
                for row in rows:
                    if row["size"] != size:
                        continue
                    row["speedup"] = row["fit_s"] / ours["fit_s"]
                    other = np.load(Path(tmp) / f"{row['method']}-{size}.npz")
                    if other["log_alphas"].size and row["method"] != "ours":
                        row["alpha_agree"] = float(np.mean(np.abs(other["log_alphas"] - mine["log_alphas"]) < 0.26))
    header = (f"{'size':7s} {'shape':22s} {'method':16s} {'fit s':>8s} {'peak GB':>8s} {'test R2':>8s} {'CV R2':>8s} "
              f"{'ours x':>7s} {'alpha=':>7s} {'GEMM %peak':>10s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        gemm = f"{100 * r['gemm_gflops'] / peak:9.0f}%" if "gemm_gflops" in r else ""
        agree = f"{r['alpha_agree']:7.2f}" if "alpha_agree" in r else ""
        print(f"{r['size']:7s} {r['shape']:22s} {r['method']:16s} {r['fit_s']:8.1f} {r['peak_gb']:8.2f} "
              f"{r['test_r2']:8.4f} {r['cv_score']:8.4f} {r.get('speedup', float('nan')):7.1f} {agree:>7s} {gemm:>10s}")
    print("\nours x: the method's fit time over ours (same size). alpha=: share of (band, vertex) penalties within "
          "a factor 1.8 of ours. CV R2: himalaya reports negative MSE, not R2, for banded methods.")


if __name__ == "__main__":
    main()
