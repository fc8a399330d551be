"""Compatibility shims for pinned dependencies.

parallel-wavegan 0.6.1 does ``from scipy.signal import kaiser``; SciPy 1.13 removed that alias (it lives in
``scipy.signal.windows``), and numpy 2 needs such a SciPy. ``install_scipy_shim`` is run by a ``.pth`` file in
tools/venv at every interpreter start, so the modules and console scripts of parallel-wavegan both import. It is
lazy: SciPy is only touched when something imports ``parallel_wavegan``, so plain ``python`` starts as fast as
before.
"""

import importlib.abc
import sys


def patch_scipy_kaiser():
    """Restore ``scipy.signal.kaiser`` if this SciPy lacks it."""
    import scipy.signal
    import scipy.signal.windows

    if not hasattr(scipy.signal, "kaiser"):
        scipy.signal.kaiser = scipy.signal.windows.kaiser


class _PatchBeforeParallelWaveGAN(importlib.abc.MetaPathFinder):
    """Patches SciPy the first time ``parallel_wavegan`` is imported, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "parallel_wavegan":
            sys.meta_path.remove(self)
            patch_scipy_kaiser()
        return None  # the normal finders import the module itself


def install_scipy_shim():
    if "parallel_wavegan" in sys.modules:
        patch_scipy_kaiser()
    elif not any(isinstance(f, _PatchBeforeParallelWaveGAN) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchBeforeParallelWaveGAN())
