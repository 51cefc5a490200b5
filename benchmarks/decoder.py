"""A decoder at ds003720 size: our RidgeDecoder against himalaya's KernelRidgeCV, in one run.

The problem (synthetic, with a planted linear map so scores mean something): 12 training runs of
410 TRs (4,920 samples), 20,484 vertices x 4 lags (81,936 columns), a 512-d target (a CLAP-sized
embedding), 2 test runs of 410 TRs; one alpha per target dimension from 21 log-spaced values,
leave-one-run-out CV. Methods, each in its own process (its peak memory is its own):

- ``ours-all``: :class:`decoding.model.RidgeDecoder` on every vertex (the encoding solver, kernel form),
  numpy backend; ``ours-all-torch``: the same on himalaya's torch backend (CPU here);
- ``ours-encoding``: the default decoder, 2,000 vertices selected by encoding performance, nested in its CV;
- ``himalaya``: himalaya ``KernelRidgeCV`` (linear kernel, one alpha per target, the same folds),
  on the backend given by ``--himalaya-backend`` (torch is its faster CPU backend here).

    .venv/bin/python benchmarks/decoder.py                       # all methods, full size
    .venv/bin/python benchmarks/decoder.py --runs 4 --vertices 4000 --methods ours-all himalaya
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info

METHODS = ("ours-all", "ours-all-torch", "ours-encoding", "himalaya")


def problem(n_runs: int, run_trs: int, n_vertices: int, n_lags: int, n_dims: int, seed: int = 0):
    """Responses driven by a low-rank map of the target in 5 % of the vertices, plus noise."""
    rng = np.random.default_rng(seed)
    n_train, n_test = n_runs * run_trs, 2 * run_trs
    target = rng.standard_normal((n_train + n_test, n_dims)).astype(np.float32)
    signal = int(0.05 * n_vertices)
    weights = rng.standard_normal((n_dims, signal * n_lags)).astype(np.float32) / np.sqrt(n_dims)
    X = rng.standard_normal((n_train + n_test, n_vertices * n_lags)).astype(np.float32)
    columns = (np.arange(n_lags)[:, None] * n_vertices + np.arange(signal)[None, :]).ravel()
    X[:, columns] += target @ weights
    groups = np.repeat(np.arange(n_runs), run_trs)
    return X[:n_train], target[:n_train], groups, X[n_train:], target[n_train:]


def run_method(method: str, args) -> dict:
    X, Y, groups, X_test, Y_test = problem(args.runs, args.run_trs, args.vertices, args.lags, args.dims)
    alphas = np.logspace(0, 10, 21)
    start = time.perf_counter()
    if method.startswith("ours"):
        from decoding.model import RidgeDecoder

        model = RidgeDecoder(n_delays=args.lags, selection="encoding" if method == "ours-encoding" else "all",
                             alphas=alphas, backend="torch" if method.endswith("torch") else "numpy",
                             memory_gb=args.memory_gb, progress_bar=False)
        model.fit(X, Y, groups)
        prediction = model.predict(X_test)
    else:
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV
        from sklearn.model_selection import LeaveOneGroupOut

        backend = set_backend(args.himalaya_backend)
        cv = list(LeaveOneGroupOut().split(X, groups=groups))
        model = KernelRidgeCV(alphas=alphas, kernel="linear", cv=cv,
                              solver_params={"n_targets_batch": args.dims, "n_alphas_batch": 5})
        mean, scale = Y.mean(0), Y.std(0)
        model.fit(X - X.mean(0), (Y - mean) / scale)
        prediction = backend.to_numpy(model.predict(X_test - X.mean(0))) * scale + mean
    seconds = time.perf_counter() - start
    from encoding.scoring import r2_score

    return {"method": method, "seconds": seconds, "test_r2": float(np.mean(r2_score(Y_test, prediction))),
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--run-trs", type=int, default=410)
    parser.add_argument("--vertices", type=int, default=20484)
    parser.add_argument("--lags", type=int, default=4)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--memory-gb", type=float, default=8.0)
    parser.add_argument("--himalaya-backend", default="torch", choices=("numpy", "torch"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_method(args.one, args)))
        return
    print(machine_info())
    print(f"problem: {args.runs} runs x {args.run_trs} TRs ({args.runs * args.run_trs} samples), {args.vertices} "
          f"vertices x {args.lags} lags ({args.vertices * args.lags} columns), {args.dims}-d target, 21 alphas\n")
    rows = []
    for method in args.methods:
        argv = [sys.executable, __file__, "--one", method, *_without_methods(sys.argv[1:])]
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.returncode:
            rows.append({"method": method, "error": out.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours = next((r["seconds"] for r in rows if r.get("method") == "ours-all" and "seconds" in r), None)
    print("| method | fit + predict (s) | peak memory (GB) | mean test R^2 | ours-all x |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed: {r['error']} | | | |")
            continue
        ratio = f"{r['seconds'] / ours:.2f}" if ours else ""
        print(f"| {r['method']} | {r['seconds']:.1f} | {r['peak_gb']:.1f} | {r['test_r2']:.4f} | {ratio} |")


def _without_methods(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if a == "--methods":
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


if __name__ == "__main__":
    main()
