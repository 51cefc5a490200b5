"""brain2music encoding: data model, feature spaces, design matrices, banded ridge fits and scores.

The pipeline, one module per step::

    data.py          Experiment, Run, ClipSet            (loaders: simulation/)
    features/        feature spaces from audio and captions
    design.py        TR alignment, z-scoring, FIR delays
    model.py         BandedRidgeEncoder (himalaya)
    scoring.py       R^2, correlation, ground-truth recovery
    pipeline.py      config-driven run of all steps; report.py writes the outputs
    cli.py           the ``brain2music`` command
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brain2music")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
