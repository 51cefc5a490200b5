"""brain2music encoding: data model, feature spaces, design matrices, banded ridge fits, scores and statistics.

The pipeline, one module per step, imports flowing one way::

    config.py        PipelineConfig: the one schema of options (TOML)
    data.py          Experiment, Run, ClipSet            (loaders: datasets/, simulation/)
    features/        feature spaces from audio and captions
    design.py        TR alignment, z-scoring, FIR delays
    ridge/           the banded ridge solver; model.py: BandedRidgeEncoder
    scoring.py       R^2, r, split R^2 (one kernel), ground-truth recovery
    stats/           permutation tests, variance partitioning, group level
    pipeline.py      the steps chained; report.py writes the outputs; cli.py is ``brain2music``

The main names are available from the package itself (``from encoding import run_pipeline``);
they are imported on first use, so ``import encoding.config`` stays light.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brain2music")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_PUBLIC = {
    "PipelineConfig": "encoding.config", "demo_config": "encoding.config",
    "Experiment": "encoding.data", "Run": "encoding.data", "ClipSet": "encoding.data",
    "Design": "encoding.design", "make_design": "encoding.design",
    "BandedRidgeEncoder": "encoding.model",
    "r2_score": "encoding.scoring", "correlation_score": "encoding.scoring", "split_r2_score": "encoding.scoring",
    "permutation_test": "encoding.stats", "partition_variance": "encoding.stats",
    "run_pipeline": "encoding.pipeline", "PipelineRun": "encoding.pipeline",
    "UserError": "encoding.errors",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'encoding' has no attribute {name!r}")
