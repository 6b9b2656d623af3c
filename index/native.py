"""The numba kernels' decorator, and numba's start-up without SciPy.

The first call of any compiled function, even one loaded from numba's disk cache, makes
numba load its implementation registries, and one of them (``numba.np.arraymath``) checks at
import time that BLAS is there by importing ``scipy.linalg.cython_blas``: some 0.15 s of
``scipy.linalg`` imports that none of samestory's kernels uses (no ``np.dot``, no linear
algebra). Importing this module loads the registries at once with that check deferred:
numba's own linear algebra still imports ``scipy.linalg`` (and checks its BLAS) when a
kernel first uses it, so nothing numba compiles changes.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["native"]

_F = TypeVar("_F", bound=Callable[..., Any])

# What numba.np.arraymath imports at import time to see whether BLAS is there (and numba's
# own import does not: it imports only the top-level ``scipy`` package, to check its version).
_BLAS_MODULE = "scipy.linalg"


def native(function: _F) -> _F:
    """Compile with numba, cached on disk and without the GIL (typed for mypy)."""
    return cast(_F, numba.njit(cache=True, nogil=True)(function))


def _load_registries() -> None:
    """Load numba's CPU registries now, without importing SciPy for the BLAS check."""
    if "numba.np.arraymath" in sys.modules or _BLAS_MODULE in sys.modules:
        return  # already loaded, or SciPy's linear algebra is there anyway: nothing to save
    if threading.active_count() > 1:
        return  # another thread could be importing SciPy while it is hidden
    from numba.core.registry import cpu_target

    # A None entry makes ``import scipy.linalg...`` fail at once; arraymath's check catches
    # the ImportError and records that there is no BLAS, which is set right below.
    sys.modules[_BLAS_MODULE] = None  # type: ignore[assignment]
    try:
        cpu_target.target_context.refresh()
    finally:
        if sys.modules.get(_BLAS_MODULE, 0) is None:
            del sys.modules[_BLAS_MODULE]
    from numba.np import arraymath

    if hasattr(arraymath, "_HAVE_BLAS"):
        # What the check would have found. Only np.convolve and np.correlate read it, and
        # the np.dot they then use calls numba's full BLAS check (SciPy's import) itself.
        arraymath._HAVE_BLAS = importlib.util.find_spec(_BLAS_MODULE) is not None


try:
    _load_registries()
except Exception:  # numba internals moved: its first dispatch loads them itself
    logging.getLogger(__name__).debug("numba registries not preloaded", exc_info=True)
