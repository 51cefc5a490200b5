"""Banded ridge: our solver against himalaya on the same synthetic problem, in one run.

Each (method, size) runs in its own process, so its peak memory is its own. Methods:

- ``ours``: :class:`encoding.model.BandedRidgeEncoder` (``encoding.ridge``), numpy backend;
- ``ours-torch``: the same on himalaya's torch backend (CPU here; ``torch_cuda`` on a GPU);
- ``himalaya-banded``: himalaya ``BandedRidgeCV`` (random search, numpy), the issue's baseline;
  ``himalaya-banded-torch``: the same on himalaya's torch backend;
- ``himalaya-mkr``: himalaya ``MultipleKernelRidgeCV`` on linear kernels (random search, torch);
  ``himalaya-mkr-numpy``: the same on the numpy backend;
- ``himalaya-ridge``: himalaya ``RidgeCV`` with one alpha per vertex (no bands; the floor, numpy);
  ``himalaya-ridge-torch``: the same on torch.

``--pick-backend SIZE`` compares each himalaya solver fairly: every requested himalaya solver runs
on both backends (numpy and torch) at SIZE first, in this run, and at every other size only on the
backend that was faster there; ``ours x`` is then against that best configuration.

All banded methods get the same band-weight candidates, alpha grid and leave-one-run-out folds.
The table gives fit time, peak resident memory, mean test R^2, mean CV score, the speed-up of
``ours`` over each method, and for ``ours`` the throughput of its GEMM phases against the
machine's float32 GEMM peak measured in this run. Sizes:

- ``small``: 4 runs x 300 TRs, 3 bands x 64 features, 2,000 vertices;
- ``issue``: 10 runs x 300 TRs, 2,688 features (3 bands x 224 x 4 delays), 2,500 vertices (issue 5);
- ``cortex``: ds003720 size, 12 runs x 410 TRs (4,920), 3 bands x 64 features x 4 delays, 20,484 vertices;
- ``subject``: one ds003720 subject with two spaces, 4 runs x 410 TRs (1,640), logmel 32 + caption 384
  features x 4 delays (128 + 1,536 = 1,664), 20,484 vertices (820 test TRs);
- ``subject-4k``: the first 4,000 vertices of the same problem (identical data), for solvers too slow
  for the whole cortex on this machine; ``subject-500``: its first 500 vertices (where
  ``--pick-backend`` compares numpy and torch cheaply at the subject's shape). Ratios are only
  printed between methods at the same size.
- ``ds003720``: one simulated subject with ds003720's whole design (``benchmarks/subject.py``: 12
  training runs x 410 TRs, logmel + caption x 4 delays = 1,664 features, 410 test TRs averaged over
  6 repeats, 20,484 vertices, planted territories: most of cortex carries no signal);
  ``ds003720-2k`` / ``ds003720-256``: 2,048 / 256 vertices drawn at random from it (the same share
  of signal). The test R^2 of these sizes is also averaged over the planted (signal) vertices.

Methods ``ours`` use the estimator's defaults (screen and successive halving);
``ours-exhaustive`` scores every candidate on every fold for every vertex (``search="random"``,
no screen), the reference the adaptive search is held to.

    .venv/bin/python benchmarks/ridge.py                                  # small and issue sizes
    .venv/bin/python benchmarks/ridge.py --sizes cortex --methods ours    # whole cortex
    .venv/bin/python benchmarks/ridge.py --n-iter 20 --pick-backend subject-500 --pick-n-iter 5 \
        --sizes subject-4k subject --baselines-at subject-500 subject-4k \
        --methods ours himalaya-banded himalaya-mkr himalaya-ridge        # one ds003720 subject
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
    "subject": dict(n_runs=4, run_trs=410, band_features=(128, 1536), n_vertices=20484),
    "subject-4k": dict(n_runs=4, run_trs=410, band_features=(128, 1536), n_vertices=20484, keep_vertices=4000),
    "subject-500": dict(n_runs=4, run_trs=410, band_features=(128, 1536), n_vertices=20484, keep_vertices=500),
    "ds003720": dict(simulated=None),
    "ds003720-2k": dict(simulated=2048),
    "ds003720-256": dict(simulated=256),
}
METHODS = ("ours", "ours-exhaustive", "ours-torch", "himalaya-banded", "himalaya-banded-torch", "himalaya-mkr", "himalaya-mkr-numpy",
           "himalaya-ridge", "himalaya-ridge-torch")
DEFAULT_METHODS = ("ours", "ours-torch", "himalaya-banded", "himalaya-mkr", "himalaya-ridge")
# each himalaya solver on its two backends: (numpy method, torch method)
BACKEND_PAIRS = {"BandedRidgeCV": ("himalaya-banded", "himalaya-banded-torch"),
                 "MultipleKernelRidgeCV": ("himalaya-mkr-numpy", "himalaya-mkr"),
                 "RidgeCV": ("himalaya-ridge", "himalaya-ridge-torch")}


def backend_of(method: str) -> str:
    if method in ("ours", "ours-exhaustive", "himalaya-banded", "himalaya-mkr-numpy", "himalaya-ridge"):
        return "numpy"
    return "torch"


def solver_of(method: str) -> str:
    if method.startswith("ours"):
        return "ours-exhaustive" if method == "ours-exhaustive" else "ours"
    return next(name for name, pair in BACKEND_PAIRS.items() if method in pair)
ALPHAS = np.logspace(-2, 8, 21)


SIMULATED = Path(tempfile.gettempdir()) / "brain2music-benchmark-ds003720.npz"


def simulated_problem(n_vertices: int | None):
    """The ds003720-shaped simulated subject's design (made once, kept in a temporary file for the
    methods' processes), optionally ``n_vertices`` drawn at random; the last item is the signal mask."""
    if not SIMULATED.is_file():
        from subject import subject_config

        from encoding.pipeline import build_design, extract_features
        from encoding.simulation import simulate_experiment

        config = subject_config(argparse.Namespace(seed=0, search="halving", screen=0.01, permutations=0,
                                                   family="searched", spaces=["logmel", "caption"]))
        experiment, truth = simulate_experiment(config.data.simulation, progress=False)
        features = extract_features(experiment, config.features, False, truth.features)
        design = build_design(experiment, features, config.features.spaces, config.design)
        edges = np.array([[s.start, s.stop] for s in design.bands.values()])
        with open(SIMULATED.with_suffix(".tmp.npz"), "wb") as f:
            np.savez(f, X=design.X_train, Y=design.Y_train, groups=design.groups, X_test=design.X_test,
                     Y_test=design.Y_test, names=list(design.bands), edges=edges,
                     signal=truth.signal_share.sum(axis=0) > 0)
        SIMULATED.with_suffix(".tmp.npz").rename(SIMULATED)
    data = np.load(SIMULATED)
    keep = slice(None) if n_vertices is None else np.sort(
        np.random.default_rng(0).choice(data["Y"].shape[1], n_vertices, replace=False))
    bands = {str(name): slice(int(a), int(b)) for name, (a, b) in zip(data["names"], data["edges"])}
    return (data["X"], data["Y"][:, keep], data["groups"], data["X_test"], data["Y_test"][:, keep], bands,
            data["signal"][keep])


def make_problem(n_runs: int = 0, run_trs: int = 0, band_features=(), n_vertices: int = 0, seed: int = 0,
                 keep_vertices: int | None = None, **simulated):
    """Smooth features, each vertex driven by a random subset of bands with its own SNR (every
    vertex counts as signal), or the simulated subject (``simulated``: :func:`simulated_problem`).

    ``keep_vertices`` keeps the first vertices of the problem made with ``n_vertices`` (the same data).
    """
    if simulated:
        return simulated_problem(simulated["simulated"])
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
    Y = Y[:, :keep_vertices]
    return X[:n_train].astype(f32), Y[:n_train].astype(f32), groups, X[n_train:].astype(f32), \
        Y[n_train:].astype(f32), bands, np.ones(Y.shape[1], dtype=bool)


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

    X, Y, groups, X_test, Y_test, bands, signal = make_problem(**SIZES[size])
    candidates = band_weight_candidates(len(bands), n_iter, random_state=0)
    cv = list(__import__("sklearn.model_selection", fromlist=["LeaveOneGroupOut"]).LeaveOneGroupOut()
              .split(X, Y, groups))
    info: dict = {}
    start = time.perf_counter()
    if method.startswith("ours"):
        from encoding.model import BandedRidgeEncoder

        exhaustive = dict(search="random", screen=None) if method == "ours-exhaustive" else {}
        model = BandedRidgeEncoder(bands, alphas=ALPHAS, n_iter=candidates, progress_bar=False,
                                   backend="torch" if method == "ours-torch" else "numpy", **exhaustive)
        model.fit(X, Y, groups)
        fit_s = time.perf_counter() - start
        prediction = model.predict(X_test)
        cv_score, log_alphas = np.nanmax(model.cv_scores_, axis=0), np.log10(model.best_alphas_)
        profile = model.fit_profile_
        info = {"form": model.form_, "batch": profile["batch_size"],
                "gemm_gflops": profile["gemm_flops"] / profile["gemm_seconds"] / 1e9,
                "evaluations": profile["evaluations"] / (len(candidates) * Y.shape[1])}
    elif method in ("himalaya-banded", "himalaya-banded-torch"):
        from himalaya.ridge import BandedRidgeCV, ColumnTransformerNoStack

        backend = set_backend(backend_of(method))
        split = ColumnTransformerNoStack([(k, "passthrough", c) for k, c in bands.items()])
        solver = BandedRidgeCV(groups="input", cv=cv, solver_params=dict(
            n_iter=candidates, alphas=ALPHAS, progress_bar=False, n_targets_batch=1000))
        Xs = split.fit_transform(X)
        solver.fit(Xs, Y)
        fit_s = time.perf_counter() - start
        prediction = backend.to_numpy(solver.predict(split.transform(X_test)))
        cv_score = backend.to_numpy(solver.cv_scores_).max(0)
        log_alphas = -backend.to_numpy(solver.deltas_) / np.log(10)
    elif method in ("himalaya-mkr", "himalaya-mkr-numpy"):
        from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
        from sklearn.pipeline import make_pipeline

        backend = set_backend(backend_of(method))
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
    elif method in ("himalaya-ridge", "himalaya-ridge-torch"):
        from himalaya.ridge import RidgeCV

        backend = set_backend(backend_of(method))
        solver = RidgeCV(alphas=ALPHAS, cv=cv, solver_params=dict(n_targets_batch=1000)).fit(X, Y)
        fit_s = time.perf_counter() - start
        prediction = backend.to_numpy(solver.predict(X_test))
        cv_score, log_alphas = backend.to_numpy(solver.cv_scores_).max(0), None
    else:
        raise ValueError(method)
    np.savez(out / f"{method}-{size}.npz", prediction=prediction,
             log_alphas=log_alphas if log_alphas is not None else np.zeros(0))
    r2 = r2_score(Y_test, prediction)
    return {"method": method, "size": size, "backend": backend_of(method), "fit_s": fit_s, "test_r2": float(r2.mean()),
            "signal_r2": float(r2[signal].mean()),
            "cv_score": float(np.mean(cv_score)), "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "shape": f"{X.shape[0]}x{X.shape[1]}->{Y.shape[1]}", **info}


def run_one(method: str, size: str, n_iter: int, tmp: str) -> dict | None:
    done = subprocess.run([sys.executable, __file__, "--n-iter", str(n_iter), "--one", method, size, tmp],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{method} {size} failed:\n{done.stderr[-2000:]}")
        return None
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  done {method:22s} {size:10s} {row['fit_s']:8.1f} s  test R2 {row['test_r2']:.4f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "issue"], choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--n-iter", type=int, default=10, help="band-weight candidates (default 10)")
    parser.add_argument("--pick-backend", metavar="SIZE", choices=list(SIZES),
                        help="run each requested himalaya solver on numpy and torch at SIZE, then only on the "
                             "faster backend at the other sizes")
    parser.add_argument("--pick-n-iter", type=int, metavar="N",
                        help="band-weight candidates for the --pick-backend comparison (default: --n-iter); "
                             "ours is not run at the pick size when this is given")
    parser.add_argument("--baselines-at", nargs="+", metavar="SIZE", choices=list(SIZES),
                        help="run the himalaya methods only at these sizes (ours runs at every size)")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_method(args.one[0], args.one[1], args.n_iter, Path(args.one[2]))))
        return
    print(machine_info())
    peak = gemm_peak()
    print(f"float32 GEMM peak (numpy, 4000x4000): {peak:.0f} GFLOP/s | candidates {args.n_iter}, "
          f"alphas {len(ALPHAS)}, leave-one-run-out")
    sizes = list(dict.fromkeys(([args.pick_backend] if args.pick_backend else []) + args.sizes))
    solvers = list(dict.fromkeys(solver_of(m) for m in args.methods))
    chosen: dict[str, str] = {}  # himalaya solver -> its faster method at the pick size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            methods = list(args.methods)
            n_iter = args.n_iter
            if args.pick_backend == size:
                methods = [m for m in methods if m.startswith("ours") and args.pick_n_iter is None] + [
                    m for name in solvers if not name.startswith("ours") for m in BACKEND_PAIRS[name]]
                n_iter = args.pick_n_iter or args.n_iter
            elif chosen:
                methods = list(dict.fromkeys(chosen.get(solver_of(m), m) for m in methods))
            if args.baselines_at is not None and size not in args.baselines_at:
                methods = [m for m in methods if m.startswith("ours")]
            for method in methods:
                row = run_one(method, size, n_iter, tmp)
                if row is not None:
                    rows.append({**row, "n_iter": n_iter})
            if args.pick_backend == size:
                for name in solvers:
                    timed = [r for r in rows if r["size"] == size and solver_of(r["method"]) == name]
                    if not name.startswith("ours") and timed:
                        chosen[name] = min(timed, key=lambda r: r["fit_s"])["method"]
                print(f"  faster backend at {size} ({n_iter} candidates): " + ", ".join(
                    f"{name} {backend_of(m)} ({m})" for name, m in chosen.items()), flush=True)
            ours = next((r for r in rows if r["method"] == "ours" and r["size"] == size), None)
            if ours is not None:
                mine = np.load(Path(tmp) / f"ours-{size}.npz")
                for row in rows:
                    if row["size"] != size:
                        continue
                    row["speedup"] = row["fit_s"] / ours["fit_s"]
                    other = np.load(Path(tmp) / f"{row['method']}-{size}.npz")
                    if other["log_alphas"].size and row["method"] != "ours" and other["log_alphas"].shape == \
                            mine["log_alphas"].shape:
                        row["alpha_agree"] = float(np.mean(np.abs(other["log_alphas"] - mine["log_alphas"]) < 0.26))
    header = (f"{'size':12s} {'shape':22s} {'cand':>4s} {'method':22s} {'backend':7s} {'fit s':>8s} {'peak GB':>8s} "
              f"{'test R2':>8s} {'signal R2':>9s} {'CV R2':>8s} {'ours x':>7s} {'alpha=':>7s} {'GEMM %peak':>10s} "
              f"{'evals':>6s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        gemm = f"{100 * r['gemm_gflops'] / peak:9.0f}%" if "gemm_gflops" in r else ""
        agree = f"{r['alpha_agree']:7.2f}" if "alpha_agree" in r else ""
        evals = f"{r['evaluations']:6.3f}" if "evaluations" in r else ""
        print(f"{r['size']:12s} {r['shape']:22s} {r['n_iter']:4d} {r['method']:22s} {r['backend']:7s} {r['fit_s']:8.1f} "
              f"{r['peak_gb']:8.2f} {r['test_r2']:8.4f} {r['signal_r2']:9.4f} {r['cv_score']:8.4f} "
              f"{r.get('speedup', float('nan')):7.1f} {agree:>7s} {gemm:>10s} {evals:>6s}")
    print("\nours x: the method's fit time over ours (same size, same run). alpha=: share of (band, vertex) penalties "
          "within a factor 1.8 of ours. CV R2: himalaya reports negative MSE, not R2, for banded methods. "
          "signal R2: test R2 over the planted vertices (every vertex for the synthetic sizes). evals: candidate x "
          "vertex x fold scorings over an exhaustive search's.")
    print("\nEach solver's best configuration per size (fastest backend measured at that size in this run):")
    print(f"{'size':12s} {'solver':22s} {'best method':22s} {'backend':7s} {'fit s':>8s} {'signal R2':>9s} "
          f"{'ours faster by':>14s}")
    for size in sizes:
        ours = next((r for r in rows if r["method"] == "ours" and r["size"] == size), None)
        for name in solvers:
            timed = [r for r in rows if r["size"] == size and solver_of(r["method"]) == name]
            if not timed:
                continue
            best = min(timed, key=lambda r: r["fit_s"])
            ratio = f"{best['fit_s'] / ours['fit_s']:13.2f}x" if ours is not None else f"{'(no ours)':>14s}"
            print(f"{size:12s} {name:22s} {best['method']:22s} {best['backend']:7s} {best['fit_s']:8.1f} "
                  f"{best['signal_r2']:9.4f} {ratio}")


if __name__ == "__main__":
    main()
