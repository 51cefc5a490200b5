"""Atomic file output and provenance records."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

PROVENANCE_PACKAGES = (
    "brain2music", "numpy", "scipy", "scikit-learn", "himalaya", "nilearn", "nibabel", "pandas",
    "matplotlib", "librosa", "torch", "transformers", "brainspace",
)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no half-written ``path`` behind (and the old file, if any,
    untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically (numpy scalars and arrays are converted)."""
    return write_text(path, json.dumps(obj, indent=2, default=_to_builtin) + "\n")


def write_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write arrays to a compressed ``.npz`` file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor="white")
    plt.close(fig)
    return Path(path)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape results (absent ones omitted)."""
    out = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def provenance(config: dict) -> dict:
    """Everything needed to reproduce a result: config (seeds included), versions, machine, time."""
    return {
        "config": config,
        "versions": versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "command": " ".join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _to_builtin(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Cannot write {type(obj).__name__} to JSON.")
