"""Machine and BLAS description printed at the top of every benchmark."""

from __future__ import annotations

import os
import platform


def machine_info() -> str:
    """CPU, cores, memory, BLAS libraries and thread counts, and the OpenBLAS variables that slow numpy."""
    import numpy  # noqa: F401  (load the BLAS before asking which one)
    from threadpoolctl import threadpool_info

    lines = [f"machine: {platform.platform()} | python {platform.python_version()} | {os.cpu_count()} CPUs"]
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        lines.append(f"cpu: {model}")
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            total = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        lines.append(f"memory: {total / 2**20:.1f} GiB")
    except (OSError, StopIteration):
        pass
    for pool in threadpool_info():
        lines.append(f"blas: {pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')}), "
                     f"{pool.get('num_threads')} threads")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        if var in os.environ:
            lines.append(f"env: {var}={os.environ[var]} (OpenBLAS core type forced: float32 GEMM may run slower)"
                         if var == "OPENBLAS_CORETYPE" else f"env: {var}={os.environ[var]}")
    return "\n".join(lines)
