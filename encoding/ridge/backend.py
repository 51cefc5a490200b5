"""The solver's one seam to himalaya's array backends (numpy, torch, torch_cuda).

:func:`backend_module` returns a backend module without making it himalaya's current backend: calling
the solver leaves ``himalaya.backend.get_backend()`` as the caller set it.
"""

from __future__ import annotations

import importlib

from himalaya.backend import ALL_BACKENDS


def backend_module(name: str):
    """himalaya's backend module ``name`` (``"numpy"``, ``"torch"``, ``"torch_cuda"`` ...), global state untouched.

    Raises
    ------
    ValueError
        For a name himalaya does not know.
    """
    if name not in ALL_BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; himalaya's backends: {', '.join(ALL_BACKENDS)}.")
    return importlib.import_module(f"himalaya.backend.{name}")
