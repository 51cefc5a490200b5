"""Notebooks are valid and run end to end (on a shorter band-weight search)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook():
    assert NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    pytest.importorskip("IPython", reason="the notebooks display audio with IPython ([dev] extra)")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        source = source.replace("config = demo_config(quick=True, seed=0)",
                                "config = demo_config(quick=True, seed=0)\nconfig.model.n_iter = 2")
        exec(compile(source, f"{path.name} cell", "exec"), namespace)  # noqa: S102 (our own notebook)
    assert namespace["results"].test_r2.shape == (20484,)
