"""Retrieval: exact cosine search against faiss HNSW, build and query time and recall@10.

    .venv/bin/python benchmarks/retrieval.py                         # 10k and 100k items (~1-2 min on 2 cores)
    .venv/bin/python benchmarks/retrieval.py --sizes 10000 100000 1000000   # 1M: ~9 GB of memory, many minutes

Libraries are random 512-d vectors shaped like learned embeddings: intrinsic dimension 32 (a random
linear map of 32 Gaussian factors) plus isotropic noise; queries are fresh draws from the same
distribution. One row on isotropic Gaussian vectors (no structure: the worst case of approximate
search) shows why exact search is the default. ``build s``: exact, validating and normalising
the library; faiss, inserting the unit vectors into the HNSW graph (:mod:`decoding.retrieval`:
m 32, ef_construction 40, ef_search 128). ``query s``: all queries at once, k = 10.
``recall@10``: share of exact search's 10 neighbours that faiss returned, averaged over queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# benchmarks/decoding.py would shadow the decoding package: import it with this folder off the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from decoding.retrieval import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    EmbeddingIndex,
    recall_at_k,
)

sys.path.insert(0, str(HERE))
from machine import machine_info


def library(n_items: int, n_queries: int, n_dims: int, rank: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries, float32: ``rank`` latent factors mapped to ``n_dims`` plus noise, or isotropic (None)."""
    rng = np.random.default_rng(seed)
    n = n_items + n_queries
    if rank is None:
        data = rng.standard_normal((n, n_dims), dtype=np.float32)
    else:
        mixing = rng.standard_normal((rank, n_dims), dtype=np.float32)
        data = rng.standard_normal((n, rank), dtype=np.float32) @ mixing
        data += 0.3 * np.sqrt(rank) * rng.standard_normal((n, n_dims), dtype=np.float32)
    return data[:n_items], data[n_items:]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(n_items: int, n_queries: int, n_dims: int, rank: int | None, k: int) -> dict:
    items, queries = library(n_items, n_queries, n_dims, rank, seed=n_items)
    ids = [f"i{i}" for i in range(n_items)]
    start = time.perf_counter()
    index = EmbeddingIndex(items, ids)
    index.search(queries[:1], k=1)  # normalises the library once
    exact_build = time.perf_counter() - start
    del items  # the index holds its own copy
    exact, exact_query = timed(lambda: index.search(queries, k=k))
    _, faiss_build = timed(index.build_faiss)
    approx, faiss_query = timed(lambda: index.search(queries, k=k, method="faiss"))
    return {"items": n_items, "dims": n_dims, "queries": n_queries,
            "data": "isotropic" if rank is None else f"rank {rank}+noise",
            "exact_build": exact_build, "exact_query": exact_query, "faiss_build": faiss_build,
            "faiss_query": faiss_query, "recall": recall_at_k(approx, exact)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="library sizes")
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rank", type=int, default=32, help="intrinsic dimension of the structured libraries")
    parser.add_argument("--isotropic", type=int, default=10_000, help="size of the isotropic row (0: none)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import faiss

    print(machine_info())
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads | HNSW m {HNSW_M}, "
          f"ef_construction {HNSW_EF_CONSTRUCTION}, ef_search {HNSW_EF_SEARCH} | k {args.k}\n")
    cases = [(n, args.rank) for n in args.sizes] + ([(args.isotropic, None)] if args.isotropic else [])
    header = (f"{'items':>9s} {'dims':>5s} {'queries':>7s} {'data':>16s} | {'exact build s':>13s} {'exact query s':>13s} "
              f"| {'faiss build s':>13s} {'faiss query s':>13s} {'recall@10':>9s}")
    print(header + "\n" + "-" * len(header), flush=True)
    for n, rank in cases:
        r = run(n, args.queries, args.dims, rank, args.k)
        print(f"{r['items']:9,d} {r['dims']:5d} {r['queries']:7,d} {r['data']:>16s} | {r['exact_build']:13.2f} "
              f"{r['exact_query']:13.2f} | {r['faiss_build']:13.2f} {r['faiss_query']:13.2f} {r['recall']:9.3f}",
              flush=True)


if __name__ == "__main__":
    main()
