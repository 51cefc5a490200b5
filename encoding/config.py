"""Pipeline configuration: one schema, read from and written to TOML.

Every option is declared once, here: its type (the annotation), its default and its rules (the
field's metadata: allowed ``choices``, bounds ``ge``/``gt``/``le``/``lt``, whether it is a
``path``: paths are stored absolute, so a written config means the same from any folder). Sections check the rules that tie several options together in ``check``. Values are
checked when a section is built, from TOML or from Python, so a wrong value is one
:class:`~encoding.errors.ConfigError` naming the key (``model.n_alphas``) before any work starts;
what can only be checked against the data (a permutation block longer than a run, delays longer
than a run) is checked by :func:`encoding.pipeline.check_against_data` right after loading; a memory
budget too small for the design is an error when the fit starts, before its first factorization.

Unknown keys are errors (a typo must not silently fall back to a default). Relative paths in a
config file are relative to the file's folder. ``brain2music demo`` writes the config it used, to
copy and edit.

This module imports only the standard library, numpy and tomli-w: reading a config loads no
plotting, neuroimaging, audio or deep-learning library.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

import numpy as np
import tomli_w

from encoding.errors import ConfigError, MissingInputError

DATA_SOURCES = ("simulation", "bids", "tables")
BACKENDS = ("auto", "numpy", "torch", "torch_cuda")
FORMS = ("auto", "primal", "dual")
STRATEGIES = ("auto", "folds", "hat")
SEARCHES = ("halving", "random")
FAMILIES = ("searched", "all")
SCREEN_R2 = 0.01  # leave-one-run-out R^2 of plain ridge at or below which a vertex is not searched further
NULLS = ("refit", "selection", "test")
SCHEMES = ("blocks", "circular", "trs")
METRICS = ("r2", "r")
CORRECTIONS = ("fwer", "fdr_bh", "fdr_by", "none")
FWER_METHODS = ("max", "step-down", "tfce", "cluster-mass", "cluster-extent")
SPATIAL_METHODS = ("tfce", "cluster-mass", "cluster-extent")  # need the mesh
CLUSTER_THRESHOLD = 3.1  # standardised statistic (p = 0.001 one-sided for a normal null)
DETRENDS = ("median", "polynomial", "cosine", "none")
BOLD_KINDS = ("volume", "fsaverage5", "arrays")
BIDS_DIALECTS = ("generic", "ds003720")
NOISE_KINDS = ("auto", "resting_state", "synthetic")
DECODING_SELECTIONS = ("encoding", "all", "roi")
GENERATORS = ("griffinlim", "musicgen", "latent_diffusion")
RETRIEVAL_METHODS = ("exact", "faiss")
DEFAULT_DELAYS = (1, 2, 3, 4)
DEFAULT_TERRITORIES = {"logmel": ["HG"], "modulation": ["PT"], "caption": ["aSTG", "mSTS"]}


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, choices: tuple | None = None,
           ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           path: bool = False):
    """A config field with its rules (see the module docstring)."""
    metadata = {k: v for k, v in dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}
    if path:
        metadata["path"] = True
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class Section:
    """Base of the config sections: checks every field's type and rules when built.

    ``key`` is the section's dotted name in the TOML file (``"model"``, ``"data.bids"``), used in
    messages. Subclasses add cross-field rules in :meth:`check`.
    """

    key: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{self.key}.{f.name}" if self.key else f.name
            value = _coerce(getattr(self, f.name), hints[f.name], name)
            _check_rules(value, f.metadata, name)
            if f.metadata.get("path") and value and not Path(value).is_absolute():
                value = str(Path(value).absolute())  # from Python: relative to the current folder
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules that involve several options (raise :class:`ConfigError`)."""


def _type_name(hint) -> str:
    origin = get_origin(hint)
    if origin is list:
        args = get_args(hint)
        plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
        return f"a list of {plural.get(args[0], 'tables')}" if args else "a list"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _describe(value) -> str:
    kind = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _coerce(value, hint, name: str):
    """``value`` checked against the annotation ``hint`` (ints are accepted as floats, nothing else converts)."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return _build(hint, value, name)
        raise ConfigError(f"[{name}] must be a table, got {_describe(value)}.")
    if origin is list or hint is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be {_type_name(hint)}, got {_describe(value)}.")
        args = get_args(hint)
        return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table (key = value pairs), got {_describe(value)}.")
        args = get_args(hint)
        return {str(k): _coerce(v, args[1], f"{name}.{k}") for k, v in value.items()} if args else value
    if hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{name} must be true or false (no quotes), got {_describe(value)}.")
        return bool(value)
    if hint is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            hint_text = " (without quotes)" if isinstance(value, str) else ""
            raise ConfigError(f"{name} must be an integer{hint_text}, got {_describe(value)}.")
        return int(value)
    if hint is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            hint_text = " (without quotes)" if isinstance(value, str) else ""
            raise ConfigError(f"{name} must be a number{hint_text}, got {_describe(value)}.")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name} must be a finite number, got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string (in quotes), got {_describe(value)}.")
        return value
    return value  # Any


def _check_rules(value, rules: dict, name: str) -> None:
    if isinstance(value, list):
        for index, v in enumerate(value):
            _check_rules(v, rules, f"{name}[{index}]")
        return
    for v in [value]:
        if "choices" in rules and v not in rules["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, rules['choices']))}; got {v!r}.")
        for key, test, text in (("ge", lambda a, b: a >= b, "at least"), ("gt", lambda a, b: a > b, "greater than"),
                                ("le", lambda a, b: a <= b, "at most"), ("lt", lambda a, b: a < b, "less than")):
            if key in rules and not test(v, rules[key]):
                raise ConfigError(f"{name} must be {text} {rules[key]:g}, got {v!r}.")


def _build(cls: type, values: dict, name: str, base: Path | None = None):
    """Build section ``cls`` from a dict of TOML values; unknown keys are errors naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"[{name}]" if name else "the config"
        raise ConfigError(f"Unknown option(s) {', '.join(repr(k) for k in unknown)} in {where}; "
                          f"valid keys: {', '.join(fields)}.")
    required = [k for k, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and k not in values]
    if required:
        raise ConfigError(f"[{name}] needs {', '.join(required)}.")
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        sub = f"{name}.{key}" if name else key
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _build(hint, value, sub, base)
        elif get_origin(hint) is list and get_args(hint) and dataclasses.is_dataclass(get_args(hint)[0]) \
                and isinstance(value, list):
            value = [_build(get_args(hint)[0], v, f"{sub}[{i}]", base) if isinstance(v, dict) else v
                     for i, v in enumerate(value)]
        elif fields[key].metadata.get("path") and base is not None and isinstance(value, str) and value:
            value = str(base / value) if not Path(value).is_absolute() else value
        kwargs[key] = value
    return cls(**kwargs)


# -- data --------------------------------------------------------------------------------

@dataclass
class SimulationConfig(Section):
    """Sizes and ground truth of the simulated experiment.

    The shape follows OpenNeuro ds003720 (Nakai et al.): 15-s clips back to back, TR 1.5 s,
    training runs of distinct clips, and test runs that repeat one sequence of test clips
    (ds003720: 12 training runs of 40 clips, 6 test runs; here scaled down by default).

    Attributes
    ----------
    n_train_runs, clips_per_run : int
        Training runs (at least 2: leave-one-run-out) and distinct clips in each.
    n_test_clips, n_test_repeats : int
        Clips of the test sequence and how many runs repeat it.
    tr, clip_duration : float
        Seconds.
    extra_trs : int
        Volumes recorded after the last clip (the haemodynamic tail).
    sample_rate : int
        Audio sampling rate, Hz.
    territories : dict of str to list of str
        Planted feature spaces and the auditory landmarks each one drives.
    peak_share : float
        Share of response variance driven by the stimulus at a territory centre, in (0, 1).
    width : float
        Territory width (Gaussian sigma), mm of geodesic distance.
    n_components : int
        Planted weights span this many leading principal axes of each space.
    noise : {"auto", "resting_state", "synthetic"}
        Noise source (see :class:`encoding.simulation.brain.NoiseGenerator`).
    n_subjects : int
        Size of the simulated population (1: the single-subject experiment). Subjects hear the
        same clips in the same runs; with more than one, each has its own planted weights, noise
        and territories, whose landmark centres move by ``subject_shift`` (the territories'
        shared core is the group effect). ``[study] subjects`` chooses which a study runs.
    subject : int
        Which subject (1-based) this config loads; a study sets it for each of its subjects.
    subject_shift : float
        Standard deviation (mm, per axis) of each subject's displacement of each landmark centre.
    subject_similarity : float
        In a simulated study, the share of each vertex's planted weights common to all subjects
        (the correlation of two subjects' weights at a vertex); the rest is the subject's own.
    seed : int
        Seed of clips, weights and noise.
    """

    key: ClassVar[str] = "data.simulation"
    n_train_runs: int = option(6, ge=2)
    clips_per_run: int = option(20, ge=1)
    n_test_clips: int = option(16, ge=1)
    n_test_repeats: int = option(4, ge=1)
    tr: float = option(1.5, gt=0)
    clip_duration: float = option(15.0, gt=0)
    extra_trs: int = option(8, ge=0)
    sample_rate: int = option(16000, ge=1000)
    territories: dict[str, list[str]] = option(factory=lambda: {k: list(v) for k, v in DEFAULT_TERRITORIES.items()})
    peak_share: float = option(0.5, gt=0, lt=1)
    width: float = option(8.0, gt=0)
    n_components: int = option(6, ge=1)
    noise: str = option("auto", choices=NOISE_KINDS)
    n_subjects: int = option(1, ge=1)
    subject: int = option(1, ge=1)
    subject_shift: float = option(3.0, ge=0)
    subject_similarity: float = option(0.7, ge=0, le=1)
    seed: int = 0

    def subject_labels(self) -> list[str]:
        """``sim01``, ``sim02``, ...: one per simulated subject."""
        return [f"sim{k + 1:02d}" for k in range(self.n_subjects)]

    def check(self) -> None:
        from atlases.rois import AUDITORY_LANDMARKS

        if self.subject > self.n_subjects:
            raise ConfigError(f"{self.key}.subject = {self.subject} but the simulated population has n_subjects = "
                              f"{self.n_subjects}: raise n_subjects or choose a subject from 1 to {self.n_subjects}.")

        if not self.territories:
            raise ConfigError(f"{self.key}.territories is empty: plant at least one feature space.")
        for space, landmarks in self.territories.items():
            unknown = [name for name in landmarks if name not in AUDITORY_LANDMARKS]
            if unknown or not landmarks:
                raise ConfigError(f"{self.key}.territories.{space} names unknown landmarks {unknown or '[]'}; "
                                  f"choose from {', '.join(AUDITORY_LANDMARKS)}.")
        check_spaces(list(self.territories), f"{self.key}.territories")


@dataclass
class PreprocessingConfig(Section):
    """Preprocessing of real responses (the simulation needs none).

    Attributes
    ----------
    discard_volumes : int
        Volumes dropped at the start of every run (steady state, lead-in clips); event onsets
        shift accordingly and events that start before the new first volume are dropped.
    detrend : {"median", "polynomial", "cosine", "none"}
        ``median``: subtract a running median of ``median_window`` s; ``polynomial``: subtract a
        least-squares polynomial of ``polynomial_order``; ``cosine``: nilearn's discrete cosine
        high-pass at ``high_pass`` Hz.
    median_window : float
        Seconds (240 in the original ds003720 work).
    polynomial_order : int
    high_pass : float
        Hz.
    confounds : list of str
        fMRIPrep confound strategies for nilearn's ``load_confounds`` (e.g. ``["motion",
        "wm_csf"]``), for BIDS data with fMRIPrep derivatives. Table data name a confounds file
        per run instead.
    """

    key: ClassVar[str] = "data.preprocessing"
    discard_volumes: int = option(0, ge=0)
    detrend: str = option("median", choices=DETRENDS)
    median_window: float = option(240.0, gt=0)
    polynomial_order: int = option(2, ge=0)
    high_pass: float = option(0.008, gt=0)
    confounds: list[str] = option(factory=list)


@dataclass
class BidsConfig(Section):
    """A BIDS data set (:mod:`encoding.datasets.bids`).

    Attributes
    ----------
    root : str
        The data set folder (events and sidecars).
    derivatives : str
        Folder with the BOLD files when they are derivatives (fMRIPrep output, arrays);
        empty: ``root``.
    subject : str
        Subject label without ``sub-``.
    train_task, test_task : str
        Task labels of the training and test runs (``test_task`` may be empty).
    test_runs : list of str
        Run labels of the training task held out as test runs (for data sets without a test task).
    bold : {"volume", "fsaverage5", "arrays"}
        Which BOLD files to read.
    mask : str
        Brain mask for volume data (empty: computed from the first run).
    project_to_surface : bool
        Project volume data onto fsaverage5 (images in MNI space) instead of masking.
    dataset : {"generic", "ds003720"}
        Events dialect: ``ds003720`` builds clip ids from genre and track and marks test repeats.
    audio_root : str
        Folder of the stimulus audio (GTZAN for ds003720); empty: no audio (only text spaces).
    captions : str
        Caption table (Brain2Music's, columns ``ID,DescEN``); empty: none.
    sample_rate : int
        Audio sampling rate after resampling, Hz.
    cache : str
        Folder for cached preprocessed responses and audio (empty: no cache).
    """

    key: ClassVar[str] = "data.bids"
    root: str = option("", path=True)
    derivatives: str = option("", path=True)
    subject: str = "001"
    train_task: str = "Training"
    test_task: str = "Test"
    test_runs: list[str] = option(factory=list)
    bold: str = option("fsaverage5", choices=BOLD_KINDS)
    mask: str = option("", path=True)
    project_to_surface: bool = False
    dataset: str = option("generic", choices=BIDS_DIALECTS)
    audio_root: str = option("", path=True)
    captions: str = option("", path=True)
    sample_rate: int = option(16000, ge=1000)
    cache: str = option("", path=True)

    def check(self) -> None:
        if not self.subject:
            raise ConfigError(f"{self.key}.subject is empty: give the subject label (e.g. '001' for sub-001).")
        if self.subject.startswith("sub-"):
            raise ConfigError(f"{self.key}.subject is the label without 'sub-': write {self.subject[4:]!r}.")
        if not self.train_task:
            raise ConfigError(f"{self.key}.train_task is empty: name the task of the training runs.")


@dataclass
class TableRun(Section):
    """Files of one run of table data. Paths are relative to :attr:`TablesConfig.root` unless absolute.

    Attributes
    ----------
    responses : str
        Matrix of responses, one row per volume.
    regressors : dict of str to str
        Feature-space name to matrix file.
    confounds : str
        Optional matrix regressed out of the responses.
    skip_rows : dict of str to int
        Leading rows to drop from a file (key: ``"responses"``, ``"confounds"`` or a regressor name),
        e.g. motion parameters that still include discarded volumes.
    """

    key: ClassVar[str] = "data.tables.runs[]"
    responses: str
    regressors: dict[str, str] = option(factory=dict)
    confounds: str = ""
    skip_rows: dict[str, int] = option(factory=dict)

    def check(self) -> None:
        known = {"responses", "confounds", *self.regressors}
        unknown = sorted(set(self.skip_rows) - known)
        if unknown or any(n < 0 for n in self.skip_rows.values()):
            raise ConfigError(f"{self.key}.skip_rows: keys must be 'responses', 'confounds' or a regressor name "
                              f"({unknown} are not) and counts >= 0.")


@dataclass
class TablesConfig(Section):
    """A data set of text matrices (:mod:`encoding.datasets.tables`).

    Attributes
    ----------
    root : str
        Folder the run paths are relative to.
    subject : str
    tr : float
        Seconds.
    runs : list of TableRun
    column_names : list of str
        Names of the response columns (default: the file's header, else ``roi-0``, ``roi-1`` ...).
    n_blocks : int
        Contiguous blocks each run is cut into; each block acts as a run.
    test_blocks : list of int
        Blocks (0-based, within each run; negative counts from the end) held out as test data.
    """

    key: ClassVar[str] = "data.tables"
    root: str = option(".", path=True)
    subject: str = "sub-01"
    tr: float = option(2.0, gt=0)
    runs: list[TableRun] = option(factory=list)
    column_names: list[str] = option(factory=list)
    n_blocks: int = option(1, ge=1)
    test_blocks: list[int] = option(factory=list)

    def check(self) -> None:
        outside = [b for b in self.test_blocks if not -self.n_blocks <= b < self.n_blocks]
        if outside:
            raise ConfigError(f"{self.key}.test_blocks {outside} do not exist: each run is cut into n_blocks = "
                              f"{self.n_blocks} blocks (0 to {self.n_blocks - 1}, or negative from the end).")

    def regressor_names(self) -> list[str]:
        """Feature spaces the runs provide."""
        return sorted({name for run in self.runs for name in run.regressors})


@dataclass
class DataConfig(Section):
    """Where the responses come from.

    Attributes
    ----------
    source : {"simulation", "bids", "tables"}
        ``simulation``: the built-in simulated experiment; ``bids``: a BIDS data set such as
        ds003720; ``tables``: responses and regressors as text matrices.
    simulation, bids, tables : sections
        Used when ``source`` names them.
    preprocessing : PreprocessingConfig
        Applied to real responses.
    """

    key: ClassVar[str] = "data"
    source: str = option("simulation", choices=DATA_SOURCES)
    simulation: SimulationConfig = option(factory=SimulationConfig)
    bids: BidsConfig = option(factory=BidsConfig)
    tables: TablesConfig = option(factory=TablesConfig)
    preprocessing: PreprocessingConfig = option(factory=PreprocessingConfig)

    def check(self) -> None:
        if self.source == "bids" and not self.bids.root:
            raise ConfigError("data.source is 'bids' but data.bids.root is empty: give the BIDS data set folder.")
        if self.source == "tables" and not self.tables.runs:
            raise ConfigError("data.source is 'tables' but data.tables.runs is empty: list at least one run "
                              "with a responses file ([[data.tables.runs]] responses = \"...\").")

    def regressor_names(self) -> list[str]:
        """Feature spaces the data provide on the TR grid (no extraction needed)."""
        return self.tables.regressor_names() if self.source == "tables" else []


# -- features, design, model -------------------------------------------------------------

def check_spaces(names: list[str], key: str, provided: list[str] = ()) -> None:
    """Raise :class:`ConfigError` unless every name is a registered feature space or a regressor."""
    from encoding.features import available_spaces

    unknown = [s for s in names if s not in set(available_spaces()) | set(provided)]
    if unknown:
        raise ConfigError(
            f"{key}: unknown feature space(s) {unknown}. Registered: {', '.join(available_spaces())}"
            + (f"; regressors of the data: {', '.join(provided)}" if provided else "")
            + " (`brain2music spaces` lists them with their parameters)."
        )


@dataclass
class FeaturesConfig(Section):
    """Feature spaces to fit.

    Attributes
    ----------
    spaces : list of str
        Registered feature-space names (``brain2music spaces`` lists them).
    params : dict of str to dict
        Extractor parameters per space, e.g. ``{caption = {model = "lsa"}}``.
    cache : str
        Folder of cached features (empty: no cache); keyed by extractor, parameters, code revision
        and clip content, so re-runs and interrupted runs only compute what is missing.
    pca : dict of str to int
        Spaces to reduce to that many principal components, fitted on the training clips only
        (e.g. ``{musicgen = 64}``); the kept variance is recorded in the summary.
    """

    key: ClassVar[str] = "features"
    spaces: list[str] = option(factory=lambda: ["logmel", "modulation", "caption"])
    params: dict[str, dict] = option(factory=dict)
    cache: str = option("", path=True)
    pca: dict[str, int] = option(factory=dict)

    def check(self) -> None:
        if not self.spaces:
            raise ConfigError("features.spaces is empty; name at least one feature space.")
        if len(set(self.spaces)) != len(self.spaces):
            raise ConfigError(f"features.spaces lists a space twice: {self.spaces}.")
        outside = sorted(set(self.pca) - set(self.spaces))
        if outside:
            raise ConfigError(f"features.pca names spaces that are not in features.spaces: {outside}.")
        small = {k: v for k, v in self.pca.items() if v < 1}
        if small:
            raise ConfigError(f"features.pca asks for fewer than 1 component: {small}.")


@dataclass
class DesignConfig(Section):
    """Design matrices.

    Attributes
    ----------
    delays : list of int
        FIR delays in TRs (default 1-4: 1.5-6 s at TR 1.5 s), non-negative and distinct.
    """

    key: ClassVar[str] = "design"
    delays: list[int] = option(factory=lambda: list(DEFAULT_DELAYS), ge=0)

    def check(self) -> None:
        if not self.delays or len(set(self.delays)) != len(self.delays):
            raise ConfigError(f"design.delays must be a non-empty list of distinct integers (TRs), got {self.delays}.")


@dataclass
class ModelConfig(Section):
    """Banded ridge fit (see :class:`encoding.model.BandedRidgeEncoder`).

    Attributes
    ----------
    alpha_min, alpha_max : float
        Range of the log-spaced regularisation grid (0 < alpha_min < alpha_max).
    n_alphas : int
        Grid size.
    n_iter : int
        Band-weight candidates of the random search.
    concentration : list of float
        Dirichlet concentrations of the random search (positive).
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
    cache : str
        Folder where the fit keeps each finished vertex batch (empty: none); an interrupted fit
        run again with the same inputs only fits the batches that are missing.
    search : {"halving", "random"}
        How band-weight candidates are searched: successive halving (each vertex drops its
        weaker two thirds of the candidates after 2, 4, 8, ... folds) or every candidate on every
        fold (:class:`encoding.model.BandedRidgeEncoder`).
    screen_r2 : float
        Vertices whose leave-one-run-out R^2 with equal band weights (plain ridge) is at most
        this keep that model; only the others get the band-weight search. Vertices at or below
        ``min(screen_r2, 0)`` on the first third of the folds stop there (``BandedRidgeEncoder``'s
        ``screen``). ``-inf`` searches every vertex.
    random_state : int
        Seed of the random search.
    """

    key: ClassVar[str] = "model"
    alpha_min: float = option(1e-2, gt=0)
    alpha_max: float = option(1e8, gt=0)
    n_alphas: int = option(21, ge=1)
    n_iter: int = option(20, ge=1)
    concentration: list[float] = option(factory=lambda: [0.1, 1.0], gt=0)
    form: str = option("auto", choices=FORMS)
    strategy: str = option("auto", choices=STRATEGIES)
    backend: str = option("auto", choices=BACKENDS)
    memory_gb: float = option(2.0, gt=0)
    scheduler: str = ""
    cache: str = option("", path=True)
    search: str = option("halving", choices=SEARCHES)
    screen_r2: float = SCREEN_R2
    random_state: int = 0

    def check(self) -> None:
        if not self.alpha_min < self.alpha_max:
            raise ConfigError(f"model.alpha_min ({self.alpha_min:g}) must be smaller than model.alpha_max "
                              f"({self.alpha_max:g}).")
        if not self.concentration:
            raise ConfigError("model.concentration is empty: give at least one Dirichlet concentration, e.g. [1.0].")
        if self.scheduler and "://" not in self.scheduler:
            raise ConfigError(f"model.scheduler must be a dask scheduler address such as 'tcp://host:8786', "
                              f"got {self.scheduler!r}.")

    @property
    def alphas(self) -> np.ndarray:
        """The regularisation grid."""
        return np.logspace(np.log10(self.alpha_min), np.log10(self.alpha_max), self.n_alphas)


# -- statistics, outputs, sweeps ---------------------------------------------------------

@dataclass
class StatisticsConfig(Section):
    """Statistics of the test scores (:mod:`encoding.stats`).

    Attributes
    ----------
    n_permutations : int
        Permutations of the significance test (0: no test).
    null : {"refit", "selection", "test"}
        ``refit``: permute the training responses and refit (hyperparameters held);
        ``selection``: the same, with the hyperparameters selected again by the whole search
        under every permutation (the selection is part of the null); ``test``: permute the test
        responses against the fixed model.
    scheme : {"blocks", "circular", "trs"}
        How samples are permuted within runs (``trs`` ignores autocorrelation: do not use it).
    block_length : int
        Samples per permuted or bootstrapped block (default 10 TRs: one 15-s clip at TR 1.5 s);
        every permuted run must hold at least two blocks.
    metric : {"r2", "r"}
        Score tested.
    correction : {"fwer", "fdr_bh", "fdr_by", "none"}
        Multiple-comparison correction of the significance maps.
    fwer : {"step-down", "max", "tfce", "cluster-mass", "cluster-extent"}
        The FWER procedure (:meth:`encoding.stats.PermutationResult.fwer_p_values`): step-down
        maximum statistic (default), single-step maximum, TFCE, or cluster mass / extent on
        fsaverage5's mesh (these three need data on fsaverage5). Reports list what every
        procedure finds from the same permutations.
    standardise : bool
        Scale each vertex's statistic by its own null before the FWER procedure (default: one
        spread pooled over vertices; :class:`encoding.stats.PermutationResult`).
    cluster_threshold : float
        Cluster-forming threshold of the cluster procedures, in null standard deviations.
    family : {"searched", "all"}
        Vertices tested: those the fit's screen kept for the band-weight search (leave-one-run-out
        R^2 of plain ridge above ``model.screen_r2``; chosen on training data only, so the test
        stays exact, and the others are reported with p = 1), or every vertex. Variance
        partitioning follows: with ``"searched"`` its subset models are fitted on the tested
        vertices and the ROI summary's regions only (unique variance is tested within the
        significant vertices), the other vertices' atoms are NaN.
    alpha : float
        Significance level, in (0, 1).
    partition : bool
        Variance partitioning from subset models (2-4 feature spaces).
    n_bootstrap : int
        Block-bootstrap resamples of the unique-variance tests and of the ROI intervals.
    atlas : str
        Atlas whose regions the ROI summaries use on fsaverage5
        (:data:`atlases.parcellations.PARCELLATIONS`).
    random_state : int
    """

    key: ClassVar[str] = "statistics"
    n_permutations: int = option(1000, ge=0)
    null: str = option("refit", choices=NULLS)
    scheme: str = option("blocks", choices=SCHEMES)
    block_length: int = option(10, ge=1)
    metric: str = option("r2", choices=METRICS)
    correction: str = option("fwer", choices=CORRECTIONS)
    fwer: str = option("step-down", choices=FWER_METHODS)
    standardise: bool = False
    cluster_threshold: float = option(CLUSTER_THRESHOLD, gt=0)
    family: str = option("searched", choices=FAMILIES)
    alpha: float = option(0.05, gt=0, lt=1)
    partition: bool = True
    n_bootstrap: int = option(1000, ge=2)
    atlas: str = "desikan_killiany"
    random_state: int = 0

    def check(self) -> None:
        from atlases.parcellations import check_atlas

        check_atlas(self.atlas, "statistics.atlas")


@dataclass
class DecodingConfig(Section):
    """Decoding (``brain2music decode``; :mod:`decoding`): from responses back to feature spaces.

    Attributes
    ----------
    targets : list of str
        Feature spaces to decode (registered spaces; their parameters come from ``features.params``).
    window, hop : float
        Embedding window and hop, seconds (Brain2Music: 10 s on a 1.5-s hop); responses are
        averaged over the same window, lagged.
    delays : list of int
        Lags of the responses behind the stimulus, TRs (default 3: 4.5 s).
    selection : {"encoding", "all", "roi"}
        Vertices decoded from: the best ``n_vertices`` by training-run encoding performance
        (nested in the decoder's CV), all of them, or the ``rois`` of the ``atlas``.
    n_vertices : int
    atlas : str
        Atlas of the ``rois`` (:data:`atlases.parcellations.PARCELLATIONS`: ``desikan_killiany``,
        ``hcp_mmp1``, ``harvard_oxford``).
    rois : list of str
        Regions of :data:`atlases.parcellations.REGIONS` ``[atlas]`` (``selection = "roi"``), e.g.
        ``["HG", "STG", "STS"]``.
    alpha_min, alpha_max, n_alphas
        Log-spaced regularisation grid, searched per target dimension.
    top_k : list of int
        N-way identification's k (the N is the number of test clips).
    n_permutations : int
        Decoder refits on clip-permuted training targets (0: none).
    n_bootstrap : int
        Bootstrap resamples of test clips for the confidence intervals.
    library : str
        Retrieval library: a caption table (CSV with ``caption``) for text targets, a folder of
        audio files or a saved index (``.npz``); empty: the experiment's own clips.
    library_method : {"exact", "faiss"}
        Exact cosine search, or approximate (the ``retrieval`` extra) for large libraries.
    n_retrieved : int
        Items retrieved per decoded clip.
    generators : list of str
        ``griffinlim`` (from a decoded ``logmel``, no weights), ``musicgen`` (prompted with the
        captions retrieved for a decoded text target), ``latent_diffusion`` (conditioned on a decoded
        ``clap_audio``).
    generator_params : dict of str to dict
        Parameters per generator, e.g. ``{musicgen = {model = "facebook/musicgen-medium"},
        latent_diffusion = {model = "FOLDER", num_inference_steps = 100}}`` (their defaults: the hub
        ids ``facebook/musicgen-small`` and ``ucsd-reach/musicldm``; see
        :mod:`decoding.generation`).
    n_reconstructed : int
        Test clips reconstructed (retrieved and generated audio), in test order.
    duration : float
        Seconds of generated audio.
    random_state : int
    """

    key: ClassVar[str] = "decoding"
    targets: list[str] = option(factory=lambda: ["caption"])
    window: float = option(10.0, gt=0)
    hop: float = option(1.5, gt=0)
    delays: list[int] = option(factory=lambda: [3])
    selection: str = option("encoding", choices=DECODING_SELECTIONS)
    n_vertices: int = option(2000, ge=1)
    atlas: str = "desikan_killiany"
    rois: list[str] = option(factory=list)
    alpha_min: float = option(1.0, gt=0)
    alpha_max: float = option(1e10, gt=0)
    n_alphas: int = option(21, ge=1)
    top_k: list[int] = option(factory=lambda: [1, 3], ge=1)
    n_permutations: int = option(1000, ge=0)
    n_bootstrap: int = option(1000, ge=0)
    library: str = option("", path=True)
    library_method: str = option("exact", choices=RETRIEVAL_METHODS)
    n_retrieved: int = option(5, ge=1)
    generators: list[str] = option(factory=list)
    generator_params: dict[str, dict] = option(factory=dict)
    n_reconstructed: int = option(6, ge=0)
    duration: float = option(10.0, gt=0)
    random_state: int = 0

    def check(self) -> None:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"decoding.targets must name distinct feature spaces, got {self.targets}.")
        check_spaces(self.targets, "decoding.targets")
        if not self.delays or len(set(self.delays)) != len(self.delays):
            raise ConfigError(f"decoding.delays must be a non-empty list of distinct integers (TRs), got {self.delays}.")
        if not self.alpha_min < self.alpha_max:
            raise ConfigError(f"decoding.alpha_min ({self.alpha_min:g}) must be smaller than decoding.alpha_max "
                              f"({self.alpha_max:g}).")
        if self.selection == "roi":
            from atlases.parcellations import check_atlas, check_regions

            check_regions(check_atlas(self.atlas, "decoding.atlas"), self.rois, "decoding.rois")
        unknown = [g for g in self.generators if g not in GENERATORS]
        if unknown:
            raise ConfigError(f"decoding.generators names unknown generators {unknown}; choose from "
                              f"{', '.join(GENERATORS)}.")
        outside = sorted(set(self.generator_params) - set(self.generators) - {"griffinlim"})
        if outside:
            raise ConfigError(f"decoding.generator_params names {outside}, which are not in decoding.generators.")
        if "griffinlim" in self.generator_params:
            raise ConfigError("decoding.generator_params.griffinlim: Griffin-Lim takes the logmel space's own "
                              "parameters (features.params.logmel), none of its own.")
        needs = {"griffinlim": "logmel", "latent_diffusion": "clap_audio"}
        for generator, space in needs.items():
            if generator in self.generators and space not in self.targets:
                raise ConfigError(f"decoding.generators has {generator!r}, which generates from a decoded {space!r}: "
                                  f"add {space!r} to decoding.targets.")
        if "musicgen" in self.generators and not {"caption", "clap_text", "clap_audio"} & set(self.targets):
            raise ConfigError("decoding.generators has 'musicgen', prompted with captions retrieved for a decoded "
                              "text embedding: add 'caption' (or 'clap_text') to decoding.targets.")

    @property
    def alphas(self) -> np.ndarray:
        """The regularisation grid."""
        return np.logspace(np.log10(self.alpha_min), np.log10(self.alpha_max), self.n_alphas)


@dataclass
class OutputConfig(Section):
    """What gets written.

    Attributes
    ----------
    figures : bool
        Render surface maps (fsaverage5 experiments) or per-target bars (ROI data).
    map_threshold : float
        Display threshold of the R^2 maps (a visual threshold, not a significance test).
    dpi : int
        Figure resolution.
    """

    key: ClassVar[str] = "output"
    figures: bool = True
    map_threshold: float = option(0.05, ge=0, lt=1)
    dpi: int = option(150, ge=20, le=1200)


@dataclass
class SweepConfig(Section):
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

    key: ClassVar[str] = "sweep"
    space: str = ""
    parameter: str = "layer"
    values: list = option(factory=list)

    def check(self) -> None:
        if self.space:
            check_spaces([self.space], "sweep.space")
            from encoding.features import extractor_parameters

            if self.parameter not in extractor_parameters(self.space):
                raise ConfigError(f"sweep.parameter {self.parameter!r} is not a parameter of {self.space!r}; its "
                                  f"parameters: {', '.join(extractor_parameters(self.space))}.")


ALIGNMENTS = ("anatomical", "functional")


@dataclass
class StudyConfig(Section):
    """A study: the same analysis for several subjects, then the group level (``brain2music fit``).

    Attributes
    ----------
    subjects : list of str
        Subject labels: BIDS labels without ``sub-`` (``data.source = "bids"``), or ``sim01``,
        ``sim02``, ... (``"simulation"``, with ``data.simulation.n_subjects``); ``["all"]``: every
        subject of the data set. Empty: a single-subject run.
    decode : bool
        Also decode (``[decoding]``) each subject, into its folder's ``decoding/``.
    cross_subject : list of {"anatomical", "functional"}
        Cross-subject decoding of the ``[decoding]`` targets (each subject decoded by a decoder
        trained on the others), on the same vertices or after functional alignment.
    group : bool
        Run the group level (``brain2music group``) on the subjects that finished.
    share_fits : bool
        Fit subjects with the same design (the same clips in the same runs) together: one
        factorization of every band-weight candidate for all of them, each vertex's model the
        same as alone (:func:`encoding.study.fit_shared`). False fits each subject on its own.
    """

    key: ClassVar[str] = "study"
    subjects: list[str] = option(factory=list)
    decode: bool = False
    cross_subject: list[str] = option(factory=list, choices=ALIGNMENTS)
    group: bool = True
    share_fits: bool = True

    def check(self) -> None:
        if len(set(self.subjects)) != len(self.subjects):
            raise ConfigError(f"study.subjects lists a subject twice: {self.subjects}.")
        if "all" in self.subjects and len(self.subjects) > 1:
            raise ConfigError(f"study.subjects is either [\"all\"] or a list of labels, got {self.subjects}.")
        if any(label.startswith("sub-") for label in self.subjects):
            raise ConfigError(f"study.subjects are labels without 'sub-': {self.subjects}.")


@dataclass
class PipelineConfig(Section):
    """All options of a brain2music run."""

    key: ClassVar[str] = ""
    data: DataConfig = option(factory=DataConfig)
    features: FeaturesConfig = option(factory=FeaturesConfig)
    design: DesignConfig = option(factory=DesignConfig)
    model: ModelConfig = option(factory=ModelConfig)
    output: OutputConfig = option(factory=OutputConfig)
    statistics: StatisticsConfig = option(factory=StatisticsConfig)
    sweep: SweepConfig = option(factory=SweepConfig)
    decoding: DecodingConfig = option(factory=DecodingConfig)
    study: StudyConfig = option(factory=StudyConfig)

    def check(self) -> None:
        from encoding.features import get_extractor

        if self.study.subjects and self.data.source == "tables":
            raise ConfigError("study.subjects needs subjects in the data: data.source 'tables' holds one subject "
                              "(run one config per subject, then `brain2music group` on their outputs).")
        if self.study.subjects and self.data.source == "simulation" and self.study.subjects != ["all"]:
            known = self.data.simulation.subject_labels()
            unknown = [label for label in self.study.subjects if label not in known]
            if unknown:
                raise ConfigError(f"study.subjects names {unknown}, which the simulation does not have: it has "
                                  f"{', '.join(known)} (data.simulation.n_subjects = {self.data.simulation.n_subjects}).")

        provided = self.data.regressor_names()
        check_spaces(self.features.spaces, "features.spaces", provided)
        check_spaces([s for s in self.features.params if s not in provided], "features.params")
        given = sorted(set(self.features.params) & set(provided))
        if given:
            raise ConfigError(f"features.params gives parameters to {given}, regressors of the data: they are "
                              "used as they are and take none.")
        for space, params in self.features.params.items():
            if space not in provided:
                get_extractor(space, **params)  # parameter names, types and values (no model is loaded)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: str | Path | None = None) -> PipelineConfig:
        """Build from nested dicts; relative paths are taken relative to ``base`` when given.

        Raises
        ------
        ConfigError
            Naming the key, for an unknown key or a value of the wrong type or out of range.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"A config is a table of sections, got {_describe(values)}.")
        return _build(cls, values, "", Path(base) if base is not None else None)

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        """Read a TOML config file; its relative paths are relative to the file's folder."""
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"Config file {path} does not exist" + (" (it is a folder)." if path.is_dir()
                                                                           else "."))
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}.") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a text file (TOML is UTF-8 text).") from None
        try:
            return cls.from_dict(values, base=path.resolve().parent)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (TOML- and JSON-serialisable)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text."""
        return tomli_w.dumps(self.to_dict())


def demo_config(quick: bool = False, seed: int = 0) -> PipelineConfig:
    """The demo's configuration: the simulated experiment with the default pipeline.

    ``quick`` shrinks the experiment (4 training runs of 16 clips, 12 test clips x 3 repeats), the
    search (10 band-weight candidates, 11 alphas: one per decade) and the permutation test (100
    permutations, 200 bootstrap resamples) so the demo runs in about two minutes on 2 cores
    (``benchmarks/demo.py``); the full demo uses 500 permutations (a 0.002 p-value resolution) and
    takes about ten. Both then decode the planted caption embedding and the log-mel spectrogram
    from the responses (``[decoding]``), retrieve captions and clips for the decoded embeddings and
    resynthesise audio from the decoded log-mel (Griffin-Lim).
    """
    config = PipelineConfig()
    sim = config.data.simulation
    sim.seed = seed
    config.model.random_state = seed
    config.decoding.targets = ["caption", "logmel"]
    config.decoding.generators = ["griffinlim"]
    config.decoding.random_state = seed
    if quick:
        config.decoding.n_permutations = 200
        sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats = 4, 16, 12, 3
        config.model.n_iter = 10
        config.model.n_alphas = 11
        config.statistics.n_permutations = 100
        config.statistics.n_bootstrap = 200
    else:
        config.statistics.n_permutations = 500
    return config
