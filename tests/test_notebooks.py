"""Notebooks are valid and their code compiles (they run the quick demo, too slow to execute here)."""

import ast
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_compiles(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
            ast.parse(source)


def test_there_is_a_notebook():
    assert NOTEBOOKS
