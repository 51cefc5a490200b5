"""The tutorial notebooks run top to bottom, as a reader runs them, in a fresh kernel of this interpreter.

Each notebook is executed with nbclient (the notebook's folder as working directory, offline), must
finish in under five minutes on a 2-core machine, produce no error output, and show what it is
about: a few numbers each notebook prints are read back from its outputs and checked.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
TIME_LIMIT_S = 300  # each notebook, on this project's 2-core machine
ALICE = NOTEBOOKS_DIR.parent / ".." / "shared" / "data" / "alice-brennan2016"


def test_there_is_a_notebook():
    assert NOTEBOOKS


def test_committed_notebooks_have_no_outputs():
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not ran, f"{path.name}: cells {ran} keep outputs; clear them before committing"


def kernel_manager():
    """A kernel manager that starts ipykernel with this interpreter, whatever kernelspecs are installed."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (tests)",
                              language="python", env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

    return KernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter())


def execute(path: Path):
    """Run a notebook in a fresh kernel; returns the executed notebook and its wall time (s)."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the [dev] extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the [dev] extra")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", km=kernel_manager(),
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it did not start running: stop it, or it holds memory and cores
        client.km.shutdown_kernel(now=True)
    return nb, time.perf_counter() - start


def text_of(nb) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def number(text: str, pattern: str) -> float:
    """The number the regular expression's group captures (the test fails if the notebook did not print it)."""
    found = re.search(pattern, text)
    assert found, f"no output matches {pattern!r}"
    return float(found.group(1))


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
               if out.output_type in ("execute_result", "display_data"))


def check_quickstart(text, nb):
    assert number(text, r"max test R2 ([-\d.]+)") > 0.2
    assert number(text, r"(\d+) vertices significant \(FWER 0.05\)") > 20
    assert images(nb) >= 5


def check_variance_partitioning(text, nb):
    for space in ("logmel", "modulation", "caption"):  # each space's unique variance is where it was planted
        assert number(text, rf"{space}: mean unique variance ([-\d.]+) in its planted territory") > 0.05
        assert abs(number(text, rf"{space}: mean unique variance [-\d.]+ in its planted territory, ([-\d.]+) where")) < 0.02
    assert number(text, r"HG: unique logmel ([-\d.]+)") > 0.05
    assert number(text, r"significant vertices outside the planted territories: (\d+)") <= 5
    assert images(nb) >= 3  # the RGB map, one space's map, the comparison with the truth


def check_decoding(text, nb):
    assert number(text, r"pairwise identification, caption: ([\d.]+)") > 0.8
    assert number(text, r"pairwise identification, logmel: ([\d.]+)") > 0.5
    assert "<audio" in "".join(out.get("data", {}).get("text/html", "") for cell in nb.cells
                               for out in cell.get("outputs", []) if out.output_type == "display_data")
    assert images(nb) >= 2


def check_real_data(text, nb):
    assert number(text, r"HG: test R2 ([-\d.]+)") > 0.05
    assert number(text, r"V1: test R2 ([-\d.]+)") < 0.02
    if ALICE.is_dir():
        assert number(text, r"LPTL: mean held-out r ([-\d.]+)") > 0.1
        assert images(nb) >= 2  # the toy data set's map and the Alice ROI plot
    else:
        assert "Alice data not found" in text
        assert images(nb) >= 1  # the toy data set's map (part (b) draws nothing without the data)


CHECKS = {"01_quickstart": check_quickstart, "02_variance_partitioning": check_variance_partitioning,
          "03_decoding": check_decoding, "04_real_data": check_real_data}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebooks choose %matplotlib inline
    nb, seconds = execute(path)
    print(f"{path.name}: {seconds:.1f} s")
    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(nb.cells)
              for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors
    assert seconds < TIME_LIMIT_S, f"{path.name} took {seconds:.0f} s (limit {TIME_LIMIT_S} s)"
    check = CHECKS.get(path.stem)
    if check is not None:
        check(text_of(nb), nb)
