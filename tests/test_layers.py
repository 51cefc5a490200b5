"""The package layers: imports flow one way, light modules stay light, nothing changes global state,
and feature caches are keyed by the extractor's code revision."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("encoding", "atlases", "decoding")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, at the top or inside functions (lazy imports count too)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules}
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {t for t in targets if t != name and not (t == package)}  # a module's own package
    return graph


def test_no_import_cycle_among_the_packages():
    graph = import_graph()
    # a package __init__ re-exporting its modules is not a dependency of those modules on each other
    graph = {m: {t for t in targets if not (t.startswith(m + ".") and (ROOT / Path(*m.split("."))).is_dir())}
             for m, targets in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_statistics_do_not_import_the_pipeline_and_loaders_do_not_analyse():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("encoding.stats"):
            assert not {t for t in targets if t in ("encoding.pipeline", "encoding.report", "encoding.cli")}, module
        if module.startswith("encoding.datasets"):
            assert not {t for t in targets if t in ("encoding.pipeline", "encoding.model", "encoding.ridge")}, module


def test_decoding_builds_on_encoding_and_encoding_does_not_need_decoding():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("encoding") and module not in ("encoding.cli", "encoding.study"):  # on top of both
            assert not {t for t in targets if t.startswith("decoding")}, module
        if module.startswith("decoding") and module not in ("decoding.pipeline", "decoding.report"):
            assert not {t for t in targets if t in ("encoding.pipeline", "encoding.report", "encoding.cli")}, module
    assert {"encoding.ridge", "encoding.design", "encoding.scoring"} <= set().union(
        *(graph[m] for m in graph if m.startswith("decoding")))  # the solver and the design helpers are reused


def run_python(code: str, **env) -> str:
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_config_and_data_model_import_no_heavy_library():
    out = run_python("import encoding.config, encoding.data, sys; "
                     "print([m for m in ('matplotlib', 'nilearn', 'librosa', 'torch') if m in sys.modules])")
    assert out == "[]"
    out = run_python("import encoding.config, sys; encoding.config.demo_config(quick=True); "
                     "print([m for m in ('matplotlib', 'nilearn', 'librosa', 'torch') if m in sys.modules])")
    assert out == "[]"  # building and checking a config (feature spaces, landmarks) stays light too


def test_plotting_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; import atlases.plotting, encoding.report, encoding.pipeline; "
            "from atlases.plotting import plot_surface_map; import numpy as np; "
            "fig = plot_surface_map(np.linspace(0, 1, 20484), 'ramp', threshold=0.5); "
            "fig.savefig('/dev/null', format='png'); print(matplotlib.get_backend())")
    assert run_python(code, MPLBACKEND="svg").lower() == "svg"


def test_fitting_leaves_the_himalaya_backend_as_the_caller_set_it():
    pytest.importorskip("torch")
    from himalaya.backend import get_backend, set_backend

    from encoding.model import BandedRidgeEncoder

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 4)).astype(np.float32), rng.standard_normal((60, 3)).astype(np.float32)
    groups = np.repeat([0, 1, 2], 20)
    previous = get_backend().name
    try:
        set_backend("torch")
        model = BandedRidgeEncoder({"a": slice(0, 2), "b": slice(2, 4)}, n_iter=3, backend="numpy",
                                   progress_bar=False).fit(X, Y, groups)
        model.score_split(X, Y)
        assert get_backend().name == "torch"
        set_backend("numpy")
        BandedRidgeEncoder({"a": slice(0, 2), "b": slice(2, 4)}, n_iter=3, backend="torch",
                           progress_bar=False).fit(X, Y, groups)
        assert get_backend().name == "numpy"
    finally:
        set_backend(previous)


def test_public_names_are_reexported_lazily():
    out = run_python("import encoding, sys; print('encoding.pipeline' in sys.modules); "
                     "from encoding import run_pipeline, BandedRidgeEncoder, PipelineConfig, demo_config; "
                     "print(run_pipeline.__module__, BandedRidgeEncoder.__module__, demo_config.__module__)")
    assert out.splitlines() == ["False", "encoding.pipeline encoding.model encoding.config"]
    out = run_python("import decoding, sys; print('decoding.pipeline' in sys.modules, 'torch' in sys.modules); "
                     "from decoding import RidgeDecoder, run_decoding, EmbeddingIndex; "
                     "print(RidgeDecoder.__module__, run_decoding.__module__, EmbeddingIndex.__module__)")
    assert out.splitlines() == ["False False", "decoding.model decoding.pipeline decoding.retrieval"]


def test_feature_cache_keys_change_with_the_code_revision_of_every_extractor(monkeypatch):
    from encoding.features import available_spaces, get_extractor
    from encoding.features.base import _REGISTRY

    for name in available_spaces():
        extractor = get_extractor(name)
        before = extractor.fingerprint()
        monkeypatch.setattr(_REGISTRY[name], "code_revision", "changed")
        assert extractor.fingerprint() != before, name  # a network's hub `revision` does not hide it
    hub = get_extractor("encodec", revision="v2").fingerprint()
    assert hub != get_extractor("encodec").fingerprint()  # the hub revision is part of the key as well
