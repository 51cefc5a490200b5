"""Pipeline configuration: nested dataclasses read from and written to TOML.

Every option has a default, so a config file only needs what it changes. Unknown keys are
errors (a typo must not silently fall back to a default). ``brain2music demo`` writes the config
it used, to copy and edit.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from encoding.datasets.bids import BidsConfig
from encoding.datasets.tables import TablesConfig
from encoding.design import DEFAULT_DELAYS
from encoding.preprocessing import PreprocessingConfig
from encoding.ridge.problem import FORMS, STRATEGIES
from encoding.simulation.experiment import SimulationConfig

DATA_SOURCES = ("simulation", "bids", "tables")
BACKENDS = ("auto", "numpy", "torch", "torch_cuda")


@dataclass
class DataConfig:
    """Where the responses come from.

    Attributes
    ----------
    source : {"simulation", "bids", "tables"}
        ``simulation``: the built-in simulated experiment; ``bids``: a BIDS data set such as
        ds003720 (:mod:`encoding.datasets.bids`); ``tables``: responses and regressors as text
        matrices (:mod:`encoding.datasets.tables`).
    simulation : SimulationConfig
        Used when ``source = "simulation"``.
    bids : BidsConfig
        Used when ``source = "bids"``.
    tables : TablesConfig
        Used when ``source = "tables"``.
    preprocessing : PreprocessingConfig
        Applied to real responses (the simulation needs none).
    """

    source: str = "simulation"
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    bids: BidsConfig = field(default_factory=BidsConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {self.source!r}.")

    def regressor_names(self) -> list[str]:
        """Feature spaces the data provide on the TR grid (no extraction needed)."""
        return self.tables.regressor_names() if self.source == "tables" else []


@dataclass
class FeaturesConfig:
    """Feature spaces to fit.

    Attributes
    ----------
    spaces : list of str
        Registered feature-space names (``brain2music spaces`` lists them).
    params : dict of str to dict
        Extractor parameters per space, e.g. ``{caption = {model = "lsa"}}``.
    cache : str
        Folder of cached features (empty: no cache); keyed by extractor, parameters, revision and
        clip content, so re-runs and interrupted runs only compute what is missing.
    pca : dict of str to int
        Spaces to reduce to that many principal components, fitted on the training clips only
        (e.g. ``{musicgen = 64}``); the kept variance is recorded in the summary.
    """

    spaces: list[str] = field(default_factory=lambda: ["logmel", "modulation", "caption"])
    params: dict[str, dict] = field(default_factory=dict)
    cache: str = ""
    pca: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.spaces:
            raise ValueError("features.spaces is empty; name at least one feature space.")
        outside = sorted(set(self.pca) - set(self.spaces))
        if outside or any(int(n) < 1 for n in self.pca.values()):
            raise ValueError(f"features.pca names spaces that are not fitted ({outside}) or asks for < 1 component.")
        if len(set(self.spaces)) != len(self.spaces):
            raise ValueError(f"features.spaces lists a space twice: {self.spaces}.")


@dataclass
class DesignConfig:
    """Design matrices.

    Attributes
    ----------
    delays : list of int
        FIR delays in TRs (default 1-4: 1.5-6 s at TR 1.5 s).
    """

    delays: list[int] = field(default_factory=lambda: list(DEFAULT_DELAYS))

    def __post_init__(self) -> None:
        if not self.delays or any(int(d) != d for d in self.delays):
            raise ValueError(f"design.delays must be a non-empty list of integers (TRs), got {self.delays}.")


@dataclass
class ModelConfig:
    """Banded ridge fit (see :class:`encoding.model.BandedRidgeEncoder`).

    Attributes
    ----------
    alpha_min, alpha_max : float
        Range of the log-spaced regularisation grid.
    n_alphas : int
        Grid size.
    n_iter : int
        Band-weight candidates of the random search.
    concentration : list of float
        Dirichlet concentrations of the random search.
    form : {"auto", "primal", "dual"}
        Solve in primal or kernel form (``auto``: the smaller one).
    strategy : {"auto", "folds", "hat"}
        Cross-validation strategy of the solver (both exact; ``auto``: the cheaper one).
    backend : {"auto", "numpy", "torch", "torch_cuda"}
        himalaya backend of the solver (``auto``: CUDA when visible, else numpy).
    memory_gb : float
        Working-memory budget of the solver (GiB); sets the vertex batch size.
    scheduler : str
        Address of a dask scheduler (``tcp://host:8786``) to run vertex batches on a cluster;
        empty runs locally.
    random_state : int
        Seed of the random search.
    """

    alpha_min: float = 1e-2
    alpha_max: float = 1e8
    n_alphas: int = 21
    n_iter: int = 20
    concentration: list[float] = field(default_factory=lambda: [0.1, 1.0])
    form: str = "auto"
    strategy: str = "auto"
    backend: str = "auto"
    memory_gb: float = 2.0
    scheduler: str = ""
    random_state: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha_min < self.alpha_max:
            raise ValueError(f"Need 0 < model.alpha_min < model.alpha_max, got {self.alpha_min}, {self.alpha_max}.")
        if self.n_alphas < 1 or self.n_iter < 1:
            raise ValueError("model.n_alphas and model.n_iter must be at least 1.")
        if not self.memory_gb > 0:
            raise ValueError(f"model.memory_gb must be positive, got {self.memory_gb}.")
        if self.form not in FORMS:
            raise ValueError(f"model.form must be one of {FORMS}, got {self.form!r}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"model.strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"model.backend must be one of {BACKENDS}, got {self.backend!r}.")

    @property
    def alphas(self) -> np.ndarray:
        """The regularisation grid."""
        return np.logspace(np.log10(self.alpha_min), np.log10(self.alpha_max), self.n_alphas)


@dataclass
class OutputConfig:
    """What gets written.

    Attributes
    ----------
    figures : bool
        Render surface maps (needs an fsaverage5 experiment).
    map_threshold : float
        Display threshold of the R^2 maps (a visual threshold, not a significance test).
    dpi : int
        Figure resolution.
    """

    figures: bool = True
    map_threshold: float = 0.05
    dpi: int = 110


@dataclass
class StatisticsConfig:
    """Statistics of the test scores (:mod:`encoding.stats`).

    Attributes
    ----------
    n_permutations : int
        Permutations of the significance test (0: no test).
    null : {"refit", "test"}
        ``refit``: permute the training responses and refit (hyperparameters held);
        ``test``: permute the test responses against the fixed model.
    scheme : {"blocks", "circular", "trs"}
        How samples are permuted within runs (``trs`` ignores autocorrelation: do not use it).
    block_length : int
        Samples per permuted or bootstrapped block (default 10 TRs: one 15-s clip at TR 1.5 s).
    metric : {"r2", "r"}
        Score tested.
    correction : {"fwer", "fdr_bh", "fdr_by", "none"}
        Multiple-comparison correction of the significance maps.
    alpha : float
        Significance level.
    partition : bool
        Variance partitioning from subset models (2-4 feature spaces).
    n_bootstrap : int
        Block-bootstrap resamples of the unique-variance tests.
    random_state : int
    """

    n_permutations: int = 1000
    null: str = "refit"
    scheme: str = "blocks"
    block_length: int = 10
    metric: str = "r2"
    correction: str = "fwer"
    alpha: float = 0.05
    partition: bool = True
    n_bootstrap: int = 1000
    random_state: int = 0

    def __post_init__(self) -> None:
        from encoding.stats.permutation import CORRECTIONS, METRICS, NULLS, SCHEMES

        for name, value, allowed in (("null", self.null, NULLS), ("scheme", self.scheme, SCHEMES),
                                     ("metric", self.metric, METRICS), ("correction", self.correction, CORRECTIONS)):
            if value not in allowed:
                raise ValueError(f"statistics.{name} must be one of {allowed}, got {value!r}.")
        if self.n_permutations < 0 or self.n_bootstrap < 1 or self.block_length < 1:
            raise ValueError("statistics.n_permutations must be >= 0, n_bootstrap and block_length >= 1.")
        if not 0 < self.alpha < 1:
            raise ValueError(f"statistics.alpha must be in (0, 1), got {self.alpha}.")


@dataclass
class SweepConfig:
    """A layer sweep (``brain2music sweep``): one fit per value of a feature-space parameter.

    Attributes
    ----------
    space : str
        Feature space to sweep (e.g. ``"musicnn"``).
    parameter : str
        Its parameter that varies (e.g. ``"layer"``).
    values : list
        The values, e.g. ``["timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate"]``.
    """

    space: str = ""
    parameter: str = "layer"
    values: list = field(default_factory=list)


@dataclass
class PipelineConfig:
    """All options of a brain2music run."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    design: DesignConfig = field(default_factory=DesignConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def __post_init__(self) -> None:
        from encoding.features import available_spaces

        if self.sweep.space and self.sweep.space not in available_spaces():
            raise ValueError(f"sweep.space {self.sweep.space!r} is not a registered feature space.")
        known = set(available_spaces()) | set(self.data.regressor_names())
        unknown = [s for s in list(self.features.spaces) + list(self.features.params) if s not in known]
        if unknown:
            provided = self.data.regressor_names()
            raise ValueError(
                f"Unknown feature space(s) {unknown}. Registered: {', '.join(available_spaces())}"
                + (f"; regressors of the data: {', '.join(provided)}" if provided else "") + "."
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        """Build from nested dicts; unknown keys raise ValueError naming them."""
        return _from_dict(cls, values, "")

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        """Read a TOML config file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config file {path} does not exist.")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (TOML- and JSON-serialisable)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text."""
        return tomli_w.dumps(self.to_dict())


def _from_dict(cls: type, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ValueError(f"[{where or 'config'}] must be a table, got {values!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(where + k for k in unknown)}; "
            f"valid keys{' of [' + where.rstrip('.') + ']' if where else ''}: {', '.join(fields)}."
        )
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}{name}.")
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"[{where.rstrip('.') or 'config'}]: {err}") from None
