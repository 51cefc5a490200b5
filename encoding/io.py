"""Atomic file output, run folders that appear whole, and provenance records."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from encoding.errors import OutputError

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


MARKER = ".brain2music"  # written in every run folder: a folder brain2music may replace
# what earlier releases wrote (without the marker): a folder holding only these is an output of brain2music
OUTPUT_NAMES = {"summary.json", "sweep.json", "report.md", "report.html", "results.npz", "config.toml", "figures",
                "statistics", "sweep.md", "sweep.npz"}


class RunFolder:
    """An output folder that appears whole or not at all.

    Outputs are written into a staging folder beside ``target`` (``.<name>.partial-<pid>``);
    :meth:`commit` moves it into place, replacing an earlier run in ``target`` whole; :meth:`discard`
    (after a failure or an interruption) removes the staging folder and leaves ``target`` as it was.
    A folder that does not look like a brain2music output (not empty, no marker, no summary) is
    never replaced. Staging folders of processes that died are removed.

    Parameters
    ----------
    target : path
        The output folder.

    Raises
    ------
    OutputError
        At construction, before any work: ``target`` is a file, a folder of other files, or cannot
        be written.
    """

    def __init__(self, target: str | Path):
        self.target = Path(target)
        if self.target.is_symlink():
            raise OutputError(f"Output folder {self.target} is a symbolic link: give the folder it points to, or a "
                              "new folder, as --out.")
        if self.target.exists() and not self.target.is_dir():
            raise OutputError(f"Output folder {self.target} is a file: choose another --out or remove the file.")
        if self.target.is_dir() and Path.cwd().resolve().is_relative_to(self.target.resolve()):
            raise OutputError(f"Output folder {self.target} is the current folder (or holds it): a rerun replaces its "
                              "output folder whole. Choose a subfolder for --out.")
        if self.target.is_dir() and not _written_by_brain2music(self.target):
            raise OutputError(f"Output folder {self.target} holds files that brain2music did not write; it would "
                              "replace them. Choose an empty or new folder for --out.")
        parent = self.target.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_dead_staging(parent, self.target.name)
            self.staging = parent / f".{self.target.name}.partial-{os.getpid()}"
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()
            (self.staging / MARKER).write_text("written by brain2music; the folder is replaced whole by a rerun\n")
        except OSError as err:
            raise OutputError(f"Cannot write the output folder {self.target}: {err.strerror or err} "
                              f"({err.filename or parent}). Choose a writable --out.") from None
        self.committed = False

    def commit(self) -> Path:
        """Move the staged outputs into place (an earlier run in ``target`` is replaced whole)."""
        old = None
        try:
            if self.target.exists():
                old = self.staging.with_name(f".{self.target.name}.replaced-{os.getpid()}")
                os.replace(self.target, old)
            os.replace(self.staging, self.target)
        except OSError as err:
            if old is not None and not self.target.exists():
                os.replace(old, self.target)  # put the earlier run back
            raise OutputError(f"Cannot move the finished outputs into {self.target}: {err.strerror or err}. They are "
                              f"in {self.staging}.") from None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        """Remove the staging folder unless committed."""
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)


def _written_by_brain2music(folder: Path) -> bool:
    """An empty folder, one with the marker, or one holding only what earlier releases wrote."""
    names = {p.name for p in folder.iterdir()}
    return not names or MARKER in names or (names <= OUTPUT_NAMES and bool(names & {"summary.json", "sweep.json"}))


def _remove_dead_staging(parent: Path, name: str) -> None:
    """Remove ``.<name>.partial-<pid>`` and ``.replaced-<pid>`` folders whose process no longer runs (a run
    killed without cleanup)."""
    for path in [*parent.glob(f".{name}.partial-*"), *parent.glob(f".{name}.replaced-*")]:
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


FIGURE_FORMATS = ("png", "svg", "pdf")


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically, as PNG, SVG or PDF after the file's suffix (PNG at ``dpi``;
    300 for print). Figures here are made without pyplot: nothing to close."""
    kind = Path(path).suffix.lower().lstrip(".") or "png"
    if kind not in FIGURE_FORMATS:
        raise OutputError(f"Cannot save a figure as {Path(path).name}: use one of .png, .svg, .pdf.")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=kind, facecolor="white")
    return Path(path)


def html_summary(title: str, rows: dict[str, object], table=None) -> str:
    """A compact HTML card for Jupyter (``_repr_html_``): a title, named values and an optional DataFrame."""
    import html

    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    extra = "" if table is None else table.to_html(float_format=lambda v: f"{v:.3g}", border=0)
    return f"<div><strong>{html.escape(title)}</strong><table>{cells}</table>{extra}</div>"


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
